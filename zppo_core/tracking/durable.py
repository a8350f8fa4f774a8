"""Tracking that never stops training and never loses a record: everything is recorded in the run directory first
and sent to the tracking store by a background thread, which retries for as long as the store is away.

What is recorded where (paths from `RunDir`):
  metrics.jsonl          every completed step's metrics, written by the loop: the source of truth for step metrics
  tracking/outbox.jsonl  every other call, numbered, one JSON line each: the run's creation (experiment, name,
                         tags), params, tags, datasets, texts, tables, artifacts (a file inside the run directory by
                         its path, one outside it as a copy under tracking/files/), metrics logged for a step whose
                         line is already in metrics.jsonl (the prepare metrics at step 0), the final status
  tracking/sent.json     per store (URI and run id) the last outbox number it acknowledged; the runs `zppo sync`
                         created in other stores

Sending: a call appends to the outbox (when it belongs there) and to an in-memory queue, and returns: the training
loop never waits for the store. One thread sends the queue in call order. A call that fails for a reason that
passes (the server unreachable, timing out, restarting, answering 5xx; a busy sqlite file: `is_transient`) is
retried with a back-off capped at `retry_cap_s` while later calls wait behind it; a call the store rejects (a wrong
value) is dropped with a warning. MLflow's own HTTP retries are shortened for this process (`http_defaults`), so an
outage is noticed in seconds, not minutes. Every call is idempotent on the store (a metric point carries the time it
was recorded and the store keeps one copy of an identical point; params and tags get the same value again;
artifacts are overwritten), so a call whose answer was lost is simply sent again.

`finish` waits at most `flush_timeout_s` for the queue to drain; what is not sent by then stays in the run
directory. A resumed run and `zppo sync RUN_DIR` (`sync_run`) replay it: the outbox past the acknowledged number
(`replay_outbox`), and every metrics.jsonl point whose (metric, step) the store does not hold yet (`replay_metrics`;
a resumed run does this when its first step is logged, after the lines it recomputes were dropped); so a replay run twice adds nothing,
and a run trained with tracking off (on a cluster without the server) can be sent to any store later.

Compared with MLflow's own async logging (`log_batch(synchronous=False)`, `mlflow.config.enable_async_logging`):
its queue is in memory only, drops a batch once MLflow's HTTP retries are exhausted (it logs an error) and covers
metrics, params and tags but not artifacts; here nothing is dropped and a crash loses nothing the run dir holds.

Why this file is long: recording, sending (the thread and its retries) and replaying (resume, `zppo sync`) share
the outbox format and the acknowledgement bookkeeping; split, each half would have to know the other's internals.
"""

from __future__ import annotations

import collections
import json
import logging
import math
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

from zppo_core.run_dir import RunDir, append_line, write_atomic

_logger = logging.getLogger("zppo.tracking")


