"""Figures of a multi-seed method study (matplotlib, Agg): eval curves per suite and, for every buffered method,
the replay buffer's dynamics in the style of the paper's Fig. 5.

  curves_<suite>.png     mean eval accuracy over seeds vs step, one line per method (band: min–max over seeds)
  buffer_<method>.png    (a) buffer size vs step, (b) admitted / graduated / evicted per step (moving average of
                         5 steps), both means over seeds with a min–max band for the size; (c) fates by entry bin
                         (graduated / evicted / still buffered), summed over seeds, with the graduated share of
                         the questions that left the buffer written above each bar
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zppo_core.tracking.comparison import RunRecord, _suite
from zppo_core.tracking.graduation import FATES, _plt

FATE_COLORS = {"graduated": "#2a9d8f", "evicted": "#e76f51", "buffered": "#adb5bd"}


def _mean_by_step(curves: list[list[tuple[int, float]]]) -> tuple[list[int], list[float], list[float], list[float]]:
    by: dict[int, list[float]] = {}
    for c in curves:
        for s, v in c:
            by.setdefault(s, []).append(v)
    steps = sorted(by)
    return steps, [sum(by[s]) / len(by[s]) for s in steps], [min(by[s]) for s in steps], [max(by[s]) for s in steps]


def _smooth(xs: list[float], k: int = 5) -> list[float]:
    return [sum(xs[max(0, i - k + 1) : i + 1]) / len(xs[max(0, i - k + 1) : i + 1]) for i in range(len(xs))]


def plot_curves(records: list[RunRecord], suite: str, labels: dict[str, str], path: Path) -> bool:
    """Mean eval accuracy over seeds vs step, one line per method. False when no run logged the suite."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    drawn = False
    colors = plt.get_cmap("tab20").colors  # the whole table is 14 methods: tab10 would repeat colours
    for i, m in enumerate(dict.fromkeys(r.method for r in records)):
        curves = [r.curve(f"eval/{suite}/avg") for r in records if r.method == m and r.finished]
        curves = [c for c in curves if c]
        if not curves:
            continue
        steps, mean, lo, hi = _mean_by_step(curves)
        (line,) = ax.plot(steps, mean, marker=".", lw=1.4, color=colors[(2 * i) % 20 + (2 * i) // 20 % 2],
                          label=f"{labels.get(m, m)} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.12, lw=0)
        drawn = True
    if drawn:
        ax.set_xlabel("rollout step")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(f"{_suite(suite)}: mean over seeds (band: min–max)")
        ax.legend(fontsize=7, ncol=2)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def plot_buffer_dynamics(records: list[RunRecord], label: str, buffer: dict[str, Any], path: Path) -> None:
    """Fig. 5 style: buffer size, admitted/graduated/evicted per step, fates by entry bin (one method, all seeds)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    runs = [r for r in records if r.finished]
    steps, mean, lo, hi = _mean_by_step([r.curve("zppo/buffer_size") for r in runs])
    axes[0].plot(steps, mean, lw=1.5, color="#264653")
    if len(runs) > 1:
        axes[0].fill_between(steps, lo, hi, color="#264653", alpha=0.15, lw=0)
    axes[0].set(xlabel="rollout step", ylabel="questions in buffer", title=f"(a) buffer size (n={len(runs)} seeds)")
    for key, color in (("admitted", "#457b9d"), ("graduated", FATE_COLORS["graduated"]),
                       ("evicted", FATE_COLORS["evicted"])):
        s, m, _, _ = _mean_by_step([r.curve(f"zppo/{key}") for r in runs])
        axes[1].plot(s, _smooth(m), lw=1.4, color=color, label=key)
    axes[1].set(xlabel="rollout step", ylabel="questions per step", title="(b) per step (mean over seeds, MA 5)")
    axes[1].legend(fontsize=8)
    fates = buffer["fates_by_entry_bin"]
    bins = list(fates)
    bottom = [0] * len(bins)
    for fate in FATES:
        vals = [fates[b].get(fate, 0) for b in bins]
        axes[2].bar([f"{b}%" for b in bins], vals, bottom=bottom, color=FATE_COLORS[fate], label=fate)
        bottom = [x + y for x, y in zip(bottom, vals)]
    for i, b in enumerate(bins):
        share = buffer["graduated_share_of_departed"].get(b)
        if share is not None:
            axes[2].text(i, bottom[i], f"{100 * share:.0f}%", ha="center", va="bottom", fontsize=8)
    axes[2].set(xlabel="entry accuracy bin", ylabel="questions (all seeds)",
                title="(c) fates by entry bin (graduated share of departed)")
    axes[2].legend(fontsize=8)
    fig.suptitle(f"{label}: replay buffer dynamics")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_figures(records: list[RunRecord], results: dict[str, Any], labels: dict[str, str],
                  out_dir: Path) -> list[Path]:
    """Every figure of the study into `out_dir`; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for suite in results["suites"]:
        p = out_dir / f"curves_{suite}.png"
        if plot_curves(records, suite, labels, p):
            written.append(p)
    for m, e in results["methods"].items():
        if "buffer" in e:
            p = out_dir / f"buffer_{m}.png"
            plot_buffer_dynamics([r for r in records if r.method == m], e["label"], e["buffer"], p)
            written.append(p)
    return written
