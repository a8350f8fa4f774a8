"""The binary rule grader: boxed-answer extraction and answer equivalence (ZPPO.md §2)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zppo_core.tasks.graders import answers_equal, extract_boxed, grade, strip_degree_percent

# ---------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "text, expected",
    [
        (r"<think>x</think>\boxed{5}", "5"),
        (r"\boxed{ 42 }", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),  # nested braces
        (r"\boxed{{a}{b{c}}}", "{a}{b{c}}"),
        (r"\boxed{1} then \boxed{2}", "2"),  # last box wins
        (r"<think>\boxed{7}</think>\boxed{8}", "8"),
        (r"\boxed{\{1,2\}}", r"\{1,2\}"),  # escaped braces do not group
        (r"\boxed{}", ""),
        (r"\boxed{\boxed{3}}", "3"),
    ],
)
def test_extract_boxed(text, expected):
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "no box here",
        "",
        r"\boxed{5",  # cut at the token limit
        r"\boxed{\frac{1}{2}",  # unbalanced nesting
        r"\boxed{5} and then \boxed{6",  # last box is unclosed: no answer
        r"\boxed 5",
        r"\boxed{5\}",  # the only closing brace is escaped
    ],
)
def test_extract_boxed_none(text):
    assert extract_boxed(text) is None


def test_extract_boxed_non_string():
    assert extract_boxed(None) is None  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("5", "5"),
        ("5.0", "5"),
        ("5", "5.0"),
        (r"\boxed{5}", "5.0"),
        ("+5", "5"),
        ("007", "7"),
        ("1,000", "1000"),
        ("1000", "1,000"),
        ("1,234,567", "1234567"),
        ("-0", "0"),
        (".5", "0.5"),
        ("0.50", "0.5"),
        (r"\frac{1}{2}", "0.5"),
        ("0.5", r"\frac{1}{2}"),
        ("1/2", r"\frac{1}{2}"),
        (r"\dfrac{3}{4}", "0.75"),
        (r"90^\circ", "90"),
        (r"90^{\circ}", "90"),
        (r"90\circ", "90"),
        ("90°", "90"),
        ("90", r"90^\circ"),
        (r"50\%", "50"),
        ("50%", "50"),
        ("50", r"50\%"),
        ("x=5", "5"),
        (r"\sqrt{2}/2", r"\frac{\sqrt2}{2}"),
        ("(1,2)", "(1, 2)"),
        (" 12 ", "12"),
    ],
)
def test_equivalent(pred, gold):
    assert answers_equal(pred, gold)


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("6", "5"),
        ("-5", "5"),
        ("50", "5"),
        ("1,001", "1000"),
        ("0.51", "0.5"),
        (r"\frac{1}{3}", "0.5"),
        ("12a", "12"),
        ("", "5"),
        ("5", ""),
        ("", ""),
        ("None", "5"),
        ("91", r"90^\circ"),
        (r"\frac{2}{4}", r"\frac{1}{2}"),  # mathruler: unreduced fractions do not match
    ],
)
def test_not_equivalent(pred, gold):
    assert not answers_equal(pred, gold)


@pytest.mark.parametrize("bad", [None, 5, b"5", ["5"], object()])
def test_malformed_is_false(bad):
    assert answers_equal(bad, "5") is False  # type: ignore[arg-type]
    assert answers_equal("5", bad) is False  # type: ignore[arg-type]


@pytest.mark.parametrize("pred", ["9**9**9", "99999999!", "9" * 5000, "(" * 300, "x" * 500, r"\frac{" * 50])
def test_explosive_candidates_are_fast_and_false(pred):
    t0 = time.perf_counter()
    assert not answers_equal(pred, r"\frac{1}{2}")
    assert not answers_equal(pred, "5")
    assert time.perf_counter() - t0 < 1.0


def test_strip_degree_percent():
    assert strip_degree_percent(r"90^{\circ}") == "90"
    assert strip_degree_percent("45°") == "45"
    assert strip_degree_percent(r"12\%") == "12"


@settings(max_examples=300, deadline=None)
@given(n=st.integers(-(10**12), 10**12))
def test_integer_forms_property(n):
    s = str(n)
    assert answers_equal(s, s)
    assert answers_equal(f"{n:,}", s)
    assert answers_equal(s + ".0", s)
    if n >= 0:
        assert answers_equal("+" + s, s)
        assert answers_equal("00" + s, s)
    assert not answers_equal(str(n + 1), s)


@settings(max_examples=200, deadline=None)
@given(pred=st.text(max_size=30), gold=st.sampled_from(["5", "-12", r"\frac{1}{2}", r"90^\circ", "x+1", "(1,2)"]))
def test_never_raises(pred, gold):
    assert answers_equal(pred, gold) in (True, False)
    reward, extracted = grade(pred, gold)
    assert reward in (0.0, 1.0)


# ---------------------------------------------------------------------------------------- grade


def test_grade_correct():
    assert grade(r"<think>4311</think>\boxed{1134}", "1134") == (1.0, "1134")
    assert grade(r"<think>...</think>\boxed{\frac{1}{2}}", "0.5") == (1.0, r"\frac{1}{2}")


def test_grade_wrong_and_missing():
    assert grade(r"<think>4311</think>\boxed{1133}", "1134") == (0.0, "1133")
    assert grade("<think>4311</think>1134", "1134") == (0.0, None)
    assert grade(r"<think>4311</think>\boxed{1134", "1134") == (0.0, None)
    assert grade("", "1") == (0.0, None)


def test_grade_is_binary_and_float():
    for resp in [r"\boxed{5}", r"\boxed{ 5}", r"\boxed{5.0}", r"\boxed{6}", "5"]:
        r, _ = grade(resp, "5")
        assert type(r) is float and r in (0.0, 1.0)


def test_last_box_decides():
    assert grade(r"\boxed{5} no wait \boxed{6}", "6")[0] == 1.0
    assert grade(r"\boxed{6} no wait \boxed{5}", "6")[0] == 0.0


def test_latex_path_works_off_main_thread():
    results = []
    t = threading.Thread(target=lambda: results.append(answers_equal(r"\frac{1}{2}", "0.5")))
    t.start()
    t.join(timeout=30)
    assert results == [True]


def test_integer_path_imports_neither_sympy_nor_torch():
    code = (
        "import sys\n"
        "from zppo_core.tasks.graders import grade, answers_equal\n"
        "assert grade(r'<think>4311</think>\\boxed{1134}', '1134') == (1.0, '1134')\n"
        "assert answers_equal('1,000', '1000.0') and not answers_equal('7', '8')\n"
        "assert 'sympy' not in sys.modules and 'torch' not in sys.modules, sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_integer_path_is_fast():
    n = 5000
    t0 = time.perf_counter()
    for i in range(n):
        grade(r"<think>4311</think>\boxed{1134}", "1134" if i % 2 else "1135")
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 50e-6, per_call  # ~2-5 µs measured; generous for a loaded CI box
