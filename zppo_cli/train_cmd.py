"""`zppo train` and `zppo prepare`."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from zppo_cli.options import (
    EXIT_INTERRUPTED,
    ConfigFiles,
    DryRun,
    Executor,
    Method,
    Profile,
    RunDir,
    Scale,
    Seed,
    Set,
    SlurmSet,
    Steps,
    Wait,
    console,
    err_console,
    overrides,
    rel,
    user_errors,
)


def _resolve(scale: Optional[str], method: Optional[str], steps: Optional[int], seed: Optional[int], sets, run_dir,
             files=None):
    """preset < --config files < --method < --set < --steps/--seed/--run-dir (a `Resolved`: config + sources)."""
    from zppo_core.config import resolve_config

    given = (("steps", "steps", steps), ("seed", "seed", seed), ("run-dir", "run_dir", str(run_dir) if run_dir else None))
    flags = [(f"--{name}", {"run": {key: value}}) for name, key, value in given if value is not None]
    return resolve_config(scale, method=method, overrides=overrides(sets), extra=flags, files=list(files or []))


def train(
    scale: Optional[str] = Scale,
    method: Optional[str] = Method,
    steps: Optional[int] = Steps,
    seed: Optional[int] = Seed,
    config: Optional[list[Path]] = ConfigFiles,
    set_: Optional[list[str]] = typer.Option(None, "--set", help=Set.help),
    run_dir: Optional[Path] = RunDir,
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue the run in this directory from its latest checkpoint."
    ),
    dry_run: bool = DryRun,
    executor: str = Executor,
    profile: Optional[str] = Profile,
    slurm: Optional[list[str]] = SlurmSet,
    wait: bool = Wait,
    nproc: int = typer.Option(1, "--nproc", min=1, help="Ranks on this machine (one per GPU, or CPU processes): "
                              "the student is sharded with FSDP2 and the step's questions split over the ranks."),
) -> None:
    """Train a student with GRPO, ZPPO or a baseline (tiny scale runs on a CPU in minutes; --executor slurm submits)."""
    with user_errors():
        from zppo_cli.orchestration.cli import check_executor_options

        check_executor_options(executor, profile, slurm, wait)
        if nproc > 1 and executor != "local":
            from zppo_core.config import ConfigError

            raise ConfigError(f"--nproc {nproc} starts ranks on this machine (--executor local); a Slurm job takes its "
                              "ranks from the profile: --slurm tasks_per_node=N (and nodes=M)")

        resolved = None
        if resume is not None:
            from zppo_core.run_dir import RunDir

            cfg = RunDir(resume).read_config() if RunDir(resume).is_run() else None
            if cfg is None:
                from zppo_core.config import ConfigError

                raise ConfigError(
                    f"resume dir {resume} has no config.yaml (not a zppo run directory); pass a directory "
                    "created by `zppo train`"
                )
            if set_ or config or steps is not None or seed is not None:
                from zppo_core.config import ConfigError

                raise ConfigError("--resume continues a run exactly as configured (its saved config.yaml); drop "
                                  "--config/--set/--steps/--seed")
        else:
            resolved = _resolve(scale, method, steps, seed, set_, run_dir, config)
            cfg = resolved.cfg
            if cfg.tracking.description is None:  # the run's MLflow description, also when it runs as a job
                from zppo_core.train.record import command_line

                cfg.tracking.description = command_line([a for a in sys.argv if a != "--dry-run"])
        if executor != "local":
            code = _submit(cfg, executor=executor, profile=profile, slurm=slurm, run_dir=run_dir,
                                resume=resume, wait=wait, dry_run=dry_run, resolved=resolved)
            if code:
                raise typer.Exit(code)
            return
        if dry_run:
            _print_config(cfg, resolved)
            if nproc > 1:
                console.print(f"# layout: {nproc} ranks on this machine (torch elastic launcher); "
                              f"{layout_line(cfg, nproc)}", style="dim")
            return
        _run(cfg, run_dir=resume if resume is not None else run_dir, resume=resume is not None, nproc=nproc)


def _print_config(cfg, resolved, notes: Optional[dict] = None) -> None:
    """The dry run's config: every value with where it came from (a resumed run: its saved config as is)."""
    from zppo_core.config import dump_config

    console.print(f"# resolved config (scale={cfg.scale}, method={cfg.method})", style="dim")
    text = resolved.annotated(cfg, notes) if resolved is not None else dump_config(cfg)
    console.print(text, highlight=False, markup=False, soft_wrap=True)


