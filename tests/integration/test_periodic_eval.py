"""Periodic evaluation inside the loop (eval.every) and early stop through on_step, on real tiny models."""

from __future__ import annotations

import json

from zppo_core.config import load_config
from zppo_core.train.run import train

EVAL = ["eval.every=2", "eval.suites=[tiny, tiny-ood]", "eval.per_level=2", "eval.samples=2",
        "eval.max_new_tokens=40"]


def test_periodic_eval_logs_suite_metrics_at_its_steps(prepared, test_overrides, tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = load_config("tiny", overrides=test_overrides + EVAL + ["run.steps=4", "run.final_eval_per_level=0"])
    res = train(cfg, run_dir=tmp_path / "run")
    h = res.history
    assert "eval/tiny/modsum" not in h[0] and "eval/tiny/modsum" in h[1] and "eval/tiny/modsum" in h[3]
    for row in (h[1], h[3]):
        assert 0.0 <= row["eval/tiny/modsum"] <= 100.0
        assert row["eval/tiny/avg"] == row["eval/tiny/modsum"]  # one training family -> its average
        assert 0.0 <= row["eval/tiny-ood/modsum_long"] <= 100.0
    client = MlflowClient()
    for name in ("eval/tiny/modsum", "eval/tiny/avg", "eval/tiny-ood/modsum_long", "eval/tiny-ood/avg"):
        assert [m.step for m in client.get_metric_history(res.mlflow_run_id, name)] == [2, 4], name
    lines = [json.loads(x) for x in (res.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [ln["step"] for ln in lines if "eval/tiny/modsum" in ln] == [2, 4]


def test_on_step_true_stops_early_with_a_checkpoint(prepared, test_overrides, tmp_path):
    from mlflow.tracking import MlflowClient

    cfg = load_config("tiny", overrides=test_overrides + ["run.steps=6", "run.checkpoint_every=4"])
    seen = []

    def on_step(step, metrics):
        seen.append(step)
        return step == 3  # e.g. a pruner's verdict

    res = train(cfg, run_dir=tmp_path / "run", on_step=on_step)
    assert seen == [1, 2, 3] and res.stopped_early and len(res.history) == 3
    assert (res.run_dir / "checkpoints" / "latest").read_text().strip() == "step_000003"
    run = MlflowClient().get_run(res.mlflow_run_id)
    assert run.info.status == "FINISHED" and run.data.tags["zppo.stopped_early_at"] == "3"
