"""ZPPO's step logic on hand-built groups: hard set, pre-cap order and ties, joint post-cap with BCQ first,
candidate choice, replay selection, and buffer refresh from plain accuracies only (ZPPO.md §1, §4).

The teacher here is a plain function returning fixed graded groups: these tests are about the method's
bookkeeping, not about sampling (the integration tests run the real tiny teacher)."""

from __future__ import annotations

import random

import pytest

from zppo_core.config import load_config
from zppo_core.train.methods.base import PPOObjective, StepContext
from zppo_core.train.methods.registry import build_method
from zppo_core.types import Completion, Group, Question, Rollout

CLOSER = " <think></think>\\boxed{}"


def q(i: int, gold: str = "7") -> Question:
    return Question(id=f"q{i}", prompt=f"Question {i}?", answer=gold, family="t", level=1)


def group(gid: int, question: Question, n_correct: int, n: int = 8, kind: str = "plain") -> Group:
    g = Group(id=gid, kind=kind, question=question, prompt_text=question.prompt)
    for j in range(n):
        ok = j < n_correct
        text = f"<think>s{gid}.{j}</think>\\boxed{{{question.answer if ok else 100 + j}}}"
        g.rollouts.append(Rollout(question.id, gid, kind, [1], Completion([1], [0.0], text, True), float(ok),
                                  question.answer if ok else str(100 + j)))
    return g


def method(name: str, n_new: int = 8, **zppo):
    sets = [f"algo.n_new={n_new}", "zppo.template=compact", "zppo.compression=none", "zppo.capacity=4"]
    sets += [f"zppo.{k}={v}" for k, v in zppo.items()]
    return build_method(load_config("tiny", method=name, overrides=sets))


def ctx(step: int = 1, teacher_correct: dict[str, int] | None = None, seed: int = 0) -> StepContext:
    teacher_correct = teacher_correct or {}
    calls: list[list[str]] = []

    def teacher_sample(questions, n):
        calls.append([x.id for x in questions])
        return [group(1000 + i, x, teacher_correct.get(x.id, 0), n=n, kind="teacher") for i, x in enumerate(questions)]

    c = StepContext(step=step, rng=random.Random(seed), teacher_sample=teacher_sample)
    c.calls = calls  # type: ignore[attr-defined]
    return c


def kinds(extras):
    return [(e.kind, e.question.id) for e in extras]


def test_precap_keeps_hardest_and_postcap_is_joint_with_bcq_first():
    m = method("zppo")  # n_new=8, rho_aug=0.25 -> 2 slots
    plain = [group(0, q(0), 3), group(1, q(1), 0), group(2, q(2), 1), group(3, q(3), 4), group(4, q(4), 2)]
    c = ctx(teacher_correct={"q1": 2, "q2": 1})
    extras = m.extra_prompts(plain, c)
    assert c.calls == [["q1", "q2"]]  # teacher only on the pre-capped hardest two (r̄ 0 and 1/8)
    assert kinds(extras) == [("bcq", "q1"), ("ncq", "q1")]


def test_one_slot_left_goes_to_bcq():
    m = method("zppo", n_new=12)  # 3 slots
    plain = [group(0, q(0), 0), group(1, q(1), 1), group(2, q(2), 2)]
    extras = m.extra_prompts(plain, ctx(teacher_correct={"q0": 1, "q1": 3}))
    assert kinds(extras) == [("bcq", "q0"), ("ncq", "q0"), ("bcq", "q1")]


def test_no_correct_teacher_rollout_means_ncq_only():
    m = method("zppo", n_new=12)
    plain = [group(0, q(0), 0), group(1, q(1), 1), group(2, q(2), 3)]
    extras = m.extra_prompts(plain, ctx(teacher_correct={"q1": 2}))
    assert kinds(extras) == [("ncq", "q0"), ("bcq", "q1"), ("ncq", "q1")]


def test_not_hard_means_no_instances():
    m = method("zppo")
    plain = [group(0, q(0), 4), group(1, q(1), 8)]  # 4/8 = τ is not hard
    assert m.extra_prompts(plain, ctx()) == []


def test_bcq_holds_one_correct_teacher_and_one_wrong_student_candidate():
    m = method("grpo_buffer_bcq")
    plain = [group(0, q(0, gold="7"), 1)]
    extras = m.extra_prompts(plain, ctx(teacher_correct={"q0": 2}))
    assert kinds(extras) == [("bcq", "q0")]
    text, meta = extras[0].text, extras[0].meta
    assert text.count("<candidate>") == 2 and text.endswith(CLOSER)
    assert sorted(meta["order"]) == ["student", "teacher"]
    answers = dict(zip(meta["order"], meta["candidate_answers"]))
    assert answers["teacher"] == "7" and answers["student"] != "7"
    assert "s1000." in text  # a teacher rollout's text is in the prompt