def _submit(cfg, executor: str, profile: Optional[str], slurm: Optional[list[str]], run_dir: Optional[Path],
            resume: Optional[Path], wait: bool, dry_run: bool, resolved=None) -> int:
    """`train --executor slurm|debug`: the resolved config goes to a job folder beside the run dir
    (`<run_dir>.job/`: config.yaml, submitit's pickles and logs); the job itself is `jobs.train_run(config,
    run_dir)`, which starts the run or resumes it from its latest checkpoint."""
    import shutil

    from zppo_core.config import ConfigError, dump_config
    from zppo_core.run_dir import CONFIG_FILE, RunDir, write_atomic
    from zppo_core.train.run import default_run_dir, preflight
    from zppo_cli.orchestration import JobSpec, require_slurm, slurm_params, submit
    from zppo_cli.orchestration.cli import follow_submitted, print_dry_run, print_submitted

    if resume is not None:
        rd = resume
    else:
        rd = Path(run_dir) if run_dir is not None else (Path(cfg.run.run_dir) if cfg.run.run_dir
                                                         else default_run_dir(cfg))
    rd = rd.expanduser().absolute()
    job_dir = rd.with_name(rd.name + ".job")
    name = f"zppo-{rd.name}"
    params = None
    notes: dict[str, str] = {}  # values set here, for the dry run's sources
    if executor == "slurm":
        serve = _teacher_serve(cfg, (rd if resume is not None else job_dir) / CONFIG_FILE)
        params = slurm_params(profile, cfg.scale, slurm or [], name, teacher_serve=serve)
        if params.teacher_url and cfg.model.teacher_endpoint.url != params.teacher_url:
            cfg = cfg.model_copy(deep=True)  # the students reach their node's teacher server
            cfg.model.teacher_endpoint.url = params.teacher_url
            notes["model.teacher_endpoint.url"] = "the node's teacher server (Slurm profile's teacher_gpus_per_node)"
    if params is not None and "checkpoint_minutes" in type(cfg.run).model_fields \
            and getattr(cfg.run, "checkpoint_minutes") is None and "time" in params.sbatch:
        # a wall-clock checkpoint well inside the time limit (the step schedule alone may be too sparse)
        cfg = cfg.model_copy(deep=True)
        cfg.run.checkpoint_minutes = float(max(1.0, min(30.0, params.sbatch["time"] / 4)))
        notes["run.checkpoint_minutes"] = "a quarter of the Slurm time limit (at most 30)"
    if dry_run:
        _print_config(cfg, resolved, notes)
        if params is not None:
            nodes, tasks = params.sbatch["nodes"], params.sbatch["ntasks_per_node"]
            console.print(f"# layout: {nodes} node(s) x {tasks} task(s) = {params.world_size} rank(s); "
                          f"{layout_line(cfg, params.world_size)}", style="dim", soft_wrap=True)
            print_dry_run(params, job_dir, console)
        else:
            console.print(f"# --executor {executor}: runs jobs.train_run in this process; nothing run", style="dim")
        return 0
    if executor == "slurm":
        require_slurm()
        _refuse_if_active(rd)
    if resume is None:
        if not (cfg.model.requires_cuda or cfg.model.device == "cuda" or cfg.rollout.engine == "vllm"):
            preflight(cfg, rd, resume=False)  # everything checkable here (GPU presets are checked on the node)
        elif not RunDir(rd).is_empty():
            raise ConfigError(f"run dir {rd} already exists and is not empty; use --resume {rd} or another --run-dir")
        config_path = job_dir / CONFIG_FILE  # the job's copy; the run writes its own config.yaml when it starts
    else:
        config_path = RunDir(rd).config_path
    if executor == "slurm" and cfg.tracking.enabled:
        from zppo_core.train.run import check_tracking
        from zppo_cli.orchestration.tracking import ensure_store

        check_tracking(cfg)  # a server that does not answer: one line now, not minutes of retries
        ensure_store(cfg.tracking.uri, cfg.tracking.experiment)  # no schema/experiment race between processes
    created = not job_dir.exists()
    job_dir.mkdir(parents=True, exist_ok=True)
    try:
        if resume is None:
            write_atomic(config_path, dump_config(cfg))
        hint = f"zppo train --resume {rd} --executor {executor}" + (f" --profile {profile}" if profile else "")
        spec = JobSpec("zppo_cli.orchestration.jobs:train_run", {"config": str(config_path), "run_dir": str(rd)},
                       name=name, kind="train", run_dir=str(rd), total_steps=cfg.run.steps, resume_hint=hint)
        [sub] = submit(spec, executor=executor, params=params, folder=job_dir)
    except BaseException:
        if created:
            shutil.rmtree(job_dir, ignore_errors=True)
        raise
    if executor == "debug":
        v = sub.value
        console.print(f"run dir: {rel(Path(v['run_dir']))}  ·  MLflow run: {v['mlflow_run_id']}", highlight=False)
        return 0
    print_submitted([sub], console)
    return follow_submitted([sub], console, err_console) if wait else 0


