"""Rule grader: the binary reward of ZPPO.md §2.

The reward is 1.0 when the LAST ``\\boxed{...}`` of a response is equivalent to the gold answer, else 0.0
(no partial credit, no format reward).

Equivalence (:func:`answers_equal`), cheapest test first:

1. **Plain numbers** (``"+5"``, ``"007"``, ``"1,000"``, ``"5.0"``, ``".5"``): compared exactly as
   decimals. When both sides are plain numbers this decides, and sympy is never imported: every
   synthetic family has an integer gold answer, so this is the path nearly every rollout takes.
2. Otherwise ``mathruler.grader.grade_answer`` (the package the paper uses): MATH-style string
   normalisation, then a sympy difference check. It is pure Python (no signals, no threads), so it
   works off the main thread; math_verify is not used because its timeouts rely on ``signal.alarm``.
   Note that mathruler is strict on purpose for integer golds: ``\\frac{10}{2}`` does not match ``5``.
3. On failure, degree and percent marks (``^{\\circ}``, ``^\\circ``, ``\\circ``, ``°``, ``\\%``, ``%``)
   are stripped from BOTH sides and steps 1–2 run once more (paper §2).

Safety: model output reaches sympy (``parse_expr`` evaluates it). mathruler already refuses
expressions with more than two unknown letters and nested/long exponents; on top of that, candidates
that are long or contain a factorial ``!`` or a Python power ``**`` (which can hang sympy, e.g.
``9**9**9``) are only compared as normalised strings. Any exception means "not equal":
:func:`answers_equal` never raises.

This module imports neither torch nor sympy at import time (mathruler is imported on first use).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["extract_boxed", "answers_equal", "grade", "strip_degree_percent"]

_BOX = "\\boxed{"

# A plain number: optional sign, digits (optionally with well-formed thousands commas), optional
# fractional part; or a bare fractional part (".5").
_PLAIN_NUMBER = re.compile(r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)")
_MAX_PLAIN_LEN = 400  # longer "numbers" are compared as strings (Decimal is linear, but be frugal)
_MAX_SYMPY_LEN = 160  # longer candidates never reach sympy: compared as normalised strings only
_RISKY = re.compile(r"(?<!\\)!|\*\*")  # factorial or Python power: can make sympy hang

# Degree / percent marks, longest first so that "^{\circ}" does not leave "^{}" behind.
_MARKS = ("^{\\circ}", "^\\circ", "\\circ", "°", "\\%", "%")


def extract_boxed(text: str) -> str | None:
    """Content of the LAST ``\\boxed{...}`` in `text`, stripped of surrounding whitespace.

    Nested braces are fine (``\\boxed{\\frac{1}{2}}`` gives ``\\frac{1}{2}``); escaped braces ``\\{``/``\\}``
    do not count as grouping. Returns None when there is no ``\\boxed{`` or when the last one is not
    closed (e.g. a response cut at the token limit). An empty box gives ``""``.
    """
    if not isinstance(text, str):
        return None
    start = text.rfind(_BOX)
    if start < 0:
        return None
    begin = start + len(_BOX)
    end = _closing_brace(text, begin)
    return None if end < 0 else text[begin:end].strip()


def _closing_brace(text: str, i: int) -> int:
    """Index of the ``}`` that closes a group opened just before position `i`; -1 if it is never closed."""
    depth = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character (\{, \}, \\ ...)
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def _plain_number(s: str) -> Decimal | None:
    """The value of `s` if it is a plain decimal number, else None (no sympy, ~1 µs)."""
    if len(s) > _MAX_PLAIN_LEN or _PLAIN_NUMBER.fullmatch(s) is None:
        return None
    try:
        return Decimal(s.replace(",", ""))
    except (InvalidOperation, ValueError):  # pragma: no cover - the regex admits only valid numbers
        return None


def _unbox(s: str) -> str:
    """``\\boxed{x}`` -> ``x`` when the whole string is one box (a model sometimes boxes twice)."""
    s = s.strip()
    if s.startswith(_BOX) and _closing_brace(s, len(_BOX)) == len(s) - 1:
        return s[len(_BOX) : -1].strip()
    return s


def strip_degree_percent(s: str) -> str:
    """Remove degree and percent marks (``^{\\circ}``, ``^\\circ``, ``\\circ``, ``°``, ``\\%``, ``%``)."""
    for mark in _MARKS:
        s = s.replace(mark, "")
    return s.strip()


_grade_answer = None


def _mathruler_equal(pred: str, gold: str) -> bool:
    global _grade_answer
    if _grade_answer is None:
        from mathruler.grader import grade_answer  # lazy: pulls in sympy and pylatexenc

        _grade_answer = grade_answer
    if len(pred) > _MAX_SYMPY_LEN or len(gold) > 4 * _MAX_SYMPY_LEN or _RISKY.search(pred):
        # Never hand a long or explosive candidate to sympy; only MATH-style string normalisation.
        from mathruler.math_normalize import normalize_answer

        return normalize_answer(pred) == normalize_answer(gold)
    return bool(_grade_answer(pred, gold))


def _equal_once(pred: str, gold: str) -> bool:
    if not pred or not gold:
        return False
    if pred == gold:
        return True
    p, g = _plain_number(pred), _plain_number(gold)
    if p is not None and g is not None:
        return p == g
    return _mathruler_equal(pred, gold)


def answers_equal(pred: str, gold: str) -> bool:
    """True when the answer `pred` is equivalent to the gold answer `gold`. Never raises."""
    try:
        if not isinstance(pred, str) or not isinstance(gold, str):
            return False
        pred, gold = _unbox(pred), _unbox(gold)
        if pred == gold:
            return bool(gold)
        p, g = _plain_number(pred), _plain_number(gold)
        if p is not None and g is not None:  # the fast path: two plain numbers, no marks to strip
            return p == g
        if _equal_once(pred, gold):
            return True
        p2, g2 = strip_degree_percent(pred), strip_degree_percent(gold)
        if (p2, g2) != (pred, gold):
            return _equal_once(p2, g2)
        return False
    except Exception:  # malformed input of any kind is simply wrong
        return False


def grade(response: str, gold: str) -> tuple[float, str | None]:
    """Binary reward for one response: (1.0 or 0.0, the extracted answer or None when no box)."""
    pred = extract_boxed(response)
    if pred is None:
        return 0.0, None
    return (1.0 if answers_equal(pred, gold) else 0.0), pred
