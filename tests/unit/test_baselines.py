"""The baselines' targets on hand-built micro examples (ZPPO.md §5): the Hint prompt text, the Prefix's forced
tokens and loss mask, the rollout-matched control's groups, the drift baseline's enlarged group and advantages,
Off-/On-Distill's training sequences, and the method table's contract (no loop branch needed for any of them).

As in test_zppo_method.py, the teacher here is a plain function returning fixed graded groups: these tests are
about what each method builds from given rollouts (tests/integration/test_baselines_loop.py runs real models)."""

from __future__ import annotations

import math
import random

import pytest
import torch

from zppo_core.algo.advantages import group_advantages
from zppo_core.algo.reformulate import (
    HINT_PROMPT,
    build_hint,
    clean_hint,
    hint_from_solution,
    load_template,
    prefix_length,
)
from zppo_core.config import ConfigError, load_config
from zppo_core.config.methods import SPECS, TABLE
from zppo_core.models.logprobs import pack
from zppo_core.train.methods.base import StepContext
from zppo_core.train.methods.registry import build_method
from zppo_core.types import Completion, Group, Question, Rollout

CLOSER = " <think></think>\\boxed{}"


def q(i: int, gold: str = "9") -> Question:
    return Question(id=f"q{i}", prompt=f"Add mod 10: 7+8+{i}.", answer=gold, family="modsum", level=2)


def group(gid: int, question: Question, n_correct: int, n: int = 8, kind: str = "plain", tokens: int = 3) -> Group:
    g = Group(id=gid, kind=kind, question=question, prompt_text=question.prompt)
    for j in range(n):
        ok = j < n_correct
        text = f"<think>7+8=5;5+4=9</think>\\boxed{{{question.answer if ok else 100 + j}}}"
        ids = list(range(10 + gid, 10 + gid + tokens))
        g.rollouts.append(Rollout(question.id, gid, kind, [1, 2], Completion(ids, [-0.5] * tokens, text, True),
                                  float(ok), question.answer if ok else str(100 + j)))
    return g


def method(name: str, n_new: int = 8, *sets: str):
    base = [f"algo.n_new={n_new}", "zppo.template=compact", "zppo.compression=none", "zppo.capacity=4",
            "rollout.group_size=8"]
    return build_method(load_config("tiny", method=name, overrides=base + list(sets)))


def ctx(teacher_correct: dict[str, int] | None = None, tokens: int = 12, student_lp=None) -> StepContext:
    teacher_correct = teacher_correct or {}
    calls: list[list[str]] = []

    def teacher_sample(questions, n):
        calls.append([x.id for x in questions])
        return [group(1000 + i, x, teacher_correct.get(x.id, 0), n=n, kind="teacher", tokens=tokens)
                for i, x in enumerate(questions)]

    c = StepContext(step=1, rng=random.Random(0), teacher_sample=teacher_sample, student_logprobs=student_lp)
    c.calls = calls  # type: ignore[attr-defined]
    return c


# ------------------------------------------------------------------------------------------ the table


def test_method_table_has_every_baseline_and_a_label():
    assert set(TABLE) >= {"grpo", "grpo_buffer", "grpo_both", "zppo", "off_distill", "off_distill_buffer",
                          "on_distill", "on_distill_buffer", "hint", "prefix", "grpo_rollout_matched",
                          "grpo_teacher_injected"}
    assert all(SPECS[m].label for m in TABLE)


@pytest.mark.parametrize("name", ["hint", "prefix", "grpo_rollout_matched", "grpo_teacher_injected"])
def test_hard_set_baselines_need_a_slot(name):
    with pytest.raises(ConfigError, match="hard-set slots"):
        load_config("tiny", method=name, overrides=["algo.n_new=1", "rollout.group_size=4", "algo.updates_per_step=1",
                                                   "zppo.rho_replay=1.0"])


def test_teacher_needs():
    assert not method("grpo_rollout_matched").needs_teacher  # the control has no teacher at all
    for name in ("hint", "prefix", "grpo_teacher_injected", "off_distill", "on_distill_buffer"):
        assert method(name).needs_teacher, name


# ------------------------------------------------------------------------------------------ hint


def test_hint_prompt_text_hand_checked():
    # the tiny hint is the first half of the teacher's reasoning "7+8=5;5+4=9" (11 chars -> 5): "7+8=5"
    assert hint_from_solution("<think>7+8=5;5+4=9</think>\\boxed{9}", 0.5) == "7+8=5"
    assert hint_from_solution("<think>7+8=5;5+4=9</think>\\boxed{9}", 1.0) == "7+8=5;5+4=9"  # never the box
    m = method("hint")
    plain = [group(0, q(4), 1), group(1, q(5), 6)]  # q4 hard (1/8), q5 not (6/8)
    c = ctx(teacher_correct={"q4": 2})
    extras = m.extra_prompts(plain, c)
    assert c.calls == [["q4"]]
    assert [(e.kind, e.question.id) for e in extras] == [("hint", "q4")]
    assert extras[0].text == "Add mod 10: 7+8+4. <hint>7+8=5</hint> <think></think>\\boxed{}"
    assert extras[0].text == build_hint(q(4).prompt, "7+8=5", CLOSER, load_template("compact", "full"))
    assert extras[0].prefix_ids == []


