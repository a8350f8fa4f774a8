"""Synthetic task families, the training stream and the held-out evaluation set."""

from __future__ import annotations

import dataclasses
import json
import random
import re
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zppo_core.tasks import (
    FAMILIES,
    IN_DIST,
    OOD,
    Family,
    QuestionStream,
    get_family,
    grade,
    in_eval_split,
    list_families,
    make_eval_set,
    parse_response,
)
from zppo_core.tasks.synthetic import ModSumFamily, make_beliefs
from zppo_core.types import Question

ALL = (*IN_DIST, *OOD)
PAIRS = [(name, level) for name in ALL for level in FAMILIES[name].levels]

# Worst-case lengths (characters) per family and level: (prompt, full response). The response wrapper
# "<think></think>\boxed{}" alone is 23 characters.
BUDGET = {
    "modsum": {1: (16, 29), 2: (18, 35), 3: (20, 41), 4: (22, 47), 5: (24, 53)},  # constant per level
    "add": {1: (12, 27), 2: (14, 29), 3: (16, 31), 4: (18, 33)},
    "sub": {1: (12, 25), 2: (14, 27), 3: (16, 29), 4: (18, 31)},
    "linear": {1: (14, 38), 2: (16, 40), 3: (16, 44), 4: (18, 50)},
    "linear_neg": {1: (14, 38), 2: (15, 39), 3: (16, 44), 4: (18, 50)},
    "chain": {1: (14, 39), 2: (17, 46), 3: (20, 53)},
    "chain4": {1: (16, 47), 2: (20, 57), 3: (24, 67)},
    "modsum_long": {6: (26, 59), 7: (28, 65)},
}
WRONG_SLACK = 6  # a decoy may be longer: a slip can add a digit, a sign slip can double the quotient

family_level = st.sampled_from(PAIRS)
seeds = st.integers(0, 2**32 - 1)

_STEP = re.compile(r"(\d+)([-+/])(\d+)=(-?\d+)")


def _step_ok(u: int, op: str, v: int, w: int) -> bool:
    return {"+": u + v == w, "-": u - v == w, "/": v * w == u}[op]


def _modsum_step_ok(u: int, op: str, v: int, w: int) -> bool:
    """A modsum step ``u+v=w`` is true when w == (u+v) mod 10."""
    return op == "+" and (u + v) % 10 == w


def _steps(think: str) -> list[tuple[int, str, int, int]]:
    out = []
    for part in think.split(";"):
        m = _STEP.fullmatch(part)
        assert m, f"malformed step {part!r} in {think!r}"
        out.append((int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))))
    return out


def _check_scratchpad(q: Question, response: str) -> int:
    """Check the scratchpad is consistent with the boxed answer; return the number of false steps."""
    parsed = parse_response(response)
    assert parsed is not None, response
    think, answer = parsed
    if q.family in ("add", "sub"):  # the result written least-significant digit first
        assert think == answer[::-1]
        a, b = q.meta["operands"]
        return int(int(answer) != (a + b if q.family == "add" else a - b))
    steps = _steps(think)
    assert steps[-1][3] == int(answer), "the last step's result is the boxed answer"
    for prev, cur in zip(steps, steps[1:]):
        assert cur[0] == prev[3], "each step continues from the previous step's result"
    if q.family in ("modsum", "modsum_long"):
        ops = q.meta["operands"]
        assert [s[2] for s in steps] == ops[1:] and steps[0][0] == ops[0]
        assert all(0 <= x <= 9 for s in steps for x in (s[0], s[2], s[3])), "every value is a single digit"
        assert all(s[1] == "+" for s in steps)
        return sum(not _modsum_step_ok(*s) for s in steps)
    if q.family.startswith("linear"):
        m = q.meta
        assert len(steps) == 2 and steps[0][0] == m["c"] and steps[0][2] == m["b"] and steps[1][2] == m["a"]
        expected_op = "-" if q.family == "linear" else "+"
        if steps[0][1] != expected_op:  # a sign slip: the step is true arithmetic but the wrong operation
            return 1 + sum(not _step_ok(*s) for s in steps)
    else:
        ops = q.meta["operands"]
        assert [s[2] for s in steps] == ops[1:] and steps[0][0] == ops[0]
    return sum(not _step_ok(*s) for s in steps)


# ---------------------------------------------------------------------------------------- families


