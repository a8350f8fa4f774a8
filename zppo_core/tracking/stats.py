"""Uncertainty of logged scores: how many items a score rests on, its standard error, 95 % intervals.

Accuracies are percentages everywhere zppo logs them (train, held-out, eval suites), so every number here is in
percent / percentage points. An eval score is mean@k over n items (k samples per item); items are the unit of
independence, so the standard error is the spread of the per-item scores over √n (for k = 1 it is the binomial
√(p(1−p)/n) up to n/(n−1)). Beside each eval metric `eval/<family>/<benchmark>` the tracker logs
`eval_n/<family>/<benchmark>` (items) and `eval_se/<family>/<benchmark>` (standard error, points); a family
average's n is the sum of its benchmarks' and its se the se of the mean of independent scores.

Intervals: the Wilson score interval (which stays inside [0, 100] and is not symmetric near the edges, where tiny
scores live) on the effective number of items p(1−p)/se² — n − 1 for one sample per item, more when k samples per
item agree less than coin flips would; at 0 or 100 % (no spread) on the n items themselves.

Differences between two runs: both were evaluated on the same fixed questions, so when both runs' per-sample
verdicts of that eval are at hand (the samples table of their final eval) the difference is *paired* — the mean
of the per-question differences, with their standard error — which removes the questions' own difficulty from the
noise. Otherwise it falls back to the unpaired √(se_a² + se_b²), which is conservative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

Z95 = 1.959963984540054

N_PREFIX, SE_PREFIX = "eval_n/", "eval_se/"


def item_scores(records: Iterable[Any]) -> list[float]:
    """Per-item score in percent from per-sample records (attributes or keys `id`, `correct`), item order kept."""
    by_item: dict[str, list[bool]] = {}
    for r in records:
        rid = r["id"] if isinstance(r, dict) else r.id
        ok = r["correct"] if isinstance(r, dict) else r.correct
        by_item.setdefault(str(rid), []).append(bool(ok))
    return [100.0 * sum(v) / len(v) for v in by_item.values()]


def stderr(values: list[float]) -> float:
    """Standard error of the mean of `values` (sample standard deviation / √n); 0 for fewer than two values."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def wilson(score: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval (percent) for `score` percent correct out of `n` binary trials (n may be an
    effective, non-integer count)."""
    if n <= 0:
        return 0.0, 100.0
    p = min(max(score / 100.0, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return 100.0 * max(0.0, centre - half), 100.0 * min(1.0, centre + half)


@dataclass(frozen=True)
class Estimate:
    """A score (percent) with the number of items it rests on and its standard error (points)."""

    value: float
    n: int | None = None
    se: float | None = None

    def interval(self, z: float = Z95) -> tuple[float, float] | None:
        """95 % interval in percent: Wilson on the effective items for eval scores (n known), normal ± z·se for a
        mean over training steps (no n); None when neither is known."""
        p = self.value / 100.0
        if self.n and self.se is not None and self.se > 0 and 0.0 < p < 1.0:
            return wilson(self.value, p * (1 - p) / (self.se / 100.0) ** 2, z)
        if self.n:
            return wilson(self.value, self.n, z)
        if self.se is not None and self.se > 0:
            return self.value - z * self.se, self.value + z * self.se
        return None

    def half_width(self, z: float = Z95) -> float | None:
        ci = self.interval(z)
        return None if ci is None else (ci[1] - ci[0]) / 2


def effective_se(e: Estimate) -> float | None:
    """The se used for differences: the logged one, or the binomial one from n when the score is 0/100."""
    if e.se is not None and e.se > 0:
        return e.se
    if e.n:
        lo, hi = wilson(e.value, e.n)
        return (hi - lo) / (2 * Z95)
    return None


def difference(a: Estimate, b: Estimate, z: float = Z95) -> tuple[float, tuple[float, float] | None]:
    """b − a in points with its unpaired 95 % interval (None when either side has no uncertainty)."""
    d = b.value - a.value
    sa, sb = effective_se(a), effective_se(b)
    if sa is None or sb is None:
        return d, None
    half = z * math.sqrt(sa * sa + sb * sb)
    return d, (d - half, d + half)


def eval_uncertainty(results: Iterable[Any]) -> dict[str, float]:
    """`eval_n/…` and `eval_se/…` metrics for benchmark results (objects with family, name, n, records), and for
    each family's average, named like the scores they belong to (`EvalReport.metrics()`)."""
    out: dict[str, float] = {}
    fam: dict[str, list[tuple[int, float]]] = {}
    for r in results:
        key = f"{r.family.lower()}/{r.name}"
        scores = item_scores(r.records)
        n = len(scores) or int(r.n)
        se = stderr(scores)
        out[N_PREFIX + key] = float(n)
        out[SE_PREFIX + key] = se
        fam.setdefault(r.family.lower(), []).append((n, se))
    for f, parts in fam.items():
        out[f"{N_PREFIX}{f}/avg"] = float(sum(n for n, _ in parts))
        out[f"{SE_PREFIX}{f}/avg"] = math.sqrt(sum(se * se for _, se in parts)) / len(parts)
    return out


