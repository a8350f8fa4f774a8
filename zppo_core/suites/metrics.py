"""The benchmarks' own per-answer metrics (``Benchmark.metric``), written after their official scorers.

* ``anls`` (InfoVQA): Average Normalized Levenshtein Similarity, τ = 0.5: per accepted answer
  NL = edit distance / max length of the lower-cased, space-collapsed strings; the answer scores 1 − NL when
  NL < 0.5, else 0; the best accepted answer counts (DocVQA/InfographicVQA definition, as lmms-eval
  ``api/metrics.py`` ``anls``).
* ``mathvista``: ``evaluation/calculate_score.py`` ``normalize_extracted_answer`` of lupantech/MathVista: a
  multiple-choice answer becomes an option (its letter, "(B)", or the option nearest by edit distance); an
  integer answer ``str(int(float(x)))``; a float answer ``str(round(float(x), precision))``; a list ``str(x)``;
  then string equality with the gold. The answer is the last ``\\boxed{}`` (the official run extracts it with
  GPT-4; LaTeX fractions are read as numbers here); no box: the judge decides.
* ``vlms_blind``: lmms-eval ``tasks/vlmsareblind/utils.py`` ``parse_response`` by task ({n}, {letter}, yes/no,
  rows×columns), reading the last match of the answer part instead of the first of a 32-token reply.
* ``ocrbench_v2``: Yuliang-Liu/MultimodalOCR ``OCRBench_v2/eval_scripts/vqa_metric.py`` and ``eval.py`` by task
  type: VQA answers under 5 words (under 4 comma parts in Chinese) by containment, longer ones by ANLS ≥ 0.5;
  multiple choice by the letters of the reply; case-sensitive VQA; counting (exact or regression); formulas by
  containment without spaces; handwritten-answer extraction; key-information extraction by per-key F1 over
  the gold's value combinations; text grounding by IoU; VQA-with-position by ½ content + ½ IoU. Not
  implemented (those items are skipped and counted, and the score is marked not comparable): table, chart and
  document parsing (TEDS), full-page / fine-grained OCR, translation and short-answer handwriting (BLEU,
  METEOR, F-measure, edit distance) and text spotting (ICDAR protocol).

Aggregations (``Benchmark.aggregate``) are in :mod:`zppo_core.suites.aggregate`.
"""

from __future__ import annotations

import ast
import json
import re
from itertools import product
from typing import TYPE_CHECKING

from zppo_core.tasks.graders import extract_boxed

if TYPE_CHECKING:  # pragma: no cover
    from zppo_core.suites.data import EvalItem

__all__ = ["OCRBENCH_V2_CATEGORY", "anls", "levenshtein", "mathvista_normalize", "ocrbench_v2_score",
           "ocrbench_v2_unsupported", "vlms_blind_parse"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions of one character each)."""
    if len(a) > len(b):
        a, b = b, a
    prev = list(range(len(a) + 1))
    for j, cb in enumerate(b, 1):
        cur = [j]
        for i, ca in enumerate(a, 1):
            cur.append(prev[i - 1] if ca == cb else 1 + min(prev[i - 1], prev[i], cur[-1]))
        prev = cur
    return prev[-1]


def _nls(pred: str, gold: str) -> float:
    """1 − normalised edit distance of two already-normalised strings (1.0 for two empty strings)."""
    length = max(len(pred), len(gold))
    return 1.0 if length == 0 else 1.0 - levenshtein(pred, gold) / length


def anls(pred: str, golds: list[str], tau: float = 0.5) -> float:
    """ANLS of one prediction against its accepted answers (see the module docstring)."""
    p = " ".join(str(pred).strip().lower().split())
    best = 0.0
    for g in golds:
        s = _nls(p, " ".join(str(g).strip().lower().split()))
        if 1.0 - s < tau:
            best = max(best, s)
    return best


# ------------------------------------------------------------------------------------------ MathVista
_FRAC = re.compile(r"^\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}$")


def _as_float(s: str) -> float | None:
    t = re.sub(r"\\(?:text|mathrm|mbox)\{[^{}]*\}", "", s).replace("$", "").replace(",", "").strip()
    t = t.replace("\\%", "").rstrip("%").strip()
    m = _FRAC.match(t)
    try:
        return float(m.group(1)) / float(m.group(2)) if m else float(t)
    except (ValueError, ZeroDivisionError):
        return None


def mathvista_normalize(extraction: str, item: EvalItem) -> str | None:
    """The extraction normalised by the item's answer type (``calculate_score.py``); for multiple choice, the
    chosen option's letter. None when a number was expected and the extraction is none."""
    meta = item.meta if isinstance(item.meta, dict) else {}
    ex = str(extraction).strip()
    if item.choices:
        m = re.findall(r"\(([a-zA-Z])\)", ex)
        letter = m[0].upper() if m else ex
        letters = LETTERS[: len(item.choices)]
        if letter in letters:
            return letter
        dists = [levenshtein(ex, c) for c in item.choices]
        return letters[dists.index(min(dists))]
    answer_type = meta.get("answer_type")
    if answer_type in ("integer", "float"):
        v = _as_float(ex)
        if v is None:
            return None
        if answer_type == "integer":
            return str(int(v))
        return str(round(v, int(meta.get("precision") or 0)))
    return ex


