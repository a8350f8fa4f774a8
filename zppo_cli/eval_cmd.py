"""`zppo eval`: benchmark suites on a run's checkpoint, a local model directory, or a preset's base student."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zppo_cli.options import (
    EXIT_FAILED,
    ConfigFiles,
    Executor,
    Profile,
    Scale,
    Set,
    SlurmSet,
    Wait,
    console,
    err_console,
    rel,
    user_errors,
)

EXIT_INCOMPLETE = 4  # some benchmarks had no local data (evaluated the rest); --allow-missing accepts that


def eval_(
    suite: Optional[str] = typer.Option(
        None, "--suite",
        help="tiny, tiny-ood, tiny-vl, tiny-vl-ood, tiny-vl-blank (offline), vlm, llm, video, all, or "
        "comma-separated benchmark names (default: tiny,tiny-ood at tiny scale, the three tiny-vl suites at tiny-vl, "
        "all otherwise). See `zppo ls suites`.",
    ),
    run: Optional[Path] = typer.Option(None, "--run", help="Evaluate a zppo run directory (its latest checkpoint)."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="With --run: a step number or 'latest'."),
    model: Optional[str] = typer.Option(None, "--model", help="Evaluate any local Hugging Face model directory."),
    scale: Optional[str] = Scale,
    config: Optional[list[Path]] = ConfigFiles,
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", envvar="ZPPO_DATA_DIR",
        help="Directory with the benchmarks' local data, one folder per benchmark ($ZPPO_DATA_DIR).",
    ),
    samples: Optional[int] = typer.Option(None, "--samples", "-k", help="Samples per item: mean@k (default 1)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N items per benchmark (quick looks)."),
    judge: str = typer.Option("teacher", "--judge",
                              help="Judge for answers parsing cannot decide: teacher, none, a model directory, or a served "
                              "judge http://host:port/v1 (--set eval.judge_endpoint.model=NAME; see zppo serve)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output directory for results.json and samples.jsonl."),
    set_: Optional[list[str]] = typer.Option(None, "--set", help=Set.help),
    allow_missing: bool = typer.Option(False, "--allow-missing",
                                       help="Exit 0 even when some benchmarks had no local data."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the benchmarks and where their data is; run nothing."),
    executor: str = Executor,
    profile: Optional[str] = Profile,
    slurm: Optional[list[str]] = SlurmSet,
    wait: bool = Wait,
) -> None:
    """Evaluate on the paper's benchmarks (local data) or the offline tiny suites; scores land in MLflow."""
    with user_errors():
        from zppo_core.config import ConfigError
        from zppo_cli.orchestration.cli import check_executor_options

        check_executor_options(executor, profile, slurm, wait)
        if samples is not None and samples < 1 or limit is not None and limit < 1:
            raise ConfigError("--samples and --limit must be >= 1")
        sets = list(set_ or [])
        if samples is not None:
            sets.append(f"eval.samples={samples}")
        if limit is not None:
            sets.append(f"eval.limit={limit}")
        from zppo_core.config.sources import read_layer
        from zppo_core.eval.run import evaluate_target, resolve_target
        from zppo_core.train.run import prepare_tiny

        files = [read_layer(f) for f in config or []]  # read once: here and in a Slurm job the same values
        target = resolve_target(run=run, checkpoint=checkpoint, model=model, scale=scale, overrides=sets, files=files)
        default = {"tiny": "tiny,tiny-ood", "tiny-vl": "tiny-vl,tiny-vl-ood,tiny-vl-blank"}
        spec = suite or default.get(target.cfg.model.student, "all")
        try:
            from zppo_core.suites.evaluate import plan_suites

            tiny, paper = plan_suites(spec)
        except ValueError as err:
            raise ConfigError(f"--suite: {err}") from None
        if dry_run:
            _plan(target, spec, tiny, paper, data_dir)
        if executor != "local":
            which = dict(run=run, checkpoint=checkpoint, model=model, scale=scale, files=files)
            code = _submit(target, spec, sets, which,
                           data_dir, judge, out, executor, profile, slurm, wait, dry_run)
            if code:
                raise typer.Exit(code)
            return
        if dry_run:
            return
        progress, on_progress = _progress()
        with progress:
            try:
                outcome = evaluate_target(target, spec, data_dir=str(data_dir) if data_dir else None, judge=judge,
                                          out_dir=out, progress=on_progress, prepare=prepare_tiny,
                                          log=lambda s: progress.console.print(f"[dim]{s}[/]", highlight=False))
            except ValueError as err:
                raise ConfigError(str(err)) from None
    _show(outcome)
    if outcome.report.skipped and not allow_missing:
        err_console.print(f"[yellow]{len(outcome.report.skipped)} benchmark(s) skipped[/] (listed above); "
                          "place their data and rerun, or pass --allow-missing to accept a partial evaluation")
        raise typer.Exit(EXIT_INCOMPLETE)
    if not outcome.report.results:
        raise typer.Exit(EXIT_FAILED)


