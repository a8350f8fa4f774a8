"""The training reward (`train/reward.py`): rule grader first, one batched call of the strict-JSON judge (the
`zppo eval` judge) for what it cannot decide; malformed judge replies are wrong. The judge engine here is a
scripted test double (a real judge model is exercised in tests/unit/test_eval_scoring.py)."""

from __future__ import annotations

import pytest

from zppo_core.tasks.filter import draw_fitting
from zppo_core.train.reward import Rewarder, judge_item, needs_judge
from zppo_core.types import Completion, Question


class ScriptedJudge:
    """Replies by the question id found in the judge prompt; records every call."""

    def __init__(self, replies):
        self.replies, self.calls = replies, []

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        out = []
        for p in prompts:
            qid = next(k for k in self.replies if f"QID-{k}" in p)
            out.append([Completion([0], [0.0], self.replies[qid], True)])
        return out


def q(i, gold, free=False):
    meta = {"answer_type": "free_form"} if free else {}
    return Question(id=str(i), prompt=f"QID-{i} What is it?", answer=gold, meta=meta)


def test_judge_decides_only_what_the_rule_grader_cannot():
    judge = ScriptedJudge({
        "1": '{"correct": true}',  # no box: the judge says correct
        "2": 'I think {"correct": true}',  # no box, malformed (not strict JSON): wrong
        "3": '{"correct": false}',
        "4": '```json\n{"correct": true}\n```',  # free-form mismatch: the judge accepts a paraphrase
        "5": "never asked",
    })
    rw = Rewarder(judge, render=lambda text: text, max_new_tokens=64)
    pairs = [
        (q(1, "42"), "the answer is forty-two"),
        (q(2, "42"), "forty-two"),
        (q(3, "42"), "<think>\\boxed{4"),  # unclosed box: undecided
        (q(4, "Main St.", free=True), "\\boxed{Main Street}"),
        (q(5, "7"), "\\boxed{7}"),  # math, boxed: the rule grader decides (correct)
        (q(5, "7"), "\\boxed{8}"),  # math, boxed, wrong: the rule grader decides (wrong)
        (q(5, "x", free=True), "\\boxed{x}"),  # free-form but the rule grader already accepts it
    ]
    got = rw.grade(pairs)
    assert [(g.reward, g.judged) for g in got] == [(1.0, True), (0.0, True), (0.0, True), (1.0, True),
                                                   (1.0, False), (0.0, False), (1.0, False)]
    assert got[3].extracted == "Main Street" and got[0].extracted is None
    assert len(judge.calls) == 1  # one batched call
    prompts, params = judge.calls[0]
    assert len(prompts) == 4 and params.temperature == 0.0 and params.max_new_tokens == 256  # the judge spec's
    assert '{"correct": true}' in prompts[0] and "Reference answer: 42" in prompts[0]
    assert rw.metrics([type("R", (), {"judged": g.judged})() for g in got]) == {"train/judged_frac": 4 / 7}


def test_without_a_judge_the_rule_grader_stands():
    rw = Rewarder(None)
    got = rw.grade([(q(1, "42"), "no box"), (q(2, "7"), "\\boxed{7}")])
    assert [(g.reward, g.judged) for g in got] == [(0.0, False), (1.0, False)]
    assert rw.metrics([]) == {}
    with pytest.raises(ValueError, match="render"):
        Rewarder(ScriptedJudge({}))


def test_needs_judge_and_judge_item():
    assert needs_judge(q(1, "1"), 0.0, None) and not needs_judge(q(1, "1"), 0.0, "2")
    assert needs_judge(q(1, "a", free=True), 0.0, "b") and not needs_judge(q(1, "a", free=True), 1.0, "a")
    item = judge_item(Question(id="z", prompt="Let's think step by step. Read the sign.", answer="STOP",
                               meta={"judge_answer": "STOP (the red sign)"}))
    assert item.meta["question"] == "Read the sign." and item.meta["judge_answer"] == "STOP (the red sign)"


class ListStream:
    def __init__(self, qs):
        self.qs, self.pos = qs, 0

    def next(self, n):
        out = [self.qs[(self.pos + i) % len(self.qs)] for i in range(n)]
        self.pos += n
        return out


def test_draw_fitting_skips_and_counts_and_refuses_a_filter_that_keeps_nothing():
    qs = [Question(id=str(i), prompt="x" * i, answer="0") for i in range(10)]
    stream = ListStream(qs)
    kept, skipped = draw_fitting(stream, 4, lambda x: len(x.prompt) % 2 == 0)
    assert [x.id for x in kept] == ["0", "2", "4", "6"] and skipped == 3 and stream.pos == 7
    with pytest.raises(RuntimeError, match="max_prompt_tokens"):
        draw_fitting(ListStream(qs), 2, lambda x: False, max_skipped=50)


def test_make_judge_builds_none_the_teacher_or_a_model_directory(tmp_path):
    import torch

    from zppo_core.config import load_config
    from zppo_core.config.schema import TinyModelSpec
    from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model, save_model
    from zppo_core.train.run import make_judge

    tok = build_char_tokenizer()
    save_model(build_tiny_model(TinyModelSpec(num_hidden_layers=1, hidden_size=32, head_dim=8), tok, 0), tok,
               tmp_path / "judge")
    kw = "model.chat_template_kwargs.judge={enable_thinking: false}"
    assert make_judge(load_config("tiny"), "TEACHER", tok) == (None, None)
    engine, render = make_judge(load_config("tiny", overrides=["reward.judge=teacher", kw]), "TEACHER", tok)
    assert engine == "TEACHER" and render.template_kwargs == {"enable_thinking": False}
    cfg = load_config("tiny", overrides=[f"reward.judge={tmp_path / 'judge'}", "model.dtype=bfloat16", kw])
    engine, render = make_judge(cfg, None, None)
    assert {p.dtype for p in engine.model.parameters()} == {torch.bfloat16}  # frozen: the compute dtype
    assert not any(p.requires_grad for p in engine.model.parameters())
    assert render.tokenizer is not None and render.template_kwargs == {"enable_thinking": False}
    assert tok.decode(render("hi")) == "<|user|>hi<|assistant|>"