def test_catalogue():
    from zppo_core.tasks import VISUAL_IN_DIST, VISUAL_OOD

    assert set(FAMILIES) == set(IN_DIST) | set(OOD) | set(VISUAL_IN_DIST) | set(VISUAL_OOD)
    assert IN_DIST == ("modsum", "add", "linear", "chain") and OOD == ("sub", "linear_neg", "chain4", "modsum_long")
    assert len(FAMILIES) == 14 and not set(IN_DIST) & set(OOD)
    for name, fam in FAMILIES.items():
        assert isinstance(fam, Family) and fam.name == name
    assert FAMILIES["add"].levels == (1, 2, 3, 4) and FAMILIES["chain"].levels == (1, 2, 3)
    assert isinstance(FAMILIES["modsum"], ModSumFamily) and FAMILIES["modsum"].levels == (1, 2, 3, 4, 5)
    assert FAMILIES["modsum"].in_dist and callable(FAMILIES["modsum"].believed_solution)


@settings(max_examples=300, deadline=None)
@given(fl=family_level, seed=seeds)
def test_solution_correct_and_wrong_solution_wrong(fl, seed):
    name, level = fl
    fam = FAMILIES[name]
    rng = random.Random(seed)
    q = fam.make(rng, level)
    assert q.family == name and q.level == level
    assert re.fullmatch(rf"{name}-L{level}-[0-9a-f]{{10}}", q.id)
    assert re.fullmatch(r"-?\d+", q.answer)

    good = fam.solution(q)
    assert grade(good, q.answer) == (1.0, q.answer)
    assert _check_scratchpad(q, good) == 0

    for _ in range(3):
        bad = fam.wrong_solution(q, rng)
        reward, extracted = grade(bad, q.answer)
        assert reward == 0.0 and extracted is not None and extracted != q.answer
        assert int(extracted) >= 0
        assert _check_scratchpad(q, bad) == 1, "exactly one slip, then correct steps from the wrong value"


@settings(max_examples=300, deadline=None)
@given(fl=family_level, seed=seeds)
def test_lengths_and_ascii(fl, seed):
    name, level = fl
    fam = FAMILIES[name]
    rng = random.Random(seed)
    q = fam.make(rng, level)
    max_prompt, max_response = BUDGET[name][level]
    for text in (q.prompt, fam.solution(q), fam.wrong_solution(q, rng)):
        assert all(32 <= ord(ch) < 127 for ch in text), text
    assert len(q.prompt) <= max_prompt, q.prompt
    assert len(fam.solution(q)) <= max_response, fam.solution(q)
    assert len(fam.wrong_solution(q, rng)) <= max_response + WRONG_SLACK


def test_budget_is_attained():
    """The BUDGET table is tight: the largest operands of each level reach it exactly."""
    worst = {
        "add": lambda L: [f"Compute {'9' * L}+{'9' * L}."],
        "sub": lambda L: [f"Compute {'9' * L}-{'9' * L}.", f"Compute {'9' * L}-1."],
        "linear": lambda L: [["Solve 5x+9=54.", "Solve 9x+99=180.", "Solve 9x+99=990.", "Solve 9x+999=9990."][L - 1]],
        "linear_neg": lambda L: [["Solve 5x-1=44.", "Solve 9x-10=71.", "Solve 9x-10=881.", "Solve 9x-100=8891."][L - 1]],
        "chain": lambda L: ["Compute " + "+".join(["9" * L] * 3) + "."],
        "chain4": lambda L: ["Compute " + "+".join(["9" * L] * 4) + "."],
        "modsum": lambda L: ["Add mod 10: " + "+".join(["9"] * (L + 1)) + "."],
        "modsum_long": lambda L: ["Add mod 10: " + "+".join(["9"] * (L + 1)) + "."],
    }
    for name, level in PAIRS:
        fam = FAMILIES[name]
        lengths = []
        for prompt in worst[name](level):
            q = Question(id="x", prompt=prompt, answer="", family=name, level=level)  # no meta: parsed
            resp = fam.solution(q)
            assert grade(resp, parse_response(resp)[1])[0] == 1.0
            lengths.append((len(prompt), len(resp)))
        assert (max(p for p, _ in lengths), max(r for _, r in lengths)) == BUDGET[name][level], (name, level)
    assert set(BUDGET) == set(ALL)
    assert max(BUDGET[n][3][0] for n in ALL if 3 in BUDGET[n]) <= 25, "level-3 prompts stay under ~25 characters"
    assert max(p for p, _ in BUDGET["modsum"].values()) <= 25, "modsum prompts stay under ~25 characters"