def eval_job(run: Optional[str], checkpoint: Optional[str], model: Optional[str], scale: Optional[str],
             overrides: list[str], suite: str, data_dir: Optional[str], judge: str, out: str,
             files: Optional[list[dict]] = None) -> dict:
    """The Slurm/local job behind `zppo eval --executor ...` (JSON-able arguments only; rerunnable: a requeued
    attempt evaluates again and rewrites the same outputs). `files`: the config files' and user presets' layers as
    read on the submitting machine (`Resolved.portable()`), so the job needs neither those files nor `$ZPPO_PRESETS`."""
    from zppo_core.eval.run import evaluate_target, resolve_target
    from zppo_core.train.run import prepare_tiny

    target = resolve_target(run=Path(run) if run else None, checkpoint=checkpoint, model=model, scale=scale,
                            overrides=overrides, files=list(files or []))

    def progress(name: str, done: int, total: int) -> None:
        if done == total or done == 0:
            print(f"zppo: {name} {done}/{total}", flush=True)

    outcome = evaluate_target(target, suite, data_dir=data_dir, judge=judge, out_dir=Path(out), progress=progress,
                              log=lambda s: print(f"zppo: {s}", flush=True), prepare=prepare_tiny)
    for r in outcome.report.results:
        print(f"zppo: {r.name} ({r.family}) n={r.n} score={r.score:.1f}", flush=True)
    for msg in outcome.report.skipped.values():
        print(f"zppo: skipped: {msg}", flush=True)
    return {"out_dir": str(outcome.out_dir), "mlflow_run_id": outcome.mlflow_run_id,
            "metrics": outcome.report.metrics(), "skipped": sorted(outcome.report.skipped)}


def _submit(target, spec: str, sets: list[str], which: dict, data_dir, judge: str, out: Optional[Path], executor: str,
            profile, slurm, wait: bool, dry_run: bool) -> int:
    """`eval --executor slurm|debug`: submit `eval_job` with the same arguments; outputs go where they would
    locally (printed now, so the user knows where to look)."""
    from zppo_core.eval.run import default_out
    from zppo_cli.orchestration import JobSpec, slurm_params, submit
    from zppo_cli.orchestration.cli import follow_submitted, print_dry_run, print_submitted

    out_dir = (out or default_out(target, spec)).expanduser().absolute()
    name = f"zppo-eval-{target.label}".replace("@", "-")
    params = slurm_params(profile, target.cfg.scale, slurm or [], name) if executor == "slurm" else None
    job_dir = out_dir.with_name(out_dir.name + ".job")
    if dry_run:
        if params is not None:
            print_dry_run(params, job_dir, console)
        return 0
    if executor == "slurm":
        from zppo_cli.orchestration import require_slurm
        from zppo_cli.orchestration.cli import require_single_process

        require_single_process(params, "eval")
        require_slurm()
    if executor == "slurm" and target.cfg.tracking.enabled:
        from zppo_cli.orchestration.tracking import ensure_store

        ensure_store(target.cfg.tracking.uri, target.cfg.tracking.experiment)
    if which["run"]:  # the run's config is the base: only the files travel
        scale, files = None, [layer.to_json() for layer in which["files"]]
    else:  # the preset chain (user presets included) and the files, as read here
        from zppo_core.config import resolve_config

        portable = resolve_config(which["scale"], files=which["files"]).portable()
        scale, files = portable["scale"], portable["files"]
    kwargs = {"run": str(Path(which["run"]).absolute()) if which["run"] else None, "checkpoint": which["checkpoint"],
              "model": str(Path(which["model"]).expanduser().absolute()) if which["model"] else None,
              "scale": scale, "files": files, "overrides": sets, "suite": spec,
              "data_dir": str(Path(data_dir).absolute()) if data_dir else None, "judge": judge, "out": str(out_dir)}
    job = JobSpec("zppo_cli.eval_cmd:eval_job", kwargs, name=name, kind="eval",
                  run_dir=str(target.run_dir.absolute()) if target.run_dir else None,
                  resume_hint=f"zppo eval --suite {spec} (rerun; evaluation restarts)")
    [sub] = submit(job, executor=executor, params=params, folder=job_dir)
    if executor == "debug":
        v = sub.value
        console.print(f"results: {v['out_dir']}/results.json  ·  MLflow run: {v['mlflow_run_id']}", highlight=False)
        return 0
    print_submitted([sub], console)
    console.print(f"  results: {out_dir}/results.json", highlight=False, soft_wrap=True)
    return follow_submitted([sub], console, err_console) if wait else 0


