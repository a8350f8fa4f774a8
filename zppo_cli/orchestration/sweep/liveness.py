"""Who is alive in a sweep: several sweep processes and their trial workers on one study.

Three mechanisms, each for what the others cannot see:

- **The sweep lock** (`sweep.lock` in the sweep directory, `fcntl.flock`): every change a sweep process makes to
  the study's bookkeeping (count the budget and ask, tell an outcome and enqueue its retry, claim an orphaned trial)
  happens under it, so two processes never both take the last trial of the budget or both relaunch one trial. The
  kernel (or the NFS lock manager) releases it when its holder dies.
- **Driver locks** (`drivers/<id>.lock`): each sweep process holds its own lock file for its whole life and writes
  its id into the trials it launches (trial user attr `owner`). A trial whose owner's lock can be taken has lost its
  sweep process; another sweep process claims it. No waiting, no clock.
- **Worker heartbeats** (trial user attr `heartbeat`, Unix time): the trial worker records one every `interval` s
  through the Optuna storage while it trains, as Optuna's own heartbeat does for `study.optimize` (which the RDB
  storage implements but the journal storage does not; and Optuna's `fail_stale_trials` fails a stale trial before
  one can see whether its worker finished and left a result). A claimed trial whose worker still beats is followed
  until the beats stop (it may run on another machine); one whose beats are older than the grace period is dead.
  Heartbeats compare clocks across machines: the grace period (`GRACE_BEATS` intervals) absorbs ordinary skew.

`ZPPO_SWEEP_HEARTBEAT_S` sets the interval (default 10 s; a dead worker is recognised after 6 intervals).
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from zppo_cli.orchestration.sweep.plan import LOCK_FILE

DRIVERS_DIR = "drivers"
GRACE_BEATS = 6
DEFAULT_HEARTBEAT_S = 10.0


def heartbeat_interval() -> float:
    raw = os.environ.get("ZPPO_SWEEP_HEARTBEAT_S")
    try:
        return max(0.2, float(raw)) if raw else DEFAULT_HEARTBEAT_S
    except ValueError:
        return DEFAULT_HEARTBEAT_S


def beat_is_fresh(attrs: dict[str, Any], grace_s: float, now: float | None = None) -> bool:
    """True while a trial's worker heartbeat (its user attrs) is younger than `grace_s`."""
    beat = attrs.get("heartbeat")
    return isinstance(beat, (int, float)) and (now or time.time()) - float(beat) <= grace_s


@contextmanager
def sweep_lock(sweep_dir: Path) -> Iterator[None]:
    """The sweep-wide lock around the study's bookkeeping (short critical sections only)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep_dir / LOCK_FILE, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


class DriverLock:
    """This sweep process's identity, proven by a lock file it holds for its whole life."""

    def __init__(self, sweep_dir: Path):
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.path = sweep_dir / DRIVERS_DIR / f"{self.id}.lock"
        self._file = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w")
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._file.write(f"{os.getpid()}\n")
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            try:
                self.path.unlink()
            except OSError:
                pass
            self._file.close()  # closing drops the lock
            self._file = None


def driver_alive(sweep_dir: Path, driver_id: str | None) -> bool:
    """True while the sweep process `driver_id` holds its lock (it is running, on any machine sharing the dir)."""
    if not driver_id:
        return False
    path = sweep_dir / DRIVERS_DIR / f"{driver_id}.lock"
    try:
        f = open(path, "r+")
    except OSError:
        return False  # released and removed: the process ended
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


class Heartbeat:
    """The worker's heartbeat thread: `record()` every `interval` s until `stop()` or the trial is finished."""

    def __init__(self, record: Callable[[float], None], interval: float, log: Callable[[str], None]):
        self.record = record
        self.interval = interval
        self.log = log
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="zppo-trial-heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self.record(time.time())  # the first beat before training starts
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        from optuna.exceptions import UpdateFinishedTrialError

        warned = False
        while not self._stop.wait(self.interval):
            try:
                self.record(time.time())
            except UpdateFinishedTrialError:
                return  # the trial was finished (told) meanwhile: nothing left to prove
            except Exception as err:  # a storage hiccup: keep beating; the grace period covers a few misses
                if not warned:
                    self.log(f"heartbeat not recorded ({type(err).__name__}: {err}); retrying")
                    warned = True
