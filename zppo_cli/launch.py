"""`zppo train --nproc N`: N ranks of the training loop on this machine, started by torch's elastic launcher (the
engine behind `torchrun --standalone`: a c10d rendezvous on a free local port, one process per rank).

`launch(nproc, target, kwargs)` starts the ranks, each running `target(**kwargs)` (a `module:function` name, see
`zppo_cli.orchestration.jobs.resolve_target`) with RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT
set, and returns rank 0's return value. When a rank fails or is killed, the launcher stops the others and
`launch` raises `RankFailed` with one line naming the rank and its cause (the exception it raised, or the signal
that killed it); a `ConfigError` raised by a rank is re-raised as such (exit code 2). `OMP_NUM_THREADS` defaults
to the CPU count divided by the ranks (1 here: two cores, two ranks).
"""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

from zppo_core.config import ConfigError


class RankFailed(RuntimeError):
    """A rank of a local multi-rank run failed or was killed (the message is one line)."""

    def __init__(self, message: str, rank: int, signal_name: str | None = None):
        super().__init__(message)
        self.rank, self.signal_name = rank, signal_name


def _entry(target: str, kwargs: dict[str, Any]) -> Any:
    """What each rank runs: the target, then the process group is closed."""
    from torch.distributed.elastic.multiprocessing.errors import record

    from zppo_cli.orchestration.jobs import resolve_target

    @record
    def run() -> Any:
        from zppo_core.dist import shutdown

        try:
            return resolve_target(target)(**kwargs)
        finally:
            shutdown()

    return run()


def _failure_line(err) -> tuple[str, int, str | None]:
    """(one line, rank, signal name or None) for the root cause of a ChildFailedError: a rank killed by a signal
    first (the others then fail on the broken collective), else the earliest failure."""
    failures = err.failures
    killed = [r for r, f in failures.items() if f.exitcode < 0]  # an exception exits with 1; a signal is negative
    rank = min(killed) if killed else err.get_first_failure()[0]
    f = failures[rank]
    if rank in killed:
        return f"rank {rank} (pid {f.pid}) was killed by {f.signal_name()}", rank, f.signal_name()
    message = f.message
    if isinstance(message, dict):
        message = message.get("message", "")
    lines = [ln for ln in str(message).splitlines() if ln.strip()]
    return f"rank {rank} failed: {lines[-1] if lines else f'exit code {f.exitcode}'}", rank, None


def launch(nproc: int, target: str, kwargs: dict[str, Any]) -> Any:
    """Run `target(**kwargs)` on `nproc` local ranks; rank 0's return value (see the module docstring)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    for name in ("torch.distributed.elastic", "torch.distributed.launcher", "torch.multiprocessing"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # a failure is reported once, as RankFailed
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"zppo-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0", max_restarts=0, monitor_interval=0.2,
                          start_method="spawn")
    try:
        results = elastic_launch(config, _entry)(target, kwargs)
    except ChildFailedError as err:
        line, rank, sig = _failure_line(err)
        if line.startswith(f"rank {rank} failed: ConfigError: "):
            raise ConfigError(line.split("ConfigError: ", 1)[1]) from None
        raise RankFailed(line, rank, sig) from None
    return results[0]
