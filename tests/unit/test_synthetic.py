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
from zppo_core.types import Question

ALL = (*IN_DIST, *OOD)
PAIRS = [(name, level) for name in ALL for level in FAMILIES[name].levels]

# Worst-case lengths (characters) per family and level: (prompt, full response). The response wrapper
# "<think></think>\boxed{}" alone is 23 characters.
BUDGET = {
    "add": {1: (12, 27), 2: (14, 29), 3: (16, 31), 4: (18, 33)},
    "sub": {1: (12, 25), 2: (14, 27), 3: (16, 29), 4: (18, 31)},
    "linear": {1: (14, 38), 2: (16, 40), 3: (16, 44), 4: (18, 50)},
    "linear_neg": {1: (14, 38), 2: (15, 39), 3: (16, 44), 4: (18, 50)},
    "chain": {1: (14, 39), 2: (17, 46), 3: (20, 53)},
    "chain4": {1: (16, 47), 2: (20, 57), 3: (24, 67)},
}
WRONG_SLACK = 6  # a decoy may be longer: a slip can add a digit, a sign slip can double the quotient

family_level = st.sampled_from(PAIRS)
seeds = st.integers(0, 2**32 - 1)

_STEP = re.compile(r"(\d+)([-+/])(\d+)=(-?\d+)")


def _step_ok(u: int, op: str, v: int, w: int) -> bool:
    return {"+": u + v == w, "-": u - v == w, "/": v * w == u}[op]


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
    assert set(FAMILIES) == set(IN_DIST) | set(OOD)
    assert IN_DIST == ("add", "linear", "chain") and OOD == ("sub", "linear_neg", "chain4")
    for name, fam in FAMILIES.items():
        assert isinstance(fam, Family) and fam.name == name
    assert FAMILIES["add"].levels == (1, 2, 3, 4) and FAMILIES["chain"].levels == (1, 2, 3)


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
    assert max(BUDGET[n][3][0] for n in ALL) <= 25, "level-3 prompts stay under ~25 characters"


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
        answers = {parse_response(FAMILIES[name].wrong_solution(q, rng))[1] for _ in range(50)}
        assert len(answers) >= 3, (name, answers)


# ---------------------------------------------------------------------------------------- registry


def test_registry():
    assert get_family("add") is FAMILIES["add"]
    with pytest.raises(ValueError, match=r"unknown task family 'x'; valid: add, chain, chain4, linear, linear_neg, sub"):
        get_family("x")
    desc = list_families()
    assert list(desc) == [*IN_DIST, *OOD]
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
    assert all(1800 < fam[n] < 2200 for n in IN_DIST), fam
    levels_add = Counter(q.level for q in qs if q.family == "add")
    assert set(levels_add) == {1, 2, 3, 4} and min(levels_add.values()) > 350

    qs = QuestionStream(IN_DIST, {2: 1.0}, 0).next(300)
    assert {q.level for q in qs} == {2} and {q.family for q in qs} == set(IN_DIST)

    qs = QuestionStream(IN_DIST, {1: 1.0, 3: 3.0}, 0).next(4000)
    lv = Counter(q.level for q in qs)
    assert set(lv) == {1, 3} and 2.5 < lv[3] / lv[1] < 3.5

    qs = QuestionStream(IN_DIST, {4: 1.0, 1: 0.0}, 0).next(200)  # chain has no level 4: left out
    assert {q.family for q in qs} == {"add", "linear"} and {q.level for q in qs} == {4}

    with pytest.raises(ValueError, match="positive weight"):
        QuestionStream(IN_DIST, {5: 1.0}, 0)
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
    assert list(dict.fromkeys(q.family for q in ev)) == list(IN_DIST)  # ordered by family
    only3 = make_eval_set(["chain"], 5, seed=0, levels=[3])
    assert len(only3) == 5 and {q.level for q in only3} == {3}
