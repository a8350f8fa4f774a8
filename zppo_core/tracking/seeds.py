"""Seed-level statistics of a comparison table: mean ± 95 % interval over seeds, paired differences, curve areas.

The unit of independence is the training run (one seed): every number below is computed from one value per seed
(e.g. a run's final held-out accuracy), never from the questions inside a run. With n seeds:

    mean      = (1/n) Σ v_s
    sd        = sqrt( Σ (v_s − mean)² / (n − 1) )                    sample standard deviation
    interval  = mean ± t_{0.975, n−1} · sd / sqrt(n)                 Student t, n − 1 degrees of freedom

(t_{0.975, 3} = 3.182 for 4 seeds, 12.706 for 2; no interval for one seed). A *paired* difference b − a uses the
seeds both methods ran, d_s = b_s − a_s, and the same t interval over the d_s: the two runs of one seed start from
the same prepared model and read the same question stream, so pairing removes the seed's own luck. A t interval
rather than a bootstrap: with 2–8 seeds a bootstrap has too few distinct resamples (2 seeds: 3) to estimate a
tail, and the t interval is exact for normal per-seed values.

The area under a curve (`curve_area`) is the trapezoid rule over the evaluated steps divided by their span: the
curve's mean height between its first and last evaluation (a single point is its own area), in the curve's unit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided Student t quantile t_{(1+level)/2, df} (scipy)."""
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


@dataclass(frozen=True)
class SeedSummary:
    """mean over n per-seed values, their sample sd, and the 95 % t interval (lo, hi: None for n < 2)."""

    n: int
    mean: float
    sd: float | None
    lo: float | None
    hi: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None or self.hi is None else (self.hi - self.lo) / 2

    def to_dict(self) -> dict[str, float | int | None]:
        return {**asdict(self), "half_width": self.half_width}

    def fmt(self, digits: int = 1, signed: bool = False) -> str:
        """'41.2 ± 3.1' (or '+2.0 ± 1.5' when signed); '41.2' for one seed; '–' for none."""
        if self.n == 0:
            return "–"
        sign = "+" if signed else ""
        text = f"{self.mean:{sign}.{digits}f}"
        return text if self.half_width is None else f"{text} ± {self.half_width:.{digits}f}"


def summarize(values: Sequence[float], level: float = 0.95) -> SeedSummary:
    """Mean, sample sd and the t interval of per-seed values (see the module docstring)."""
    vals = [float(v) for v in values]
    n = len(vals)
    if n == 0:
        return SeedSummary(0, float("nan"), None, None, None)
    mean = sum(vals) / n
    if n < 2:
        return SeedSummary(1, mean, None, None, None)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t_quantile(n - 1, level) * sd / math.sqrt(n)
    return SeedSummary(n, mean, sd, mean - half, mean + half)


def paired(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.95) -> SeedSummary:
    """b − a over the seeds both have (paired by seed), as a `SeedSummary` of the per-seed differences."""
    seeds = sorted(set(a) & set(b))
    return summarize([b[s] - a[s] for s in seeds], level)


def curve_area(points: Sequence[tuple[float, float]]) -> float | None:
    """Trapezoid area under (step, value) points divided by the steps' span; None for no points."""
    pts = sorted((float(x), float(y)) for x, y in points)
    if not pts:
        return None
    if len(pts) == 1 or pts[-1][0] == pts[0][0]:
        return pts[-1][1]
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pts, pts[1:]))
    return area / (pts[-1][0] - pts[0][0])