def _teacher_serve(cfg, config_path: Path) -> Optional[str]:
    """The command a Slurm profile's teacher-server layout runs on each node, when this run uses a teacher that is
    not already served elsewhere (a remote teacher_endpoint.url); None otherwise."""
    import shlex
    from urllib.parse import urlparse

    from zppo_core.train.methods.registry import build_method

    url = cfg.model.teacher_endpoint.url
    if url is not None and urlparse(url).hostname not in ("127.0.0.1", "localhost"):
        return None
    if not build_method(cfg).needs_teacher:
        return None
    return f"zppo serve teacher --config {shlex.quote(str(config_path))}"


def _refuse_if_active(rd: Path) -> None:
    """Two jobs must never train into one run dir: refuse while an earlier job for it is queued or running."""
    from zppo_core.config import ConfigError
    from zppo_cli.orchestration import registry

    mine = [r for r in registry.load() if r.run_dir == str(rd) and r.executor == "slurm"]
    if not mine:
        return
    for r in mine:
        state = registry.states([r])[r.job_id]["state"]
        if registry.main_state(state) not in registry.TERMINAL and state != "UNKNOWN":
            raise ConfigError(f"run dir {rd} belongs to Slurm job {r.job_id}, which is {state}; follow it with "
                              f"`zppo jobs wait {r.job_id}` or stop it with `zppo jobs cancel {r.job_id}`")


def layout_line(cfg, world: int) -> str:
    """Where the student and the teacher run, for the dry runs (local --nproc and Slurm)."""
    from urllib.parse import urlparse

    from zppo_core.train.methods.registry import build_method

    served = getattr(getattr(cfg.model, "teacher_endpoint", None), "url", None)
    if not build_method(cfg).needs_teacher:
        teacher = "no teacher (the method uses none)"
    elif served and urlparse(served).hostname in ("127.0.0.1", "localhost") and world > 1:
        teacher = f"teacher served at {served} (one server per node, shared by that node's ranks)"
    elif served:
        teacher = f"teacher served at {served} (shared by the ranks)"
    else:
        teacher = "teacher in-process on every rank (frozen copy; its rollouts split over the ranks)"
    return (f"student: {world} rank(s), FSDP2-sharded (fully_shard per decoder layer + root), each rank rolling "
            f"out 1/{world} of the step's prompts from its own full copy; {teacher}")


def _run(cfg, run_dir: Optional[Path], resume: bool, nproc: int = 1) -> None:
    if nproc > 1:
        return _run_ranks(cfg, run_dir, resume, nproc)
    _summary(cfg, _run_with_progress(cfg, run_dir, resume))


