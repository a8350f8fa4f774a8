"""A benchmark's headline number from its items' per-sample scores (``Benchmark.aggregate``).

Every item is one question, keyed by (config, split, id): C-Eval's ids restart in every subject, DynaMath repeats
its seed ids in each of its 10 variant splits. With k samples an item's score is the mean of its k sample scores
(pass@1 estimated as mean@k); the official metrics that are not a mean over questions are computed once per
sample index and averaged over the k indices.

* ``mean``: the mean over items (flat accuracy: lm-evaluation-harness ``weight_by_size`` for C-Eval and
  MMLU-Redux; the plain mean for the rest; ANLS and partial credit enter as their 0..1 scores).
* ``wemath``: We-Math's official Score over its two- and three-step problems (We-Math/We-Math
  ``evaluation/four_dimensional_metrics.py``): a problem is its one-step sub-questions plus the composite
  question (rows sharing ``ID``, ``key`` = ``2steps_1`` .. ``3steps_multi``). Insufficient Knowledge (IK): a
  sub-question wrong and the composite wrong; Inadequate Generalization (IG): all subs right, composite wrong;
  Rote Memorization (RM): composite right while subs are wrong (strict: any sub wrong; loose: all subs wrong).
  Score = (N − 0.5·IG − RM − IK) / N with N problems (525 in testmini). Headline: strict (the first column of
  the official table); loose and the flat accuracy are reported beside it. Problems missing a part (``--limit``)
  are left out.
* ``mmmu_pro``: the mean of the accuracies of ``standard (10 options)`` and ``vision`` (MMMU-Pro's overall
  score; MMMU-Benchmark/MMMU ``mmmu-pro``); ``standard (4 options)`` is reported beside it.
* ``ocrbench_v2``: the mean over task categories of the category's mean score (OCRBench_v2
  ``eval_scripts/get_score.py``: 8 English, 5 Chinese categories).
* ``charxiv``: reasoning accuracy and descriptive accuracy (CharXiv reports them separately); the headline is
  their mean, the paper's "reasoning + descriptive" (how the paper combines them is not stated).
* ``dynamath``: average-case accuracy over all variants (headline) and worst-case accuracy (a seed question
  counts only when all its variants are right), as the DynaMath paper reports.

:func:`aggregate` returns (headline percent, parts in percent, whether the headline is computable as the
benchmark defines it).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from zppo_core.suites.metrics import OCRBENCH_V2_CATEGORY

if TYPE_CHECKING:  # pragma: no cover
    from zppo_core.suites.benchmarks import Benchmark
    from zppo_core.suites.data import EvalItem

__all__ = ["aggregate", "wemath_scores"]

ItemScores = Sequence[tuple["EvalItem", Sequence[float]]]
MMMU_PRO_HEADLINE = ("standard (10 options)", "vision")


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def _item_means(per_item: ItemScores) -> list[float]:
    return [_mean(s) for _, s in per_item]


def _meta(item) -> dict:
    return item.meta if isinstance(item.meta, dict) else {}


def wemath_scores(rows: Sequence[tuple[str, str, bool]]) -> dict[str, float]:
    """We-Math's four-dimensional counts and scores from (problem ID, key, correct) rows of one sample."""
    problems: dict[str, dict[str, bool]] = defaultdict(dict)
    for pid, key, ok in rows:
        problems[str(pid)][str(key)] = bool(ok)
    counts = dict.fromkeys(("IK", "IG", "CM_strict", "CM_loose", "RM_strict", "RM_loose"), 0)
    n = 0
    for parts in problems.values():
        steps = next((int(k[0]) for k in parts if k[:1] in "23" and k[1:6] == "steps"), None)
        if steps is None or any(f"{steps}steps_{i}" not in parts for i in range(1, steps + 1)) or \
                f"{steps}steps_multi" not in parts:
            continue  # incomplete problem, or a one-step row (not part of the four-dimensional score)
        n += 1
        subs = [parts[f"{steps}steps_{i}"] for i in range(1, steps + 1)]
        multi = parts[f"{steps}steps_multi"]
        if multi:
            counts["RM_strict"] += not all(subs)
            counts["RM_loose"] += not any(subs)
            counts["CM_strict"] += all(subs)
            counts["CM_loose"] += any(subs)
        else:
            counts["IG"] += all(subs)
            counts["IK"] += not all(subs)
    out = {k: float(v) for k, v in counts.items()}
    out["problems"] = float(n)
    if n:
        out["score_strict"] = (n - 0.5 * counts["IG"] - counts["RM_strict"] - counts["IK"]) / n
        out["score_loose"] = (n - 0.5 * counts["IG"] - counts["RM_loose"] - counts["IK"]) / n
    return out


def _wemath(per_item: ItemScores) -> tuple[float, dict[str, float], bool]:
    k = max((len(s) for _, s in per_item), default=0)
    strict, loose, problems = [], [], 0.0
    for i in range(k):
        rows = [(_meta(it).get("ID"), _meta(it).get("key"), s[i] >= 1.0) for it, s in per_item if i < len(s)]
        got = wemath_scores(rows)
        problems = got["problems"]
        if "score_strict" in got:
            strict.append(got["score_strict"])
            loose.append(got["score_loose"])
    parts = {"accuracy": 100 * _mean(_item_means(per_item)), "problems": problems}
    if not strict:
        return parts["accuracy"], parts, False
    parts.update(score_strict=100 * _mean(strict), score_loose=100 * _mean(loose))
    return parts["score_strict"], parts, True


def _by(per_item: ItemScores, key) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = defaultdict(list)
    for it, s in per_item:
        groups[key(it)].append(_mean(s))
    return groups


def aggregate(bench: Benchmark, per_item: ItemScores) -> tuple[float, dict[str, float], bool]:
    """(headline percent, parts in percent, complete) for `bench` from (item, per-sample scores 0..1) pairs.
    `complete` is False when a part the headline needs is missing (e.g. only one MMMU-Pro config evaluated)."""
    flat = 100 * _mean(_item_means(per_item))
    kind = bench.aggregate
    if kind == "mean" or not per_item:
        return flat, {}, True
    if kind == "wemath":
        return _wemath(per_item)
    if kind == "mmmu_pro":
        acc = {c: 100 * _mean(v) for c, v in _by(per_item, lambda it: str(_meta(it).get("config"))).items()}
        present = [acc[c] for c in MMMU_PRO_HEADLINE if c in acc]
        return (_mean(present) if present else flat), acc, len(present) == len(MMMU_PRO_HEADLINE)
    if kind == "ocrbench_v2":
        cats = _by(per_item, lambda it: OCRBENCH_V2_CATEGORY.get(str(_meta(it).get("type")), "other"))
        parts = {c: 100 * _mean(v) for c, v in cats.items()}
        return _mean(parts.values()), parts, True
    if kind == "charxiv":
        kinds = _by(per_item, lambda it: "reasoning" if _meta(it).get("kind") == "reasoning" else "descriptive")
        parts = {k: 100 * _mean(v) for k, v in kinds.items()}
        return _mean(parts.values()), parts, len(parts) == 2
    if kind == "dynamath":
        seeds: dict[str, list[bool]] = defaultdict(list)
        for it, s in per_item:
            seeds[str(it.id)].append(all(x >= 1.0 for x in s))
        return flat, {"average": flat, "worst_case": 100 * _mean(all(v) for v in seeds.values())}, True
    if kind == "by_task":
        parts = {t: 100 * _mean(v) for t, v in _by(per_item, lambda it: str(_meta(it).get("task"))).items()}
        return flat, parts, True
    raise ValueError(f"{bench.name}: unknown aggregate {kind!r}")
