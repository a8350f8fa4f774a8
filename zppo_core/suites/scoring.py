"""Scoring of benchmark responses: deterministic parsing first, the LLM judge only when parsing fails.

:func:`score` gives a :class:`Verdict` per response:

* a response that holds a ``<think>`` block is scored on the text after the last ``</think>``; one whose
  thinking was never closed (cut at the token limit) has no answer;
* **rule** (``\\boxed{}`` benchmarks): the last ``\\boxed{...}`` against the gold with
  :func:`zppo_core.tasks.graders.answers_equal` (plain numbers exactly, else mathruler, then the paper's
  degree/percent retry); every accepted answer of the row counts. Rows with options are scored as choice;
* **choice**: :func:`extract_choice` finds an option letter (boxed letter, "Answer: C", "the answer is (C)",
  "(C)", the last standalone capital letter within range, or the text of an option); never a letter
  outside the options;
* **exact** (InfoVQA, OCRBench v2): the answer is the last box, else the text after the last "answer:" /
  "answer is", else the last non-empty line; correct when :func:`normalize_exact` of it equals that of any
  accepted answer (Unicode NFKC, case-folded, whitespace collapsed, surrounding quotes/markdown and trailing
  punctuation removed, all whitespace removed when CJK characters are present), or when both are plain numbers
  with the same value. A binary stand-in for ANLS / the per-task OCRBench metrics; never judged;
* **official_judge**: undecided (``correct=None``, ``how="official_judge"``): the judge always decides.

When parsing finds no answer, the verdict is undecided (``correct=None``) if the benchmark falls back to the
judge, else wrong; ``how="no-answer"`` either way. :func:`judge_verdicts` then asks the judge engine (the
teacher, greedy) with :func:`judge_prompt` and reads a strict JSON verdict with :func:`parse_verdict`:
anything malformed is wrong.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zppo_core.rollout.base import SamplingParams
from zppo_core.tasks.graders import answers_equal, extract_boxed

if TYPE_CHECKING:  # pragma: no cover
    from zppo_core.suites.benchmarks import Benchmark
    from zppo_core.suites.data import EvalItem

__all__ = [
    "DEFAULT_JUDGE_TEMPLATE",
    "LETTERS",
    "Verdict",
    "extract_choice",
    "extract_short_answer",
    "final_text",
    "judge_prompt",
    "judge_verdicts",
    "normalize_exact",
    "parse_verdict",
    "score",
]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_JUDGED_RESPONSE_CHARS = 8000  # the judge sees the END of longer responses (where the final answer is)

DEFAULT_JUDGE_TEMPLATE = (
    "You are a strict grader. Decide whether the response below answers the question correctly. Judge only "
    "its final answer against the reference answer: equivalent forms (fractions vs decimals, units, option "
    "letter vs option text) count as correct; a missing, hedged or different final answer is incorrect.\n\n"
    "Question: {question}\n\nReference answer: {answer}\n\nResponse: {response}\n\n"
    'Reply with only a JSON object and nothing else: {"correct": true} if the response is correct, '
    'otherwise {"correct": false}.'
)


@dataclass
class Verdict:
    """How one response scored.

    correct: True / False, or None when undecided (the judge must decide: an official-judge benchmark, or no
      parsable answer on a benchmark with ``judge_fallback``).
    extracted: the answer parsing found (a letter for multiple choice), or None.
    how: "rule" | "choice" | "exact" | "official_judge" | "no-answer" | "judge".
    judge_output: the judge's raw reply, when the judge decided.
    """

    correct: bool | None
    extracted: str | None
    how: str
    judge_output: str | None = None

    @property
    def needs_judge(self) -> bool:
        """True when only the judge can decide this verdict."""
        return self.correct is None


# ------------------------------------------------------------------------------------------ helpers
_THINK_CLOSE = "</think>"


def final_text(response: str) -> str:
    """The part of `response` after its reasoning: text after the last ``</think>``; "" when a ``<think>`` was
    never closed (a response cut at the token limit has no final answer); else the whole response."""
    if not isinstance(response, str):
        return ""
    if _THINK_CLOSE in response:
        return response.rsplit(_THINK_CLOSE, 1)[1]
    if "<think>" in response:
        return ""
    return response


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_TRAILING_PUNCT = ".。,，;；:：!！?？、"
_QUOTES = "\"'`“”‘’「」『』*_ "
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\{([^{}]*)\}")


def _unwrap_latex(s: str) -> str:
    prev = None
    while prev != s:
        prev, s = s, _TEXT_WRAP.sub(r"\1", s)
    return s.replace("$", "")


def normalize_exact(s: str) -> str:
    """Normalise a short answer for exact matching (see the module docstring)."""
    s = unicodedata.normalize("NFKC", _unwrap_latex(str(s))).casefold()
    s = " ".join(s.split())
    prev = None
    while prev != s:
        prev = s
        s = s.strip(_QUOTES).rstrip(_TRAILING_PUNCT).strip()
    if _CJK.search(s):
        s = "".join(s.split())
    return s


_NUMBER = re.compile(r"[+-]?(?:\d+(?:,\d{3})*(?:\.\d*)?|\.\d+)")
_ANSWER_TAIL = re.compile(r"(?i:(?:final\s+)?answer(?:\s+is)?)\s*[:：]?\s*(.+)")


def extract_short_answer(response: str) -> str | None:
    """A short answer from a free-text response: the last box, else the text after the last "answer:" /
    "answer is", else the last non-empty line; None when the response is empty."""
    text = final_text(response)
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    tails = _ANSWER_TAIL.findall(text)
    if tails:
        return tails[-1].strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else None


def _exact_equal(pred: str, gold: str) -> bool:
    p, g = normalize_exact(pred), normalize_exact(gold)
    if not p or not g:
        return False
    if p == g:
        return True
    if _NUMBER.fullmatch(p) and _NUMBER.fullmatch(g):
        return answers_equal(p, g)
    return False


# ------------------------------------------------------------------------------------------ multiple choice
_LETTER_ALONE = re.compile(r"\(?\s*([A-Za-z])\s*\)?(?:\s*[.:：)\]]\s*(.*))?", re.DOTALL)
_EXPLICIT = re.compile(
    r"(?i:(?:final\s+)?answer(?:\s+is)?|option|choice)\s*[:：]?\s*(?:\*\*)?\s*[(\[]?\s*([A-Z])\s*[)\]]?(?![A-Za-z0-9])"
)
_PAREN = re.compile(r"[(\[]([A-Z])[)\]]")
_STANDALONE = re.compile(r"(?<![A-Za-z0-9\\'])([A-Z])(?![A-Za-z0-9'’])")


def _norm_text(s: str) -> str:
    return normalize_exact(s)


def _letter_of(candidate: str, valid: str, choices: Sequence[str] | None) -> str | None:
    """A valid letter when `candidate` is one ("C", "(C)", "C.", "C: text") or equals an option's text."""
    c = _unwrap_latex(candidate).strip().strip("*").strip()
    m = _LETTER_ALONE.fullmatch(c)
    if m:
        letter = m.group(1)
        rest = m.group(2)
        # a lowercase single letter only when it is the whole candidate ("\boxed{c}")
        if letter.islower() and (rest or len(c) > 3):
            letter = ""
        letter = letter.upper()
        if letter and letter in valid:
            return letter
    if choices:
        t = _norm_text(c)
        if t:
            for i, choice in enumerate(choices[: len(valid)]):
                if _norm_text(choice) == t:
                    return valid[i]
    return None


