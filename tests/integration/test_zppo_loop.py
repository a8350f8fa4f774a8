"""ZPPO end to end on real tiny models: teacher rollouts, BCQ/NCQ groups, buffer, reports in MLflow, resume."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from zppo_core.config import load_config
from zppo_core.train.run import train

ZPPO_SETS = ["algo.n_new=8", "zppo.capacity=6", "run.steps=4", "zppo.samples_to_log=2"]


def _weights(run_dir):
    ptr = (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run_dir / "checkpoints" / ptr / "model" / "model.safetensors"))


def test_zppo_runs_with_teacher_buffer_and_reformulations(prepared, test_overrides, tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = load_config("tiny", method="zppo", overrides=test_overrides + ZPPO_SETS)
    res = train(cfg, run_dir=tmp_path / "run")
    h = res.history
    for row in h:
        n_inst = row["zppo/bcq_instances"] + row["zppo/ncq_instances"]
        assert n_inst <= 2  # joint cap ρ_aug·n_new = 0.25·8
        if row["zppo/hard"] > 0:  # every step with hard questions builds reformulated instances
            assert n_inst >= 1
        assert row["train/groups"] == row["train/rollouts"] / 4  # group size 4
        assert 0 <= row["zppo/buffer_size"] <= 6
        if n_inst:  # the teacher's BCQ rollouts and the extra rollouts are timed apart (tiny: no compression)
            assert row["perf/teacher_rollout_time_s"] > 0 and row["perf/extra_rollout_time_s"] > 0
        assert row["perf/compression_time_s"] == 0.0
        assert row["perf/rollout_time_s"] >= sum(row[f"perf/{p}_time_s"] for p in
                                                  ("plain_rollout", "teacher_rollout", "compression", "extra_rollout"))
    assert sum(r["zppo/ncq_instances"] for r in h) >= 1
    assert any(r["zppo/replayed"] > 0 for r in h[1:])  # the buffer feeds later steps
    client = MlflowClient()
    arts = {a.path for a in client.list_artifacts(res.mlflow_run_id, "graduation")}
    assert {"graduation/table.json", "graduation/buffer_size.png", "graduation/fates_by_bin.png",
            "graduation/curves_by_bin.png"} <= arts
    assert {a.path for a in client.list_artifacts(res.mlflow_run_id, "samples")} == {"samples/bcq_ncq.md"}
    table = json.loads((res.run_dir / "reports" / "graduation" / "table.json").read_text())
    assert table and {"question_id", "entry_step", "entry_bin", "accuracy_history", "fate"} <= set(table[0])
    fates = res.method_summary["fates_by_entry_bin"]
    assert sum(sum(c.values()) for c in fates.values()) == len(table)
    samples = (res.run_dir / "reports" / "samples" / "bcq_ncq.md").read_text()
    assert "<candidate>" in samples


def test_zppo_resume_equals_uninterrupted(prepared, test_overrides, tmp_path):
    cfg = load_config("tiny", method="zppo", overrides=test_overrides + ZPPO_SETS + ["run.seed=3"])
    full = train(cfg, run_dir=tmp_path / "full")
    part = tmp_path / "part"
    train(cfg, run_dir=part, stop_after=3)
    (part / "checkpoints" / "latest").write_text("step_000002\n")  # crash after step 3, before its checkpoint
    resumed = train(None, run_dir=part, resume=True)
    wf, wr = _weights(full.run_dir), _weights(resumed.run_dir)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)

    def stable(rows):
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]

    assert stable(resumed.history) == stable(full.history)
    a = json.loads((full.run_dir / "reports" / "graduation" / "table.json").read_text())
    b = json.loads((resumed.run_dir / "reports" / "graduation" / "table.json").read_text())
    assert a == b
