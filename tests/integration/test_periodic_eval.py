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


def test_the_last_step_is_always_evaluated_with_n_se_and_samples(prepared, test_overrides, tmp_path):
    """run.steps=5 with eval.every=2: the suites run at 2, 4 and the final step 5, each score beside its n and
    standard error (item level), and the final eval's verdicts become a table; held-out accuracy in percent."""
    from mlflow.tracking import MlflowClient

    from zppo_core.tracking.stats import item_scores, stderr

    cfg = load_config("tiny", overrides=test_overrides + EVAL + ["run.steps=5", "run.final_eval_per_level=2"])
    res = train(cfg, run_dir=tmp_path / "run")
    client = MlflowClient()
    rid = res.mlflow_run_id
    assert [m.step for m in client.get_metric_history(rid, "eval/tiny-ood/avg")] == [2, 4, 5]
    last = res.history[-1]
    # modsum_long: 2 levels x 2 per level = 4 items (2 samples each); modsum: 5 levels x 2 = 10 items
    assert last["eval_n/tiny-ood/modsum_long"] == 4 and last["eval_n/tiny/modsum"] == 10
    assert last["eval_n/tiny-ood/avg"] == 4
    path = client.download_artifacts(rid, "eval/samples_step_000005.json", str(tmp_path / "dl"))
    table = json.loads(open(path).read())
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    ood = [r for r in rows if r["benchmark"] == "modsum_long"]
    assert len(ood) == 4 * 2 and {r["family"] for r in ood} == {"tiny-ood"}
    scores = item_scores(ood)  # the logged score and se are the table's per-question ones
    assert last["eval/tiny-ood/modsum_long"] == sum(scores) / len(scores)
    assert last["eval_se/tiny-ood/modsum_long"] == stderr(scores)
    tags = json.loads(client.get_run(rid).data.tags["mlflow.loggedArtifacts"])
    assert {"path": "eval/samples_step_000005.json", "type": "table"} in tags
    assert not [a for a in tags if a["path"].startswith("eval/samples_step_00000") and a["path"][-6] != "5"]
    assert 0.0 <= last["eval/heldout/accuracy"] <= 100.0 and last["eval_n/heldout/accuracy"] == 10
    assert 0.0 <= last["train/accuracy"] <= 100.0


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
