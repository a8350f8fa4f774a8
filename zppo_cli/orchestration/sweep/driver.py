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

A trial that failed (its worker wrote a `fail` result) is marked FAIL and retried once with the same parameters
(the retry replaces it in the budget). A worker that ended without a result (killed by a signal, its node lost) did
not fail: its trial is relaunched under the same number and resumes its run from the latest checkpoint, up to
`MAX_RESTARTS` times, after which it is marked FAIL.

Several sweep processes may work on one study (`zppo sweep NAME --resume` joins a running sweep, on this machine or
another one sharing the sweep directory and storage): each runs up to `--parallel` trials, the budget is shared,
and every change to the study's bookkeeping happens under the sweep lock (liveness.py), so no trial is asked, told
or relaunched twice. A trial whose sweep process is gone (its driver lock is free) is claimed by another one: told
from its result.json if it finished, followed while its job is queued or its worker's heartbeat is fresh, else
relaunched from its checkpoint. `--resume` after a stopped sweep is the same claim: finished trials are kept,
interrupted ones resume. Every sweep process stays until the whole study is done, and then writes the report.

The driver prints nothing: it reports `Event`s and progress snapshots to an observer (the CLI draws them) and
returns a `SweepOutcome`.
"""

from __future__ import annotations

import json
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any, Protocol

from zppo_core.config import ConfigError
from zppo_core.run_dir import RunDir
from zppo_cli.orchestration.sweep.launchers import Running, make_launcher
from zppo_cli.orchestration.sweep.parent import log_outcome, open_parent_run
from zppo_cli.orchestration.sweep.liveness import GRACE_BEATS, DriverLock, beat_is_fresh, driver_alive, \
    heartbeat_interval, sweep_lock
from zppo_cli.orchestration.sweep.plan import SWEEP_FILE, SweepPlan, build_sampler, shown_storage, trial_dir
from zppo_cli.orchestration.sweep.report import best_info, best_trial, fmt_params, save_plots, space, trial_rows
from zppo_cli.orchestration.trial import RESULT_FILE

MAX_RESTARTS = 3
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


@dataclass
class Event:
    """Something that happened: `level` is info | detail | warning | error; `trial` the trial it is about."""

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


class Sweep:
    """One sweep process on a planned study: `run()` until the study's budget is done (see the module docstring)."""

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
        self.driver = DriverLock(plan.sweep_dir)
        self.heartbeat_s = heartbeat_interval()
        self.grace_s = GRACE_BEATS * self.heartbeat_s
        self._ids: dict[int, int] = {}
        self._to_start: list[Running] = []

    # ---------------------------------------------------------------- setup
    def _setup(self) -> None:
        import optuna

        from zppo_core.config import dump_config
        from zppo_core.run_dir import write_atomic

        from zppo_cli.orchestration.trial import open_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        p = self.plan
        p.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.driver.acquire()
        self.storage = open_storage(p.storage)
        with sweep_lock(p.sweep_dir):
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
            meta = json.loads((p.sweep_dir / SWEEP_FILE).read_text()) if p.resume else dict(p.meta)
            meta.update({"name": p.spec.name, "scale": p.spec.scale, "study": p.study, "storage": p.storage,
                         "spec": p.spec.to_dict(), "user_sets": p.user_sets, "user_files": p.user_files,
                         "trials": p.trials,
                         "parallel": p.parallel, "executor": p.executor, "profile": p.profile, "slurm": p.slurm})
            meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
            if p.base_cfg.tracking.enabled:
                self.tracker = open_parent_run(p, meta.get("parent_run_id"))
                meta["parent_run_id"] = self.tracker.run_id
                meta["tracking_uri"] = getattr(self.tracker, "uri", None)
            write_atomic(p.sweep_dir / SWEEP_FILE, json.dumps(meta, indent=2))
            p.meta = meta

    # ---------------------------------------------------------------- study bookkeeping (under the sweep lock)
    def _trial_id(self, number: int) -> int:
        if number not in self._ids:
            from zppo_cli.orchestration.trial import trial_id_of

            self._ids[number] = trial_id_of(self.storage, self.plan.study, number)
        return self._ids[number]

    def _set_attr(self, number: int, key: str, value: Any) -> None:
        self.storage.set_trial_user_attr(self._trial_id(number), key, value)

    def _frozen(self, number: int):
        return self.storage.get_trial(self._trial_id(number))

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
        from zppo_core.run_dir import write_atomic

        p = self.plan
        tdir = trial_dir(p.sweep_dir, number)
        tdir.mkdir(parents=True, exist_ok=True)
        r = Running(number, params, tdir, p.base_cfg.run.steps, study=p.study)
        cfg = p.trial_config(params, r.run_dir.absolute(), self.tracker.run_id if self.tracker else None, number)
        r.total_steps = cfg.run.steps
        write_atomic(tdir / "config.yaml", dump_config(cfg))
        spec = {"study": p.study, "storage": p.storage, "number": number, "sweep_dir": str(p.sweep_dir.absolute()),
                "metric": p.spec.metric, "direction": p.spec.direction, "pruner": p.spec.pruner, "params": params,
                "config_values": p.config_values(params), "config": str((tdir / "config.yaml").absolute()),
                "run_dir": str(r.run_dir.absolute()), "heartbeat_s": self.heartbeat_s}
        write_atomic(tdir / "trial.json", json.dumps(spec, indent=2))
        self._set_attr(number, "run_dir", str(r.run_dir.absolute()))
        self._set_attr(number, "config", p.config_values(params))
        return r

    def _launch(self, runs: list[Running]) -> None:
        """Own these trials and queue them to start once the sweep lock is released (an in-process debug trial
        takes it too); each launch gets a new id (an older launch of the trial then refuses to run) and starts
        without a result.json."""
        for r in runs:
            r.launch, r.follow, r.proc, r.record = uuid.uuid4().hex[:12], False, None, None
            self._set_attr(r.number, "owner", self.driver.id)
            self._set_attr(r.number, "launch", r.launch)
            try:
                (r.tdir / RESULT_FILE).unlink()
            except OSError:
                pass
        self.running.extend(runs)
        self._to_start.extend(runs)

    def _start_queued(self) -> None:
        runs, self._to_start = self._to_start, []
        if runs:
            self.launcher.launch(runs)

    def _fail(self, r: Running, err: str, retry: bool = True) -> None:
        import optuna

        self._set_attr(r.number, "error", str(err)[:500])
        retry = retry and self.plan.retries > 0 and self._frozen(r.number).user_attrs.get("retry_of") is None
        if retry:
            self._set_attr(r.number, "retried", True)
        self.study.tell(r.number, state=optuna.trial.TrialState.FAIL)
        if retry:
            self.study.enqueue_trial(r.params, user_attrs={"retry_of": r.number}, skip_if_exists=False)
        self._event(f"trial {r.number}: failed ({err}); log: {r.tdir / 'worker.log'}"
                    + ("; retrying once" if retry else ""), "error", r.number)

    def _finish(self, r: Running, why: str | None) -> None:
        """A trial this process owns ended: tell its result, or relaunch it when it ended without one."""
        import optuna

        ft = self._frozen(r.number)
        if ft.state.is_finished() or ft.user_attrs.get("owner") != self.driver.id:
            return  # told meanwhile, or claimed by another sweep process: nothing left for this one to do
        try:
            res = json.loads((r.tdir / RESULT_FILE).read_text())
        except (OSError, ValueError):
            res = {}
        state = res.get("state")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if state == "complete" and res.get("value") is not None:
                self.study.tell(r.number, float(res["value"]))
                self._event(f"trial {r.number}: complete, {self.plan.spec.metric} = {res['value']:.2f} "
                            f"({fmt_params(r.params)})", trial=r.number)
            elif state == "pruned":
                self.study.tell(r.number, state=optuna.trial.TrialState.PRUNED)
                self._event(f"trial {r.number}: pruned at step {res.get('steps_done')} ({fmt_params(r.params)})",
                            trial=r.number)
            elif state in ("complete", "fail"):
                self._fail(r, res.get("error") or why or "unknown error")
            elif state == "interrupted":
                self._launch([r])
                self._event(f"trial {r.number}: relaunched (it was interrupted; resumes from its checkpoint)",
                            trial=r.number)
            else:  # no result: the worker was killed, or its machine or sweep process is gone
                why = why or "the trial ended without writing result.json"
                restarts = int(ft.user_attrs.get("restarts", 0)) + 1
                if restarts > MAX_RESTARTS:
                    return self._fail(r, f"{why} ({MAX_RESTARTS} restarts already)", retry=False)
                self._set_attr(r.number, "restarts", restarts)
                self._launch([r])
                self._event(f"trial {r.number}: {why}; relaunched, resumes from its checkpoint (restart {restarts} "
                            f"of {MAX_RESTARTS})", "warning", r.number)
        if self.tracker is not None and state == "complete" and res.get("value") is not None:
            # x = trial number: each trial's objective, and the best so far (its last point is the sweep's best)
            self.tracker.log_metrics({"sweep/trial_value": float(res["value"])}, step=r.number)
            best = best_trial(self.study)
            if best is not None:
                self.tracker.log_metrics({"sweep/best_value": best.value}, step=r.number)

    def _claim(self, trials) -> None:
        """Trials left RUNNING by a sweep process that is gone become this one's: told from their result, followed
        while their job is queued or their worker beats, else relaunched (each needs one of this process's slots)."""
        mine = {r.number for r in self.running}
        for t in trials:
            if t.state.name != "RUNNING" or t.number in mine or t.user_attrs.get("owner") == self.driver.id:
                continue
            if driver_alive(self.plan.sweep_dir, t.user_attrs.get("owner")):
                continue
            tdir = trial_dir(self.plan.sweep_dir, t.number)
            try:
                final = json.loads((tdir / RESULT_FILE).read_text()).get("state") in ("complete", "pruned", "fail")
            except (OSError, ValueError):
                final = False
            if not final and len(self.running) >= self.plan.parallel:
                continue
            if (tdir / "trial.json").is_file():
                r = Running(t.number, dict(t.params), tdir, self.plan.base_cfg.run.steps, study=self.plan.study)
            else:  # asked by a sweep process that stopped before writing it
                r = self._write_trial(t.number, dict(t.params))
            r.launch = t.user_attrs.get("launch")
            self._set_attr(t.number, "owner", self.driver.id)
            if final:
                self._finish(r, None)
            elif self.launcher.adopt(r) or beat_is_fresh(t.user_attrs, self.grace_s):
                r.follow = r.record is None
                self.running.append(r)
                self._event(f"trial {r.number}: its sweep process is gone; following its "
                            f"{'worker (heartbeat)' if r.follow else 'job'}", trial=r.number)
            else:
                self._finish(r, "its sweep process and its worker are gone")

    def _ended(self) -> dict[int, str | None]:
        """{number: None | why} for this process's trials that ended (launched ones: their process or job;
        followed ones: a result.json, or a heartbeat older than the grace period)."""
        out = self.launcher.finished([r for r in self.running if not r.follow])
        followed = [r for r in self.running if r.follow]
        if followed:
            attrs = {t.number: t.user_attrs for t in self.study.get_trials(deepcopy=False)}
            for r in followed:
                if (r.tdir / RESULT_FILE).is_file():
                    out[r.number] = None
                elif not beat_is_fresh(attrs.get(r.number, {}), self.grace_s):
                    out[r.number] = f"its worker's heartbeat stopped (none for {self.grace_s:.0f} s)"
        return out

    def _event(self, text: str, level: str = "info", trial: int | None = None) -> None:
        ev = Event(text, level, trial)
        self.events.append(ev)
        self.observer.event(ev)

    # ---------------------------------------------------------------- main loop
    def run(self) -> SweepOutcome:
        p = self.plan
        t0 = time.time()
        try:
            self._setup()
            self._event(f"sweep {p.spec.name} · study {p.study} · scale {p.spec.scale} · {p.trials} trials, "
                        f"{p.parallel} at a time ({p.executor}) · objective {p.spec.direction} {p.spec.metric} · "
                        f"storage {shown_storage(p.storage)}")
            if self.tracker is not None:
                self._event(f"MLflow parent run {self.tracker.run_id} (zppo ui)")
            status = "FAILED"
            try:
                if p.executor != "slurm":
                    self._prepare()
                self._loop()
                status = "FINISHED"
            except KeyboardInterrupt:
                status = "KILLED"
                self._event("interrupted: stopping the running trials (each keeps its last checkpoint)…", "warning")
                self.launcher.interrupt([r for r in self.running if not r.follow])
            finally:
                outcome = self._finalize(status, time.time() - t0)
        finally:
            self.driver.release()
        if status == "KILLED":
            outcome.exit_code = EXIT_INTERRUPTED
        else:
            states = [t.state.name for t in self.study.trials]
            outcome.exit_code = EXIT_FAILED if states and all(s == "FAIL" for s in states) else EXIT_OK
        return outcome

    def _prepare(self) -> None:
        cfg = self.plan.base_cfg
        if cfg.model.student not in ("tiny", "tiny-vl"):
            return
        from zppo_core.train.prepare import ensure_prepared, is_prepared

        if not is_prepared(cfg):
            self._event("preparing the tiny student and teacher once for all trials (cached)…")
            ensure_prepared(cfg, lambda s: self._event(s, "detail"))

    def _loop(self) -> None:
        p = self.plan
        while True:
            ended = self._ended()
            with sweep_lock(p.sweep_dir):
                for r in [r for r in self.running if r.number in ended]:
                    self.running.remove(r)
                    self._finish(r, ended[r.number])
                self._claim(self.study.get_trials(deepcopy=False))
                trials = self.study.get_trials(deepcopy=False)
                left = p.trials - sum(1 for t in trials if not t.user_attrs.get("retried"))
                waiting = sum(1 for t in trials if t.state.name == "WAITING")
                free = p.parallel - len(self.running)
                new = [r for r in (self._new_trial() for _ in range(max(0, min(free, left + waiting))))
                       if r is not None]
                if new:
                    self._launch(new)
                    for r in new:
                        self._event(f"trial {r.number}: started ({fmt_params(r.params)}) -> {r.run_dir}",
                                    trial=r.number)
                trials = self.study.get_trials(deepcopy=False)
                left = p.trials - sum(1 for t in trials if not t.user_attrs.get("retried"))
                active = any(t.state.name in ("RUNNING", "WAITING") for t in trials)
            self._start_queued()
            self.observer.progress(self.snapshot())
            if not self.running and not active and left <= 0:
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
                row["step"], row["total_steps"] = RunDir(r.run_dir).last_step(), r.total_steps
        best = best_trial(self.study) if self.study is not None else None
        return {"title": f"sweep {p.study} · {p.spec.direction} {p.spec.metric}", "metric": p.spec.metric,
                "direction": p.spec.direction, "space": space(p.spec),
                "trials": rows, "best_trial": best.number if best is not None else None}

    # ---------------------------------------------------------------- end
    def _finalize(self, status: str, seconds: float) -> SweepOutcome:
        """best.json, plots and the MLflow parent run's summary (every sweep process of the study writes them when
        it ends; the last one leaves the final state)."""
        from zppo_core.run_dir import write_atomic

        p = self.plan
        out = SweepOutcome(status, EXIT_OK, seconds, {}, sweep_dir=str(p.sweep_dir), show_command=p.show_command,
                           resume_command=p.resume_command)
        if self.study is None:
            return out
        with sweep_lock(p.sweep_dir):
            out.best = best_info(p.spec, self.study, p.user_sets, p.base_cfg, p.user_files)
            if out.best is not None:
                write_atomic(p.sweep_dir / "best.json", json.dumps(out.best, indent=2))
            plots_dir = p.sweep_dir / "plots"
            out.plot_notes = save_plots(self.study, p.spec, plots_dir) if status != "FAILED" else {}
            if self.tracker is not None:
                try:
                    log_outcome(self.tracker, p, self.study, out.best, plots_dir, status, seconds)
                except Exception as err:  # tracking trouble must not hide the sweep's outcome
                    self._event(f"warning: MLflow parent run not fully updated ({err})", "warning")
        out.snapshot = self.snapshot()
        return out