def _run_ranks(cfg, run_dir: Optional[Path], resume: bool, nproc: int) -> None:
    """`--nproc N`: the preflight and the tiny pair's preparation here (bad input exits 2 before any rank starts),
    then N ranks (rank 0 shows the progress); a failed or killed rank stops the run with one line (exit 1)."""
    from zppo_core.run_dir import RunDir as Run
    from zppo_core.train.run import preflight, prepare_tiny
    from zppo_cli.launch import RankFailed, launch

    rd = preflight(cfg, run_dir, resume)
    if cfg.model.student == "tiny":
        prepare_tiny(cfg, lambda s: err_console.print(f"[dim]{s}[/]"))
    try:
        result = launch(nproc, "zppo_cli.train_cmd:rank_main", {"cfg": cfg, "run_dir": str(rd), "resume": resume})
    except RankFailed as err:
        latest = Run(rd).latest_checkpoint()
        then = (f"its last complete checkpoint is {latest.name}; continue with: zppo train --resume {rd} --nproc "
                f"{nproc}") if latest is not None else "no checkpoint was written yet"
        err_console.print(f"[bold red]error:[/] zppo train --nproc {nproc}: {err}; the other ranks were stopped; "
                          f"{then}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    _summary(cfg, result)


def rank_main(cfg, run_dir: str, resume: bool):
    """One rank of `zppo train --nproc N` (started by `zppo_cli.launch`): rank 0 shows the progress."""
    import os

    from zppo_core.train.run import train as run_train

    if os.environ.get("RANK", "0") == "0":
        return _run_with_progress(cfg, Path(run_dir), resume, handle_signals=False)
    return run_train(cfg, run_dir=Path(run_dir), resume=resume)


def _run_with_progress(cfg, run_dir: Optional[Path], resume: bool, handle_signals: bool = True):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from zppo_core.train.run import train as run_train

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("acc {task.fields[acc]:.1f}%  reward {task.fields[reward]:.2f}  {task.fields[sps]:.2f}s/step"),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
    task_id = None

    def on_step(step: int, m: dict[str, float]) -> None:
        nonlocal task_id
        if task_id is None:
            task_id = progress.add_task(f"{cfg.method}@{cfg.scale}", total=cfg.run.steps, completed=step - 1,
                                        acc=0.0, reward=0.0, sps=0.0)
        progress.update(task_id, completed=step, acc=m["train/accuracy"], reward=m["train/reward_mean"],
                        sps=m["perf/step_time_s"])

    def log(msg: str) -> None:
        progress.console.print(f"[dim]{msg}[/]", highlight=False)

    if not handle_signals:  # a rank of --nproc N: the elastic launcher owns the signals and stops every rank
        with progress:
            return run_train(cfg, run_dir=run_dir, resume=resume, on_step=on_step, log=log)
    with progress, _stop_on_signal(log) as stop_requested:
        result = run_train(cfg, run_dir=run_dir, resume=resume, on_step=on_step, log=log,
                           stop_requested=stop_requested)
    if result.interrupted:
        step = result.history[-1]["step"] if result.history else 0
        err_console.print(f"[yellow]interrupted[/] after step {step} of {cfg.run.steps}, checkpointed; continue with: "
                          f"zppo train --resume {result.run_dir}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    return result


@contextlib.contextmanager
def _stop_on_signal(log):
    """A local run's SIGTERM or SIGINT (Ctrl-C) stops it at the end of the current step, checkpointed; a second
    one stops it at once (KeyboardInterrupt: the last checkpoint is intact). Slurm jobs do not come here: submitit
    handles their signals and requeues them."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    caught: list[int] = []

    def handler(signum, frame):
        if caught:
            raise KeyboardInterrupt
        caught.append(signum)
        log(f"{signal.Signals(signum).name}: stopping after this step (checkpointed); send it again to stop at once")

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: bool(caught)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _summary(cfg, result) -> None:
    from rich.table import Table

    h = result.history
    table = Table(title=f"zppo train · {cfg.method} · scale {cfg.scale} · seed {cfg.run.seed}", show_header=True)
    table.add_column("metric")
    table.add_column("first 10 steps", justify="right")
    table.add_column("last 10 steps", justify="right")

    def avg(rows, key):
        vals = [r[key] for r in rows if key in r]
        digits = 1 if key == "train/accuracy" else 3  # accuracies in percent, rewards and shares as fractions
        return f"{sum(vals) / len(vals):.{digits}f}" if vals else "-"

    for key, label in [("train/accuracy", "plain accuracy (%)"), ("train/reward_mean", "reward (all groups)"),
                       ("train/hard_frac", "hard questions"), ("train/trivial_group_frac", "trivial groups"),
                       ("train/entropy", "entropy"), ("perf/step_time_s", "seconds / step")]:
        table.add_row(label, avg(h[:10], key), avg(h[-10:], key))
    console.print(table)
    if h and "eval/heldout/accuracy" in h[-1]:
        levels = {k.rsplit("_", 1)[1]: v for k, v in h[-1].items() if k.startswith("eval/heldout/level_")}
        console.print(f"held-out accuracy (mean@4, T=0.6): {h[-1]['eval/heldout/accuracy']:.1f}%  by level: "
                      + ", ".join(f"L{k} {v:.0f}%" for k, v in levels.items()), highlight=False)
    evals = [r for r in h if any(k.endswith("/avg") and k.startswith("eval/") for k in r)]
    if evals:  # periodic eval (eval.every): the suites' averages, first and last evaluated step
        names = [k for k in evals[-1] if k.startswith("eval/") and k.endswith("/avg")]
        first, last = evals[0], evals[-1]
        console.print("periodic eval (percent, steps " + f"{int(first['step'])} → {int(last['step'])}): "
                      + ", ".join(f"{k[5:-4]} {first.get(k, float('nan')):.1f} → {last[k]:.1f}" for k in names),
                      highlight=False)
    fates = result.method_summary.get("fates_by_entry_bin") if result.method_summary else None
    if fates:
        ft = Table(title=f"replay buffer · {result.method_summary.get('buffer_size', 0)} questions still buffered")
        ft.add_column("entry bin")
        for col in ("graduated", "evicted", "buffered", "graduated / left"):
            ft.add_column(col, justify="right")
        for b, c in sorted(fates.items()):
            left = c.get("graduated", 0) + c.get("evicted", 0)
            share = f"{c.get('graduated', 0) / left:.1%}" if left else "-"
            ft.add_row(f"{b:g}%", str(c.get("graduated", 0)), str(c.get("evicted", 0)), str(c.get("buffered", 0)), share)
        console.print(ft)
    if result.prepare_report:
        s, t = result.prepare_report["student"], result.prepare_report["teacher"]
        console.print(f"prepared student: accuracy {100 * s['accuracy']:.0f}%, hard share {s['hard_share']:.2f} · "
                      f"teacher accuracy {100 * t['accuracy']:.0f}%", highlight=False)
    console.print(f"run dir: {rel(result.run_dir)}  ·  MLflow run: {result.mlflow_run_id}  ·  "
                  f"{result.seconds:.0f}s")
    if result.mlflow_run_id:
        console.print("compare runs: [bold]zppo runs ls[/] · [bold]zppo runs compare[/] RUN_A RUN_B · "
                      "[bold]zppo report[/] RUN · [bold]zppo ui[/] (the MLflow UI)")


def prepare(
    scale: Optional[str] = Scale,
    config: Optional[list[Path]] = ConfigFiles,
    set_: Optional[list[str]] = typer.Option(None, "--set", help=Set.help),
) -> None:
    """Prepare (SFT) the tiny student and teacher now; cached, so `train` then starts at once."""
    with user_errors():
        cfg = _resolve(scale, None, None, None, set_, None, config).cfg
        if cfg.model.student not in ("tiny", "tiny-vl"):
            from zppo_core.config import ConfigError

            raise ConfigError(f"prepare is for --scale tiny or tiny-vl; preset '{scale or cfg.scale}' uses real "
                              "pretrained models")
        from zppo_core.train.prepare import ensure_prepared

        t0 = time.perf_counter()
        path = ensure_prepared(cfg, lambda s: err_console.print(f"[dim]{s}[/]"))
        import json

        rep = json.loads((path / "report.json").read_text())
        console.print(f"prepared in {path} ({time.perf_counter() - t0:.0f}s)")
        for who in ("student", "teacher"):
            r = rep[who]
            console.print(f"  {who}: {r['params'] / 1e6:.2f}M params, {r['steps']} SFT steps, accuracy "
                          f"{100 * r['accuracy']:.0f}%, hard share {r['hard_share']:.2f}, by level "
                          f"{r['accuracy_by_level']}")