@settings(max_examples=100, deadline=None)
@given(level=st.sampled_from(FAMILIES["modsum"].levels), seed=seeds)
def test_modsum_shape(level, seed):
    """modsum: L+1 single digits, L steps, and every prompt/response of a level has the budget's exact length."""
    fam = FAMILIES["modsum"]
    rng = random.Random(seed)
    q = fam.make(rng, level)
    ops = q.meta["operands"]
    assert len(ops) == level + 1 and all(0 <= v <= 9 for v in ops)
    assert q.prompt == "Add mod 10: " + "+".join(map(str, ops)) + "."
    assert q.answer == str(sum(ops) % 10)
    think, answer = parse_response(fam.solution(q))
    assert think.count(";") == level - 1 and answer == q.answer
    assert (len(q.prompt), len(fam.solution(q))) == BUDGET["modsum"][level]
    bad = fam.wrong_solution(q, rng)
    assert len(bad) == len(fam.solution(q))  # a slip mod 10 never changes a length
    assert int(parse_response(bad)[1]) in {(sum(ops) + 1) % 10, (sum(ops) - 1) % 10}  # +-1, propagated


@settings(max_examples=100, deadline=None)
@given(fl=family_level, seed=seeds)
def test_solution_from_prompt_without_meta(fl, seed):
    """A Question restored without meta (e.g. from a checkpoint) still has the same solutions."""
    name, level = fl
    fam = FAMILIES[name]
    q = fam.make(random.Random(seed), level)
    json.dumps(q.meta)  # meta is JSON-serialisable
    bare = dataclasses.replace(q, meta={})
    assert fam.solution(bare) == fam.solution(q)
    assert fam.wrong_solution(bare, random.Random(1)) == fam.wrong_solution(q, random.Random(1))
    assert in_eval_split(bare) == in_eval_split(q)


@settings(max_examples=50, deadline=None)
@given(fl=family_level, seed=seeds)
def test_make_is_deterministic(fl, seed):
    name, level = fl
    fam = FAMILIES[name]
    q1, q2 = fam.make(random.Random(seed), level), fam.make(random.Random(seed), level)
    assert q1 == q2 and q1.meta == q2.meta
    r1, r2 = random.Random(seed), random.Random(seed)
    assert fam.wrong_solution(q1, r1) == fam.wrong_solution(q2, r2)


def test_ids_follow_prompts():
    fam = FAMILIES["linear"]
    qs = [fam.make(random.Random(s), 3) for s in range(500)]
    by_prompt = {q.prompt: q.id for q in qs}
    assert len(set(by_prompt.values())) == len(by_prompt)
    assert all(by_prompt[q.prompt] == q.id for q in qs)


def test_bad_level_and_prompt():
    with pytest.raises(ValueError, match="levels"):
        FAMILIES["chain"].make(random.Random(0), 4)
    with pytest.raises(ValueError, match="not a 'add' prompt"):
        FAMILIES["add"].solution(Question(id="x", prompt="hello", answer="1", family="add", level=1))
    for bad_level in (0, 6):
        with pytest.raises(ValueError, match="levels"):
            FAMILIES["modsum"].make(random.Random(0), bad_level)
    for prompt in ("hello", "Add mod 10: 12+3.", "Add mod 10: 7.", "Compute 1+2+3."):
        with pytest.raises(ValueError, match="not a 'modsum' prompt"):
            FAMILIES["modsum"].solution(Question(id="x", prompt=prompt, answer="1", family="modsum", level=1))


def test_levels_scale_difficulty():
    for name in ALL:
        fam = FAMILIES[name]
        sizes = [
            sum(len(fam.make(random.Random(s), level).prompt) for s in range(200)) for level in fam.levels
        ]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), (name, sizes)