def extract_choice(response: str, n_choices: int, choices: Sequence[str] | None = None) -> str | None:
    """The option letter a response picks among the first `n_choices` letters, or None.

    Tried in order, the first that yields a letter within range wins: the last ``\\boxed{}`` (a letter, or an
    option's text); the last explicit "answer is C" / "Answer: (C)" / "option C"; the text after the last
    "answer:" equal to an option's text; the last "(C)"; the last standalone capital letter (not an article
    or pronoun like "A cat", "I think"); the last line equal to an option's text. Never returns a letter
    outside range.
    """
    if not isinstance(response, str) or n_choices <= 0:
        return None
    valid = LETTERS[: min(n_choices, len(LETTERS))]
    text = final_text(response)
    boxed = extract_boxed(text)
    if boxed is not None:
        got = _letter_of(boxed, valid, choices)
        if got:
            return got
    for m in reversed(list(_EXPLICIT.finditer(text))):
        if m.group(1) in valid:
            return m.group(1)
    if choices:
        tails = _ANSWER_TAIL.findall(text)
        if tails:
            got = _letter_of(tails[-1], valid, choices)
            if got:
                return got
    for m in reversed(list(_PAREN.finditer(text))):
        if m.group(1) in valid:
            return m.group(1)
    for m in reversed(list(_STANDALONE.finditer(text))):
        letter = m.group(1)
        if letter not in valid:
            continue
        if letter in "AI" and re.match(r"\s+[a-z]", text[m.end():]):
            continue  # "A cat", "I think": an article or a pronoun, not a choice
        return letter
    if choices:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        if lines:
            return _letter_of(lines[-1], valid, choices)
    return None


# ------------------------------------------------------------------------------------------ score
def _golds(item: EvalItem) -> list[str]:
    answers = item.meta.get("answers") if isinstance(item.meta, dict) else None
    golds = [str(a) for a in answers] if answers else []
    if item.answer is not None and str(item.answer) not in golds:
        golds.insert(0, str(item.answer))
    return [g for g in golds if g.strip()]


def _undecided(bench: Benchmark, extracted: str | None = None) -> Verdict:
    return Verdict(None if bench.judge_fallback else False, extracted, "no-answer")