def test_clean_hint_hand_checked():
    assert clean_hint("Sure. <hint>Add the units first; \\boxed{9} is not needed.</hint> bye") == \
        "Add the units first;  is not needed."
    assert clean_hint("  carry the 1 \\boxed{5") == "carry the 1"  # no wrapper: whole text, unclosed box cut
    assert clean_hint("<hint>start with 7+8") == "start with 7+8"  # an unclosed wrapper (budget ran out)


def test_hint_written_by_the_teacher_from_its_correct_answer():
    m = method("hint", 8, "zppo.compression=teacher", "baselines.hint_max_tokens=20")
    asked: list[tuple[list[str], int]] = []

    def teacher_generate(texts, max_new_tokens):
        asked.append((texts, max_new_tokens))
        return ["<hint>Reduce 7+8 mod 10 first: \\boxed{9}</hint>"]

    c = ctx(teacher_correct={"q4": 1})
    c.teacher_generate = teacher_generate
    extras = m.extra_prompts([group(0, q(4), 0)], c)
    [(texts, budget)] = asked
    assert budget == 36  # hint_max_tokens + 16 for the wrapper
    assert texts[0] == HINT_PROMPT.format(max_tokens=20, question="Add mod 10: 7+8+4.",
                                          solution="<think>7+8=5;5+4=9</think>\\boxed{9}")
    assert "at most 20 tokens" in texts[0] and "Do not give the final answer" in texts[0]
    assert [e.meta["hint"] for e in extras] == ["Reduce 7+8 mod 10 first:"]  # the box is gone
    assert extras[0].text == "Add mod 10: 7+8+4. <hint>Reduce 7+8 mod 10 first:</hint> <think></think>\\boxed{}"


def test_hint_skips_questions_the_teacher_cannot_solve():
    m = method("hint")
    assert m.extra_prompts([group(0, q(4), 0)], ctx(teacher_correct={})) == []


# ------------------------------------------------------------------------------------------ prefix


def test_prefix_forces_first_40_percent_of_teacher_tokens():
    assert [prefix_length(n, 0.4) for n in (1, 2, 3, 10, 12)] == [0, 0, 1, 4, 4]
    m = method("prefix")
    extras = m.extra_prompts([group(0, q(4), 0)], ctx(teacher_correct={"q4": 1}, tokens=12))
    assert [(e.kind, e.question.id) for e in extras] == [("prefix", "q4")]
    e = extras[0]
    assert e.prefix_ids == [1010, 1011, 1012, 1013]  # teacher ids 1010..1021: floor(0.4 * 12) = 4 leading ones
    assert e.text == "Add mod 10: 7+8+4. <think></think>\\boxed{}"  # the plain prompt: the prefix is response-side


def test_prefix_is_masked_from_the_loss():
    # what the loop builds for a prefix rollout: prompt ids = rendered prompt + prefix, completion = continuation
    prompt, prefix, continuation = [5, 6, 7], [20, 21], [30, 31, 32]
    ids, attn, _, comp, mask, P = pack([prompt + prefix, [5]], [continuation, [40]], pad_id=0)
    assert P == 5 and comp[0].tolist() == [30, 31, 32]
    assert mask[0].tolist() == [True, True, True]  # the trained positions are exactly the continuation's
    assert mask[1].tolist() == [True, False, False]
    assert ids[0, :P].tolist() == [5, 6, 7, 20, 21]  # prefix tokens sit on the prompt side: never in the mask


# ------------------------------------------------------------------------------------------ rollout-matched


def test_rollout_matched_adds_two_plain_groups_per_kept_question_up_to_the_joint_cap():
    m = method("grpo_rollout_matched", 12)  # 3 slots
    plain = [group(0, q(0), 2), group(1, q(1), 0), group(2, q(2), 1), group(3, q(3), 5)]
    extras = m.extra_prompts(plain, ctx())
    # hardest first (q1: 0/8, q2: 1/8, q0: 2/8); ZPPO would build BCQ+NCQ for q1, BCQ for q2, then stop at 3
    assert [(e.kind, e.question.id) for e in extras] == [("matched", "q1"), ("matched", "q1"), ("matched", "q2")]
    assert all(e.text == f"{e.question.prompt}{CLOSER}" for e in extras)  # plain prompts: no teacher, no candidates
    assert method("grpo_rollout_matched").replay is not None  # GRPO†: the control keeps ZPPO's buffer


# ------------------------------------------------------------------------------------------ teacher-injected