def _plan(target, spec, tiny, paper, data_dir) -> None:
    from rich.table import Table

    from zppo_core.suites.data import data_path, default_data_dir
    from zppo_core.suites.evaluate import tiny_benchmarks

    root = Path(data_dir) if data_dir else default_data_dir()
    console.print(f"model: {target.model_path or 'tiny (prepared student)'}  ·  suite: {spec}  ·  data dir: {root}")
    t = Table(title="what would be evaluated")
    for c in ("benchmark", "family", "scoring", "data"):
        t.add_column(c)
    for s in tiny:
        for name in tiny_benchmarks(s, target.cfg.data.families):
            t.add_row(name, s, "rule", "generated (offline)")
    for b in paper:
        p = data_path(b, root)
        t.add_row(b.name, b.family, b.scoring + (" then judge" if b.judge_fallback else ""),
                  str(p) if p else f"[red]missing[/] ({b.dataset_id} -> {root / b.folder})")
    console.print(t)


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=err_console, transient=False)
    tasks: dict[str, int] = {}

    def on_progress(name: str, done: int, total: int) -> None:
        if name not in tasks:
            tasks[name] = progress.add_task(name, total=total or None)
        progress.update(tasks[name], completed=done, total=total or None)

    return progress, on_progress


def _fmt(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1f}"


def _comparable_cell(ref: Optional[float], comparable: bool, mark: str = "") -> str:
    if ref is None:
        return "-"
    return "yes" if comparable else f"[yellow]no{mark}[/]"


def _show(outcome) -> None:
    """The results table: the paper's number beside each score, the `comparable` column saying whether the score
    is measured as the paper's is, and a delta only where it is (the reasons are listed under the table)."""
    from rich.table import Table

    rep, target = outcome.report, outcome.target
    title = f"zppo eval · {target.label} · scale {target.cfg.scale}"
    if target.step is not None:
        title += f" · step {target.step}"
    t = Table(title=title)
    for c, j in (("benchmark", "left"), ("family", "left"), ("n", "right"), ("score", "right"),
                 ("paper", "right"), ("comparable", "left"), ("delta", "right"), ("judged", "right")):
        t.add_column(c, justify=j)
    notes = []
    for r in rep.results:
        mark = ""
        if r.reference is not None and r.not_comparable:
            notes.append((r.name, r.not_comparable))
            mark = f" ({len(notes)})"
        t.add_row(r.name, r.family, str(r.n), f"{r.score:.1f}", _fmt(r.reference),
                  _comparable_cell(r.reference, r.comparable, mark),
                  "-" if r.delta is None else f"{r.delta:+.1f}", str(r.judged))
    fams, fam_ok = rep.family_averages(), rep.family_comparable()
    if fams:
        t.add_section()
        for fam, v in fams.items():
            ref = outcome.family_reference.get(fam)
            ok = fam_ok.get(fam, False)
            t.add_row(f"[bold]{fam} average[/]", fam, str(sum(r.n for r in rep.results if r.family == fam)),
                      f"[bold]{v:.1f}[/]", _fmt(ref), _comparable_cell(ref, ok),
                      f"{v - ref:+.1f}" if ref is not None and ok else "-", "")
    console.print(t)
    for i, (name, why) in enumerate(notes, 1):
        console.print(f"  ({i}) {name} not comparable with the paper: {why}", highlight=False, soft_wrap=True)
    if any(ref is not None and not fam_ok.get(fam, False) for fam, ref in outcome.family_reference.items()):
        console.print("  a family average is comparable only when all of the family's benchmarks are, each one "
                      "comparable", highlight=False)
    for r in rep.results:
        if r.by_level:
            console.print(f"  {r.name} by level: " + ", ".join(f"L{k} {v:.0f}" for k, v in r.by_level.items()),
                          highlight=False)
        if r.parts:
            console.print(f"  {r.name}: " + ", ".join(f"{k} {v:.1f}" for k, v in r.parts.items()), highlight=False)
    if rep.skipped:
        console.print(f"[yellow]skipped {len(rep.skipped)}[/]:")
        for msg in rep.skipped.values():
            console.print(f"  - {msg}", highlight=False, soft_wrap=True)
    console.print(f"results: {rel(outcome.out_dir / 'results.json')}  ·  samples: "
                  f"{rel(outcome.out_dir / 'samples.jsonl')}  ·  MLflow run: {outcome.mlflow_run_id}  ·  "
                  f"{outcome.seconds:.0f}s", highlight=False)