def score(bench: Benchmark, item: EvalItem, response: str) -> Verdict:
    """Deterministic verdict for one response to `item` of `bench` (see the module docstring)."""
    if bench.scoring == "official_judge":
        return Verdict(None, extract_boxed(final_text(response)), "official_judge")
    if bench.scoring == "exact":
        pred = extract_short_answer(response)
        if pred is None or not normalize_exact(pred):
            return _undecided(bench)
        return Verdict(any(_exact_equal(pred, g) for g in _golds(item)), pred, "exact")
    if item.choices:
        letter = extract_choice(response, len(item.choices), item.choices)
        if letter is None:
            return _undecided(bench)
        return Verdict(letter == str(item.answer).strip().upper(), letter, "choice")
    pred = extract_boxed(final_text(response))
    if pred is None or not pred:
        return _undecided(bench, pred)
    return Verdict(any(answers_equal(pred, g) for g in _golds(item)), pred, "rule")


# ------------------------------------------------------------------------------------------ judge
def _gold_for_judge(item: EvalItem) -> str:
    if isinstance(item.meta, dict) and item.meta.get("judge_answer"):
        return str(item.meta["judge_answer"])
    golds = _golds(item)
    if item.choices:
        letter = str(item.answer).strip().upper()
        idx = LETTERS.find(letter) if len(letter) == 1 else -1
        if 0 <= idx < len(item.choices):
            return f"{letter}. {item.choices[idx]}"
    return " | ".join(golds) if golds else str(item.answer)


def _question_for_judge(item: EvalItem) -> str:
    q = item.meta.get("question") if isinstance(item.meta, dict) else None
    q = str(q) if q else item.prompt
    if item.choices and isinstance(item.meta, dict) and item.meta.get("question"):
        q += "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    return q


def judge_prompt(item: EvalItem, response: str, bench: Benchmark | None = None) -> str:
    """The judge's user message for one (item, response): the benchmark's official template when it has one,
    else :data:`DEFAULT_JUDGE_TEMPLATE`. It asks for ``{"correct": true|false}`` only. The response's reasoning
    is dropped and only its last :data:`MAX_JUDGED_RESPONSE_CHARS` characters are shown."""
    template = (bench.judge_template if bench is not None and bench.judge_template else None) or DEFAULT_JUDGE_TEMPLATE
    shown = final_text(response).strip() or str(response or "").strip()
    if len(shown) > MAX_JUDGED_RESPONSE_CHARS:
        shown = "[...] " + shown[-MAX_JUDGED_RESPONSE_CHARS:]
    # one pass over the placeholders, so braces inside the question or response are never re-substituted
    values = {"{question}": _question_for_judge(item), "{answer}": _gold_for_judge(item), "{response}": shown}
    return re.sub(r"\{question\}|\{answer\}|\{response\}", lambda m: values[m.group(0)], template)


_FENCE = re.compile(r"```(?:json)?[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL | re.IGNORECASE)


def parse_verdict(text: str) -> bool:
    """The judge's verdict: the boolean ``correct`` of a strict JSON object (surrounding whitespace, a
    ```json fence and a leading closed ``<think>`` block are allowed). Anything else is malformed: False."""
    if not isinstance(text, str):
        return False
    s = final_text(text).strip()
    m = _FENCE.fullmatch(s)
    if m:
        s = m.group(1).strip()
    try:
        obj = json.loads(s)
    except (ValueError, RecursionError):
        return False
    if not isinstance(obj, dict):
        return False
    verdict = obj.get("correct")
    return verdict if isinstance(verdict, bool) else False


def judge_verdicts(
    engine: Any,
    render: Callable[[str], list[int]],
    items_and_responses: Sequence[tuple],
    max_new_tokens: int = 512,
    bench: Benchmark | None = None,
) -> list[Verdict]:
    """Judge each (item, response) or (item, response, bench) with one greedy completion of `engine`.

    `render` turns the judge's user message into prompt token ids (the judge model's chat template). The
    third tuple element, when given, overrides `bench` (whose official template, if any, is used). Returns
    one Verdict per pair, in order: ``how="judge"``, ``correct`` from :func:`parse_verdict` (malformed =
    False), ``extracted`` the response's last box, ``judge_output`` the judge's reply.
    """
    if not items_and_responses:
        return []
    prompts = []
    for entry in items_and_responses:
        item, response = entry[0], entry[1]
        b = entry[2] if len(entry) > 2 and entry[2] is not None else bench
        prompts.append(render(judge_prompt(item, response, b)))
    params = SamplingParams(n=1, temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=max_new_tokens)
    outs = engine.generate(prompts, params)
    verdicts = []
    for entry, completions in zip(items_and_responses, outs, strict=True):
        text = completions[0].text if completions else ""
        verdicts.append(Verdict(parse_verdict(text), extract_boxed(final_text(entry[1])), "judge", judge_output=text))
    return verdicts