class DurableTracker:
    """The Tracker protocol, local first (see the module docstring). `enabled=False`: records only (no store)."""

    def __init__(self, run_dir: str | Path, experiment: str, uri: str | None = None, run_id: str | None = None,
                 resume: bool | None = None, run_name: str | None = None, tags: dict[str, str] | None = None,
                 parent_run_id: str | None = None, enabled: bool = True, flush_timeout_s: float = 60.0,
                 retry_cap_s: float = 10.0, warn: Callable[[str], None] | None = None):
        """`run_id`: the run's MLflow run when it has one (a resume); `resume` (default: a run_id was given): an
        earlier attempt's records are in the run dir. `flush_timeout_s`: how long `finish` waits for the store."""
        self.rd = RunDir(run_dir)
        self.warn = warn or _logger.warning
        self.flush_timeout_s, self.retry_cap_s = flush_timeout_s, retry_cap_s
        self.inner = None
        self.run_id, self.uri = run_id, None
        resume = run_id is not None if resume is None else resume
        if enabled:
            from zppo_core.tracking.mlflow_tracker import MlflowTracker, http_defaults

            http_defaults()
            self.inner = MlflowTracker(experiment, uri=uri, run_id=run_id, run_name=run_name, tags=tags,
                                       parent_run_id=parent_run_id, reopen=False)  # no request for a resume
            self.run_id, self.uri = self.inner.run_id, self.inner.uri
        self._seq = _last_seq(self.rd)
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._cv = threading.Condition()
        self._abandon = threading.Event()
        self._closing = False
        self._down_since: float | None = None
        self._down_reason = ""
        self.outages: list[float] = []  # seconds each outage lasted (for the run's summary and the tests)
        self.max_queued = 0
        self._skip: set[tuple[str, int]] = set()  # (metric, step) points the store already holds (after a replay)
        self._replay_pending = resume and self.inner is not None
        if not resume or not self.rd.outbox_path.is_file():
            self._record({"op": "create", "experiment": experiment, "run_name": run_name, "tags": dict(tags or {}),
                          "parent_run_id": parent_run_id}, send=False)
            if self.inner is not None:  # the constructor created it: acknowledged
                _ack(self.rd, self._key(self.uri, self.run_id), self._seq)
        self._thread = None
        if self.inner is not None:
            if resume:  # what an earlier attempt recorded but never sent goes first, then the run is RUNNING again
                self._enqueue({"op": "replay_outbox", "upto": self._seq})
                self._enqueue({"op": "reopen"})
            self._thread = threading.Thread(target=self._send_loop, name="zppo-tracking", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------ the Tracker protocol
    def log_params(self, params: dict[str, str]) -> None:
        self._record({"op": "call", "name": "log_params", "args": [{k: str(v) for k, v in params.items()}]})

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        op = {"op": "metrics", "step": int(step), "ts": int(time.time() * 1000),
              "values": {k: float(v) for k, v in metrics.items() if _number(v)}}
        if self._replay_pending:  # a resumed run: first the points the store lacks from before this step
            self._replay_pending = False
            self._enqueue({"op": "replay_metrics", "below": int(step)})
        if step <= self.rd.last_step():  # not going into a metrics.jsonl line: the outbox keeps it
            self._record(op)
        else:
            self._enqueue(op)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        path = Path(path).resolve()
        try:
            ref = {"path": path.relative_to(self.rd.path.resolve()).as_posix()}
        except ValueError:  # outside the run dir: keep a copy
            copy = self.rd.outbox_files / f"{self._seq + 1:06d}" / path.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)
            ref = {"path": copy.relative_to(self.rd.path).as_posix()}
        self._record({"op": "artifact", **ref, "artifact_path": artifact_path})

    def log_text(self, text: str, artifact_file: str) -> None:
        self._record({"op": "call", "name": "log_text", "args": [text, artifact_file]})

    def log_table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        self._record({"op": "call", "name": "log_table", "args": [rows, artifact_file]})

    def set_tags(self, tags: dict[str, str]) -> None:
        self._record({"op": "call", "name": "set_tags", "args": [{k: str(v) for k, v in tags.items()}]})

    def __getattr__(self, name: str):
        """Other recording calls of the tracker (e.g. log_dataset) go the same way, in order."""
        if name.startswith(("log_", "set_")):
            return lambda *args, **kwargs: self._record({"op": "call", "name": name, "args": list(args),
                                                         "kwargs": kwargs})
        raise AttributeError(name)

    def finish(self, status: str = "FINISHED", timeout_s: float | None = None) -> bool:
        """Record the final status and wait (at most `timeout_s`, default `flush_timeout_s`) until the store has
        everything. False: some records are not there yet (they stay in the run dir for `zppo sync`)."""
        if self._replay_pending:
            self._replay_pending = False
            self._enqueue({"op": "replay_metrics", "below": None})
        self._record({"op": "finish", "status": status})
        if timeout_s is None:  # a run that failed or was interrupted does not hold its exit for long
            timeout_s = self.flush_timeout_s if status == "FINISHED" else min(self.flush_timeout_s, 10.0)
        done = self.flush(timeout_s)
        if not done:
            with self._cv:
                left = len(self._queue)
            self._abandon.set()
            self.warn(f"tracking: {left} record(s) not yet in {self.uri} ({self._down_reason}); they are kept in "
                      f"{self.rd.path}: send them with `zppo sync {self.rd.path}`")
        self.close()
        return done

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued has been sent (True) or `timeout_s` passed (False)."""
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while self._queue and self.inner is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 1.0))
        return True

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._thread is not None and self._abandon.is_set():
            self._thread.join(timeout=5)

    def delete(self) -> None:
        """Remove the run from the store (a run whose setup failed)."""
        self._abandon.set()
        self.close()
        if self.inner is not None:
            self.inner.delete()

    @property
    def queued(self) -> int:
        with self._cv:
            return len(self._queue)

    # ------------------------------------------------------------------ recording
    @staticmethod
    def _key(uri: str | None, run_id: str | None) -> str:
        return f"{uri} {run_id}"

    def _record(self, op: dict[str, Any], send: bool = True) -> None:
        """Append `op` to the outbox (numbered) and queue it."""
        self._seq += 1
        op = {"seq": self._seq, **op}
        self.rd.tracking.mkdir(parents=True, exist_ok=True)
        append_line(self.rd.outbox_path, json.dumps(op, default=str))
        if send:
            self._enqueue(op)

    def _enqueue(self, op: dict[str, Any]) -> None:
        if self.inner is None:
            return
        with self._cv:
            self._queue.append(op)
            self.max_queued = max(self.max_queued, len(self._queue))
            self._cv.notify_all()

    # ------------------------------------------------------------------ sending (the background thread)
    def _send_loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closing:
                    self._cv.wait()
                if not self._queue or self._abandon.is_set():
                    return
                op = self._queue[0]
            self._deliver(op)
            with self._cv:
                if self._abandon.is_set():
                    return
                self._queue.popleft()
                self._cv.notify_all()

    def _deliver(self, op: dict[str, Any]) -> None:
        from zppo_core.tracking.mlflow_tracker import is_transient

        delay = 0.5
        while not self._abandon.is_set():
            try:
                self._apply(op)
            except Exception as err:  # noqa: BLE001 - classified just below
                if not is_transient(err):
                    self.warn(f"tracking: {self.uri} rejected {_describe(op)} ({_one_line(err)}); skipped")
                    return
                self._went_down(err)
                if self._abandon.wait(delay):
                    return
                delay = min(delay * 2, self.retry_cap_s)
                continue
            self._came_back()
            return

    def _apply(self, op: dict[str, Any]) -> None:
        kind = op["op"]
        if kind == "replay_outbox":
            replay_outbox(self.rd, self.inner, self._key(self.uri, self.run_id), upto=op["upto"])
            return
        if kind == "replay_metrics":
            replay_metrics(self.rd, self.inner, below=op["below"], skip=self._skip)
            return
        if kind == "reopen":
            self.inner.reopen()
            return
        if kind == "metrics":
            values = {k: v for k, v in op["values"].items() if (k, op["step"]) not in self._skip}
            if values:
                self.inner.log_metrics(values, op["step"], timestamp_ms=op["ts"])
        else:
            apply_op(self.rd, self.inner, op)
        if "seq" in op:
            _ack(self.rd, self._key(self.uri, self.run_id), op["seq"])

    def _went_down(self, err: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._down_reason = f"unreachable since {time.strftime('%H:%M:%S')}: {_one_line(err)[:200]}"
            self.warn(f"tracking: {self.uri} is unreachable ({_one_line(err)[:200]}); training continues, records "
                      f"are kept in {self.rd.path} and sent when it is back")

    def _came_back(self) -> None:
        if self._down_since is not None:
            gone = time.monotonic() - self._down_since
            self.outages.append(gone)
            self._down_since = None
            self.warn(f"tracking: {self.uri} is back after {gone:.0f} s; sending {self.queued} queued record(s)")


# ---------------------------------------------------------------------------------------------- replay and sync
def apply_op(rd: RunDir, target, op: dict[str, Any]) -> None:
    """Send one outbox record to a tracker (MlflowTracker)."""
    kind = op["op"]
    if kind == "call":
        getattr(target, op["name"])(*op.get("args", []), **op.get("kwargs", {}))
    elif kind == "artifact":
        path = rd.path / op["path"]
        if not path.exists():
            raise ValueError(f"artifact {path} no longer exists")
        target.log_artifact(path, op.get("artifact_path"))
    elif kind == "metrics":
        if op["values"]:
            target.log_metrics(op["values"], op["step"], timestamp_ms=op["ts"])
    elif kind == "finish":
        target.finish(op["status"])
    elif kind != "create":
        raise ValueError(f"unknown outbox record {kind!r}")


def outbox(rd: RunDir) -> list[dict[str, Any]]:
    """The outbox records, in order (a line cut short by a kill is ignored)."""
    out = []
    try:
        lines = rd.outbox_path.read_text().splitlines()
    except OSError:
        return []
    for ln in lines:
        try:
            op = json.loads(ln)
        except ValueError:
            continue
        if isinstance(op, dict) and "seq" in op and "op" in op:
            out.append(op)
    return out


def replay_outbox(rd: RunDir, target, key: str, upto: int | None = None) -> dict[str, int]:
    """Send the outbox records past the store's acknowledged number (up to `upto`), in order. A record the store
    rejects is skipped with a warning; a transient failure is raised (the caller retries: nothing is sent twice
    since each record is acknowledged as it goes)."""
    from zppo_core.tracking.mlflow_tracker import is_transient

    counts = {"records": 0, "records_rejected": 0}
    acked = _acked(rd, key)
    for op in outbox(rd):
        if op["seq"] <= acked or (upto is not None and op["seq"] > upto):
            continue
        try:
            apply_op(rd, target, op)
            counts["records"] += 1
        except Exception as err:  # noqa: BLE001
            if is_transient(err):
                raise
            counts["records_rejected"] += 1
            _logger.warning("tracking: %s rejected %s (%s); skipped", key.split(" ")[0], _describe(op),
                            _one_line(err))
        _ack(rd, key, op["seq"])
    return counts


def replay_metrics(rd: RunDir, target, below: int | None = None,
                   skip: set[tuple[str, int]] | None = None) -> dict[str, int]:
    """Send each metrics.jsonl point (of a step below `below`) whose (metric, step) the store does not hold yet.
    `skip` receives the points it holds at `below` and after (a resumed run then sends none of them again)."""
    counts = {"points": 0, "points_present": 0}
    rows = rd.metrics()
    keys = sorted({k for r in rows for k, v in r.items() if k != "step" and _number(v)})
    have = target.metric_steps(keys) if keys else {}
    if skip is not None and below is not None:
        skip.update((k, s) for k, steps in have.items() for s in steps if s >= below)
    now = int(time.time() * 1000)
    for r in rows:
        step = int(r["step"])
        if below is not None and step >= below:
            continue
        points = {k: float(v) for k, v in r.items() if k != "step" and _number(v) and math.isfinite(v)}
        missing = {k: v for k, v in points.items() if step not in have.get(k, ())}
        counts["points_present"] += len(points) - len(missing)
        if missing:
            target.log_metrics(missing, step, timestamp_ms=now)
            counts["points"] += len(missing)
    return counts


class SyncError(ValueError):
    """`zppo sync` cannot start (one line naming the run dir or store and the fix)."""


def sync_run(run_dir: str | Path, uri: str | None = None, connect_timeout_s: float = 10.0) -> dict[str, Any]:
    """Send a run directory's records to a tracking store (default: the one its run.json names, else the config's):
    into its own MLflow run when that store holds it, else into a run created there (and remembered, so the next
    sync continues it). Idempotent. Returns what was done (uri, run_id, created, counts)."""
    from zppo_core.tracking.mlflow_tracker import (MlflowTracker, check_reachable, http_defaults, resolve_uri,
                                                   run_exists)

    rd = RunDir(run_dir)
    if not rd.path.is_dir() or not (rd.is_run() or rd.outbox_path.is_file()):
        raise SyncError(f"{rd.path} is not a zppo run directory (no config.yaml); pass a directory made by "
                        "`zppo train`")
    meta = rd.meta()
    cfg = _config_or_none(rd)
    target = uri or meta.get("tracking_uri") or resolve_uri(cfg.tracking.uri if cfg is not None else None)[0]
    why = check_reachable(target, connect_timeout_s)
    if why is not None:
        raise SyncError(f"tracking store {target} {why}; start it or pass another with --uri (nothing was sent)")
    http_defaults()
    sent = _sent(rd)
    run_id = None
    for candidate in (meta.get("mlflow_run_id") if meta.get("tracking_uri") == target else None,
                      sent.get("runs", {}).get(target)):
        if candidate and run_exists(target, candidate):
            run_id = candidate
            break
    created = run_id is None
    ops = outbox(rd)
    if created:
        create = next((op for op in ops if op["op"] == "create"), None) or _create_from(rd, cfg)
        experiment = create["experiment"] or "zppo"
        tr = MlflowTracker(experiment, uri=target, run_name=create.get("run_name") or rd.name,
                           tags={**create.get("tags", {}), "zppo.synced_from": str(rd.path.resolve())})
        run_id = tr.run_id
        sent = _sent(rd)
        sent.setdefault("runs", {})[target] = run_id
        _write_sent(rd, sent)
        if not any(op["op"] == "create" for op in ops) and cfg is not None:  # a run from before the outbox existed
            from zppo_core.config import flat_params

            tr.log_params(flat_params(cfg))
            tr.log_artifact(rd.config_path)
    else:
        tr = MlflowTracker(cfg.tracking.experiment if cfg is not None else "zppo", uri=target, run_id=run_id,
                           reopen=False)
    counts = {**replay_outbox(rd, tr, DurableTracker._key(target, run_id)), **replay_metrics(rd, tr)}
    if created and not any(op["op"] == "finish" for op in ops):
        done = cfg is not None and rd.last_step() >= cfg.run.steps
        tr.finish("FINISHED" if done else "KILLED")
    return {"uri": target, "run_id": run_id, "created": created, **counts}


def _create_from(rd: RunDir, cfg) -> dict[str, Any]:
    meta = rd.meta()
    tags = {"zppo.run_dir": str(rd.path.resolve())}
    for k in ("method", "scale", "seed"):
        if k in meta:
            tags[f"zppo.{k}"] = str(meta[k])
    if cfg is not None:
        tags.update({"zppo.method": cfg.method, "zppo.scale": cfg.scale, "zppo.seed": str(cfg.run.seed),
                     **cfg.tracking.tags})
    return {"experiment": cfg.tracking.experiment if cfg is not None else "zppo", "run_name": rd.name, "tags": tags}


def _config_or_none(rd: RunDir):
    try:
        return rd.read_config() if rd.is_run() else None
    except Exception:  # noqa: BLE001 - an unreadable config: the run's records can still be sent
        return None


# ---------------------------------------------------------------------------------------------- small helpers
def _sent(rd: RunDir) -> dict[str, Any]:
    try:
        d = json.loads(rd.sent_path.read_text())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_sent(rd: RunDir, d: dict[str, Any]) -> None:
    rd.tracking.mkdir(parents=True, exist_ok=True)
    write_atomic(rd.sent_path, json.dumps(d, indent=1))


def _acked(rd: RunDir, key: str) -> int:
    return int(_sent(rd).get("acked", {}).get(key, 0))


def _ack(rd: RunDir, key: str, seq: int) -> None:
    d = _sent(rd)
    acked = d.setdefault("acked", {})
    if int(acked.get(key, 0)) < seq:
        acked[key] = seq
        _write_sent(rd, d)


def _last_seq(rd: RunDir) -> int:
    ops = outbox(rd)
    return ops[-1]["seq"] if ops else 0


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _describe(op: dict[str, Any]) -> str:
    if op["op"] == "call":
        return op["name"]
    if op["op"] == "metrics":
        return f"metrics of step {op['step']}"
    if op["op"] == "artifact":
        return f"artifact {op['path']}"
    return op["op"]