# ------------------------------------------------------------------------------------------ VLMs are Blind
def vlms_blind_parse(text: str, task: str) -> str | None:
    """The answer of a VLMs-are-Blind reply for its task (lowercase), or None when it has no answer in the
    format the task's prompt asks for."""
    t, task = str(text).strip().lower(), str(task).strip().lower()
    if task.startswith("counting grid"):
        for pat in (r"\{(\d+)\}\s*\{(\d+)\}", r"\((\d+)\s*,\s*(\d+)\)", r"rows=\{(\d+)\}\s*columns=\{(\d+)\}"):
            hits = re.findall(pat, t)
            if hits:
                return f"{hits[-1][0]},{hits[-1][1]}"
        return None
    if task == "touching circles":
        hits = re.findall(r"\b(yes|no)\b", t)
        return hits[-1] if hits else None
    if task == "circled letter":
        hits = re.findall(r"\{([a-z])\}", t) or re.findall(r"^\W*([a-z])\W*$", t)
        return hits[-1] if hits else None
    hits = re.findall(r"\{(\d+)\}", t) or re.findall(r"\b(\d+)\b", t)
    return hits[-1] if hits else None


# ------------------------------------------------------------------------------------------ OCRBench v2
_VQA_EN = {"APP agent en", "ASCII art classification en", "math QA en", "reasoning VQA en", "science QA en",
           "text recognition en", "document classification en", "cognition VQA en", "diagram QA en"}
_VQA_CN = {"cognition VQA cn", "reasoning VQA cn"}
_UNSUPPORTED = {
    "table parsing en": "TEDS", "table parsing cn": "TEDS", "chart parsing en": "TEDS",
    "document parsing en": "TEDS", "document parsing cn": "TEDS", "full-page OCR en": "BLEU/METEOR",
    "full-page OCR cn": "BLEU/METEOR", "fine-grained text recognition en": "BLEU/METEOR",
    "text translation cn": "BLEU/METEOR", "text spotting en": "ICDAR spotting",
}
# task type -> the category whose mean enters the official average (OCRBench_v2/eval_scripts/get_score.py)
OCRBENCH_V2_CATEGORY = {
    **dict.fromkeys(("text recognition en", "fine-grained text recognition en", "full-page OCR en"),
                    "text recognition"),
    **dict.fromkeys(("text grounding en", "VQA with position en"), "text detection"),
    "text spotting en": "text spotting",
    **dict.fromkeys(("key information extraction en", "key information mapping en"), "relationship extraction"),
    **dict.fromkeys(("document parsing en", "chart parsing en", "table parsing en", "formula recognition en"),
                    "element parsing"),
    **dict.fromkeys(("math QA en", "text counting en"), "mathematical calculation"),
    **dict.fromkeys(("document classification en", "cognition VQA en", "diagram QA en"), "visual text understanding"),
    **dict.fromkeys(("reasoning VQA en", "science QA en", "APP agent en", "ASCII art classification en"),
                    "knowledge reasoning"),
    "full-page OCR cn": "text recognition",
    **dict.fromkeys(("key information extraction cn", "handwritten answer extraction cn"), "relationship extraction"),
    **dict.fromkeys(("document parsing cn", "table parsing cn", "formula recognition cn"), "element parsing"),
    "cognition VQA cn": "visual text understanding",
    **dict.fromkeys(("reasoning VQA cn", "text translation cn"), "knowledge reasoning"),
}


def ocrbench_v2_unsupported(item: EvalItem) -> str | None:
    """Why this OCRBench v2 item cannot be scored here (its type's metric), or None."""
    meta = item.meta if isinstance(item.meta, dict) else {}
    t = str(meta.get("type", ""))
    if t in _UNSUPPORTED:
        return f"{t} ({_UNSUPPORTED[t]})"
    if t == "handwritten answer extraction cn" and "简答" in str(meta.get("question", "")):
        return f"{t}, short answers (BLEU/METEOR)"
    if t not in OCRBENCH_V2_CATEGORY:
        return f"unknown task type {t!r}"
    return None


def _vqa(pred: str, answers: list[str], case: bool = False, cn: bool = False) -> float:
    score = 0.0
    p = pred.strip().replace("\n", " ")
    p = p if case else p.lower()
    if cn:
        p = p.replace(" ", "")
    for a in answers:
        a = str(a).strip().replace("\n", " ")
        a = a if case else a.lower()
        if cn:
            a = a.replace(" ", "")
        short = len(a.split(",")) < 4 if cn else len(a.split()) < 5
        if short:
            if a in p:
                score = 1.0
        else:
            s = _nls(p, a)
            if s >= 0.5 and s > score:
                score = s
    return score


