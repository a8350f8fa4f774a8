"""The local registry of submitted jobs (`zppo jobs`) and their live states.

One JSON line per job (an array task is one line) in `$ZPPO_STATE_DIR/jobs.jsonl` (default
`$XDG_STATE_HOME/zppo`, i.e. `~/.local/state/zppo`). Lines are appended with a single `write` on an
`O_APPEND` descriptor, so concurrent submitters never interleave partial lines. States come from `sacct`
(Slurm accounting) for Slurm jobs, and from submitit's result file / the process for local ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# sacct states after which a job will not run again (PREEMPTED/REQUEUED jobs come back)
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE",
            "REVOKED", "SPECIAL_EXIT"}


def state_dir() -> Path:
    env = os.environ.get("ZPPO_STATE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "zppo"


def registry_path() -> Path:
    return state_dir() / "jobs.jsonl"


@dataclass
class JobRecord:
    job_id: str
    name: str
    executor: str                 # slurm | local | debug
    folder: str                   # submitit folder (logs, pickles)
    kind: str = "job"             # train | eval | trial | job
    run_dir: str | None = None
    total_steps: int | None = None
    submitted: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S"))
    cwd: str = field(default_factory=lambda: str(Path.cwd()))
    resume_hint: str | None = None  # the command that continues this job's work after a cancel

    @property
    def base_id(self) -> str:
        return self.job_id.split("_")[0]

    def paths(self):
        from submitit.core.utils import JobPaths

        return JobPaths(self.folder, job_id=self.job_id, task_id=0)

    def mlflow_run_id(self) -> str | None:
        from zppo_core.run_dir import RunDir

        return RunDir(self.run_dir).mlflow_run_id if self.run_dir else None

    def last_step(self) -> int:
        """The last step logged in the run dir's metrics.jsonl (0 if none yet)."""
        from zppo_core.run_dir import RunDir

        return RunDir(self.run_dir).last_step() if self.run_dir else 0


def append(records: list[JobRecord]) -> None:
    path = registry_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(asdict(r)) + "\n" for r in records).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def load() -> list[JobRecord]:
    path = registry_path()
    if not path.is_file():
        return []
    out: dict[str, JobRecord] = {}
    known = set(JobRecord.__dataclass_fields__)
    for line in path.read_text().splitlines():
        try:
            raw = json.loads(line)
            rec = JobRecord(**{k: v for k, v in raw.items() if k in known})
        except (ValueError, TypeError):
            continue  # a foreign or damaged line: skip, never fail the listing
        out[rec.job_id] = rec  # a re-registered id (resubmission) replaces the older line
    return list(out.values())


def find(job_id: str) -> JobRecord | None:
    recs = load()
    for r in recs:
        if r.job_id == job_id:
            return r
    return None


def find_all(job_id: str) -> list[JobRecord]:
    """A job id, or an array's base id (all its tasks)."""
    recs = load()
    exact = [r for r in recs if r.job_id == job_id]
    return exact or [r for r in recs if r.base_id == job_id and "_" in r.job_id]


def sacct_states(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """job id -> {state, elapsed, exit_code, reason} from Slurm accounting (missing ids are absent)."""
    if not job_ids or shutil.which("sacct") is None:
        return {}
    bases = sorted({j.split("_")[0] for j in job_ids})
    cmd = ["sacct", "-X", "-n", "-P", "-j", ",".join(bases), "-o", "JobID,State,Elapsed,ExitCode,Reason"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    states: dict[str, dict[str, str]] = {}
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) < 4:
            continue
        jid = parts[0]
        states[jid] = {"state": parts[1], "elapsed": parts[2], "exit_code": parts[3],
                       "reason": parts[4] if len(parts) > 4 else ""}
    return states


def squeue_state(job_id: str) -> str | None:
    """The controller's view (fresher than accounting right after submission)."""
    if shutil.which("squeue") is None:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                             timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.splitlines()[0] if out else None


def local_state(rec: JobRecord) -> str:
    """State of a local/debug job from submitit's files: COMPLETED / FAILED / RUNNING / UNKNOWN."""
    paths = rec.paths()
    if paths.result_pickle.exists():
        try:
            from submitit.core.utils import pickle_load

            outcome, _ = pickle_load(paths.result_pickle)
        except Exception:
            return "UNKNOWN"
        return "COMPLETED" if outcome == "success" else "FAILED"
    if rec.executor == "local" and rec.job_id.isdigit():
        try:
            os.kill(int(rec.job_id), 0)
            return "RUNNING"
        except OSError:
            return "UNKNOWN"
    return "UNKNOWN"


def states(records: list[JobRecord]) -> dict[str, dict[str, str]]:
    """job id -> sacct-like info for every record."""
    slurm = [r.job_id for r in records if r.executor == "slurm"]
    info = sacct_states(slurm)
    out: dict[str, dict[str, str]] = {}
    for r in records:
        if r.executor == "slurm":
            row = info.get(r.job_id)
            if row is None or main_state(row["state"]) in TERMINAL:
                # accounting lags behind submission, and while a job is being requeued (time limit, preemption)
                # its last attempt's record can read terminal: a job the controller still holds as live is live
                st = squeue_state(r.job_id)
                if row is None or (st is not None and main_state(st) not in TERMINAL):
                    row = {**(row or {"elapsed": "", "exit_code": "", "reason": ""}), "state": st or "UNKNOWN"}
            out[r.job_id] = row
        else:
            out[r.job_id] = {"state": local_state(r), "elapsed": "", "exit_code": "", "reason": ""}
    return out


def main_state(state: str) -> str:
    """'CANCELLED by 0' -> 'CANCELLED'."""
    return state.split()[0] if state else "UNKNOWN"


def result(rec: JobRecord) -> tuple[str, Any] | None:
    """submitit's ('success', value) or ('error', traceback) for a finished job, else None."""
    p = rec.paths().result_pickle
    if not p.exists():
        return None
    from submitit.core.utils import pickle_load

    try:
        return pickle_load(p)
    except Exception:
        return None


def result_outcome(rec: JobRecord) -> str | None:
    """'success' / 'error' once submitit wrote the job's result, else None."""
    res = result(rec)
    return None if res is None else str(res[0])


def as_dict(rec: JobRecord) -> dict[str, Any]:
    return asdict(rec)
