"""How a sweep starts its trials and learns that they ended: one `Launcher` protocol, two implementations.

    launcher = make_launcher(plan)          # local → LocalLauncher; slurm, debug → SubmititLauncher
    launcher.launch(runs)                   # start these trials (each runs `trial.py` on its trial.json)
    launcher.finished(runs)                 # {number: None (see result.json) | why it ended without one}
    launcher.adopt(run)                     # a Slurm trial of a sweep process that is gone: still queued/running?
    launcher.interrupt(runs)                # Ctrl-C: local trials checkpoint and stop; Slurm trials keep running

Every launch carries an id (`Running.launch`, also the trial's user attr `launch`); the worker refuses to run a
launch that was superseded. A trial launched by a sweep process that is gone is followed through the worker's
heartbeat (liveness.py) by whichever sweep process claims it, on this machine or another.

`SubmititLauncher` goes through `submit.submit()` (submitit's SlurmExecutor: trials launched together form one job
array, a preempted trial is requeued and resumes; `debug` runs the trial in this process).

Why local trials do not use submitit's LocalExecutor (read from submitit 1.5's `local/local.py`): its controller
process is started in the caller's process group without a session of its own, so the terminal's Ctrl-C reaches
it together with the sweep, and on SIGINT it kills its tasks with SIGKILL one second later. A trial then loses the
step it was in and its MLflow run is never closed, where the sweep needs Ctrl-C to reach the sweep first and each
trial to checkpoint and finish its MLflow run as KILLED. Its jobs also end after `timeout_min` (2 minutes unless
set), a job unpickled by a later process has no handle on its process (state "NO PROCESS AND NO RESULT"), and the
task's output goes to submitit's folder instead of the trial's `worker.log`. So a local trial is one `python -m
zppo_cli.orchestration.trial` process in a session of its own, started and awaited with `subprocess`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

LAUNCH_FILE = "launch.json"
TRIAL_MODULE = "zppo_cli.orchestration.trial"


@dataclass
class Running:
    """A trial this sweep process launched (or adopted) and follows until it ends."""

    number: int
    params: dict[str, Any]
    tdir: Path
    total_steps: int
    study: str = "sweep"
    proc: Any = None            # subprocess.Popen (local)
    record: Any = None          # registry.JobRecord (slurm); False: debug, already ran
    launch: str | None = None   # this launch's id (the worker refuses a superseded one)
    follow: bool = False        # launched by a sweep process that is gone: followed through its heartbeat
    started: float = field(default_factory=time.time)

    @property
    def run_dir(self) -> Path:
        return self.tdir / f"{self.study}-t{self.number:03d}"  # its name is the trial's MLflow run name

    @property
    def spec_path(self) -> Path:
        return self.tdir / "trial.json"


class Launcher(Protocol):
    kind: str

    def launch(self, runs: list[Running]) -> None: ...

    def adopt(self, r: Running) -> bool: ...

    def finished(self, runs: list[Running]) -> dict[int, str | None]: ...

    def interrupt(self, runs: list[Running]) -> None: ...


def make_launcher(plan) -> Launcher:
    return LocalLauncher() if plan.executor == "local" else SubmititLauncher(plan)


def _launch_info(r: Running) -> dict[str, Any]:
    try:
        return json.loads((r.tdir / LAUNCH_FILE).read_text())
    except (OSError, ValueError):
        return {}


class LocalLauncher:
    """One OS process per trial (its own session, so a Ctrl-C reaches the sweep first and it stops them)."""

    kind = "local"

    def launch(self, runs: list[Running]) -> None:
        for r in runs:
            with open(r.tdir / "worker.log", "ab") as log:
                r.proc = subprocess.Popen([sys.executable, "-m", TRIAL_MODULE, str(r.spec_path), r.launch or ""],
                                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
            (r.tdir / LAUNCH_FILE).write_text(json.dumps({"executor": "local", "host": socket.gethostname(),
                                                          "pid": r.proc.pid, "launch": r.launch}))

    def adopt(self, r: Running) -> bool:
        return False  # a live local worker of a sweep process that is gone is followed through its heartbeat

    def finished(self, runs: list[Running]) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        for r in runs:
            if r.proc is not None:
                rc = r.proc.poll()
                if rc is not None:
                    out[r.number] = None if rc == 0 else (f"worker exited with code {rc}" if rc > 0 else
                                                          f"worker killed by signal {-rc}")
        return out

    def interrupt(self, runs: list[Running], grace_s: float = 60.0) -> None:
        """SIGINT every worker (its run checkpoints and marks its MLflow run KILLED), wait for them."""
        for r in runs:
            if r.proc is not None:
                try:
                    os.killpg(r.proc.pid, signal.SIGINT)
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

    def __init__(self, plan):
        self.plan = plan
        self.kind = plan.executor

    def launch(self, runs: list[Running]) -> None:
        from zppo_cli.orchestration.submit import JobSpec, slurm_params, submit

        p = self.plan
        name = f"zppo-sweep-{p.study}"
        specs = [JobSpec(f"{TRIAL_MODULE}:run_trial", {"spec": str(r.spec_path.absolute()), "launch": r.launch},
                         name=f"{name}-t{r.number}", kind="trial", run_dir=str(r.run_dir.absolute()),
                         total_steps=r.total_steps, resume_hint=p.resume_command) for r in runs]
        folder = (p.sweep_dir / "jobs").absolute()
        if self.kind == "debug":  # one at a time, in this process: a raising trial has written its result.json
            for r, s in zip(runs, specs):
                r.record = False
                try:
                    submit([s], executor="debug", folder=folder, name=name)
                except Exception:
                    pass
            return
        params = slurm_params(p.profile, p.spec.scale, p.slurm, name)
        subs = submit(specs, executor=self.kind, params=params, folder=folder, name=name)
        for r, s in zip(runs, subs):
            r.record = s.record
            (r.tdir / LAUNCH_FILE).write_text(json.dumps({"executor": self.kind, "job_id": s.job_id,
                                                          "launch": r.launch}))

    def adopt(self, r: Running) -> bool:
        from zppo_cli.orchestration import registry

        info = _launch_info(r)
        rec = registry.find(str(info.get("job_id"))) if info.get("executor") == "slurm" else None
        if rec is None:
            return False
        if registry.main_state(registry.states([rec])[rec.job_id]["state"]) in registry.TERMINAL:
            return False
        r.record = rec
        return True

    def finished(self, runs: list[Running]) -> dict[int, str | None]:
        from zppo_cli.orchestration import registry

        out: dict[int, str | None] = {r.number: None for r in runs if not r.record}  # debug: already ran
        live = [r for r in runs if r.record]
        if live:
            info = registry.states([r.record for r in live])
            for r in live:
                st = registry.main_state(info[r.record.job_id]["state"])
                if st in registry.TERMINAL:
                    out[r.number] = None if st == "COMPLETED" else f"Slurm job {r.record.job_id} ended {st}"
        return out

    def interrupt(self, runs: list[Running]) -> None:
        return None  # Slurm jobs keep running; --resume adopts them
