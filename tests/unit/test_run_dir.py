"""RunDir: the run directory's layout, metrics lines, the latest-checkpoint pointer, and resume_or_start against a
real MLflow store (a discarded partial run's MLflow run is deleted)."""

from __future__ import annotations

import pytest

from zppo_core.config import load_config
from zppo_core.run_dir import RunDir, write_atomic


def test_write_atomic_replaces_and_leaves_no_temp_file(tmp_path):
    p = tmp_path / "x.json"
    write_atomic(p, "one")
    write_atomic(p, "two")
    assert p.read_text() == "two" and [f.name for f in tmp_path.iterdir()] == ["x.json"]


def test_layout_and_config_round_trip(tmp_path):
    rd = RunDir(tmp_path / "run")
    assert rd.is_empty() and not rd.is_run() and rd.last_step() == 0 and rd.meta() == {}
    rd.path.mkdir()
    cfg = load_config("tiny", method="zppo", overrides=["run.steps=7"])
    rd.write_config(cfg)
    assert rd.is_run() and not rd.is_empty() and rd.read_config() == cfg
    rd.write_meta({"mlflow_run_id": "abc", "tracking_uri": "sqlite:///x.db"})
    assert (rd.mlflow_run_id, rd.tracking_uri) == ("abc", "sqlite:///x.db")
    assert rd.eval_dir(25, "tiny") == rd.path / "eval" / "step_000025-tiny"
    assert rd.checkpoint(3) == rd.path / "checkpoints" / "step_000003"


def test_metrics_lines_last_step_and_truncate(tmp_path):
    rd = RunDir(tmp_path)
    for step in (1, 2, 3):
        rd.append_metrics(step, {"train/accuracy": step / 10})
    assert rd.last_step() == 3 and [m["step"] for m in rd.metrics()] == [1, 2, 3]
    rd.truncate_metrics(2)
    assert rd.metrics() == [{"step": 1, "train/accuracy": 0.1}, {"step": 2, "train/accuracy": 0.2}]
    rd.metrics_path.write_text(rd.metrics_path.read_text() + '{"no step": 1}\n')
    assert rd.last_step() == 0  # an unreadable last line is "no progress known", never an exception


def test_latest_checkpoint_needs_the_pointer_and_a_complete_state(tmp_path):
    rd = RunDir(tmp_path)
    ck = rd.checkpoint(4)
    ck.mkdir(parents=True)
    rd.point_latest(ck)
    assert rd.latest_checkpoint() is None  # pointer without state.pt: an incomplete checkpoint
    (ck / "state.pt").write_bytes(b"x")
    assert rd.latest_checkpoint() == ck and RunDir.step_of(ck) == 4
    (rd.checkpoints / "step_000001").mkdir()
    assert [p.name for p in rd.checkpoint_dirs()] == ["step_000001", "step_000004"]


def test_resume_or_start(tmp_path):
    from mlflow.tracking import MlflowClient

    from zppo_core.tracking.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    logs: list[str] = []
    assert RunDir(tmp_path / "new").resume_or_start(logs.append) is False  # nothing there: start

    partial = RunDir(tmp_path / "partial")
    partial.path.mkdir()
    partial.write_config(load_config("tiny"))
    tracker = MlflowTracker("zppo-test", uri=uri)
    partial.write_meta({"mlflow_run_id": tracker.run_id, "tracking_uri": uri})
    partial.append_metrics(1, {"train/accuracy": 0.5})
    assert partial.resume_or_start(logs.append) is False
    assert not partial.exists() and any("discarding" in m for m in logs)
    assert MlflowClient(tracking_uri=uri).get_run(tracker.run_id).info.lifecycle_stage == "deleted"

    done = RunDir(tmp_path / "done")
    done.path.mkdir()
    done.write_config(load_config("tiny"))
    ck = done.checkpoint(2)
    ck.mkdir(parents=True)
    (ck / "state.pt").write_bytes(b"x")
    done.point_latest(ck)
    assert done.resume_or_start() is True and done.is_run()  # kept as it is

    stranger = RunDir(tmp_path / "stranger")
    stranger.path.mkdir()
    (stranger.path / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match="refusing to discard"):
        stranger.resume_or_start()
    assert (stranger.path / "notes.txt").read_text() == "mine"


def test_tracker_delete_removes_the_run(tmp_path):
    from mlflow.tracking import MlflowClient

    from zppo_core.tracking import NullTracker
    from zppo_core.tracking.mlflow_tracker import MlflowTracker

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    t = MlflowTracker("zppo-test", uri=uri)
    t.delete()
    assert MlflowClient(tracking_uri=uri).get_run(t.run_id).info.lifecycle_stage == "deleted"
    assert NullTracker().uri is None  # run.json records no store for an untracked run