def test_teacher_injected_enlarges_the_hard_group_with_student_logprobs():
    m = method("grpo_teacher_injected")  # 2 slots
    plain = [group(0, q(0), 1, n=4), group(1, q(1), 4, n=4)]  # q0 hard (1/4), q1 solved
    seen = []

    def student_lp(rollouts):
        seen.extend(rollouts)
        return [[-0.25] * len(r.completion.token_ids) for r in rollouts]

    c = ctx(teacher_correct={"q0": 1}, student_lp=student_lp)
    assert m.extra_prompts(plain, c) == []
    trained = m.train_groups(plain, c)
    assert [len(g.rollouts) for g in trained] == [5, 4] and len(plain[0].rollouts) == 4  # plain stays the student's
    inj = trained[0].rollouts[-1]
    assert inj.kind == "injected" and inj.group_id == plain[0].id and inj.reward == 1.0
    assert inj.completion.logprobs == [-0.25] * 12  # π_old = the student's own log-probs: ratio starts at 1
    assert len(seen) == 1 and seen[0].completion.token_ids == inj.completion.token_ids
    # advantages of the enlarged group by hand: rewards [1,0,0,0,1], A' = r - 0.4, σ = sqrt(0.24)
    rewards = torch.tensor([r.reward for g in trained for r in g.rollouts])
    gids = torch.tensor([r.group_id for g in trained for r in g.rollouts])
    adv = group_advantages(rewards, gids)
    s = math.sqrt(0.24)
    assert adv[:5].tolist() == pytest.approx([0.6 / s, -0.4 / s, -0.4 / s, -0.4 / s, 0.6 / s], abs=1e-5)
    assert adv[5:].tolist() == [0.0] * 4
    assert c.metrics["zppo/injected"] == 1.0


# ------------------------------------------------------------------------------------------ distillation


def test_off_distill_trains_on_the_teachers_correct_responses_only():
    m = method("off_distill")
    plain = [group(0, q(0), 1), group(1, q(1), 8)]
    c = ctx(teacher_correct={"q0": 3, "q1": 0})
    trained = m.train_groups(plain, c)
    assert c.calls == [["q0", "q1"]]  # every prompt of the step, hard or not
    assert [(g.kind, g.question.id, len(g.rollouts)) for g in trained] == [("teacher", "q0", 3)]
    assert all(r.reward == 1.0 for r in trained[0].rollouts)
    assert c.metrics["distill/sequences"] == 3.0 and c.metrics["zppo/teacher_accuracy"] == pytest.approx(37.5)
    assert m.objective.updates_per_step == 1 and m.objective.needs_teacher_logits


def test_on_distill_trains_on_the_students_own_rollouts():
    m = method("on_distill_buffer")
    plain = [group(0, q(0), 1), group(1, q(1), 8)]
    c = ctx()
    assert m.train_groups(plain, c) == plain and c.calls == []  # the teacher scores; it does not sample
    m.observe(plain, plain, c)
    assert m.replay.buffer.ids() == ["q0"]  # the buffer sees plain accuracies, as for GRPO†


def test_prefix_refuses_a_teacher_that_returns_no_token_ids():
    m = method("prefix")
    c = ctx(teacher_correct={"q4": 1}, tokens=0)  # a served non-vLLM teacher: text, no ids
    with pytest.raises(RuntimeError, match="forces the teacher's tokens"):
        m.extra_prompts([group(0, q(4), 0)], c)


def test_teacher_logits_are_the_full_forward_at_the_completion_positions():
    from zppo_core.config.schema import TinyModelSpec
    from zppo_core.models.logprobs import teacher_completion_logits
    from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model

    tok = build_char_tokenizer()
    teacher = build_tiny_model(TinyModelSpec(num_hidden_layers=1, hidden_size=32, head_dim=8), tok, 0)
    rs = [Rollout("a", 0, "plain", [7, 8, 9], Completion([20, 21], [0.0, 0.0], "", True), 0.0, None),
          Rollout("b", 0, "plain", [7], Completion([22, 23, 24], [0.0] * 3, "", True), 0.0, None)]
    logits = teacher_completion_logits(teacher, rs, tok.pad_token_id)  # [2, 3, V]
    assert logits.shape == (2, 3, len(tok)) and not logits.requires_grad
    with torch.no_grad():  # one unpadded forward per sequence: position P-1+t predicts completion token t
        full_a = teacher(input_ids=torch.tensor([[7, 8, 9, 20, 21]])).logits[0]  # [5, V]
        full_b = teacher(input_ids=torch.tensor([[7, 22, 23, 24]])).logits[0]  # [4, V]
    assert torch.allclose(logits[0, :2], full_a[2:4], atol=1e-5)
    assert torch.allclose(logits[1, :3], full_b[0:3], atol=1e-5)
    with pytest.raises(RuntimeError, match="in this process"):
        teacher_completion_logits(None, rs, tok.pad_token_id)