def test_ncq_lists_every_wrong_rollout_and_deduplicated_answers():
    m = method("grpo_buffer_ncq")
    g = group(0, q(0), 2)
    for r in g.rollouts[2:5]:  # three wrong rollouts share one answer
        r.completion.text = r.completion.text.split("\\boxed")[0] + "\\boxed{9}"
    extras = m.extra_prompts([g], ctx())
    assert kinds(extras) == [("ncq", "q0")]
    text, meta = extras[0].text, extras[0].meta
    assert text.count("<candidate>") == 6  # all 6 wrong rollouts
    assert meta["wrong_answers"] == ["9", "105", "106", "107"]
    assert "s1000" not in text  # no teacher text in NCQ


def test_ties_prefer_older_buffer_entries_then_new_questions():
    m = method("grpo_buffer_ncq", n_new=4)  # 1 slot
    buf = m.buffer
    buf.refresh(1, {"q5": (q(5), 0.0), "q6": (q(6), 0.0)})  # q5 admitted before q6
    plain = [group(0, q(0), 0), group(6, q(6), 0), group(5, q(5), 0)]
    assert kinds(m.extra_prompts(plain, ctx(step=2))) == [("ncq", "q5")]
    m2 = method("grpo_buffer_ncq", n_new=4)
    m2.buffer.refresh(1, {"q6": (q(6), 0.0)})
    plain = [group(0, q(0), 0), group(6, q(6), 0)]
    assert kinds(m2.extra_prompts(plain, ctx(step=2))) == [("ncq", "q6")]  # buffered beats new


def test_equal_new_questions_are_ordered_by_the_seeded_rng():
    plain = [group(i, q(i), 0) for i in range(6)]
    picks = set()
    for seed in range(12):
        m = method("grpo_both", n_new=4)  # 1 slot
        first = kinds(m.extra_prompts(plain, ctx(seed=seed)))
        again = kinds(method("grpo_both", n_new=4).extra_prompts(plain, ctx(seed=seed)))
        assert first == again
        picks.add(first[0][1])
    assert len(picks) > 1


def test_replay_selection_and_buffer_refresh_from_plain_only():
    m = method("zppo", n_new=8)  # 2 replay slots, capacity 4
    new = [q(i) for i in range(8)]
    c = ctx(step=1)
    assert m.select_prompts(new, c) == new  # empty buffer: nothing to replay
    plain = [group(i, q(i), [0, 1, 2, 3, 4, 8, 8, 8][i]) for i in range(8)]
    bcq_all_correct = group(50, q(0), 8, kind="bcq")
    bcq_all_correct.meta = {"order": ["teacher", "student"], "candidate_answers": ["7", "100"]}
    m.observe(plain, plain + [bcq_all_correct], c)
    metrics = c.metrics
    assert m.buffer.ids() == ["q0", "q1", "q2", "q3"]  # plain r̄ < 0.5 admitted; BCQ success counts for nothing
    assert metrics["zppo/admitted"] == 4 and metrics["zppo/buffer_size"] == 4
    assert metrics["zppo/bcq_accuracy"] == 100.0 and metrics["zppo/bcq_match_positive"] == 1.0
    c2 = ctx(step=2, seed=3)
    prompts = m.select_prompts([q(i) for i in range(10, 18)], c2)
    replayed = [x.id for x in prompts[8:]]
    assert len(replayed) == 2 and len(set(replayed)) == 2 and set(replayed) <= {"q0", "q1", "q2", "q3"}
    assert sorted(c2.replayed) == sorted(replayed)  # the step's plan carries what select_prompts drew
    m.observe([group(0, q(int(replayed[0][1:])), 6)], [], c2)
    metrics = c2.metrics
    assert metrics["zppo/graduated"] == 1 and replayed[0] not in m.buffer


def test_grpo_buffer_has_no_extras_and_no_teacher():
    m = method("grpo_buffer")
    assert not m.needs_teacher and m.extra_prompts([group(0, q(0), 0)], ctx()) == []


