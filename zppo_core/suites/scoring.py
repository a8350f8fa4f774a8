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
* **exact** (InfoVQA, OCRBench v2): the benchmark's metric (``Benchmark.metric``) on the answer; never judged;
* **official_judge**: undecided (``correct=None``, ``how="official_judge"``): the judge always decides.

A benchmark's own metric replaces these where it has one (:mod:`zppo_core.suites.metrics`: InfoVQA's ANLS,
MathVista's normalisation by answer type, VLMs-are-Blind's answer formats, OCRBench v2's per-type metrics).
A verdict carries a ``score`` in [0, 1] (partial credit: ANLS, OCRBench v2, MM-Vet's judge); ``correct`` is
True only for full credit.

When parsing finds no answer, the verdict is undecided (``correct=None``) if the benchmark falls back to the
judge, else wrong; ``how="no-answer"`` either way. :func:`judge_verdicts` then asks the judge engine (the
teacher, greedy) with the benchmark's judge prompt (:mod:`zppo_core.suites.judges`: the official one where the
benchmark publishes it, else the paper's strict JSON verdict) and reads its reply; anything unreadable is wrong.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zppo_core.suites.judges import DEFAULT_TEMPLATE, JUDGES, JudgeSpec, parse_json_verdict
from zppo_core.rollout.base import SamplingParams, generate_messages
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
    "parse_verdict",
    "score",
]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MAX_JUDGED_RESPONSE_CHARS = 8000  # the judge sees the END of longer responses (where the final answer is)

DEFAULT_JUDGE_TEMPLATE = DEFAULT_TEMPLATE  # the paper's strict JSON verdict (zppo_core.suites.judges)


@dataclass
class Verdict:
    """How one response scored.

    correct: True (full credit) / False, or None when undecided (the judge must decide: an official-judge
      benchmark, or no parsable answer on a benchmark with ``judge_fallback``).
    extracted: the answer parsing found (a letter for multiple choice), or None.
    how: "rule" | "choice" | "exact" | "official_judge" | "no-answer" | "judge" | a metric name ("anls" ...).
    judge_output: the judge's raw reply, when the judge decided.
    score: the credit in [0, 1] when it is partial (ANLS, OCRBench v2, MM-Vet); None: 1 if correct else 0.
    """

    correct: bool | None
    extracted: str | None
    how: str
    judge_output: str | None = None
    score: float | None = None

    @property
    def needs_judge(self) -> bool:
        """True when only the judge can decide this verdict."""
        return self.correct is None

    @property
    def value(self) -> float:
        """The credit in [0, 1] (an undecided verdict is 0)."""
        if self.score is not None:
            return float(self.score)
        return 1.0 if self.correct else 0.0


def _credit(how: str, value: float, extracted: str | None) -> Verdict:
    return Verdict(value >= 1.0 - 1e-9, extracted, how, score=value)


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


_TEXT_WRAP = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\{([^{}]*)\}")


def _unwrap_latex(s: str) -> str:
    prev = None
    while prev != s:
        prev, s = s, _TEXT_WRAP.sub(r"\1", s)
    return s.replace("$", "")


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


# ------------------------------------------------------------------------------------------ multiple choice
_LETTER_ALONE = re.compile(r"\(?\s*([A-Za-z])\s*\)?(?:\s*[.:：)\]]\s*(.*))?", re.DOTALL)
_EXPLICIT = re.compile(
    r"(?i:(?:final\s+)?answer(?:\s+is)?|option|choice)\s*[:：]?\s*(?:\*\*)?\s*[(\[]?\s*([A-Z])\s*[)\]]?(?![A-Za-z0-9])"
)
_PAREN = re.compile(r"[(\[]([A-Z])[)\]]")
_STANDALONE = re.compile(r"(?<![A-Za-z0-9\\'])([A-Z])(?![A-Za-z0-9'’])")


def _norm_text(s: str) -> str:
    """An option text for comparison: LaTeX text wrappers dropped, NFKC, case-folded, spaces collapsed, surrounding
    quotes/markdown and trailing punctuation removed."""
    s = " ".join(unicodedata.normalize("NFKC", _unwrap_latex(str(s))).casefold().split())
    prev = None
    while prev != s:
        prev = s
        s = s.strip("\"'`“”‘’*_ ").rstrip(".。,，;；:：!！?？、").strip()
    return s


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


