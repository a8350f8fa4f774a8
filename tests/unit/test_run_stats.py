"""Uncertainty of logged scores (tracking/stats.py): hand-computed numbers and properties."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zppo_core.tracking.stats import (Estimate, difference, estimate_of, eval_uncertainty, item_scores, mean_estimate,
                                      paired_difference, stderr, wilson)


def test_wilson_matches_hand_computation():
    # p = 0.5, n = 64, z = 1.96: centre 0.5, half = z*sqrt(.25/64 + z²/(4·64²)) / (1 + z²/64)
    z = 1.959963984540054
    half = z * math.sqrt(0.25 / 64 + z * z / (4 * 64 * 64)) / (1 + z * z / 64)
    lo, hi = wilson(50.0, 64)
    assert lo == pytest.approx(100 * (0.5 - half)) and hi == pytest.approx(100 * (0.5 + half))
    assert (lo, hi) == pytest.approx((38.1, 61.9), abs=0.05)
    # a score of 0 out of 64 still has an upper bound (z²/(n+z²) = 5.66 %)
    lo, hi = wilson(0.0, 64)
    assert lo == 0.0 and hi == pytest.approx(100 * z * z / (64 + z * z))


def test_stderr_and_item_scores_by_hand():
    assert stderr([0.0, 100.0]) == pytest.approx(50.0)  # sd 70.71 / sqrt 2
    assert stderr([40.0]) == 0.0
    recs = [{"id": "a", "correct": True}, {"id": "a", "correct": False}, {"id": "b", "correct": True},
            {"id": "b", "correct": True}]
    assert item_scores(recs) == [50.0, 100.0]


@dataclass
class _Rec:
    id: str
    correct: bool


@dataclass
class _Result:
    family: str
    name: str
    n: int
    records: list = field(default_factory=list)


def test_eval_uncertainty_names_and_family_average():
    # bench x: 4 items, 2 right (k = 1) -> se = sd([100,100,0,0]) / 2 = 57.735/2; bench y: 2 items both right -> 0
    x = _Result("tiny-ood", "x", 4, [_Rec(str(i), i < 2) for i in range(4)])
    y = _Result("tiny-ood", "y", 2, [_Rec("p", True), _Rec("q", True)])
    m = eval_uncertainty([x, y])
    assert m["eval_n/tiny-ood/x"] == 4 and m["eval_n/tiny-ood/y"] == 2 and m["eval_n/tiny-ood/avg"] == 6
    se_x = math.sqrt(4 * 2500 / 3) / 2
    assert m["eval_se/tiny-ood/x"] == pytest.approx(se_x) and m["eval_se/tiny-ood/y"] == 0.0
    assert m["eval_se/tiny-ood/avg"] == pytest.approx(se_x / 2)  # se of the mean of two independent scores
    est = estimate_of({"eval/tiny-ood/x": 50.0, **m}, "eval/tiny-ood/x")
    assert est == Estimate(50.0, 4, pytest.approx(se_x))
    assert estimate_of({}, "eval/tiny-ood/x") is None


def test_interval_is_wilson_on_the_effective_items():
    # p = 0.5, se = 6.25 points -> n_eff = 0.25 / 0.0625² = 64
    assert Estimate(50.0, 64, 6.25).interval() == pytest.approx(wilson(50.0, 64))
    # one sample per item: per-item scores are 0/100, se² = p(1-p)/(n-1) -> n_eff = n - 1
    scores = [100.0] * 3 + [0.0] * 13
    e = Estimate(sum(scores) / 16, 16, stderr(scores))
    assert e.interval() == pytest.approx(wilson(e.value, 15))
    lo, hi = e.interval()
    assert lo > 0 and hi - e.value > e.value - lo  # not clipped at 0: skewed like the binomial
    assert Estimate(0.0, 64, 0.0).interval() == pytest.approx(wilson(0.0, 64))
    assert Estimate(70.0, None, 2.0).interval() == pytest.approx((70 - 1.96 * 2, 70 + 1.96 * 2), abs=1e-3)
    assert Estimate(50.0).interval() is None


def test_difference_is_unpaired():
    d, ci = difference(Estimate(40.0, 64, 3.0), Estimate(45.0, 64, 4.0))
    assert d == 5.0 and ci == pytest.approx((5 - 1.96 * 5.0, 5 + 1.96 * 5.0), abs=1e-3)
    assert difference(Estimate(40.0), Estimate(45.0)) == (5.0, None)


def test_mean_estimate_over_steps():
    e = mean_estimate([10.0, 20.0, 30.0])
    assert e.value == 20.0 and e.se == pytest.approx(10.0 / math.sqrt(3))
    assert mean_estimate([]) is None


@given(st.floats(0, 100), st.integers(1, 10_000))
def test_wilson_is_a_valid_interval_around_the_score(score, n):
    lo, hi = wilson(score, n)
    assert 0.0 <= lo <= score + 1e-9 and score - 1e-9 <= hi <= 100.0


def _rows(bench, verdicts):
    return [{"benchmark": bench, "id": f"q{i}", "correct": ok} for i, ok in enumerate(verdicts)]


def test_paired_difference_by_hand():
    # 4 questions; A right on q0,q1; B right on q0,q1,q2: differences [0, 0, 100, 0] -> mean 25, se = 50/2 = 25
    a, b = _rows("x", [1, 1, 0, 0]), _rows("x", [1, 1, 1, 0])
    d, (lo, hi), n = paired_difference(a, b, ["x"])
    assert (d, n) == (25.0, 4) and (lo, hi) == pytest.approx((25 - 1.96 * 25, 25 + 1.96 * 25), abs=1e-3)
    # the unpaired interval of the same scores is wider: questions both got right or wrong add no noise here
    _, unpaired = difference(Estimate(50.0, 4, stderr([100, 100, 0, 0])), Estimate(75.0, 4, stderr([100, 100, 100, 0])))
    assert unpaired[1] - unpaired[0] > hi - lo
    # two benchmarks average like a family score; mismatched questions -> no paired answer
    d2, _, n2 = paired_difference(a + _rows("y", [0, 0]), b + _rows("y", [1, 0]), ["x", "y"])
    assert d2 == pytest.approx((25 + 50) / 2) and n2 == 6
    assert paired_difference(a, b[:3], ["x"]) is None and paired_difference(a, b, ["z"]) is None


@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=2, max_size=40))
def test_paired_difference_equals_the_difference_of_scores(pairs):
    a = _rows("x", [p for p, _ in pairs])
    b = _rows("x", [q for _, q in pairs])
    d, (lo, hi), n = paired_difference(a, b, ["x"])
    score = lambda rows: 100.0 * sum(r["correct"] for r in rows) / len(rows)  # noqa: E731
    assert d == pytest.approx(score(b) - score(a)) and n == len(pairs) and lo <= d <= hi