@pytest.mark.parametrize("sets, fragment", [
    (["zppo.tau=0"], "zppo.tau"),
    (["zppo.tau=1.5"], "zppo.tau"),
    (["zppo.capacity=-1"], "zppo.capacity"),
    (["algo.n_new=2", "zppo.rho_replay=0.1"], "0 replayed questions"),
    (["algo.n_new=4", "zppo.rho_aug=0.1"], "0 BCQ/NCQ slots"),
    (["zppo.template=/nonexistent/t.yaml"], "t.yaml"),
])
def test_bad_zppo_config_is_rejected_before_compute(sets, fragment):
    from zppo_core.config import ConfigError

    with pytest.raises(ConfigError) as err:
        load_config("tiny", method="zppo", overrides=sets)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_objective_is_the_ppo_recipe():
    m = method("zppo")
    assert isinstance(m.objective, PPOObjective)
    assert (m.objective.eps_low, m.objective.eps_high, m.objective.dual_clip) == (0.2, 0.28, 10.0)


def _teacher_generate_from(table):
    """A teacher 'compressor' answering from a fixed map: candidate text -> compressed text."""
    calls = []

    def gen(prompts, max_new_tokens, images=None):
        assert images is None or len(images) == len(prompts)
        calls.append(len(prompts))
        out = []
        for p in prompts:
            src = p.split("Solution:\n", 1)[1]
            out.append(table.get(src, f"<summary>{src}</summary>"))
        return out

    return gen, calls


def test_teacher_compression_keeps_the_answer_or_falls_back():
    m = method("grpo_buffer_bcq", n_new=4, compression="teacher")  # 1 slot
    plain = [group(0, q(0, gold="7"), 0)]
    c = ctx(teacher_correct={"q0": 2})
    t0, t1 = "<think>s1000.0</think>\\boxed{7}", "<think>s1000.1</think>\\boxed{7}"
    # the first correct teacher rollout loses its answer when compressed, the second keeps it
    gen, calls = _teacher_generate_from({t0: "<summary>lost it \\boxed{8}</summary>",
                                         t1: "<summary>kept \\boxed{7}</summary>"})
    c.teacher_generate = gen
    extras = m.extra_prompts(plain, c)
    assert kinds(extras) == [("bcq", "q0")] and calls == [3]  # 2 teacher + 1 student candidate, one batch
    assert "kept \\boxed{7}" in extras[0].text and "lost it" not in extras[0].text
    # every compression of a correct teacher answer loses it: no BCQ for this question
    m2 = method("grpo_buffer_bcq", n_new=4, compression="teacher")
    c2 = ctx(teacher_correct={"q0": 2})
    c2.teacher_generate, _ = _teacher_generate_from({t0: "<summary>\\boxed{1}</summary>",
                                                     t1: "<summary>\\boxed{2}</summary>"})
    assert m2.extra_prompts(plain, c2) == []


def test_compression_that_changes_a_wrong_answer_uses_the_raw_candidate():
    m = method("grpo_buffer_ncq", n_new=4, compression="teacher", candidate_max_chars=200)
    g = group(0, q(0, gold="7"), 2)  # six wrong rollouts: answers 102..107
    wrong = [r.completion.text for r in g.rollouts if r.reward == 0]
    c = ctx()
    c.teacher_generate, _ = _teacher_generate_from({wrong[0]: "<summary>\\boxed{7}</summary>"})  # would leak gold
    extras = m.extra_prompts([g], c)
    assert kinds(extras) == [("ncq", "q0")]
    assert wrong[0] in extras[0].text and "\\boxed{7}" not in extras[0].text.split("<candidate>", 1)[1]


@pytest.mark.parametrize("reply, want", [
    ("noise <summary> short\n\\boxed{7} </summary> tail", "short\n\\boxed{7}"),
    ("<summary>draft \\boxed{1}</summary> then <summary>final \\boxed{7}</summary>", "final \\boxed{7}"),
    ("<think>plan: <summary>inside thinking \\boxed{9}</summary></think><summary>after \\boxed{7}</summary>",
     "after \\boxed{7}"),
    ("<think>only thinking <summary>\\boxed{9}</summary></think>", None),
    # the chat template opened <think> in the prompt: the reply starts inside thinking
    ("draft <summary>\\boxed{9}</summary></think>\n\n<summary>done \\boxed{7}</summary>", "done \\boxed{7}"),
    ("<summary>ok \\boxed{7}</summary><think>cut at the token limit <summary>\\boxed{9}", "ok \\boxed{7}"),
    ("<summary>unclosed at the end \\boxed{7}", "unclosed at the end \\boxed{7}"),
    ("<summary>kept \\boxed{7}</summary><summary>  </summary>", "kept \\boxed{7}"),  # the last non-empty
    ("no wrapper \\boxed{7}", None),
    ("", None),
])
def test_parse_summary_takes_the_last_summary_outside_thinking(reply, want):
    from zppo_core.train.methods.zppo import parse_summary

    assert parse_summary(reply) == want


