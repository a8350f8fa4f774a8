"""Follow submitted jobs until they end (`--wait`, `zppo jobs wait`): a live progress display, then the outcome.

Exit status follows the jobs: 0 all completed; 1 a job failed (its remote traceback is printed), timed out
too often or lost its node; 3 a job was cancelled. The message names the next command to run.
"""

from __future__ import annotations

import time
from typing import Callable

from zppo_cli.orchestration import registry
from zppo_cli.orchestration.registry import JobRecord, main_state

EXIT_OK, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 3


def wait_states(records: list[JobRecord], poll_s: float = 1.0, timeout_s: float | None = None,
                on_poll: Callable[[dict[str, dict[str, str]]], None] | None = None) -> dict[str, dict[str, str]]:
    """Poll until every job is in a terminal state; returns the final states. TimeoutError after timeout_s."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        info = registry.states(records)
        if on_poll is not None:
            on_poll(info)
        if all(main_state(info[r.job_id]["state"]) in registry.TERMINAL for r in records):
            return info
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"jobs {', '.join(r.job_id for r in records)} still running after {timeout_s:.0f} s")
        time.sleep(poll_s)


def _result_when_written(rec: JobRecord, wait_s: float = 15.0):
    """submitit's result file; on a shared filesystem it may appear a moment after the state changes."""
    deadline = time.monotonic() + wait_s
    while True:
        res = registry.result(rec)
        if res is not None or time.monotonic() > deadline:
            return res
        time.sleep(0.5)


def outcome(rec: JobRecord, state: str) -> tuple[int, str, str | None]:
    """(exit code, one-line message, remote traceback or None) for a job in a terminal state."""
    st = main_state(state)
    resume = rec.resume_hint
    # submitit's result file is the truth about the work: Slurm may record FAILED for a job whose work finished
    # (a time-limit signal landing on srun as it exits), and a COMPLETED step may hold a Python error
    res = _result_when_written(rec, 5.0) if st in ("COMPLETED", "FAILED") else registry.result(rec)
    if res is not None and res[0] == "success":
        return EXIT_OK, f"job {rec.job_id} ({rec.name}) completed", None
    if st == "COMPLETED":
        tb = str(res[1]) if res is not None else None
        return EXIT_FAILED, f"job {rec.job_id} ({rec.name}) failed on the node", tb
    if st == "CANCELLED":
        nxt = f"continue with: {resume}" if resume else f"resubmit it; its logs: zppo jobs logs {rec.job_id}"
        return EXIT_CANCELLED, f"job {rec.job_id} ({rec.name}) was cancelled ({state}); {nxt}", None
    tb = str(res[1]) if res is not None and res[0] == "error" else None
    if tb is None and st == "FAILED":
        err = rec.paths().stderr
        if err.is_file():
            tail = err.read_text(errors="replace").splitlines()[-40:]
            tb = "\n".join(tail) if tail else None
    after = f"; after fixing it: {resume}" if resume else ""
    why = {"FAILED": "failed on the node", "TIMEOUT": "ran out of time and of requeues (max_requeues)",
           "OUT_OF_MEMORY": "ran out of memory (raise mem_gb)", "NODE_FAIL": "lost its node",
           "PREEMPTED": "was preempted and not requeued"}.get(st, f"ended in state {state}")
    return EXIT_FAILED, f"job {rec.job_id} ({rec.name}) {why}; logs: zppo jobs logs {rec.job_id}{after}", tb


def follow(records: list[JobRecord], console, err_console, poll_s: float = 1.0) -> int:
    """Live progress until the jobs end, then one line per job (and any remote traceback). Returns the exit code."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[state]}"), TimeElapsedColumn(), console=err_console, transient=False)
    tasks = {r.job_id: progress.add_task(f"{r.job_id} {r.name}", total=r.total_steps, state="PENDING")
             for r in records}

    def on_poll(info: dict[str, dict[str, str]]) -> None:
        for r in records:
            progress.update(tasks[r.job_id], completed=r.last_step(), state=info[r.job_id]["state"])

    with progress:
        final = wait_states(records, poll_s=poll_s, on_poll=on_poll)
    codes = []
    for r in records:
        rc, msg, tb = outcome(r, final[r.job_id]["state"])
        if tb:
            err_console.print(f"[bold]remote traceback of job {r.job_id}:[/]", highlight=False)
            err_console.print(tb.rstrip(), highlight=False, markup=False, soft_wrap=True)
        if rc == EXIT_OK:
            mlflow = r.mlflow_run_id()
            extra = (f"  run dir: {r.run_dir}" if r.run_dir else "") + (f"  MLflow run: {mlflow}" if mlflow else "")
            console.print(f"{msg}{extra}", highlight=False, soft_wrap=True)
        else:
            err_console.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
        codes.append(rc)
    return combined(codes)


def combined(codes: list[int]) -> int:
    """A failure outranks a cancel, which outranks success."""
    for c in (EXIT_FAILED, EXIT_CANCELLED):
        if c in codes:
            return c
    return EXIT_OK
