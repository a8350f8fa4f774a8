"""The baselines end to end in the one loop, on real tiny models (prepared by the real SFT), real MLflow and real
checkpoints: every baseline trains, its own groups appear, distillation makes one optimizer step per rollout step
with a finite JSD, a forced prefix is graded with the continuation, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file

from zppo_core.config import load_config
from zppo_core.train.run import train

# τ = 1: every group with a wrong rollout is hard, so the tiny test models always have a hard set to treat; the
# session's test teacher is weak (a few % correct), so it gets 8 rollouts per question
SETS = ["run.steps=2", "run.final_eval_per_level=0", "zppo.tau=1.0", "zppo.capacity=6", "zppo.samples_to_log=2",
        "algo.n_new=8", "zppo.teacher_group_size=8"]
CAP = 2  # ρ_aug·n_new = 0.25·8


def _weights(run_dir):
    ptr = (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run_dir / "checkpoints" / ptr / "model" / "model.safetensors"))


def _optimizer_steps(run_dir) -> int:
    ptr = (run_dir / "checkpoints" / "latest").read_text().strip()
    opt = torch.load(run_dir / "checkpoints" / ptr / "optimizer.pt", weights_only=False)
    return int(max(float(s["step"]) for s in opt["state"].values()))


@pytest.mark.parametrize("name, extra_kind", [
    ("off_distill", None), ("on_distill_buffer", None), ("hint", "hint"), ("prefix", "prefix"),
    ("grpo_rollout_matched", "matched"), ("grpo_teacher_injected", None),
])
def test_baseline_trains_in_the_one_loop(prepared, test_overrides, tmp_path, name, extra_kind):
    cfg = load_config("tiny", method=name, overrides=test_overrides + SETS)
    before = load_file(str(prepared / "student" / "model.safetensors"))
    res = train(cfg, run_dir=tmp_path / "run")
    h = res.history
    assert len(h) == 2 and all(math.isfinite(v) for row in h for v in row.values())
    after = _weights(res.run_dir)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    if name.endswith("distill") or "distill_" in name:
        # a step whose teacher solved nothing has no Off-Distill sequence (the test teacher is weak): no update
        trained = [row for row in h if row["train/trained_sequences"] > 0]
        assert trained and all(row["train/jsd"] > 0 for row in trained)
        assert _optimizer_steps(res.run_dir) == len(trained)  # one update per rollout step with sequences
        assert all("train/ratio_mean" not in row for row in h)  # no PPO stats for a JSD loss
    else:
        assert _optimizer_steps(res.run_dir) == 2 * cfg.algo.updates_per_step
    if name == "off_distill":
        assert all(row["train/trained_sequences"] == row["distill/sequences"] for row in h)
        assert sum(row["distill/sequences"] for row in h) > 0
    if name == "on_distill_buffer":
        assert all(row["train/trained_sequences"] == row["train/rollouts"] for row in h)
        assert "zppo/buffer_size" in h[-1] and (res.run_dir / "reports" / "graduation" / "table.json").is_file()
    for row in h:
        kept = min(CAP, row["zppo/hard"]) if "zppo/hard" in row else 0
        solved = round(row.get("zppo/teacher_solved_frac", 0.0) * kept)  # kept questions the teacher solved
        if extra_kind == "matched":  # two plain groups per kept question, joint cap: no teacher involved
            assert row["zppo/matched_groups"] == min(CAP, 2 * kept)
        elif extra_kind is not None:  # one hint / prefix group per kept question the teacher solved
            assert row[f"zppo/{extra_kind}_groups"] == solved
        if extra_kind is not None:
            assert row["train/groups"] == row["train/rollouts"] / 4 == (
                cfg.algo.n_new + row.get("zppo/replayed", 0) + row[f"zppo/{extra_kind}_groups"])
        if name == "grpo_teacher_injected":  # one teacher response per solved kept question, trained on too
            assert row["zppo/injected"] == solved
            assert row["train/trained_sequences"] == row["train/rollouts"] + solved
    if name in ("hint", "prefix") and sum(row[f"zppo/{name}_groups"] for row in h):
        text = (res.run_dir / "reports" / "samples" / f"{name}.md").read_text()
        assert ("<hint>" in text) if name == "hint" else ("[response forced to start with]" in text)


def test_a_forced_prefix_is_graded_with_the_continuation(prepared, test_overrides):
    """A prefix holding the whole correct response, one sampled token after it: every rollout is correct, and only
    that token is the rollout's (trained) completion."""
    from zppo_core.rollout import make_engine
    from zppo_core.tasks import get_family
    from zppo_core.tasks.synthetic import make_eval_set
    from zppo_core.train.loop import Trainer
    from zppo_core.train.methods.registry import build_method
    from zppo_core.train.run import load_models, make_stream

    cfg = load_config("tiny", method="prefix", overrides=test_overrides + ["rollout.max_new_tokens=1"])
    student, _, _ = load_models(cfg, False, lambda s: None)
    engine = make_engine(cfg, student.model, student.tokenizer)
    tr = Trainer(cfg, __import__("pathlib").Path("/nonexistent"), student.model, student.tokenizer, engine,
                 make_stream(cfg), build_method(cfg))
    question = make_eval_set(["modsum"], 1, seed=3, levels=[2])[0]
    prefix = student.tokenizer(get_family("modsum").solution(question), add_special_tokens=False)["input_ids"]
    text = f"{question.prompt}{cfg.data.closer}"
    [g] = tr._rollout_groups(engine, [("prefix", question, text)], 4, prefixes=[prefix])
    assert g.meta["response_prefix"] == get_family("modsum").solution(question)
    for r in g.rollouts:
        assert r.prompt_ids == tr.render(text) + prefix and len(r.completion.token_ids) == 1
        assert r.reward == 1.0  # graded on prefix + continuation: the prefix's box is the last one


def test_baseline_resume_equals_uninterrupted(prepared, test_overrides, tmp_path):
    cfg = load_config("tiny", method="off_distill_buffer",
                      overrides=test_overrides + SETS + ["run.steps=3", "run.seed=5"])
    full = train(cfg, run_dir=tmp_path / "full")
    part = tmp_path / "part"
    train(cfg, run_dir=part, stop_after=2)
    (part / "checkpoints" / "latest").write_text("step_000002\n")
    resumed = train(None, run_dir=part, resume=True)
    wf, wr = _weights(full.run_dir), _weights(resumed.run_dir)
    assert all(torch.equal(wf[k], wr[k]) for k in wf)

    def stable(rows):
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]

    assert stable(resumed.history) == stable(full.history)
    a = json.loads((full.run_dir / "reports" / "graduation" / "table.json").read_text())
    assert a == json.loads((resumed.run_dir / "reports" / "graduation" / "table.json").read_text())