def test_wrong_solutions_vary():
    rng = random.Random(0)
    for name in ALL:
        q = FAMILIES[name].make(random.Random(3), FAMILIES[name].levels[-1])
        wrong = [parse_response(FAMILIES[name].wrong_solution(q, rng)) for _ in range(50)]
        answers = {a for _, a in wrong}
        if name in ("modsum", "modsum_long"):  # a +-1 slip propagates unchanged mod 10: two answers, but the slip moves
            gold = int(q.answer)
            assert answers == {str((gold + 1) % 10), str((gold - 1) % 10)}, answers
            slipped_at = {next(i for i, s in enumerate(_steps(t)) if not _modsum_step_ok(*s)) for t, _ in wrong}
            assert slipped_at == set(range(FAMILIES[name].levels[-1])), slipped_at
        else:
            assert len(answers) >= 3, (name, answers)


# ---------------------------------------------------------------------------------------- registry


def test_registry():
    assert get_family("add") is FAMILIES["add"]
    assert get_family("modsum") is FAMILIES["modsum"]
    with pytest.raises(
        ValueError, match=r"unknown task family 'x'; valid: add, bars, bars_long, chain, chain4, count, count_long, "
        r"digits, digits_long, linear, linear_neg, modsum, modsum_long, sub"
    ):
        get_family("x")
    desc = list_families()
    from zppo_core.tasks import VISUAL_IN_DIST, VISUAL_OOD

    assert list(desc) == [*IN_DIST, *OOD, *VISUAL_IN_DIST, *VISUAL_OOD]
    assert all(desc[n].startswith("in-dist") for n in IN_DIST)
    assert all(desc[n].startswith("ood") for n in OOD)