def _metric_verdict(bench: Benchmark, item: EvalItem, response: str) -> Verdict:
    from zppo_core.suites import metrics

    text = final_text(response)
    if bench.metric == "anls":
        pred = extract_short_answer(response)
        if pred is None or not pred.strip():
            return _undecided(bench)
        return _credit("anls", metrics.anls(pred, _golds(item)), pred)
    if bench.metric == "ocrbench_v2":
        if not text.strip():
            return _undecided(bench)
        return _credit("ocrbench_v2", metrics.ocrbench_v2_score(item, text.strip()), text.strip()[:200])
    if bench.metric == "mathvista":
        pred = extract_boxed(text)
        norm = metrics.mathvista_normalize(pred, item) if pred else None
        if norm is None:
            return _undecided(bench, pred)
        return Verdict(norm == str(item.answer).strip(), norm, "mathvista")
    if bench.metric == "vlms_blind":
        task = item.meta.get("task", "") if isinstance(item.meta, dict) else ""
        got = metrics.vlms_blind_parse(text, task)
        if got is None:
            return _undecided(bench)
        gold = str(item.answer).strip().lower()
        return Verdict(got == (metrics.vlms_blind_parse(gold, task) or gold), got, "vlms_blind")
    raise ValueError(f"{bench.name}: unknown metric {bench.metric!r}")


def score(bench: Benchmark, item: EvalItem, response: str) -> Verdict:
    """Deterministic verdict for one response to `item` of `bench` (see the module docstring)."""
    if bench.scoring == "official_judge":
        return Verdict(None, extract_boxed(final_text(response)), "official_judge")
    if bench.metric != "default":
        return _metric_verdict(bench, item, response)
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
def judge_spec(bench: Benchmark | None) -> JudgeSpec:
    """The judge protocol of `bench` (the paper's strict JSON verdict when it has none of its own)."""
    return JUDGES[bench.judge if bench is not None else "default"]


def _shown(response: str) -> str:
    shown = final_text(response).strip() or str(response or "").strip()
    if len(shown) > MAX_JUDGED_RESPONSE_CHARS:
        shown = "[...] " + shown[-MAX_JUDGED_RESPONSE_CHARS:]
    return shown


def judge_prompt(item: EvalItem, response: str, bench: Benchmark | None = None) -> str:
    """The judge's user message for one (item, response): the benchmark's judge prompt (official where it
    publishes one, else the paper's strict JSON verdict). The response's reasoning is dropped and only its last
    :data:`MAX_JUDGED_RESPONSE_CHARS` characters are shown."""
    return judge_spec(bench).build(item, _shown(response))


def parse_verdict(text: str) -> bool:
    """The paper's judge verdict: the boolean ``correct`` of a strict JSON object (surrounding whitespace, a
    ```json fence and a leading closed ``<think>`` block are allowed). Anything else is malformed: False."""
    obj = parse_json_verdict(text, strict=True)
    verdict = obj.get("correct") if obj else None
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
    third tuple element, when given, overrides `bench` (whose judge protocol is used). Returns one Verdict per
    pair, in order: ``how="judge"``, ``score`` the credit read from the reply (unreadable = 0), ``correct``
    full credit, ``extracted`` the response's last box, ``judge_output`` the judge's reply. The budget is the
    larger of `max_new_tokens` and what the protocol asks for (HLE's judge writes its reasoning first).
    """
    if not items_and_responses:
        return []
    specs, messages = [], []
    for entry in items_and_responses:
        b = entry[2] if len(entry) > 2 and entry[2] is not None else bench
        spec = judge_spec(b)
        specs.append(spec)
        messages.append(spec.build(entry[0], _shown(entry[1])))
    budget = max([max_new_tokens] + [s.max_new_tokens for s in specs])
    params = SamplingParams(n=1, temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=budget)
    # a served judge (ChatEngine) gets the messages and applies its own chat template; others get render(text)
    outs = generate_messages(engine, [[{"role": "user", "content": m}] for m in messages], params,
                             render=lambda conv: render(conv[0]["content"]),
                             template_kwargs=getattr(render, "template_kwargs", None))
    verdicts = []
    for entry, spec, completions in zip(items_and_responses, specs, outs, strict=True):
        text = completions[0].text if completions else ""
        credit = min(1.0, max(0.0, float(spec.parse(text, entry[0]))))
        verdicts.append(Verdict(credit >= 1.0, extract_boxed(final_text(entry[1])), "judge", judge_output=text,
                                score=credit))
    return verdicts