def _counting(pred: str, answers: list[str], method: str) -> float:
    p = pred.lower().strip().replace("\n", " ")
    best = 0.0
    for a in answers:
        a = str(a).lower().strip().replace("\n", " ")
        if method == "exact match":
            s = 1.0 if a in p else 0.0
        else:  # regression
            m = re.search(r"\d+", p)
            n, g = (int(m.group()) if m else 0), int(a)
            s = 0.0 if not n or n >= 2 * g else max(0.0, 1 - abs(n - g) / g)
            s = s if s > 0.5 else 0.0
        best = max(best, s)
    return best


def _kie_dict(text: str) -> dict[str, str]:
    """A key -> value dict from a reply (OCRBench v2 TEDS_metric.convert_str_to_dict): JSON, a Python literal, or
    ``key: value`` pairs."""
    m = re.search(r"```(?:python|json)?\n(.*?)\n```", text, re.DOTALL | re.IGNORECASE)
    content = m.group(1) if m else text.strip()
    data = None
    for parse in (json.loads, ast.literal_eval):
        try:
            data = parse(content)
            break
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    if not isinstance(data, dict):
        data = {k.strip(): v.strip() for k, v in
                re.findall(r'["\']?([\w\s]+)["\']?\s*[:=]\s*["\']?([^\n,"\'{}]+)["\']?', content)}
    return {str(k).strip(): str(v).strip() for k, v in data.items()}


def _kie_golds(gold) -> list[dict]:
    if not isinstance(gold, dict):
        try:
            gold = json.loads(str(gold).strip('"'))
        except json.JSONDecodeError:
            gold = ast.literal_eval(str(gold).strip('"'))
    keys = list(gold)
    values = [v if isinstance(v, list) else [v] for v in gold.values()]
    return [dict(zip(keys, combo)) for combo in product(*values)]


def _kie_f1(pred: dict[str, str], gold: dict) -> float:
    norm = lambda v: str(v).lower().strip().replace("\n", " ").replace(" ", "")  # noqa: E731
    scores = []
    for key in set(pred) | set(gold):
        p, g = pred.get(key), gold.get(key)
        if not p and not g:
            continue
        scores.append(1.0 if p and g is not None and norm(p) == norm(g) else 0.0)
    return sum(scores) / len(scores) if scores else 0.0


def _iou(a, b) -> float:
    try:
        a, b = [int(v) for v in a], [int(v) for v in b]
    except (TypeError, ValueError):
        return 0.0
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


def _last_box(text: str) -> list[int] | None:
    pattern = r"[\(\[]\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*[\)\]]"  # (x1, y1, x2, y2) or [...]
    hits = [tuple(map(int, m)) for m in re.findall(pattern, text)]
    hits = [h for h in hits if all(0 <= n <= 1000 for n in h)]
    return list(hits[-1]) if hits else None


def ocrbench_v2_score(item: EvalItem, pred: str) -> float:
    """The official score (0..1) of reply `pred` to a supported OCRBench v2 item (see the module docstring)."""
    meta = item.meta if isinstance(item.meta, dict) else {}
    t, method = str(meta.get("type", "")), str(meta.get("eval", ""))
    answers = [str(a) for a in (meta.get("answers") or [item.answer])]
    if t in _VQA_EN or t in _VQA_CN:
        if method == "multiple choice":
            return 1.0 if "".join(c for c in pred if c.isalpha()) == answers[0] else 0.0
        if method == "case sensitive":
            return _vqa(pred, answers, case=True)
        return _vqa(pred, answers, cn=t in _VQA_CN)
    if t == "text counting en":
        return _counting(pred, answers, method)
    if t in ("formula recognition en", "formula recognition cn"):
        strip = lambda s: re.sub(r"\\text\{([^{}]*)\}", r"\1", s) if t.endswith("cn") else s  # noqa: E731
        p = strip(pred).strip().replace("\n", " ").replace(" ", "")
        return float(any(strip(a).strip().replace("\n", " ").replace(" ", "") in p for a in answers))
    if t == "handwritten answer extraction cn":
        chars = list(answers[0])
        forms = ["".join(chars)] if len(chars) <= 1 else [sep.join(chars) for sep in
                                                          ("", ".", ". ", ",", ", ", "、", ";", "; ", " ", "和")]
        return float(any(f in pred for f in forms))
    if t.startswith(("key information extraction", "key information mapping")):
        golds = _kie_golds(answers[0])
        got = _kie_dict(pred)
        return max((_kie_f1(got, g) for g in golds), default=0.0)
    if t == "text grounding en":
        box = _last_box(pred)
        return _iou(box, answers) if box else 0.0
    if t == "VQA with position en":
        got = _kie_dict(pred)
        content = _vqa(got["answer"], answers) if "answer" in got else 0.0
        try:
            box = _iou(ast.literal_eval(got["bbox"]), meta.get("bbox") or []) if "bbox" in got else 0.0
        except (ValueError, SyntaxError):
            box = 0.0
        return 0.5 * content + 0.5 * box
    raise ValueError(f"OCRBench v2 type {t!r} has no metric here")


def boxed_or_text(text: str) -> str:
    """The last ``\\boxed{}`` of `text`, else the text itself (stripped)."""
    b = extract_boxed(text)
    return b if b is not None else text.strip()