def test_no_torch_import():
    code = (
        "import sys, random\n"
        "import zppo_core.tasks as t\n"
        "q = t.QuestionStream(t.IN_DIST, None, 0).next(20)\n"
        "assert 'torch' not in sys.modules and 'sympy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------- stream


def _key(qs):
    return [(q.id, q.prompt, q.answer, q.family, q.level) for q in qs]


@settings(max_examples=25, deadline=None)
@given(seed=seeds, first=st.integers(0, 60), second=st.integers(0, 60))
def test_stream_resume_equals_uninterrupted(seed, first, second):
    whole = QuestionStream(ALL, {1: 1.0, 2: 2.0, 3: 3.0}, seed).next(first + second)
    s = QuestionStream(ALL, {1: 1.0, 2: 2.0, 3: 3.0}, seed)
    head = s.next(first)
    state = json.loads(json.dumps(s.state_dict()))
    resumed = QuestionStream(ALL, {1: 1.0, 2: 2.0, 3: 3.0}, seed)
    resumed.load_state_dict(state)
    tail = resumed.next(second)
    assert _key(head + tail) == _key(whole)
    assert resumed.state_dict() == QuestionStream(ALL, {3: 3.0, 2: 2.0, 1: 1.0}, seed).state_dict() | {
        "cursor": first + second
    }


def test_stream_chunking_does_not_matter():
    a = QuestionStream(IN_DIST, None, 7)
    chunks = a.next(3) + a.next(0) + a.next(17) + a.next(1)
    assert _key(chunks) == _key(QuestionStream(IN_DIST, None, 7).next(21))


def test_stream_seeds_differ():
    assert _key(QuestionStream(IN_DIST, None, 0).next(50)) != _key(QuestionStream(IN_DIST, None, 1).next(50))


def test_stream_load_mismatch_raises():
    state = QuestionStream(IN_DIST, None, 0).state_dict()
    with pytest.raises(ValueError, match="checkpoint"):
        QuestionStream(IN_DIST, None, 1).load_state_dict(state)
    with pytest.raises(ValueError, match="checkpoint"):
        QuestionStream(IN_DIST, {1: 1.0}, 0).load_state_dict(state)


def test_stream_sampling_weights():
    qs = QuestionStream(IN_DIST, None, 0).next(6000)
    fam = Counter(q.family for q in qs)
    assert len(IN_DIST) == 4 and set(fam) == set(IN_DIST)
    assert all(1300 < fam[n] < 1700 for n in IN_DIST), fam  # 1500 each, sd ~34
    levels_add = Counter(q.level for q in qs if q.family == "add")
    assert set(levels_add) == {1, 2, 3, 4} and min(levels_add.values()) > 280  # 375 each
    levels_modsum = Counter(q.level for q in qs if q.family == "modsum")
    assert set(levels_modsum) == {1, 2, 3, 4, 5} and min(levels_modsum.values()) > 220  # 300 each

    qs = QuestionStream(IN_DIST, {2: 1.0}, 0).next(300)
    assert {q.level for q in qs} == {2} and {q.family for q in qs} == set(IN_DIST)

    qs = QuestionStream(IN_DIST, {1: 1.0, 3: 3.0}, 0).next(4000)
    lv = Counter(q.level for q in qs)
    assert set(lv) == {1, 3} and 2.5 < lv[3] / lv[1] < 3.5

    qs = QuestionStream(IN_DIST, {4: 1.0, 1: 0.0}, 0).next(200)  # chain has no level 4: left out
    assert {q.family for q in qs} == {"modsum", "add", "linear"} and {q.level for q in qs} == {4}

    qs = QuestionStream(IN_DIST, {5: 1.0}, 0).next(50)  # only modsum has level 5
    assert {q.family for q in qs} == {"modsum"} and {q.level for q in qs} == {5}

    with pytest.raises(ValueError, match="positive weight"):
        QuestionStream(IN_DIST, {6: 1.0}, 0)
    with pytest.raises(ValueError, match="positive weight"):
        QuestionStream(["add", "linear", "chain"], {5: 1.0}, 0)
    with pytest.raises(ValueError, match="unknown task family"):
        QuestionStream(["add", "mul"], None, 0)
    with pytest.raises(ValueError, match="at least one"):
        QuestionStream([], None, 0)


# ---------------------------------------------------------------------------------------- eval set


def test_eval_set_disjoint_from_training_stream():
    ev = make_eval_set(ALL, 50, seed=0)
    assert ev and all(in_eval_split(q) for q in ev)
    train = QuestionStream(ALL, None, seed=0).next(10_000)
    assert not any(in_eval_split(q) for q in train)
    assert not {q.prompt for q in ev} & {q.prompt for q in train}
    # commutative families: the held-out side owns both operand orders
    train_add = {tuple(sorted(q.meta["operands"])) for q in train if q.family in ("add", "chain", "chain4")}
    ev_add = {tuple(sorted(q.meta["operands"])) for q in ev if q.family in ("add", "chain", "chain4")}
    assert not train_add & ev_add
    # modsum: the operand order is part of the question (the running sums differ), so the prompt is the key
    train_mod = {tuple(q.meta["operands"]) for q in train if q.family == "modsum"}
    ev_mod = {tuple(q.meta["operands"]) for q in ev if q.family == "modsum"}
    assert train_mod and ev_mod and not train_mod & ev_mod


def test_eval_split_fraction():
    fam = FAMILIES["linear"]
    qs = [fam.make(random.Random(s), 3) for s in range(4000)]
    share = sum(in_eval_split(q) for q in qs) / len(qs)
    assert 0.09 < share < 0.16


def test_eval_set_deterministic_distinct_and_sized():
    ev = make_eval_set(IN_DIST, 40, seed=3)
    assert _key(ev) == _key(make_eval_set(IN_DIST, 40, seed=3))
    assert _key(ev) != _key(make_eval_set(IN_DIST, 40, seed=4))
    assert len({q.prompt for q in ev}) == len(ev)
    per = Counter((q.family, q.level) for q in ev)
    assert set(per) == {(n, lvl) for n in IN_DIST for lvl in FAMILIES[n].levels}
    assert all(v <= 40 for v in per.values())
    assert per[("add", 3)] == 40 and per[("linear", 4)] == 40
    assert 1 <= per[("add", 1)] < 20  # level-1 add: only ~1/8 of its 81 prompts are held out
    assert per[("modsum", 2)] == 40 and per[("modsum", 5)] == 40
    assert 1 <= per[("modsum", 1)] < 25  # level-1 modsum: ~1/8 of its 100 prompts are held out
    assert list(dict.fromkeys(q.family for q in ev)) == list(IN_DIST)  # ordered by family
    only3 = make_eval_set(["chain"], 5, seed=0, levels=[3])
    assert len(only3) == 5 and {q.level for q in only3} == {3}


# ---------------------------------------------------------------------------------------- modsum beliefs


def _walk_believed(q: Question, response: str, beliefs) -> tuple[int, int]:
    """Check a believed response step by step; return (steps that met a belief, steps that were false)."""
    think, answer = parse_response(response)
    steps = _steps(think)
    ops = q.meta["operands"]
    assert [s[2] for s in steps] == ops[1:] and steps[0][0] == ops[0]
    met = false = 0
    acc = ops[0]
    for u, op, v, w in steps:
        assert op == "+" and u == acc, "each step continues from the value written before"
        if (u, v) in beliefs:
            met += 1
            assert w in (beliefs[(u, v)], (u + v) % 10)
        else:
            assert w == (u + v) % 10, "a step without a belief is always correct"
        false += w != (u + v) % 10
        acc = w
    assert answer == str(acc)
    return met, false


@settings(max_examples=150, deadline=None)
@given(level=st.sampled_from(FAMILIES["modsum"].levels), seed=seeds, n=st.integers(0, 100), bseed=seeds)
def test_believed_solution_rate_one_writes_every_belief(level, seed, n, bseed):
    fam = FAMILIES["modsum"]
    q = fam.make(random.Random(seed), level)
    beliefs = make_beliefs(n, bseed)
    resp = fam.believed_solution(q, beliefs, 1.0, random.Random(seed))
    assert all(32 <= ord(ch) < 127 for ch in resp) and len(resp) == BUDGET["modsum"][level][1]
    met, false = _walk_believed(q, resp, beliefs)
    assert met == false, "at rate 1.0 every listed pair met is written with its believed (wrong) value"
    assert _check_scratchpad(q, resp) == false
    if false == 0:
        assert resp == fam.solution(q)
    if false == 1:  # a single wrong step shifts the answer: the question is failed
        assert grade(resp, q.answer)[0] == 0.0
    bare = dataclasses.replace(q, meta={})  # parsed from the prompt alike
    assert fam.believed_solution(bare, beliefs, 1.0, random.Random(0)) == resp


def test_believed_solution_all_pairs_believed_gets_every_step_wrong():
    fam = FAMILIES["modsum"]
    beliefs = make_beliefs(100, 0)
    for s in range(50):
        q = fam.make(random.Random(s), 1 + s % 5)
        resp = fam.believed_solution(q, beliefs, 1.0, random.Random(s))
        assert _walk_believed(q, resp, beliefs) == (q.level, q.level)
        assert _check_scratchpad(q, resp) == q.level


@settings(max_examples=100, deadline=None)
@given(level=st.sampled_from(FAMILIES["modsum"].levels), seed=seeds, n=st.integers(0, 100), rate=st.floats(0, 1))
def test_believed_solution_no_belief_equals_solution(level, seed, n, rate):
    fam = FAMILIES["modsum"]
    q = fam.make(random.Random(seed), level)
    assert fam.believed_solution(q, make_beliefs(n, seed), 0.0, random.Random(seed)) == fam.solution(q)
    assert fam.believed_solution(q, {}, rate, random.Random(seed)) == fam.solution(q)
    assert fam.believed_solution(q, {}, 1.0, random.Random(seed)) == fam.solution(q)


def test_believed_solution_partial_rate():
    """0 < rate < 1: each met belief is written sometimes; deterministic given the rng."""
    fam = FAMILIES["modsum"]
    beliefs = make_beliefs(100, 1)  # every step meets a belief
    q = fam.make(random.Random(5), 5)
    resps = [fam.believed_solution(q, beliefs, 0.5, random.Random(s)) for s in range(200)]
    falses = Counter(_walk_believed(q, r, beliefs)[1] for r in resps)
    assert falses[0] > 0 and falses[5] > 0 and 1.5 < sum(k * v for k, v in falses.items()) / len(resps) < 3.5
    assert resps == [fam.believed_solution(q, beliefs, 0.5, random.Random(s)) for s in range(200)]


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 100), seed=seeds)
def test_make_beliefs(n, seed):
    beliefs = make_beliefs(n, seed)
    assert len(beliefs) == n  # dict keys: n distinct pairs
    for (a, b), w in beliefs.items():
        assert 0 <= a <= 9 and 0 <= b <= 9 and 0 <= w <= 9
        assert w != (a + b) % 10, "a belief is always wrong"
    assert make_beliefs(n, seed) == beliefs


def test_make_beliefs_edges_and_seeds():
    assert make_beliefs(0, 0) == {} and make_beliefs(0, 123) == {}
    assert set(make_beliefs(100, 0)) == {(a, b) for a in range(10) for b in range(10)}
    assert len({frozenset(make_beliefs(10, s).items()) for s in range(20)}) == 20, "different seeds differ"
    assert make_beliefs(100, 0) != make_beliefs(100, 1)  # same pairs, different wrong values
    with pytest.raises(ValueError):
        make_beliefs(101, 0)
