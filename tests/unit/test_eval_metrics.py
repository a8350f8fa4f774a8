"""The benchmarks' own metrics and judge parsers, with hand-computed numbers, and properties of the pure pieces
(edit distance, ANLS, We-Math's score)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zppo_core.suites.aggregate import wemath_scores
from zppo_core.suites.data import EvalItem
from zppo_core.suites.judges import JUDGES
from zppo_core.suites.metrics import anls, levenshtein, ocrbench_v2_score, ocrbench_v2_unsupported


def ocr(type_, answers, eval_="None", question="q", bbox=None):
    return EvalItem(id="1", prompt=question, answer=answers[0],
                    meta={"type": type_, "eval": eval_, "answers": answers, "question": question, "bbox": bbox})


# ------------------------------------------------------------------------------------------ edit distance, ANLS
@pytest.mark.parametrize("a, b, d", [("", "", 0), ("kitten", "sitting", 3), ("abc", "", 3), ("flaw", "lawn", 2),
                                     ("北京市", "北京", 1)])
def test_levenshtein_hand_computed(a, b, d):
    assert levenshtein(a, b) == d == levenshtein(b, a)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=12), st.text(max_size=12), st.text(max_size=12))
def test_levenshtein_is_a_metric(a, b, c):
    assert levenshtein(a, a) == 0
    assert levenshtein(a, b) == levenshtein(b, a) <= max(len(a), len(b))
    assert levenshtein(a, c) <= levenshtein(a, b) + levenshtein(b, c)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=3))
def test_anls_is_zero_or_at_least_half(pred, golds):
    s = anls(pred, golds)
    assert s == 0.0 or 0.5 < s <= 1.0
    assert anls(golds[0], golds) == 1.0


def test_anls_threshold_and_best_answer():
    assert anls("annual reprt", ["annual report"]) == pytest.approx(12 / 13)
    assert anls("ab", ["abcd"]) == 0.0  # NL = 2/4: not below 0.5
    assert anls("abc", ["abcd"]) == pytest.approx(0.75)
    assert anls("  The  END ", ["nope", "the end"]) == 1.0


# ------------------------------------------------------------------------------------------ OCRBench v2
@pytest.mark.parametrize("item, pred, want", [
    (ocr("text recognition en", ["STOP"]), "It says stop.", 1.0),  # short answer: containment, case-folded
    (ocr("text recognition en", ["Stop"], eval_="case sensitive"), "It says stop.", 0.0),
    # five words or more: ANLS, kept only at >= 0.5 (one edit in 25 characters)
    (ocr("document classification en", ["the quick brown fox jumps"]), "the quick brown fox jump", 1 - 1 / 25),
    (ocr("science QA en", ["B"], eval_="multiple choice"), "(B)", 1.0),
    (ocr("science QA en", ["B"], eval_="multiple choice"), "B because", 0.0),
    (ocr("text counting en", ["10"], eval_="regression"), "8 words", 0.8),
    (ocr("text counting en", ["10"], eval_="regression"), "4 words", 0.0),  # 1 - 6/10 = 0.4 is not above 0.5
    (ocr("text counting en", ["10"], eval_="exact match"), "10", 1.0),
    (ocr("formula recognition en", ["x ^ 2"]), "$$x^2 + 1$$", 1.0),
    (ocr("cognition VQA cn", ["北京"]), "答案是 北 京", 1.0),  # Chinese: spaces dropped
    (ocr("handwritten answer extraction cn", ["ABD"]), "选 A、B、D", 1.0),
    (ocr("key information extraction en", ['{"company": "ACME", "total": ["$5", "5.00"]}']),
     '{"company": "acme", "total": "7"}', 0.5),  # per-key F1 averaged: company right, total wrong
    (ocr("key information extraction en", ['{"company": "ACME", "total": ["$5", "5.00"]}']),
     "company: ACME\ntotal: 5.00", 1.0),  # any value combination of the gold counts
    (ocr("text grounding en", ["0", "0", "10", "10"]), "The box is [5, 0, 15, 10].", 50 / 150),
])
def test_ocrbench_v2_metric_by_type(item, pred, want):
    assert ocrbench_v2_unsupported(item) is None
    assert ocrbench_v2_score(item, pred) == pytest.approx(want)


def test_ocrbench_v2_types_without_a_metric_here_are_named():
    assert "TEDS" in ocrbench_v2_unsupported(ocr("table parsing en", ["<table/>"]))
    assert "BLEU" in ocrbench_v2_unsupported(ocr("full-page OCR cn", ["x"]))
    assert "BLEU" in ocrbench_v2_unsupported(ocr("handwritten answer extraction cn", ["x"], question="简答题"))
    assert "unknown" in ocrbench_v2_unsupported(ocr("new type en", ["x"]))


# ------------------------------------------------------------------------------------------ We-Math
def test_wemath_scores_hand_computed():
    rows = [("p1", "2steps_1", True), ("p1", "2steps_2", True), ("p1", "2steps_multi", True),  # CM
            ("p2", "2steps_1", False), ("p2", "2steps_2", False), ("p2", "2steps_multi", True),  # RM strict+loose
            ("p3", "3steps_1", True), ("p3", "3steps_2", False), ("p3", "3steps_3", True),
            ("p3", "3steps_multi", False),  # IK
            ("p4", "2steps_1", True)]  # incomplete: left out
    got = wemath_scores(rows)
    assert got["problems"] == 3 and (got["IK"], got["IG"], got["RM_strict"], got["RM_loose"]) == (1, 0, 1, 1)
    assert got["score_strict"] == pytest.approx((3 - 0 - 1 - 1) / 3) == got["score_loose"]


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([2, 3]), st.lists(st.booleans(), min_size=4, max_size=4)),
                min_size=1, max_size=8))
def test_wemath_strict_never_exceeds_loose(problems):
    rows = []
    for n, (steps, oks) in enumerate(problems):
        keys = [f"{steps}steps_{i}" for i in range(1, steps + 1)] + [f"{steps}steps_multi"]
        rows += [(f"p{n}", k, ok) for k, ok in zip(keys, oks)]
    got = wemath_scores(rows)
    assert got["problems"] == len(problems)
    assert got["IK"] + got["IG"] + got["CM_strict"] + got["RM_strict"] == len(problems)
    assert 0.0 <= got["score_strict"] <= got["score_loose"] <= 1.0


# ------------------------------------------------------------------------------------------ judge parsers
def item(answer="42", **meta):
    return EvalItem(id="1", prompt="Q?", answer=answer, meta=dict(meta, question="Q?"))


@pytest.mark.parametrize("judge, reply, it, credit", [
    ("hle", "extracted_final_answer: 42\nreasoning: same\ncorrect: yes\nconfidence: 80", item(), 1.0),
    ("hle", "extracted_final_answer: 41\nreasoning: [correct_answer] is 42\n**correct**: no", item(), 0.0),
    ("hle", '{"extracted_final_answer": "42", "correct": "yes"}', item(), 1.0),
    ("hle", "I think it is right.", item(), 0.0),
    ("mmvet", "0.4", item(), 0.4),
    ("mmvet", "<think>partial</think>0.7 since half", item(), 0.7),
    ("mmvet", "1.5", item(), 0.0),
    ("mmvet", "correct", item(), 0.0),
    ("multichallenge", "Reasoning... so the verdict is NO", item("NO", pass_criteria="NO"), 1.0),
    ("multichallenge", "Reasoning... YES", item("NO", pass_criteria="NO"), 0.0),
    ("multichallenge", '{"reasoning": "r", "verdict": "YES"}', item("YES", pass_criteria="YES"), 1.0),
    ("mmvu", '{"extracted_answer": "B", "correct": True}', item("B"), 1.0),
    ("mmvu", 'Here: {"extracted_answer": "B", "correct": false}', item("B"), 0.0),
    ("charxiv", '{"extracted_answer": "b", "score": 1}', item(kind="reasoning"), 1.0),
    ("charxiv", '{"extract_answer_T1": "5", "score_T1": 0}', item(kind="descriptive1"), 0.0),
    ("babyvision", "True", item(), 1.0),
    ("babyvision", "False", item(), 0.0),
    ("default", '{"correct": true}', item(), 1.0),
    ("default", 'Yes. {"correct": true}', item(), 0.0),  # the paper's verdict is strict JSON only
])
def test_judge_replies_read_as_each_protocol_asks(judge, reply, it, credit):
    assert JUDGES[judge].parse(reply, it) == pytest.approx(credit)


def test_official_judge_prompts_carry_their_published_text():
    it = item("-1<AND>-5")
    assert JUDGES["mmvet"].build(it, "x = -1").endswith("Q? | -1 <AND> -5 | x = -1 | ")
    hle = JUDGES["hle"].build(item(), "Exact Answer: 41")
    assert "[correct_answer]: 42" in hle and "0|\\%| and 100|\\%|" in hle
    mc = JUDGES["multichallenge"].build(item("NO", target_question="Is it vegan?"), "Tofu.")
    assert "<MODEL_RESPONSE>\nTofu.\n</MODEL_RESPONSE>" in mc and "<CRITERIA>\nIs it vegan?\n</CRITERIA>" in mc
    mmvu = JUDGES["mmvu"].build(EvalItem("1", "Q?", "B", choices=["x", "y"], meta={"question": "Which?"}), "B")
    assert "Options:\nA: x\nB: y" in mmvu and "Ground Truth Answer: B" in mmvu and '"correct": // boolean' in mmvu
    bv = JUDGES["babyvision"].build(item("7"), "<think>..</think> so \\boxed{8}")
    assert "Ground Truth Answer: 7,\nModel Output: 8" in bv
    assert all(j.source for j in JUDGES.values()) and not JUDGES["default"].official