def test_compression_fallbacks_are_counted_and_use_the_raw_candidate():
    """Teacher replies without a usable summary (thinking only, no tags) fall back to the raw candidate truncated,
    and so does a summary that changes the wrong candidate's answer: 3 of the 4 compressed candidates here."""
    m = method("grpo_buffer_bcq", n_new=4, compression="teacher", candidate_max_chars=200)  # 1 slot
    g = group(0, q(0, gold="7"), 2, n=6)  # four wrong rollouts: answers 102..105
    wrong = [r.completion.text for r in g.rollouts if r.reward == 0]
    c = ctx(teacher_correct={"q0": 3})
    teacher = [f"<think>s1000.{j}</think>\\boxed{{7}}" for j in range(3)]
    table = {w: "<summary>\\boxed{7}</summary>" for w in wrong}  # would leak the gold: fallback to the raw text
    table[teacher[0]] = "<think>I would write <summary>\\boxed{7}</summary></think>"  # thinking only: fallback
    table[teacher[1]] = "The answer is 7."  # no summary: fallback
    c.teacher_generate, calls = _teacher_generate_from(table)  # teacher[2] gets a proper <summary>
    extras = m.extra_prompts([g], c)
    assert calls == [4] and kinds(extras) == [("bcq", "q0")]  # 3 teacher + the BCQ's wrong candidate
    assert c.metrics["zppo/compression_fallback_frac"] == pytest.approx(3 / 4)
    candidates = extras[0].text.split("<candidate>")[1:]
    assert len(candidates) == 2 and all("<summary>" not in x for x in candidates)
    student = next(x for x in candidates if "\\boxed{7}" not in x)  # the raw wrong rollout, not the leak
    assert any(w in student for w in wrong)


def test_match_rates_are_conditioned_on_correct_and_wrong_rollouts():
    """Hand-computed: BCQ candidates teacher=7 (correct), student=100 (wrong); 8 rollouts: 3 correct (answer 7),
    5 wrong of which 2 repeat the wrong candidate's 100. NCQ lists 100 and 101; 4 rollouts: 1 correct, 3 wrong of
    which 2 repeat a listed answer."""
    m = method("zppo")
    question = q(0, gold="7")
    bcq = Group(id=10, kind="bcq", question=question, prompt_text="p",
                meta={"order": ["student", "teacher"], "candidate_answers": ["100", "7"]})
    answers = ["7", "7", "7", "100", "100", "5", None, "6"]
    for j, a in enumerate(answers):
        text = f"\\boxed{{{a}}}" if a is not None else "no box"
        bcq.rollouts.append(Rollout("q0", 10, "bcq", [1], Completion([1], [0.0], text, True), float(a == "7"), a))
    ncq = Group(id=11, kind="ncq", question=question, prompt_text="p", meta={"wrong_answers": ["100", "101", None]})
    for j, a in enumerate(["7", "101", "100", "3"]):
        ncq.rollouts.append(Rollout("q0", 11, "ncq", [1], Completion([1], [0.0], f"\\boxed{{{a}}}", True),
                                    float(a == "7"), a))
    c = ctx()
    m.observe([], [bcq, ncq], c)
    got = c.metrics
    assert got["zppo/bcq_match_positive"] == 3 / 3  # correct rollouts matching the correct candidate
    assert got["zppo/bcq_match_negative"] == 2 / 5  # wrong rollouts matching the wrong candidate
    assert got["zppo/ncq_match_negative"] == 2 / 3  # wrong NCQ rollouts repeating a listed answer
    assert got["zppo/bcq_match_positive_all"] == 3 / 8 and got["zppo/bcq_match_negative_all"] == 2 / 8
    assert got["zppo/ncq_match_negative_all"] == 2 / 4
    # no wrong rollouts: the conditioned rate is absent (not 0), the unconditioned one is there
    all_right = Group(id=12, kind="ncq", question=question, prompt_text="p", meta={"wrong_answers": ["100"]})
    all_right.rollouts.append(Rollout("q0", 12, "ncq", [1], Completion([1], [0.0], "\\boxed{7}", True), 1.0, "7"))
    c2 = ctx(step=2)
    m.observe([], [all_right], c2)
    assert "zppo/ncq_match_negative" not in c2.metrics and c2.metrics["zppo/ncq_match_negative_all"] == 0.0
