"""Slurm time limits and preemption: checkpoint at a step boundary, collectively, then requeue.

submitit has Slurm send USR2 `signal_delay_s` before the time limit (and on preemption, where the cluster sends
signals then) and installs a handler that, on global rank 0 only, calls the job's `checkpoint()` and requeues the
job at once, wherever the process was: in the middle of a collective for a multi-task job. zppo replaces that
handler in every task with one that only sets a flag (`zppo_core.dist.request_stop`). The loop agrees on the flag
at the next step boundary (an all-reduce: any task's signal counts), writes a checkpoint collectively and returns
with `preempted`; rank 0 then runs submitit's own handler (`requeue_now`: the job's `checkpoint()`, `scontrol
requeue`, exit) and the requeued job resumes from that checkpoint into the same MLflow run.

Safety net: a step may take longer than `signal_delay_s`. On the signal, rank 0 asks Slurm for the time left
(`squeue -o %L`) and, if no step boundary has been reached by half of it (at most 30 s before the limit), requeues
anyway without the new checkpoint (the job then resumes from the previous one, as a single-process job always
did). Nothing collective runs in a signal handler or in that thread.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from typing import Any, Callable

_submitit_handler: Callable[..., Any] | None = None
_requeued = threading.Event()
_lock = threading.Lock()
_watchdog: threading.Thread | None = None


def _is_submitit_handler(handler: Any) -> bool:
    owner = getattr(handler, "__self__", None)
    return owner is not None and type(owner).__module__.startswith("submitit")


def install() -> bool:
    """Take over submitit's USR2 handler in this task (True), or leave signals alone when it has none (False)."""
    global _submitit_handler
    handler = signal.getsignal(signal.SIGUSR2)
    if handler is _on_signal:
        return True
    if not _is_submitit_handler(handler):
        return False
    _submitit_handler = handler
    _requeued.clear()
    signal.signal(signal.SIGUSR2, _on_signal)
    return True


def _on_signal(signum: int, frame: Any) -> None:
    from zppo_core.dist import request_stop, stop_requested

    first = stop_requested() is None
    request_stop("Slurm signalled a time limit or preemption")
    if first:
        print("zppo: USR2 received (time limit or preemption): checkpointing at the end of this step, then "
              "requeueing", flush=True)
    global _watchdog
    if os.environ.get("SLURM_PROCID", "0") == "0" and _watchdog is None:
        _watchdog = threading.Thread(target=_requeue_if_stuck, name="zppo-requeue-watchdog", daemon=True)
        _watchdog.start()


def time_left_s(job_id: str | None = None) -> float | None:
    """Seconds until the job's time limit (`squeue -o %L`), None when unknown or unlimited."""
    jid = job_id or os.environ.get("SLURM_JOB_ID")
    if not jid:
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", jid, "-o", "%L"], capture_output=True, text=True,
                             timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_slurm_duration(out)


def parse_slurm_duration(text: str) -> float | None:
    """Slurm's [days-][hours:]minutes:seconds (or minutes) -> seconds; None for UNLIMITED/NOT_SET/garbage."""
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)", text.strip())
    if m is None:
        return float(text) * 60 if text.strip().isdigit() else None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def _requeue_if_stuck() -> None:
    left = time_left_s()
    wait = 60.0 if left is None else max(left / 2, left - 30.0)
    if _requeued.wait(max(wait, 0.0)):
        return
    print("zppo: no step boundary before the time limit; requeueing without a new checkpoint (the job resumes from "
          "the previous one)", flush=True)
    requeue_now()


def requeue_now() -> None:
    """Rank 0, after the collective checkpoint: submitit's handler checkpoints the job description, requeues it
    and exits the process (SystemExit). A no-op where submitit installed no handler (not a Slurm job)."""
    with _lock:
        done = _requeued.is_set()
        _requeued.set()
    if done:  # the watchdog requeued already: Slurm is about to stop this attempt
        if threading.current_thread() is threading.main_thread():
            raise SystemExit(-1)
        return
    if _submitit_handler is not None:
        _submitit_handler(signal.SIGUSR2, None)
