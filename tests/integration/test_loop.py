"""The loop on real tiny models (prepared by the real SFT), real MLflow (sqlite store), real checkpoints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from zppo_core.config import load_config
from zppo_core.train.run import train


def _cfg(test_overrides, *extra):
    return load_config("tiny", overrides=test_overrides + list(extra))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ptr = (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run_dir / "checkpoints" / ptr / "model" / "model.safetensors"))


def test_two_steps_change_parameters_and_log_finite_metrics(prepared, test_overrides, tmp_path):
    cfg = _cfg(test_overrides, "run.steps=2")
    before = load_file(str(prepared / "student" / "model.safetensors"))
    res = train(cfg, run_dir=tmp_path / "run")
    after = _weights(res.run_dir)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before), f"unchanged tensors: {set(before) - set(changed)}"
    assert len(res.history) == 2
    for row in res.history:
        for k, v in row.items():
            assert math.isfinite(v), f"{k}={v}"
    for row in res.history:  # perf/*: the phases add up to the step; GRPO calls no teacher
        phases = ["plain_rollout", "teacher_rollout", "compression", "extra_rollout", "update", "other"]
        assert sum(row[f"perf/{p}_time_s"] for p in phases) == pytest.approx(row["perf/step_time_s"], rel=1e-6)
        assert row["perf/teacher_rollout_time_s"] == row["perf/compression_time_s"] == 0.0
        assert row["perf/plain_rollout_time_s"] > 0 and row["perf/peak_rss_mb"] > 100
        assert row["perf/update_tokens_per_s"] == pytest.approx(row["perf/train_tokens"] / row["perf/update_time_s"])
    assert "perf/eval_time_s" not in res.history[0] and res.history[1]["perf/eval_time_s"] > 0  # the final eval
    # at least one non-trivial group existed, so the policy-gradient part of the update was exercised
    assert any(r["train/trivial_group_frac"] < 1.0 for r in res.history)
    assert (res.run_dir / "config.yaml").is_file()
    lines = (res.run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [1, 2]
    # the final held-out eval runs before the last metrics line and the last checkpoint: both carry it
    last = json.loads(lines[-1])
    assert 0.0 <= last["eval/heldout/accuracy"] <= 100.0 and last == res.history[-1]
    ptr = (res.run_dir / "checkpoints" / "latest").read_text().strip()
    state = torch.load(res.run_dir / "checkpoints" / ptr / "state.pt", weights_only=True)
    assert state["history"][-1] == last


def test_hard_frac_counts_groups_below_tau(prepared, test_overrides, tmp_path):
    """train/hard_frac is the share of plain groups with mean accuracy < τ (zppo.tau); τ changes nothing else in
    GRPO, so two runs of one seed differ only there."""
    runs = {tau: train(_cfg(test_overrides, "run.steps=2", "run.final_eval_per_level=0", f"zppo.tau={tau}"),
                       run_dir=tmp_path / f"tau{tau}").history for tau in (0.25, 1.0)}

    def rest(rows):
        return [{k: v for k, v in r.items() if k != "train/hard_frac" and not k.startswith("perf/")} for r in rows]

    assert rest(runs[0.25]) == rest(runs[1.0])
    low, high = [r["train/hard_frac"] for r in runs[0.25]], [r["train/hard_frac"] for r in runs[1.0]]
    assert all(a <= b for a, b in zip(low, high)) and low != high


def test_mlflow_run_holds_config_metrics_and_tags(prepared, test_overrides, tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = _cfg(test_overrides, "run.steps=2", "run.seed=5")
    res = train(cfg, run_dir=tmp_path / "run")
    client = MlflowClient()
    run = client.get_run(res.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["optim.lr"] == "0.0001" and run.data.params["algo.n_new"] == "4"
    assert run.data.tags["zppo.method"] == "grpo" and run.data.tags["zppo.seed"] == "5"
    for name in ["train/accuracy", "train/reward_mean", "train/trivial_group_frac", "train/loss",
                 "train/clip_low_frac", "train/clip_high_frac", "train/entropy", "train/grad_norm",
                 "perf/rollout_tokens_per_s", "perf/step_time_s", "perf/plain_rollout_time_s",
                 "perf/update_tokens_per_s", "perf/peak_rss_mb"]:
        hist = client.get_metric_history(res.mlflow_run_id, name)
        assert [m.step for m in hist] == [1, 2], name
    arts = {a.path for a in client.list_artifacts(res.mlflow_run_id)}
    assert "config.yaml" in arts


def test_resume_equals_uninterrupted(prepared, test_overrides, tmp_path):
    """Interrupt after step 3 of 4 (checkpoint_every=2, so the last checkpoint is step 2... plus the stop one),
    resume, and compare final weights and per-step metrics with an uninterrupted run of the same seed."""
    cfg = _cfg(test_overrides, "run.steps=4", "run.seed=11", "run.checkpoint_every=2")
    full = train(cfg, run_dir=tmp_path / "full")

    part_dir = tmp_path / "part"
    train(cfg, run_dir=part_dir, stop_after=3)
    # simulate a crash after step 3 whose checkpoint never happened: point `latest` back at step 2
    (part_dir / "checkpoints" / "latest").write_text("step_000002\n")
    resumed = train(None, run_dir=part_dir, resume=True)

    w_full, w_res = _weights(full.run_dir), _weights(resumed.run_dir)
    assert set(w_full) == set(w_res)
    for k in w_full:
        assert torch.equal(w_full[k], w_res[k]), k

    def stable(rows):
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]

    assert stable(resumed.history) == stable(full.history)
    steps = [json.loads(x)["step"] for x in (part_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert resumed.mlflow_run_id == json.loads((part_dir / "run.json").read_text())["mlflow_run_id"]


def test_failed_setup_leaves_nothing_behind(prepared, test_overrides, tmp_path):
    from mlflow.tracking import MlflowClient

    from zppo_core.config import ConfigError

    cfg = _cfg(test_overrides, "data.families=[add, nope]")
    with pytest.raises(ConfigError, match="unknown task family 'nope'"):
        train(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()
    exp = MlflowClient().get_experiment_by_name("zppo")
    if exp is not None:
        runs = MlflowClient().search_runs([exp.experiment_id], filter_string="tags.`zppo.run_dir` LIKE '%/run'")
        assert all(not r.data.tags["zppo.run_dir"].startswith(str(tmp_path)) for r in runs)
