"""The driver of `zppo reproduce` (see `reproduce.py` for the plan, the run states and the aggregation): set up the
study directory and the MLflow parent run, prepare the tiny models once, launch the pending runs through the
executors (`local`: `--parallel` submitit processes at a time; `slurm`: one job array; `debug`: in this process),
follow them (and runs left running by an earlier, killed `reproduce`), then write and print the table.

Ctrl-C stops the running trainings (SIGINT: each keeps its last checkpoint) and names the resume command.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from zppo_core.config import ConfigError
from zppo_core.config.methods import SPECS
from zppo_cli.orchestration.config_layers import shown_files
from zppo_cli.orchestration.reproduce import (
    LOCK_FILE,
    PLAN_FILE,
    ReproducePlan,
    RunSpec,
    launch_info,
    write_launch,
    alive,
    checkpoint_step,
    is_finished,
    write_outputs,
)


class Reproduce:
    def __init__(self, plan: ReproducePlan, console, err_console, poll_s: float = 2.0):
        self.plan = plan
        self.console = console
        self.err = err_console
        self.poll_s = poll_s
        self.tracker = None
        self.total_steps = plan.base_cfg.run.steps
        self.running: dict[str, tuple[RunSpec, Any]] = {}  # name -> (run, submitit job or None when adopted)
        self.failed: dict[str, str] = {}

    # ---------------------------------------------------------------- setup
    def _setup(self) -> None:
        from zppo_core.run_dir import write_atomic

        p = self.plan
        p.out.mkdir(parents=True, exist_ok=True)
        self._lock()
        meta = dict(p.meta)
        meta.update({"scale": p.scale, "methods": p.methods, "seeds": p.seeds, "sets": p.sets, "files": p.files,
                     "executor": p.executor, "parallel": p.parallel, "profile": p.profile, "slurm": p.slurm,
                     "command": p.command(), "steps": self.total_steps})
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
        meta.setdefault("seconds", 0.0)
        if p.base_cfg.tracking.enabled:
            from zppo_core.tracking.mlflow_tracker import MlflowTracker

            cfg = p.base_cfg
            tr = MlflowTracker(cfg.tracking.experiment, uri=cfg.tracking.uri, run_id=meta.get("parent_run_id"),
                               run_name=f"reproduce-{p.scale}-{p.out.name}",
                               tags={"zppo.kind": "reproduce", "zppo.scale": p.scale,
                                     "zppo.reproduce": str(p.out.absolute()), "mlflow.note.content": p.command(),
                                     **cfg.tracking.tags})
            if meta.get("parent_run_id") is None:
                tr.log_params({"reproduce.scale": p.scale, "reproduce.methods": ",".join(p.methods),
                               "reproduce.seeds": str(len(p.seeds)), "reproduce.set": json.dumps(p.sets),
                               "reproduce.config": json.dumps(shown_files(p.files)),
                               "reproduce.executor": p.executor, "reproduce.command": p.command()})
            meta["parent_run_id"], meta["tracking_uri"] = tr.run_id, tr.uri
            self.tracker = tr
        write_atomic(p.out / PLAN_FILE, json.dumps(meta, indent=2))
        p.meta = meta

    def _lock(self) -> None:
        lock = self.plan.out / LOCK_FILE
        try:
            pid = int(lock.read_text().strip())
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            if pid != os.getpid() and "reproduce" in cmd:
                raise ConfigError(f"study {self.plan.out} is being run by process {pid}; wait for it or stop it first")
        except (OSError, ValueError):
            pass
        lock.write_text(str(os.getpid()))

    def _unlock(self) -> None:
        try:
            lock = self.plan.out / LOCK_FILE
            if lock.read_text().strip() == str(os.getpid()):
                lock.unlink()
        except OSError:
            pass

    def _prepare(self) -> None:
        cfg = self.plan.base_cfg
        if cfg.model.student != "tiny":
            return
        from zppo_core.train.prepare import ensure_prepared, is_prepared

        if not is_prepared(cfg):
            self.err.print("preparing the tiny student and teacher once for every run (cached)…")
        ensure_prepared(cfg, lambda s: self.err.print(f"[dim]{s}[/]", highlight=False))

    # ---------------------------------------------------------------- launching
    def _launch(self, runs: list[RunSpec]) -> None:
        from zppo_core.config import dump_config
        from zppo_core.run_dir import write_atomic
        from zppo_cli.orchestration.submit import JobSpec, slurm_params, submit

        p = self.plan
        specs = []
        for r in runs:
            r.job_dir.mkdir(parents=True, exist_ok=True)
            cfg = p.run_config(r, p.meta.get("parent_run_id"))
            write_atomic(r.job_dir / "config.yaml", dump_config(cfg))
            hint = f"zppo reproduce --out {p.out} --resume"
            specs.append(JobSpec("zppo_cli.orchestration.jobs:train_run",
                                 {"config": str((r.job_dir / "config.yaml").absolute()),
                                  "run_dir": str(r.run_dir.absolute())},
                                 name=f"zppo-{r.name}", kind="train", run_dir=str(r.run_dir.absolute()),
                                 total_steps=self.total_steps, resume_hint=hint))
        if p.executor == "debug":
            for r, s in zip(runs, specs):
                t0 = time.time()
                self._event(f"{r.name}: started (in this process)")
                try:
                    submit([s], executor="debug", folder=(r.job_dir / "submitit").absolute())
                except Exception as err:  # the run failed: the study goes on, the table leaves it out
                    self.failed[r.name] = f"{type(err).__name__}: {err}"
                self._ended(r, time.time() - t0)
            return
        if p.executor == "slurm":
            params = slurm_params(p.profile, p.scale, p.slurm, f"zppo-reproduce-{p.out.name}")
            subs = submit(specs, executor="slurm", params=params, folder=(p.out / "jobs" / "submitit").absolute())
        else:
            subs = [submit([s], executor="local", folder=(r.job_dir / "submitit").absolute())[0]
                    for r, s in zip(runs, specs)]
        for r, sub in zip(runs, subs):
            info = launch_info(r)
            write_launch(r, {"executor": p.executor, "job_id": sub.job_id, "started": time.time(),
                              "seconds": info.get("seconds", 0.0)})
            self.running[r.name] = (r, sub.job)
            self._event(f"{r.name}: started ({p.executor} job {sub.job_id})")

    def _ended(self, run: RunSpec, seconds: float | None = None) -> None:
        info = launch_info(run)
        if seconds is None:
            seconds = time.time() - float(info.get("started", time.time()))
        info.update({"ended": time.time(), "seconds": float(info.get("seconds", 0.0)) + seconds})
        write_launch(run, info)
        if is_finished(run, self.total_steps):
            self.failed.pop(run.name, None)
            self._event(f"{run.name}: finished")
        else:
            self.failed.setdefault(run.name, f"stopped at step {checkpoint_step(run)}; log: {run.job_dir / 'submitit'}")
            self._event(f"[red]{run.name}: failed[/] ({self.failed[run.name]})")

    def _done(self, job) -> bool:
        from zppo_cli.orchestration import registry

        if job is None:
            return False
        if self.plan.executor == "local":
            return job.done()
        rec = registry.find(str(job.job_id))
        state = registry.main_state(registry.states([rec])[rec.job_id]["state"]) if rec else "UNKNOWN"
        return state in registry.TERMINAL

    def _poll(self) -> None:
        for name, (run, job) in list(self.running.items()):
            ended = self._done(job) if job is not None else not alive(run)
            if ended:
                del self.running[name]
                self._ended(run)

    def _loop(self) -> None:
        from rich.live import Live

        p = self.plan
        pending = []
        for r in p.runs:
            if is_finished(r, self.total_steps):
                if not alive(r):
                    self._close_tracking(r)
                continue
            if alive(r):
                self.running[r.name] = (r, None)
                self._event(f"{r.name}: still running from an earlier reproduce; following it")
            else:
                pending.append(r)
        if p.executor == "debug":
            self._launch(pending)
            return
        if p.executor == "slurm" and pending:
            self._launch(pending)
            pending = []
        with Live(self._table(), console=self.err, refresh_per_second=1, transient=True) as live:
            while pending or self.running:
                self._poll()
                free = p.parallel - len(self.running)
                if free > 0 and pending:
                    batch, pending = pending[:free], pending[free:]
                    self._launch(batch)
                live.update(self._table())
                time.sleep(self.poll_s)

    def _interrupt(self) -> None:
        import signal

        for name, (run, job) in self.running.items():
            if job is not None and self.plan.executor == "local":
                job._process.send_signal(signal.SIGINT)
        for name, (run, job) in self.running.items():
            if job is not None and self.plan.executor == "local":
                try:
                    job._process.wait(60)
                except Exception:
                    job._process.kill()

    # ---------------------------------------------------------------- display
    def _event(self, msg: str) -> None:
        self.err.print(msg, highlight=False, soft_wrap=True)

    def _table(self):
        from rich.table import Table

        from zppo_core.run_dir import RunDir

        p = self.plan
        t = Table(title=f"zppo reproduce · {p.scale} · {len(p.methods)} methods × {len(p.seeds)} seeds · {p.out}")
        t.add_column("method")
        for s in p.seeds:
            t.add_column(f"seed {s}", justify="right")
        running = set(self.running)
        for m in p.methods:
            cells = []
            for s in p.seeds:
                r = RunSpec(m, s, p.out / "runs" / f"{m}-s{s}", p.out / "jobs" / f"{m}-s{s}")
                if r.name in self.failed:
                    cells.append("[red]failed[/]")
                elif r.name in running:
                    cells.append(f"[cyan]{RunDir(r.run_dir).last_step()}/{self.total_steps}[/]")
                elif is_finished(r, self.total_steps):
                    cells.append("[green]done[/]")
                else:
                    cells.append("[dim]queued[/]")
            t.add_row(SPECS[m].label or m, *cells)
        return t

    # ---------------------------------------------------------------- run
    def run(self) -> int:
        from rich.markdown import Markdown

        p = self.plan
        t0 = time.time()
        self._setup()
        self.err.print(f"zppo reproduce · {p.scale} · {len(p.methods)} methods × {len(p.seeds)} seeds · "
                       f"{p.executor}, {p.parallel} at a time" + (f", {p.threads} thread(s) each" if p.threads else "")
                       + f" · {p.out}", highlight=False)
        if self.tracker is not None:
            self.err.print(f"MLflow parent run {self.tracker.run_id} (zppo ui)", highlight=False)
        status = "FAILED"
        try:
            self._prepare()
            self._loop()
            status = "FINISHED" if not self.failed else "FAILED"
        except KeyboardInterrupt:
            status = "KILLED"
            self.err.print("[yellow]interrupted[/]: stopping the running trainings (each keeps its last checkpoint)…")
            self._interrupt()
            self.err.print(f"continue with: zppo reproduce --out {p.out} --resume", highlight=False)
            return 130
        finally:
            self._finish(status, time.time() - t0)
        results, md, figures = write_outputs(p.out, p.meta)
        if self.tracker is not None:
            self._log_results(results, figures)
            self.tracker.finish(status)
        self.console.print(Markdown(md))
        self.console.print(f"results: {p.out / 'results.md'} · {p.out / 'results.json'} · figures: "
                           f"{p.out / 'figures'} · {p.meta['seconds'] / 60:.1f} min in all", highlight=False)
        if self.failed:
            self.err.print(f"[red]{len(self.failed)} run(s) failed[/]: " + "; ".join(
                f"{k} ({v})" for k, v in self.failed.items()) + f"; retry them with zppo reproduce --out {p.out} "
                "--resume", highlight=False, soft_wrap=True)
            return 1
        return 0

    def _close_tracking(self, run) -> None:
        """A finished run killed between its last checkpoint and the end of its MLflow run (a killed reproduce can
        do that) is never relaunched, so its run is ended here as FINISHED: its metrics are all logged."""
        if self.tracker is None:
            return
        from zppo_core.run_dir import RunDir
        from zppo_core.tracking.mlflow_tracker import close_run

        meta = RunDir(run.run_dir).meta()
        if meta.get("mlflow_run_id") and close_run(meta["mlflow_run_id"], meta.get("tracking_uri")):
            self._event(f"{run.name}: its MLflow run was left open by a killed process; closed as FINISHED")

    def _finish(self, status: str, seconds: float) -> None:
        from zppo_core.run_dir import write_atomic

        p = self.plan
        if p.meta:
            p.meta["seconds"] = float(p.meta.get("seconds", 0.0)) + seconds
            p.meta["status"] = status
            write_atomic(p.out / PLAN_FILE, json.dumps(p.meta, indent=2))
        if status == "KILLED" and self.tracker is not None:
            self.tracker.finish("KILLED")
        self._unlock()

    def _log_results(self, results: dict[str, Any], figures: list[Path]) -> None:
        p, tr = self.plan, self.tracker
        metrics = {}
        for m, e in results["methods"].items():
            for k, s in e["summary"].items():
                if s["n"]:
                    metrics[f"reproduce/{m}/{k}"] = s["mean"]
            for k, s in e.get("vs_reference", {}).items():
                if s["n"]:
                    metrics[f"reproduce/{m}/delta_{k}"] = s["mean"]
        metrics["reproduce/wall_minutes"] = p.meta["seconds"] / 60
        tr.log_metrics(metrics, step=0)
        for name in ("results.md", "results.json"):
            tr.log_artifact(p.out / name)
        for f in figures:
            tr.log_artifact(f, "figures")
