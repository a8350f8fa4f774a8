"""The sweep driver: a study in real storage, trials as ordinary zppo training runs, one MLflow parent run.

    plan = plan_sweep("buffer", scale="tiny", trials=6, parallel=2, ...)   # every check; nothing created
    outcome = Sweep(plan, observer).run()                                    # runs it (or continues it)

Ask/tell: this process asks Optuna for a trial (`study.ask` with the definition's distributions), writes the
trial's resolved config and `trial.json` into `<sweep dir>/trials/<nnnn>/`, and launches it (launchers.py); the
trial worker (`zppo_cli.orchestration.trial`) trains with the same code path as `zppo train`, reports each periodic
eval of the objective to the study itself and stops early when the pruner says so; this process reads the worker's
`result.json` and tells the study COMPLETE / PRUNED / FAIL. Trials run M at a time as separate local processes
(a crashing or killed trial cannot take the sweep down), or as Slurm jobs through submitit (several trials
launched together form one job array; a preempted trial is requeued and resumes from its checkpoint).

A failed trial is marked FAIL and retried once with the same parameters (the retry replaces it in the budget).
`--resume` loads the same study: finished trials are kept, trials that were running when the sweep stopped are
relaunched and resume their runs from their latest checkpoints (or are adopted while their process/job lives).

The driver prints nothing: it reports `Event`s and progress snapshots to an observer (the CLI draws them) and
returns a `SweepOutcome`.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from zppo_core.config import ConfigError
from zppo_cli.orchestration.sweep.launchers import Running, make_launcher
from zppo_cli.orchestration.sweep.plan import LOCK_FILE, SWEEP_FILE, SweepPlan, shown_storage, trial_dir
from zppo_cli.orchestration.sweep.report import best_info, best_trial, fmt_params, last_step, save_plots, space, \
    trial_rows
from zppo_cli.orchestration.sweep_spec import SweepSpec

FINISHED = ("COMPLETE", "PRUNED", "FAIL")
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass
class Event:
    """Something that happened: `level` is info | warning | error; `trial` the trial number it is about."""

    text: str
    level: str = "info"
    trial: int | None = None


@dataclass
class SweepOutcome:
    status: str                                   # FINISHED | KILLED | FAILED
    exit_code: int                                # 0; 1 every trial failed; 130 interrupted
    seconds: float
    snapshot: dict[str, Any]                      # the last progress snapshot (see Sweep.snapshot)
    best: dict[str, Any] | None = None            # best.json
    plot_notes: dict[str, str] = field(default_factory=dict)
    sweep_dir: str = ""
    show_command: str = ""
    resume_command: str = ""


class Observer(Protocol):
    def event(self, ev: Event) -> None: ...

    def progress(self, snapshot: dict[str, Any]) -> None: ...


class NullObserver:
    def event(self, ev: Event) -> None:
        pass

    def progress(self, snapshot: dict[str, Any]) -> None:
        pass


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


class Sweep:
    def __init__(self, plan: SweepPlan, observer: Observer | None = None, poll_s: float = 1.0):
        self.plan = plan
        self.observer = observer or NullObserver()
        self.poll_s = poll_s
        self.running: list[Running] = []
        self.tracker = None
        self.study = None
        self.storage = None
        self.launcher = make_launcher(plan)
        self.events: list[Event] = []
        self._locked = False

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
        self.storage = open_storage(p.storage)
        n_before = 0
        if p.resume:
            n_before = len(optuna.load_study(study_name=p.study, storage=self.storage, sampler=None).trials)
        self.study = optuna.create_study(study_name=p.study, storage=self.storage, direction=p.spec.direction,
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
        if not self._locked:  # never remove another sweep process's lock
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
    def _set_attr(self, number: int, key: str, value: Any) -> None:
        from zppo_cli.orchestration.trial import trial_id_of

        self.storage.set_trial_user_attr(trial_id_of(self.storage, self.plan.study, number), key, value)

    def _trial_attr(self, number: int, key: str):
        for t in self.study.get_trials(deepcopy=False):
            if t.number == number:
                return t.user_attrs.get(key)
        return None

    def _new_trial(self) -> Running | None:
        import optuna

        t = self.study.ask(fixed_distributions=self.plan.spec.distributions())
        try:
            return self._write_trial(t.number, dict(t.params))
        except ConfigError as err:  # these params make no valid config: the trial fails, the sweep goes on
            t.set_user_attr("error", str(err)[:500])
            self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            self._event(f"trial {t.number}: failed before starting ({err})", "error", t.number)
            return None

    def _write_trial(self, number: int, params: dict[str, Any]) -> Running:
        from zppo_core.config import dump_config
        from zppo_core.train.checkpoint import write_atomic

        p = self.plan
        tdir = trial_dir(p.sweep_dir, number)
        tdir.mkdir(parents=True, exist_ok=True)
        r = Running(number, params, tdir, p.base_cfg.run.steps, study=p.study)
        cfg = p.trial_config(params, r.run_dir.absolute(), self.tracker.run_id if self.tracker else None, number)
        r.total_steps = cfg.run.steps
        write_atomic(tdir / "config.yaml", dump_config(cfg))
        spec = {"study": p.study, "storage": p.storage, "number": number,
                "metric": p.spec.metric, "direction": p.spec.direction, "pruner": p.spec.pruner, "params": params,
                "config_values": p.config_values(params), "config": str((tdir / "config.yaml").absolute()),
                "run_dir": str(r.run_dir.absolute())}
        write_atomic(tdir / "trial.json", json.dumps(spec, indent=2))
        try:
            (tdir / "result.json").unlink()
        except OSError:
            pass
        self._set_attr(number, "run_dir", str(r.run_dir.absolute()))
        self._set_attr(number, "config", p.config_values(params))
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
            tdir = trial_dir(self.plan.sweep_dir, t.number)
            if not (tdir / "trial.json").is_file():
                r = self._write_trial(t.number, dict(t.params))
            else:
                r = Running(t.number, dict(t.params), tdir, self.plan.base_cfg.run.steps, study=self.plan.study)
            if (tdir / "result.json").is_file():
                self._finish(r, None)
            elif self.launcher.adopt(r):
                self.running.append(r)
                self._event(f"trial {r.number}: still running; following it", trial=r.number)
            else:
                relaunch.append(r)
        if relaunch:
            self.launcher.launch(relaunch)
            self.running.extend(relaunch)
            for r in relaunch:
                self._event(f"trial {r.number}: relaunched (resumes from its checkpoint if it has one)",
                            trial=r.number)

    def _finish(self, r: Running, why: str | None) -> None:
        import optuna

        from zppo_cli.orchestration.trial import RESULT_FILE

        res: dict[str, Any] = {}
        try:
            res = json.loads((r.tdir / RESULT_FILE).read_text())
        except (OSError, ValueError):
            res = {"state": "fail", "error": why or "the trial ended without writing result.json"}
        state = res.get("state", "fail")
        TS = optuna.trial.TrialState
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if state == "complete" and res.get("value") is not None:
                self.study.tell(r.number, float(res["value"]))
                self._event(f"trial {r.number}: complete, {self.plan.spec.metric} = {res['value']:.2f} "
                            f"({fmt_params(r.params)})", trial=r.number)
            elif state == "pruned":
                self.study.tell(r.number, state=TS.PRUNED)
                self._event(f"trial {r.number}: pruned at step {res.get('steps_done')} ({fmt_params(r.params)})",
                            trial=r.number)
            else:
                err = res.get("error") or why or "unknown error"
                self._set_attr(r.number, "error", str(err)[:500])
                retry = self.plan.retries > 0 and self._trial_attr(r.number, "retry_of") is None
                if retry:
                    self._set_attr(r.number, "retried", True)
                self.study.tell(r.number, state=TS.FAIL)
                if retry:
                    self.study.enqueue_trial(r.params, user_attrs={"retry_of": r.number}, skip_if_exists=False)
                self._event(f"trial {r.number}: failed ({err}); log: {r.tdir / 'worker.log'}"
                            + ("; retrying once" if retry else ""), "error", r.number)
        if self.tracker is not None:
            value = res.get("value")
            if state == "complete" and value is not None:
                self.tracker.log_metrics({"sweep/objective": float(value)}, step=r.number)
                best = best_trial(self.study)
                if best is not None:
                    self.tracker.log_metrics({"sweep/best_value": best.value}, step=r.number)

    def _event(self, text: str, level: str = "info", trial: int | None = None) -> None:
        ev = Event(text, level, trial)
        self.events.append(ev)
        self.observer.event(ev)

    # ---------------------------------------------------------------- main loop
    def run(self) -> SweepOutcome:
        p = self.plan
        t0 = time.time()
        self._setup()
        self._event(f"sweep {p.spec.name} · study {p.study} · scale {p.spec.scale} · {p.trials} trials, "
                    f"{p.parallel} at a time ({p.executor}) · objective {p.spec.direction} {p.spec.metric} · "
                    f"storage {shown_storage(p.storage)}")
        if self.tracker is not None:
            self._event(f"MLflow parent run {self.tracker.run_id} (zppo ui)")
        status = "FAILED"
        outcome = None
        try:
            if p.executor != "slurm":
                self._prepare()
            if p.resume:
                self._recover()
            self._loop()
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            self._event("interrupted: stopping the running trials (each keeps its last checkpoint)…", "warning")
            self.launcher.interrupt(self.running)
        finally:
            try:
                outcome = self._finalize(status, time.time() - t0)
            finally:
                self._unlock()
        if status == "KILLED":
            outcome.exit_code = EXIT_INTERRUPTED
        else:
            import optuna

            states = [t.state for t in self.study.trials]
            outcome.exit_code = EXIT_FAILED if states and all(s == optuna.trial.TrialState.FAIL for s in states) \
                else EXIT_OK
        return outcome

    def _prepare(self) -> None:
        cfg = self.plan.base_cfg
        if cfg.model.student != "tiny":
            return
        from zppo_core.train.prepare import ensure_prepared, is_prepared

        if not is_prepared(cfg):
            self._event("preparing the tiny student and teacher once for all trials (cached)…")
            ensure_prepared(cfg, lambda s: self._event(s, "detail"))

    def _loop(self) -> None:
        p = self.plan
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
                    self._event(f"trial {r.number}: started ({fmt_params(r.params)}) -> {r.run_dir}", trial=r.number)
            self.observer.progress(self.snapshot())
            if not self.running and p.trials - self._counted() <= 0:
                break
            if not new:
                time.sleep(self.poll_s)

    # ---------------------------------------------------------------- data
    def snapshot(self, limit: int = 30) -> dict[str, Any]:
        """The trials table as data: the last `limit` trials; running ones carry their run's step/total."""
        p = self.plan
        rows = trial_rows(p.spec, self.study, p.base_cfg, self.study.get_trials(deepcopy=False)[-limit:]) \
            if self.study is not None else []
        running = {r.number: r for r in self.running}
        for row in rows:
            r = running.get(row["trial"])
            if r is not None:
                row["step"], row["total_steps"] = last_step(r.run_dir), r.total_steps
        best = best_trial(self.study) if self.study is not None else None
        return {"title": f"sweep {p.study} · {p.spec.direction} {p.spec.metric}", "metric": p.spec.metric,
                "direction": p.spec.direction, "space": space(p.spec),
                "trials": rows, "best_trial": best.number if best is not None else None}

    # ---------------------------------------------------------------- end
    def _finalize(self, status: str, seconds: float) -> SweepOutcome:
        from zppo_core.train.checkpoint import write_atomic

        p = self.plan
        out = SweepOutcome(status, EXIT_OK, seconds, {}, sweep_dir=str(p.sweep_dir), show_command=p.show_command,
                           resume_command=p.resume_command)
        if self.study is None:
            return out
        out.best = best_info(p.spec, self.study, p.user_sets, p.base_cfg)
        if out.best is not None:
            write_atomic(p.sweep_dir / "best.json", json.dumps(out.best, indent=2))
        plots_dir = p.sweep_dir / "plots"
        out.plot_notes = save_plots(self.study, p.spec, plots_dir) if status != "FAILED" else {}
        if self.tracker is not None:
            try:
                self.tracker.log_table(trial_rows(p.spec, self.study, p.base_cfg), "sweep/trials.json")
                if out.best is not None:
                    best = best_trial(self.study)
                    self.tracker.set_tags({f"best.{k}": v for k, v in best.params.items()})
                    self.tracker.set_tags({f"best.{k}": v for k, v in out.best["config"].items()})
                    self.tracker.set_tags({"best.trial": best.number, "best.value": best.value,
                                           "best.mlflow_run_id": best.user_attrs.get("mlflow_run_id", "")})
                    self.tracker.log_metrics({"best_value": best.value}, step=len(self.study.trials))
                    self.tracker.log_artifact(p.sweep_dir / "best.json", "sweep")
                for f in sorted(plots_dir.glob("*")) if plots_dir.is_dir() else []:
                    self.tracker.log_artifact(f, "plots")
                self.tracker.log_metrics({"sweep/seconds": seconds}, step=len(self.study.trials))
                self.tracker.finish(status)
            except Exception as err:  # tracking trouble must not hide the sweep's outcome
                self._event(f"warning: MLflow parent run not fully updated ({err})", "warning")
        out.snapshot = self.snapshot()
        return out
