"""The durable tracker's records and `sync_run` against real MLflow sqlite stores (no training, no server): an
offline run's records reach a store complete, a second sync adds nothing, a record the store rejects is skipped
without blocking the others, and records cut short by a crash are ignored. The server outage itself is tested in
tests/integration/test_tracking_outage.py."""

from __future__ import annotations

import socket
import time

import pytest
from mlflow.tracking import MlflowClient

from zppo_core.run_dir import RunDir
from zppo_core.tracking.durable import DurableTracker, outbox, sync_run
from zppo_core.tracking.mlflow_tracker import check_reachable


def _offline_run(run_dir, steps=3):
    """A run's tracking calls with tracking off, in the order the loop makes them."""
    run_dir.mkdir()
    rd = RunDir(run_dir)
    tr = DurableTracker(run_dir, "exp", run_name="r1", tags={"zppo.method": "grpo"}, enabled=False)
    (run_dir / "config.yaml").write_text("scale: tiny\n")
    outside = run_dir.parent / "report.txt"
    outside.write_text("outside the run dir")
    tr.log_params({"optim.lr": 0.0001, "algo.n_new": 4})
    tr.log_artifact(run_dir / "config.yaml")
    tr.log_artifact(outside, "prepare")
    outside.unlink()  # the outbox kept a copy
    tr.log_metrics({"prepare/student_accuracy": 0.25}, step=0)
    for step in range(1, steps + 1):
        m = {"train/loss": 1.0 / step, "train/accuracy": step / 10}
        tr.log_metrics(m, step=step)
        rd.append_metrics(step, m)
    tr.log_text("hello", "samples/hello.txt")
    tr.set_tags({"zppo.stopped_early_at": "3"})
    assert tr.finish("FINISHED")
    return rd


def _history(uri, run_id):
    client = MlflowClient(tracking_uri=uri)
    keys = client.get_run(run_id).data.metrics
    return {k: sorted((m.step, m.value) for m in client.get_metric_history(run_id, k)) for k in keys}


def test_offline_run_synced_complete_then_idempotent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rd = _offline_run(tmp_path / "run")
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    res = sync_run(rd.path, uri)
    assert res["created"] and res["points"] == 6 and res["points_present"] == 0 and res["records_rejected"] == 0
    assert _history(uri, res["run_id"]) == {
        "prepare/student_accuracy": [(0, 0.25)],
        "train/loss": [(1, 1.0), (2, 0.5), (3, 1 / 3)],
        "train/accuracy": [(1, 0.1), (2, 0.2), (3, 0.3)],
    }
    run = MlflowClient(tracking_uri=uri).get_run(res["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "r1"
    assert run.data.params == {"optim.lr": "0.0001", "algo.n_new": "4"}
    assert run.data.tags["zppo.method"] == "grpo" and run.data.tags["zppo.stopped_early_at"] == "3"
    assert run.data.tags["zppo.synced_from"] == str(rd.path.resolve())
    client = MlflowClient(tracking_uri=uri)
    arts = {a.path for a in client.list_artifacts(res["run_id"])}
    assert {"config.yaml", "prepare", "samples"} <= arts
    assert {a.path for a in client.list_artifacts(res["run_id"], "prepare")} == {"prepare/report.txt"}

    again = sync_run(rd.path, uri)  # the same run continues; nothing is sent twice
    assert again["run_id"] == res["run_id"] and not again["created"]
    assert again["points"] == 0 and again["points_present"] == 6 and again["records"] == 0
    assert all(len(v) == len({s for s, _ in v}) for v in _history(uri, res["run_id"]).values())


def test_rejected_record_is_skipped_and_the_rest_delivered(tmp_path, monkeypatch):
    """MLflow refuses a tag name that climbs out of its directory (not transient): that record is dropped with a
    warning; the records after it still arrive and the run finishes."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    (tmp_path / "run").mkdir()
    warnings: list[str] = []
    tr = DurableTracker(tmp_path / "run", "exp", uri=uri, run_name="r", warn=warnings.append)
    tr.log_params({"a": "1"})
    tr.set_tags({"../escape": "x"})  # rejected by the store
    tr.log_metrics({"m": 1.0}, step=1)
    tr.set_tags({"after": "yes"})
    assert tr.finish("FINISHED", timeout_s=120)
    run = MlflowClient(tracking_uri=uri).get_run(tr.run_id)
    assert run.data.params == {"a": "1"} and run.data.tags["after"] == "yes" and "../escape" not in run.data.tags and run.info.status == "FINISHED"
    assert run.data.metrics == {"m": 1.0}
    assert len(warnings) == 1 and "rejected set_tags" in warnings[0], warnings
    assert tr.outages == []


def test_records_cut_short_by_a_crash_are_ignored(tmp_path, monkeypatch):
    """A node that crashed mid-write leaves a partial last line in the outbox and in metrics.jsonl: reading skips
    it, the next record starts on its own line, and sync sends the complete ones."""
    monkeypatch.chdir(tmp_path)
    rd = _offline_run(tmp_path / "run", steps=2)
    n = len(outbox(rd))
    with open(rd.outbox_path, "a") as fh:
        fh.write('{"seq": 99, "op": "call", "name": "set_t')
    with open(rd.metrics_path, "a") as fh:
        fh.write('{"step": 3, "train/lo')
    assert len(outbox(rd)) == n and [r["step"] for r in rd.metrics()] == [1, 2] and rd.last_step() == 2
    tr = DurableTracker(rd.path, "exp", resume=True, enabled=False)  # a resumed attempt records more
    tr.set_tags({"resumed": "1"})
    rd.append_metrics(3, {"train/loss": 0.3, "train/accuracy": 0.3})
    rd.truncate_metrics(3)
    assert [op["name"] for op in outbox(rd)[n:]] == ["set_tags"] and outbox(rd)[-1]["seq"] == n + 1
    assert [r["step"] for r in rd.metrics()] == [1, 2, 3]
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    res = sync_run(rd.path, uri)
    hist = _history(uri, res["run_id"])
    assert hist["train/loss"] == [(1, 1.0), (2, 0.5), (3, 0.3)]
    assert MlflowClient(tracking_uri=uri).get_run(res["run_id"]).data.tags["resumed"] == "1"


def test_check_reachable_is_quick_and_names_the_reason(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    why = check_reachable(f"http://127.0.0.1:{port}", timeout_s=5)
    assert why is not None and "refuses connections" in why
    assert time.monotonic() - t0 < 30  # one request, no retries (MLflow's defaults retry for minutes)
    assert check_reachable(f"sqlite:///{tmp_path / 'x.db'}") is None  # local stores are not contacted
    assert not (tmp_path / "x.db").exists()


def test_sync_refuses_what_is_not_a_run(tmp_path):
    from zppo_core.tracking.durable import SyncError

    (tmp_path / "empty").mkdir()
    with pytest.raises(SyncError, match="not a zppo run directory"):
        sync_run(tmp_path / "empty", f"sqlite:///{tmp_path / 's.db'}")
    assert not (tmp_path / "s.db").exists()  # the store was never touched