def estimate_of(metrics: dict[str, float], key: str) -> Estimate | None:
    """The Estimate of metric `key` (an `eval/…` score) from a flat metrics dict holding its n and se."""
    if key not in metrics:
        return None
    rest = key.removeprefix("eval/")
    n = metrics.get(N_PREFIX + rest) if key.startswith("eval/") else None
    se = metrics.get(SE_PREFIX + rest) if key.startswith("eval/") else None
    return Estimate(float(metrics[key]), int(n) if n is not None else None, se)


def mean_estimate(values: list[float]) -> Estimate | None:
    """A window of per-step values (e.g. the last 10 training steps) as mean ± se over steps."""
    if not values:
        return None
    return Estimate(sum(values) / len(values), None, stderr(values) if len(values) > 1 else None)


def paired_difference(rows_a: list[dict[str, Any]], rows_b: list[dict[str, Any]], benchmarks: list[str],
                      z: float = Z95) -> tuple[float, tuple[float, float], int] | None:
    """b − a over the same questions from per-sample rows ({benchmark, id, correct}) of two runs: per benchmark
    the mean and se of the per-question differences, then their mean over `benchmarks` (like a family average).
    Returns (difference, 95 % interval, questions) or None unless both runs hold the same questions of every
    benchmark."""
    means, ses, n_total = [], [], 0
    for bench in benchmarks:
        per = []
        for rows in (rows_a, rows_b):
            by_item: dict[str, list[bool]] = {}
            for r in rows:
                if r["benchmark"] == bench:
                    by_item.setdefault(str(r["id"]), []).append(bool(r["correct"]))
            per.append({k: 100.0 * sum(v) / len(v) for k, v in by_item.items()})
        a, b = per
        if not a or set(a) != set(b):
            return None
        d = [b[k] - a[k] for k in a]
        means.append(sum(d) / len(d))
        ses.append(stderr(d))
        n_total += len(d)
    if not means:
        return None
    diff = sum(means) / len(means)
    se = math.sqrt(sum(x * x for x in ses)) / len(ses)
    return diff, (diff - z * se, diff + z * se), n_total


def sample_rows(results: Iterable[Any], per_benchmark: int | None = 200, max_chars: int = 2000) -> list[dict[str, Any]]:
    """Per-sample verdicts of benchmark results (objects with family, name, records) as table rows: family,
    benchmark, id, sample, correct, extracted, how, response (cut at `max_chars`); at most `per_benchmark` samples
    of each benchmark (None: all; a paired comparison needs all)."""
    rows: list[dict[str, Any]] = []
    for r in results:
        recs = r.records if per_benchmark is None else r.records[:per_benchmark]
        for rec in recs:
            d = rec.to_dict() if hasattr(rec, "to_dict") else dict(rec)
            rows.append({"family": r.family.lower(), "benchmark": d["benchmark"], "id": d["id"],
                         "sample": d.get("sample"), "correct": bool(d["correct"]), "extracted": d.get("extracted"),
                         "how": d.get("how"), "response": str(d.get("response", ""))[:max_chars]})
    return rows
