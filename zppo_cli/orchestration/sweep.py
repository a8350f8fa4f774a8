"""Optuna sweeps: a study in real storage, trials as ordinary zppo training runs, one MLflow parent run.

    plan = plan_sweep("buffer", scale="tiny", trials=6, parallel=2, ...)   # every check; nothing created
    code = Sweep(plan, console, err_console).run()                          # runs it (or continues it)

Ask/tell: this process asks Optuna for a trial (`study.ask` with the definition's distributions), writes the
trial's resolved config and `trial.json` into `<sweep dir>/trials/<nnnn>/`, and launches it; the trial worker
(`zppo_cli.orchestration.trial`) trains with the same code path as `zppo train`, reports each periodic eval of
the objective to the study itself and stops early when the pruner says so; this process reads the worker's
`result.json` and tells the study COMPLETE / PRUNED / FAIL. Trials run M at a time as separate local processes
(a crashing or killed trial cannot take the sweep down), or as Slurm jobs through submitit (several trials
launched together form one job array; a preempted trial is requeued and resumes from its checkpoint).

A failed trial is marked FAIL and retried once with the same parameters (the retry replaces it in the budget).
`--resume` loads the same study: finished trials are kept, trials that were running when the sweep stopped are
relaunched and resume their runs from their latest checkpoints (or are adopted while their process/job lives).

Sweep directory (default `runs/sweeps/<study>/`):
    sweep.json        the plan: definition, scale, overrides, storage, budget, MLflow parent run id
    definition.yaml   the sweep file as it was when the sweep started
    optuna.journal    the default storage (Optuna JournalStorage on a file; safe with several processes)
    trials/0003/      trial.json, config.yaml, worker.log, result.json and the run dir <study>-t003/
    plots/, best.json written at the end (also logged to the MLflow parent run)
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zppo_core.config import ConfigError
from zppo_cli.orchestration.sweep_spec import SweepSpec, check_against_config, load_sweep

SWEEP_FILE = "sweep.json"
LOCK_FILE = "sweep.lock"
JOURNAL_FILE = "optuna.journal"
SWEEPS_ROOT = Path("runs") / "sweeps"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def sweep_dir_for(study: str) -> Path:
    return SWEEPS_ROOT / study


def shown_storage(storage: str) -> str:
    """The storage string with any password hidden (it goes to MLflow and the terminal)."""
    if "://" not in storage:
        return storage
    try:
        from sqlalchemy.engine import make_url

        return make_url(storage).render_as_string(hide_password=True)
    except Exception:
        return storage.split("://", 1)[0] + "://…"


def check_storage(storage: str) -> None:
    """Open an RDB storage URL now, so an unreachable database is one line before anything is created."""
    from zppo_cli.orchestration.trial import open_storage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            open_storage(storage)
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise ConfigError(f"--storage {shown_storage(storage)}: cannot open it ({type(err).__name__}: {first}); "
                              "check the URL, the driver and that the database is reachable, or drop --storage "
                              "for a journal file in the sweep directory") from None


@dataclass
class SweepPlan:
    spec: SweepSpec
    study: str
    sweep_dir: Path
    storage: str
    trials: int
    parallel: int
    executor: str
    user_sets: list[str]
    base_cfg: Any
    resume: bool = False
    profile: str | None = None
    slurm: list[str] = field(default_factory=list)
    threads: int | None = None
    retries: int = 1
    notes: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)     # sweep.json of a resumed sweep

    def trial_config(self, params: dict[str, Any], run_dir: Path, parent_run_id: str | None, number: int):
        """The resolved config of one trial: the base (preset + method + sweep set + --set) plus the params."""
        from zppo_core.config import load_config

        searched = [f"{field}={json.dumps(value)}" for field, value in self.config_values(params).items()]
        run: dict[str, Any] = {"run_dir": str(run_dir)}
        if self.threads:
            run["threads"] = self.threads
        tags = dict(self.base_cfg.tracking.tags)
        tags.update({"zppo.sweep": self.spec.name, "optuna.study": self.study, "optuna.trial_number": str(number)})
        return load_config(self.spec.scale, method=self.spec.method,
                           overrides=self.spec.set + self.user_sets + searched,
                           extra={"run": run, "tracking": {"parent_run_id": parent_run_id, "tags": tags}})

    def config_values(self, params: dict[str, Any]) -> dict[str, Any]:
        base = self.base_cfg.model_dump()
        return {p.field: p.config_value(params[p.name], base) for p in self.spec.params if p.name in params}


def plan_sweep(name: str, scale: str, trials: int | None = None, parallel: int | None = None,
               sets: list[str] | None = None, executor: str = "local", storage: str | None = None,
               study: str | None = None, resume: bool = False, profile: str | None = None,
               slurm: list[str] | None = None, runtime_checks: bool = True) -> SweepPlan:
    """Every check that needs no compute; raises ConfigError (one line). Creates nothing. `runtime_checks=False`
    (dry runs) skips what only matters when trials run here: CUDA, model and data paths."""
    from zppo_core.config import load_config

    from zppo_cli.orchestration.submit import EXECUTORS

    sets = list(sets or [])
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: unknown executor; valid: {', '.join(EXECUTORS)}")
    if executor != "slurm" and (profile or slurm):
        raise ConfigError("--profile/--slurm only apply to --executor slurm; add --executor slurm or drop them")
    for v, opt in ((trials, "--trials"), (parallel, "--parallel")):
        if v is not None and v < 1:
            raise ConfigError(f"{opt} must be at least 1 (got {v})")
    meta: dict[str, Any] = {}
    if resume:
        spec_name = Path(name).stem if name.endswith((".yaml", ".yml")) else name
        study = study or f"{spec_name}-{scale}"
        sdir = sweep_dir_for(study)
        if not (sdir / SWEEP_FILE).is_file():
            raise ConfigError(f"--resume: no sweep '{study}' in {SWEEPS_ROOT}/ (no {sdir / SWEEP_FILE}); start it "
                              f"without --resume, or pass --study NAME ({_known_studies()})")
        meta = json.loads((sdir / SWEEP_FILE).read_text())
        if sets:
            raise ConfigError("--resume continues a sweep exactly as configured; drop --set")
        if storage is not None and storage != meta["storage"]:
            raise ConfigError(f"--resume: this sweep's storage is {shown_storage(meta['storage'])}; drop --storage")
        spec = SweepSpec.from_dict(meta["spec"])
        sets = list(meta.get("user_sets", []))
        storage = meta["storage"]
        trials = trials or int(meta["trials"])
        parallel = parallel or min(int(meta["parallel"]), trials)
        if executor == "local" and meta.get("executor", "local") != "local":
            executor = meta["executor"]
            profile = profile or meta.get("profile")
            slurm = slurm or meta.get("slurm")
    else:
        spec = load_sweep(name, scale)
        study = study or f"{spec.name}-{scale}"
        sdir = sweep_dir_for(study)
        if sdir.exists() and any(sdir.iterdir()):
            raise ConfigError(f"sweep directory {sdir} already exists; continue it with --resume, or pass --study "
                              "NEW_NAME for a new study")
        given_trials = trials
        trials = trials or spec.trials
        if parallel is not None and parallel > trials:
            raise ConfigError(f"--parallel {parallel} is larger than the trial budget ({trials}); use --parallel "
                              f"{trials} or more --trials")
        parallel = parallel or min(spec.parallel, trials)
        if spec.sampler["name"] == "grid" and trials > spec.grid_size():
            if given_trials is not None:
                raise ConfigError(f"--trials {trials} is larger than the grid ({spec.grid_size()} points); use "
                                  f"--trials {spec.grid_size()} or fewer")
            trials = spec.grid_size()
            parallel = min(parallel, trials)
    if parallel > trials:
        raise ConfigError(f"--parallel {parallel} is larger than the trial budget ({trials}); use --parallel "
                          f"{trials} or more --trials")
    if not study or "/" in study or study.startswith("."):
        raise ConfigError(f"--study '{study}': a study name is a plain name (it names runs/sweeps/<study>/)")
    base = load_config(spec.scale, method=spec.method, overrides=spec.set + sets)
    check_against_config(spec, base, sets)
    threads = None
    if executor != "slurm" and base.run.threads is None:
        threads = max(1, (os.cpu_count() or 1) // parallel)  # M trials share this machine's cores
    if executor != "slurm" and runtime_checks:  # CUDA, models, data: what a trial here would check first (GPU nodes check their own)
        from zppo_core.train.run import preflight

        preflight(base, sdir / "trials" / ".preflight", resume=False)  # a path no trial uses
    if executor == "slurm" and runtime_checks:
        from zppo_cli.orchestration.cli import require_single_process
        from zppo_cli.orchestration.submit import slurm_params

        require_single_process(slurm_params(profile, spec.scale, list(slurm or []), "zppo-sweep"), "sweep trials")
    storage = storage or str((sdir / JOURNAL_FILE).absolute())
    if "://" in storage:
        check_storage(storage)
        if not resume:
            _check_new_study(storage, study)
    elif not resume and Path(storage).exists():
        raise ConfigError(f"--storage {storage} already exists; --resume continues it, or choose another file")
    return SweepPlan(spec=spec, study=study, sweep_dir=sdir, storage=storage, trials=trials, parallel=parallel,
                     executor=executor, user_sets=sets, base_cfg=base, resume=resume, profile=profile,
                     slurm=list(slurm or []), threads=threads, meta=meta)


def _check_new_study(storage: str, study: str) -> None:
    import optuna

    from zppo_cli.orchestration.trial import open_storage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage), include_best_trial=False)]
    if study in names:
        raise ConfigError(f"study '{study}' already exists in {shown_storage(storage)}; continue it with --resume "
                          "or pass --study NEW_NAME")


def _known_studies() -> str:
    names = sorted(p.name for p in SWEEPS_ROOT.glob("*") if (p / SWEEP_FILE).is_file()) if SWEEPS_ROOT.is_dir() else []
    return "known: " + ", ".join(names) if names else "none yet"


def build_sampler(spec: SweepSpec, parallel: int, seed_offset: int = 0):
    import optuna

    s = spec.sampler
    seed = s.get("seed")
    seed = None if seed is None else int(seed) + seed_offset
    if s["name"] == "grid":
        class AskTellGridSampler(optuna.samplers.GridSampler):
            # GridSampler stops an optimize() loop when the grid is done; with ask/tell the budget does that
            def after_trial(self, study, trial, state, values):  # noqa: D401
                return None

        return AskTellGridSampler(spec.grid, seed=seed)
    if s["name"] == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=int(s.get("n_startup_trials", 4)),
                                      multivariate=bool(s.get("multivariate", True)), constant_liar=parallel > 1)


# ----------------------------------------------------------------------------------------------- launchers
@dataclass
class Running:
    number: int
    trial_id: int
    params: dict[str, Any]
    tdir: Path
    total_steps: int
    proc: Any = None            # subprocess.Popen (local)
    pid: int | None = None      # adopted local worker (no Popen)
    record: Any = None          # registry.JobRecord (slurm/debug)
    started: float = field(default_factory=time.time)

    study: str = "sweep"

    @property
    def run_dir(self) -> Path:
        return self.tdir / f"{self.study}-t{self.number:03d}"  # its name is the trial's MLflow run name


def _pid_alive(pid: int, spec_path: Path) -> bool:
    try:
        os.kill(pid, 0)
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return False
    return "zppo_cli.orchestration.trial" in cmd and str(spec_path) in cmd


class LocalLauncher:
    """One OS process per trial (its own session, so a Ctrl-C reaches the sweep first and it stops them)."""

    kind = "local"

    def launch(self, runs: list[Running]) -> None:
        for r in runs:
            spec_path = r.tdir / "trial.json"
            with open(r.tdir / "worker.log", "ab") as log:
                r.proc = subprocess.Popen([sys.executable, "-m", "zppo_cli.orchestration.trial", str(spec_path)],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
            (r.tdir / "launch.json").write_text(json.dumps({"executor": "local", "pid": r.proc.pid}))

    def adopt(self, r: Running) -> bool:
        try:
            info = json.loads((r.tdir / "launch.json").read_text())
        except (OSError, ValueError):
            return False
        if info.get("executor") == "local" and _pid_alive(int(info["pid"]), r.tdir / "trial.json"):
            r.pid = int(info["pid"])
            return True
        return False

    def finished(self, runs: list[Running]) -> dict[int, str | None]:
        """number -> why it ended without a result (None: see result.json) for the runs that ended."""
        out: dict[int, str | None] = {}
        for r in runs:
            if r.proc is not None:
                rc = r.proc.poll()
                if rc is not None:
                    out[r.number] = None if rc == 0 else (f"worker exited with code {rc}" if rc > 0 else
                                                          f"worker killed by signal {-rc}")
            elif r.pid is not None and not _pid_alive(r.pid, r.tdir / "trial.json"):
                out[r.number] = "worker process ended"
        return out

    def interrupt(self, runs: list[Running], grace_s: float = 60.0) -> None:
        """Ctrl-C: SIGINT every worker (its run checkpoints and marks its MLflow run KILLED), wait for them."""
        for r in runs:
            pid = r.proc.pid if r.proc is not None else r.pid
            try:
                os.killpg(pid, signal.SIGINT) if r.proc is not None else os.kill(pid, signal.SIGINT)
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        for r in runs:
            if r.proc is not None:
                try:
                    r.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    r.proc.kill()


class SubmititLauncher:
    """Trials as submitit jobs (`--executor slurm`: several at once form one Slurm job array; `debug`: in this
    process). The job is `trial:run_trial(spec)`, a ZppoJob: a preempted trial is requeued and resumes."""

    def __init__(self, plan: SweepPlan):
        self.plan = plan
        self.kind = plan.executor

    def launch(self, runs: list[Running]) -> None:
        from zppo_cli.orchestration.submit import JobSpec, slurm_params, submit

        name = f"zppo-sweep-{self.plan.study}"
        specs = [JobSpec("zppo_cli.orchestration.trial:run_trial", {"spec": str((r.tdir / "trial.json").absolute())},
                         name=f"{name}-t{r.number}", kind="trial", run_dir=str(r.run_dir.absolute()),
                         total_steps=r.total_steps,
                         resume_hint=f"zppo sweep {self.plan.spec.name} --scale {self.plan.spec.scale} --study "
                                     f"{self.plan.study} --resume") for r in runs]
        params = (slurm_params(self.plan.profile, self.plan.spec.scale, self.plan.slurm, name)
                  if self.kind == "slurm" else None)
        folder = (self.plan.sweep_dir / "jobs").absolute()
        if self.kind == "debug":  # one at a time, in this process: a raising trial has written its result.json
            for r, s in zip(runs, specs):
                r.record = False
                try:
                    submit([s], executor="debug", folder=folder, name=name)
                except Exception:
                    pass
            return
        subs = submit(specs, executor=self.kind, params=params, folder=folder, name=name)
        for r, s in zip(runs, subs):
            r.record = s.record
            (r.tdir / "launch.json").write_text(json.dumps({"executor": self.kind, "job_id": s.job_id}))

    def adopt(self, r: Running) -> bool:
        from zppo_cli.orchestration import registry

        try:
            info = json.loads((r.tdir / "launch.json").read_text())
        except (OSError, ValueError):
            return False
        rec = registry.find(str(info.get("job_id"))) if info.get("executor") == "slurm" else None
        if rec is None:
            return False
        st = registry.main_state(registry.states([rec])[rec.job_id]["state"])
        if st in registry.TERMINAL:
            return False
        r.record = rec
        return True

    def finished(self, runs: list[Running]) -> dict[int, str | None]:
        from zppo_cli.orchestration import registry

        out: dict[int, str | None] = {}
        live = [r for r in runs if r.record]
        for r in runs:
            if not r.record:  # debug: already ran in this process
                out[r.number] = None
        if self.kind == "debug":
            for r in live:
                out[r.number] = None
            return out
        if live:
            info = registry.states([r.record for r in live])
            for r in live:
                st = registry.main_state(info[r.record.job_id]["state"])
                if st in registry.TERMINAL:
                    out[r.number] = None if st == "COMPLETED" else f"Slurm job {r.record.job_id} ended {st}"
        return out

    def interrupt(self, runs: list[Running], grace_s: float = 0.0) -> None:
        return None  # Slurm jobs keep running; --resume adopts them


# ----------------------------------------------------------------------------------------------- the sweep
class Sweep:
    def __init__(self, plan: SweepPlan, console, err_console, poll_s: float = 1.0):
        self.plan = plan
        self.console = console
        self.err = err_console
        self.poll_s = poll_s
        self.running: list[Running] = []
        self.tracker = None
        self.study = None
        self.launcher = LocalLauncher() if plan.executor == "local" else SubmititLauncher(plan)
        self.events: list[str] = []

    # ---------------------------------------------------------------- setup
    def _setup(self) -> None:
        import optuna

        from zppo_core.config import dump_config
        from zppo_core.train.checkpoint import write_atomic

        from zppo_cli.orchestration.trial import open_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        p = self.plan
        p.sweep_dir.mkdir(parents=True, exist_ok=True)
        self._lock()
        storage = open_storage(p.storage)
        n_before = 0
        if p.resume:
            self.study = optuna.load_study(study_name=p.study, storage=storage, sampler=None)
            n_before = len(self.study.trials)
        self.study = optuna.create_study(study_name=p.study, storage=storage, direction=p.spec.direction,
                                         sampler=build_sampler(p.spec, p.parallel, n_before),
                                         load_if_exists=p.resume)
        if not p.resume:
            for k, v in {"sweep": p.spec.name, "scale": p.spec.scale, "metric": p.spec.metric,
                         "sweep_dir": str(p.sweep_dir.absolute())}.items():
                self.study.set_user_attr(k, v)
            (p.sweep_dir / "definition.yaml").write_text(p.spec.path.read_text())
            write_atomic(p.sweep_dir / "base_config.yaml", dump_config(p.base_cfg))
        meta = dict(p.meta)
        meta.update({"name": p.spec.name, "scale": p.spec.scale, "study": p.study, "storage": p.storage,
                     "spec": p.spec.to_dict(), "user_sets": p.user_sets, "trials": p.trials, "parallel": p.parallel,
                     "executor": p.executor, "profile": p.profile, "slurm": p.slurm})
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
        if p.base_cfg.tracking.enabled:
            self.tracker = self._parent_run(meta.get("parent_run_id"))
            meta["parent_run_id"] = self.tracker.run_id
            meta["tracking_uri"] = getattr(self.tracker, "uri", None)
        write_atomic(p.sweep_dir / SWEEP_FILE, json.dumps(meta, indent=2))
        p.meta = meta

    def _lock(self) -> None:
        lock = self.plan.sweep_dir / LOCK_FILE
        if lock.is_file():
            try:
                pid = int(lock.read_text().strip())
                os.kill(pid, 0)
                if pid != os.getpid() and "zppo" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                    raise ConfigError(f"sweep {self.plan.study} is already running (pid {pid}); wait for it or stop it "
                                      "first")
            except (OSError, ValueError):
                pass
        lock.write_text(str(os.getpid()))
        self._locked = True

    def _unlock(self) -> None:
        if not getattr(self, "_locked", False):  # never remove another sweep process's lock
            return
        try:
            (self.plan.sweep_dir / LOCK_FILE).unlink()
        except OSError:
            pass

    def _parent_run(self, run_id: str | None):
        from zppo_core.tracking.mlflow_tracker import MlflowTracker

        p = self.plan
        cfg = p.base_cfg
        tags = {"zppo.kind": "sweep", "zppo.sweep": p.spec.name, "zppo.scale": p.spec.scale,
                "zppo.method": cfg.method, "optuna.study": p.study, "optuna.storage": shown_storage(p.storage),
                "zppo.sweep_dir": str(p.sweep_dir.absolute()), **cfg.tracking.tags}
        tr = MlflowTracker(cfg.tracking.experiment, uri=cfg.tracking.uri, run_id=run_id, run_name=f"sweep-{p.study}",
                           tags=tags)
        if run_id is None:
            params = {"sweep.name": p.spec.name, "sweep.scale": p.spec.scale, "sweep.method": cfg.method,
                      "sweep.study": p.study, "sweep.storage": shown_storage(p.storage), "sweep.trials": p.trials,
                      "sweep.parallel": p.parallel, "sweep.executor": p.executor,
                      "sweep.sampler": json.dumps(p.spec.sampler), "sweep.pruner": json.dumps(p.spec.pruner),
                      "sweep.objective": p.spec.metric, "sweep.direction": p.spec.direction,
                      "sweep.set": json.dumps(p.spec.set + p.user_sets)}
            params.update({f"space.{x.name}": x.describe() for x in p.spec.params})
            tr.log_params(params)
            tr.log_artifact(p.sweep_dir / "definition.yaml", "sweep")
            tr.log_artifact(p.sweep_dir / "base_config.yaml", "sweep")
        else:
            tr.set_tags({"optuna.storage": shown_storage(p.storage)})
        return tr

    # ---------------------------------------------------------------- trials
    def _new_trial(self) -> Running | None:
        import optuna

        t = self.study.ask(fixed_distributions=self.plan.spec.distributions())
        try:
            return self._write_trial(t.number, t._trial_id, dict(t.params))
        except ConfigError as err:  # these params make no valid config: the trial fails, the sweep goes on
            t.set_user_attr("error", str(err)[:500])
            self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            self._event(f"[red]trial {t.number}: failed[/] before starting ({err})")
            return None

    def _write_trial(self, number: int, trial_id: int, params: dict[str, Any]) -> Running:
        from zppo_core.config import dump_config
        from zppo_core.train.checkpoint import write_atomic

        p = self.plan
        tdir = p.sweep_dir / "trials" / f"{number:04d}"
        tdir.mkdir(parents=True, exist_ok=True)
        r = Running(number, trial_id, params, tdir, p.base_cfg.run.steps, study=p.study)
        cfg = p.trial_config(params, r.run_dir.absolute(), self.tracker.run_id if self.tracker else None, number)
        r.total_steps = cfg.run.steps
        write_atomic(tdir / "config.yaml", dump_config(cfg))
        spec = {"study": p.study, "storage": p.storage, "trial_id": trial_id, "number": number,
                "metric": p.spec.metric, "direction": p.spec.direction, "pruner": p.spec.pruner, "params": params,
                "config_values": p.config_values(params), "config": str((tdir / "config.yaml").absolute()),
                "run_dir": str(r.run_dir.absolute())}
        write_atomic(tdir / "trial.json", json.dumps(spec, indent=2))
        try:
            (tdir / "result.json").unlink()
        except OSError:
            pass
        import optuna

        tr = optuna.trial.Trial(self.study, trial_id)
        tr.set_user_attr("run_dir", str(r.run_dir.absolute()))
        tr.set_user_attr("config", p.config_values(params))
        return r

    def _counted(self) -> int:
        """Finished trials that count against the budget (a failed trial that was retried does not)."""
        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if t.state.name in FINISHED and not t.user_attrs.get("retried"))

    def _recover(self) -> None:
        """--resume: trials left RUNNING by a stopped sweep are finished (result written), adopted (still running)
        or relaunched (their runs resume from the latest checkpoint)."""
        import optuna

        stale = [t for t in self.study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
        relaunch = []
        for t in stale:
            tdir = self.plan.sweep_dir / "trials" / f"{t.number:04d}"
            if not (tdir / "trial.json").is_file():
                r = self._write_trial(t.number, t._trial_id, dict(t.params))
            else:
                r = Running(t.number, t._trial_id, dict(t.params), tdir, self.plan.base_cfg.run.steps,
                            study=self.plan.study)
            if (tdir / "result.json").is_file():
                self._finish(r, None)
            elif self.launcher.adopt(r):
                self.running.append(r)
                self._event(f"trial {r.number}: still running; following it")
            else:
                relaunch.append(r)
        if relaunch:
            self.launcher.launch(relaunch)
            self.running.extend(relaunch)
            for r in relaunch:
                self._event(f"trial {r.number}: relaunched (resumes from its checkpoint if it has one)")

    def _finish(self, r: Running, why: str | None) -> None:
        import optuna

        from zppo_cli.orchestration.trial import RESULT_FILE

        res: dict[str, Any] = {}
        try:
            res = json.loads((r.tdir / RESULT_FILE).read_text())
        except (OSError, ValueError):
            res = {"state": "fail", "error": why or "the trial ended without writing result.json"}
        state = res.get("state", "fail")
        trial = optuna.trial.Trial(self.study, r.trial_id)
        TS = optuna.trial.TrialState
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if state == "complete" and res.get("value") is not None:
                self.study.tell(r.number, float(res["value"]))
                self._event(f"trial {r.number}: complete, {self.plan.spec.metric} = {res['value']:.2f} "
                            f"({_fmt_params(r.params)})")
            elif state == "pruned":
                self.study.tell(r.number, state=TS.PRUNED)
                self._event(f"trial {r.number}: pruned at step {res.get('steps_done')} ({_fmt_params(r.params)})")
            else:
                err = res.get("error") or why or "unknown error"
                trial.set_user_attr("error", str(err)[:500])
                retry = (self.plan.retries > 0 and trial_attr(self.study, r.number, "retry_of") is None)
                if retry:
                    trial.set_user_attr("retried", True)
                self.study.tell(r.number, state=TS.FAIL)
                if retry:
                    self.study.enqueue_trial(r.params, user_attrs={"retry_of": r.number}, skip_if_exists=False)
                self._event(f"[red]trial {r.number}: failed[/] ({err}); log: {r.tdir / 'worker.log'}"
                            + ("; retrying once" if retry else ""))
        if self.tracker is not None:
            value = res.get("value")
            if state == "complete" and value is not None:
                self.tracker.log_metrics({"sweep/objective": float(value)}, step=r.number)
                best = self._best()
                if best is not None:
                    self.tracker.log_metrics({"sweep/best_value": best.value}, step=r.number)

    def _best(self):
        try:
            return self.study.best_trial
        except ValueError:
            return None

    def _event(self, msg: str) -> None:
        self.events.append(msg)
        self.err.print(msg, highlight=False, soft_wrap=True)

    # ---------------------------------------------------------------- main loop
    def run(self) -> int:
        p = self.plan
        t0 = time.time()
        self._setup()
        self.err.print(f"sweep [bold]{p.spec.name}[/] · study {p.study} · scale {p.spec.scale} · {p.trials} trials, "
                       f"{p.parallel} at a time ({p.executor}) · objective {p.spec.direction} {p.spec.metric} · "
                       f"storage {shown_storage(p.storage)}", highlight=False)
        if self.tracker is not None:
            self.err.print(f"MLflow parent run {self.tracker.run_id} (zppo ui)", highlight=False)
        status = "FAILED"
        try:
            if p.executor != "slurm":
                self._prepare()
            if p.resume:
                self._recover()
            self._loop()
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            self.err.print("[yellow]interrupted[/]: stopping the running trials (each keeps its last checkpoint)…")
            self.launcher.interrupt(self.running)
            self.err.print(f"continue with: zppo sweep {p.spec.name} --scale {p.spec.scale} --study {p.study} --resume"
                           " (finished trials are kept; interrupted ones resume from their checkpoints)",
                           highlight=False)
            return 130
        finally:
            try:
                self._finalize(status, time.time() - t0)
            finally:
                self._unlock()
        import optuna

        states = [t.state for t in self.study.trials]
        if states and all(s == optuna.trial.TrialState.FAIL for s in states):
            return 1
        return 0

    def _prepare(self) -> None:
        cfg = self.plan.base_cfg
        if cfg.model.student != "tiny":
            return
        from zppo_core.train.prepare import ensure_prepared, is_prepared

        if not is_prepared(cfg):
            self.err.print("preparing the tiny student and teacher once for all trials (cached)…")
            ensure_prepared(cfg, lambda s: self.err.print(f"[dim]{s}[/]", highlight=False))

    def _loop(self) -> None:
        from rich.live import Live

        p = self.plan
        with Live(self._table(), console=self.err, refresh_per_second=2, transient=True) as live:
            while True:
                done = self.launcher.finished(self.running)
                for r in [r for r in self.running if r.number in done]:
                    self.running.remove(r)
                    self._finish(r, done[r.number])
                free = p.parallel - len(self.running)
                budget = p.trials - self._counted() - len(self.running)
                new = [r for r in (self._new_trial() for _ in range(max(0, min(free, budget)))) if r is not None]
                if new:
                    self.launcher.launch(new)
                    self.running.extend(new)
                    for r in new:
                        self._event(f"trial {r.number}: started ({_fmt_params(r.params)}) -> {r.run_dir}")
                live.update(self._table())
                if not self.running and p.trials - self._counted() <= 0:
                    break
                if not new:
                    time.sleep(self.poll_s)

    # ---------------------------------------------------------------- display
    def _table(self):
        return trials_table(self.plan.spec, self.study, self.plan.base_cfg, running=self.running,
                            title=f"sweep {self.plan.study} · {self.plan.spec.direction} {self.plan.spec.metric}")

    # ---------------------------------------------------------------- end
    def _finalize(self, status: str, seconds: float) -> None:
        from zppo_core.train.checkpoint import write_atomic

        p = self.plan
        if self.study is None:
            return
        best = self._best()
        best_info = None
        if best is not None:
            best_info = {"trial": best.number, "value": best.value, "params": best.params,
                         "config": p.config_values(best.params), "run_dir": best.user_attrs.get("run_dir"),
                         "train_command": train_command(p.spec, p.user_sets, best.params, p.base_cfg)}
            write_atomic(p.sweep_dir / "best.json", json.dumps(best_info, indent=2))
        plots_dir = p.sweep_dir / "plots"
        notes = save_plots(self.study, p.spec, plots_dir) if status != "FAILED" else {}
        if self.tracker is not None:
            try:
                rows = trial_rows(p.spec, self.study, p.base_cfg)
                self.tracker.log_table(rows, "sweep/trials.json")
                if best_info is not None:
                    self.tracker.set_tags({f"best.{k}": v for k, v in best.params.items()})
                    self.tracker.set_tags({f"best.{k}": v for k, v in best_info["config"].items()})
                    self.tracker.set_tags({"best.trial": best.number, "best.value": best.value,
                                           "best.mlflow_run_id": best.user_attrs.get("mlflow_run_id", "")})
                    self.tracker.log_metrics({"best_value": best.value}, step=len(self.study.trials))
                    self.tracker.log_artifact(p.sweep_dir / "best.json", "sweep")
                for f in sorted(plots_dir.glob("*")) if plots_dir.is_dir() else []:
                    self.tracker.log_artifact(f, "plots")
                self.tracker.log_metrics({"sweep/seconds": seconds}, step=len(self.study.trials))
                self.tracker.finish(status)
            except Exception as err:  # tracking trouble must not hide the sweep's outcome
                self.err.print(f"[yellow]warning:[/] MLflow parent run not fully updated ({err})", highlight=False)
        if status == "FINISHED":
            self.console.print(self._table())
            print_best(self.console, p.spec, self.study, p.user_sets, p.base_cfg)
            for name, note in notes.items():
                self.console.print(f"[dim]plot {name}: {note}[/]", highlight=False)
            self.console.print(f"sweep dir: {p.sweep_dir}  ·  {seconds:.0f}s  ·  zppo sweep show {p.spec.name} "
                               f"--scale {p.spec.scale}" + (f" --study {p.study}" if p.study != f"{p.spec.name}-"
                                                            f"{p.spec.scale}" else ""), highlight=False)


# ----------------------------------------------------------------------------------------------- shared views
def trial_attr(study, number: int, key: str):
    for t in study.get_trials(deepcopy=False):
        if t.number == number:
            return t.user_attrs.get(key)
    return None


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _last_step(run_dir: Path) -> int:
    try:
        lines = [ln for ln in (run_dir / "metrics.jsonl").read_text().splitlines() if ln.strip()]
        return int(json.loads(lines[-1])["step"]) if lines else 0
    except (OSError, ValueError, KeyError, IndexError):
        return 0


def trial_rows(spec: SweepSpec, study, base_cfg) -> list[dict[str, Any]]:
    base = base_cfg.model_dump()
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name}
        for p in spec.params:
            if p.name in t.params:
                row[p.name] = t.params[p.name]
                if p.per:
                    row[p.field] = p.config_value(t.params[p.name], base)
        iv = t.intermediate_values
        row["last_step"] = max(iv) if iv else None
        row["value"] = t.value
        row["seconds"] = round(t.duration.total_seconds(), 1) if t.duration else None
        row["mlflow_run_id"] = t.user_attrs.get("mlflow_run_id")
        row["error"] = t.user_attrs.get("error")
        row["retry_of"] = t.user_attrs.get("retry_of")
        rows.append(row)
    return rows


def trials_table(spec: SweepSpec, study, base_cfg, running: list[Running] | None = None, title: str = "",
                 limit: int = 30):
    from rich.table import Table

    running_by = {r.number: r for r in running or []}
    table = Table(title=title)
    table.add_column("#", justify="right")
    table.add_column("state")
    for p in spec.params:
        table.add_column(p.name + (f" (→{p.field.split('.')[-1]})" if p.per else ""), justify="right")
    table.add_column("step", justify="right")
    table.add_column("last eval", justify="right")
    table.add_column("objective", justify="right")
    table.add_column("note")
    if study is None:
        return table
    base = base_cfg.model_dump()
    best = None
    try:
        best = study.best_trial.number
    except ValueError:
        pass
    style = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red", "RUNNING": "cyan", "WAITING": "dim"}
    trials = study.get_trials(deepcopy=False)[-limit:]
    for t in trials:
        cells = [str(t.number), f"[{style.get(t.state.name, '')}]{t.state.name.lower()}[/]"]
        for p in spec.params:
            v = t.params.get(p.name)
            cells.append("-" if v is None else (f"{_fmt(v)} ({p.config_value(v, base)})" if p.per else _fmt(v)))
        r = running_by.get(t.number)
        iv = t.intermediate_values
        steps = _last_step(r.run_dir) if r is not None else (max(iv) if iv else None)
        total = r.total_steps if r is not None else None
        cells.append("-" if steps is None else (f"{steps}/{total}" if total else str(steps)))
        cells.append(f"{iv[max(iv)]:.2f}" if iv else "-")
        cells.append("-" if t.value is None else f"{t.value:.2f}" + (" ★" if t.number == best else ""))
        note = t.user_attrs.get("error") or ""
        if t.user_attrs.get("retry_of") is not None:
            note = f"retry of {t.user_attrs['retry_of']}" + (f"; {note}" if note else "")
        cells.append(note[:60])
        table.add_row(*cells)
    return table


def train_command(spec: SweepSpec, user_sets: list[str], params: dict[str, Any], base_cfg) -> str:
    base = base_cfg.model_dump()
    sets = list(spec.set) + list(user_sets)
    sets += [f"{p.field}={p.config_value(params[p.name], base)}" for p in spec.params if p.name in params]
    last = {s.partition("=")[0].strip(): s for s in sets}  # a later --set of the same key wins: show it once
    sets = list(last.values())
    method = f" --method {spec.method}" if spec.method else ""
    return f"zppo train --scale {spec.scale}{method} " + " ".join(f"--set {shlex.quote(s)}" for s in sets)


def print_best(console, spec: SweepSpec, study, user_sets: list[str], base_cfg) -> None:
    try:
        best = study.best_trial
    except ValueError:
        console.print("no trial has completed yet: no best configuration")
        return
    base = base_cfg.model_dump()
    console.print(f"[bold]best trial {best.number}[/]: {spec.metric} = {best.value:.2f} "
                  f"({spec.direction})", highlight=False)
    for p in spec.params:
        v = best.params.get(p.name)
        extra = f"   ({p.name} = {_fmt(v)} × {p.per})" if p.per else ""
        console.print(f"  {p.field} = {p.config_value(v, base)}{extra}", highlight=False)
    console.print("train it:", highlight=False)
    console.print(f"  {train_command(spec, user_sets, best.params, base_cfg)}", highlight=False, markup=False,
                  soft_wrap=True)


def save_plots(study, spec: SweepSpec, out_dir: Path) -> dict[str, str]:
    """Optuna's matplotlib plots as PNGs; returns {plot: why it was skipped} for the ones that could not be drawn."""
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    skipped: dict[str, str] = {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except Exception as err:  # pragma: no cover
        return {"all": f"matplotlib unavailable ({err})"}
    names = [p.name for p in spec.params]
    pair = names[:2]
    plots: list[tuple[str, Any, int]] = [
        ("optimization_history", lambda: ovm.plot_optimization_history(study), 1),
        ("intermediate_values", lambda: ovm.plot_intermediate_values(study), 1),
        ("param_importances", lambda: ovm.plot_param_importances(study), 2),
    ]
    if len(pair) == 2:
        plots.append((f"contour_{pair[0]}_{pair[1]}", lambda: ovm.plot_contour(study, params=pair), 2))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, draw, need in plots:
        if len(complete) < need:
            skipped[name] = f"needs at least {need} completed trials ({len(complete)} so far)"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.set_size_inches(8, 6)
            fig.tight_layout()
            fig.savefig(out_dir / f"{name}.png", dpi=100)
            plt.close(fig)
        except Exception as err:
            skipped[name] = f"skipped ({type(err).__name__}: {str(err).splitlines()[0][:120] if str(err) else ''})"
            plt.close("all")
    if skipped:
        (out_dir / "skipped.txt").write_text("".join(f"{k}: {v}\n" for k, v in skipped.items()))
    return skipped


# ----------------------------------------------------------------------------------------------- show
def load_sweep_state(name: str, scale: str, study: str | None = None) -> tuple[Path, dict[str, Any]]:
    cands = [study] if study else [name, f"{Path(name).stem}-{scale}"]
    for c in cands:
        d = sweep_dir_for(c)
        if (d / SWEEP_FILE).is_file():
            return d, json.loads((d / SWEEP_FILE).read_text())
    raise ConfigError(f"no sweep '{cands[-1]}' in {SWEEPS_ROOT}/; run `zppo sweep {Path(name).stem} --scale {scale}` "
                      f"first, or pass --study NAME ({_known_studies()})")


def show(name: str, scale: str, study: str | None, console) -> None:
    import optuna

    from zppo_core.config import load_config

    from zppo_cli.orchestration.trial import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sdir, meta = load_sweep_state(name, scale, study)
    spec = SweepSpec.from_dict(meta["spec"])
    try:
        st = optuna.load_study(study_name=meta["study"], storage=open_storage(meta["storage"]))
    except Exception as err:
        raise ConfigError(f"cannot open study {meta['study']} in {shown_storage(meta['storage'])} ({err})") from None
    base = load_config(spec.scale, method=spec.method, overrides=spec.set + meta.get("user_sets", []))
    counts: dict[str, int] = {}
    for t in st.trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    console.print(trials_table(spec, st, base, title=f"sweep {meta['study']} · {spec.direction} {spec.metric}",
                               limit=10_000))
    console.print(f"{len(st.trials)} trials (" + ", ".join(f"{v} {k}" for k, v in counts.items()) +
                  f") of a budget of {meta['trials']} · storage {shown_storage(meta['storage'])} · sweep dir {sdir}",
                  highlight=False)
    if meta.get("parent_run_id"):
        console.print(f"MLflow parent run {meta['parent_run_id']}", highlight=False)
    print_best(console, spec, st, meta.get("user_sets", []), base)
