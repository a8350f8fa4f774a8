"""Replay-buffer reports: the per-question graduation table, plots (matplotlib) and sample prompts.

Written into the run's `reports/` directory (`RunDir.reports`) and logged as artifacts of the run (overwritten at every checkpoint, so the
latest state is always there):
  graduation/table.json        MLflow table (the UI shows it as a table): question id, entry step, entry accuracy
                               and bin, plain-accuracy history, fate, ... (accuracies in percent, like every
                               accuracy zppo logs; the replay buffer itself keeps fractions)
  graduation/buffer_size.png   buffer size over steps
  graduation/fates_by_bin.png  graduated / evicted / still buffered by entry bin (the paper's Fig. 5)
  graduation/curves_by_bin.png mean plain accuracy vs steps since admission, one line per entry bin
  graduation.png               the three plots side by side, at the top level (MLflow's compare page previews the
                               top-level artifacts two runs share)
  samples/bcq_ncq.md           a few BCQ and NCQ prompts with the student's rollouts, for a person to read
  samples/<kind>.md            the same for the baselines' prompts (hint, prefix) and Off-Distill's teacher responses
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FATES = ("graduated", "evicted", "buffered")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _integer_ticks():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _draw_buffer_size(ax, buffer_sizes: list[tuple[int, int]]) -> None:
    if buffer_sizes:
        steps, sizes = zip(*buffer_sizes)
        ax.plot(steps, sizes, lw=1.5)
    ax.set_xlabel("rollout step")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_ylabel("questions in buffer")
    ax.set_title("Replay buffer size")


def _draw_fates(ax, fates_by_bin: dict[float, dict[str, int]]) -> None:
    bins = sorted(fates_by_bin)
    labels = [f"{b:g}%" for b in bins]
    bottom = [0] * len(bins)
    for fate, color in zip(FATES, ("#2a9d8f", "#e76f51", "#adb5bd")):
        vals = [fates_by_bin[b].get(fate, 0) for b in bins]
        ax.bar(labels, vals, bottom=bottom, label=fate, color=color)
        bottom = [x + y for x, y in zip(bottom, vals)]
    ax.set_xlabel("entry accuracy bin")
    ax.set_ylabel("questions")
    ax.set_title("Fates by entry bin")
    ax.legend(fontsize=8)


def _draw_curves(ax, table: list[dict[str, Any]]) -> None:
    for b, pts in curves_by_bin(table).items():
        if pts:
            xs, ys, _ = zip(*pts)
            ax.plot(xs, ys, marker=".", label=f"entry {b:g}%")
    ax.set_xlabel("steps since admission")
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_ylabel("mean plain accuracy (%)")
    ax.set_title("Graduation curves by entry bin")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


def _save(draw, path: Path, size=(6, 3.5), panels: int = 1) -> None:
    plt = _plt()
    fig, axes = plt.subplots(panels, 1, figsize=size, squeeze=False)
    draw(*axes[:, 0])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_buffer_size(buffer_sizes: list[tuple[int, int]], path: Path) -> None:
    _save(lambda ax: _draw_buffer_size(ax, buffer_sizes), path)


def plot_fates_by_bin(fates_by_bin: dict[float, dict[str, int]], path: Path) -> None:
    _save(lambda ax: _draw_fates(ax, fates_by_bin), path)


def plot_graduation_curves(table: list[dict[str, Any]], path: Path) -> None:
    _save(lambda ax: _draw_curves(ax, table), path)


def plot_overview(buffer_sizes: list[tuple[int, int]], fates_by_bin: dict[float, dict[str, int]],
                  table: list[dict[str, Any]], path: Path) -> None:
    """The three graduation plots stacked in one figure (a top-level artifact, so MLflow's compare page, which
    previews only top-level artifacts the runs share, shows two buffer runs' plots side by side, each in a
    half-width column)."""
    def draw(a, b, c):
        _draw_buffer_size(a, buffer_sizes)
        _draw_fates(b, fates_by_bin)
        _draw_curves(c, table)

    _save(draw, path, size=(6.4, 10.5), panels=3)


def percent_table(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The buffer's graduation table with its accuracies (fractions) as percentages, like the entry bin."""
    out = []
    for row in table:
        r = dict(row)
        r["entry_accuracy"] = round(100.0 * float(row["entry_accuracy"]), 4)
        r["accuracy_history"] = [[int(s), round(100.0 * float(a), 4)] for s, a in row["accuracy_history"]]
        out.append(r)
    return out


def curves_by_bin(table: list[dict[str, Any]]) -> dict[float, list[tuple[int, float, int]]]:
    """entry bin -> [(steps since admission, mean plain accuracy %, n questions)] over a percent table's
    histories (step 0 is the entry bin itself)."""
    acc: dict[float, dict[int, list[float]]] = {}
    for row in table:
        b = float(row["entry_bin"])
        d = acc.setdefault(b, {0: []})
        d[0].append(b)
        for step, a in row["accuracy_history"]:
            d.setdefault(int(step) - int(row["entry_step"]), []).append(float(a))
    return {b: [(k, sum(v) / len(v), len(v)) for k, v in sorted(d.items()) if v] for b, d in sorted(acc.items())}


def samples_markdown(samples: list[dict[str, Any]]) -> str:
    kinds = " / ".join(dict.fromkeys(s["kind"].upper() for s in samples)) or "BCQ / NCQ"
    out = [f"# {kinds} prompts as the student saw them\n"]
    for s in samples:
        out.append(f"## {s['kind'].upper()} · {s['question_id']} · gold `{s['gold']}`\n")
        out.append("```text\n" + s["prompt"] + "\n```\n")
        for i, r in enumerate(s["rollouts"]):
            out.append(f"- rollout {i} (reward {r['reward']:g}): `{r['text']}`")
        out.append("")
    return "\n".join(out)


def write_reports(
    tracker,
    out_dir: Path,
    table: list[dict[str, Any]] | None,
    fates_by_bin: dict[float, dict[str, int]] | None,
    buffer_sizes: list[tuple[int, int]],
    samples: list[dict[str, Any]],
) -> Path:
    rep = Path(out_dir)
    (rep / "graduation").mkdir(parents=True, exist_ok=True)
    (rep / "samples").mkdir(parents=True, exist_ok=True)
    if table is not None:
        table = percent_table(table)
        (rep / "graduation" / "table.json").write_text(json.dumps(table))
        tracker.log_table(table, "graduation/table.json")
        plot_buffer_size(buffer_sizes, rep / "graduation" / "buffer_size.png")
        plot_graduation_curves(table, rep / "graduation" / "curves_by_bin.png")
        for name in ("buffer_size.png", "curves_by_bin.png"):
            tracker.log_artifact(rep / "graduation" / name, "graduation")
    if fates_by_bin is not None:
        plot_fates_by_bin(fates_by_bin, rep / "graduation" / "fates_by_bin.png")
        tracker.log_artifact(rep / "graduation" / "fates_by_bin.png", "graduation")
    if table is not None and fates_by_bin is not None:
        plot_overview(buffer_sizes, fates_by_bin, table, rep / "graduation.png")
        tracker.log_artifact(rep / "graduation.png")
    files: dict[str, list[dict[str, Any]]] = {}  # BCQ and NCQ share a file; other kinds (hint, prefix, ...) own one
    for s in samples:
        files.setdefault("bcq_ncq.md" if s["kind"] in ("bcq", "ncq") else f"{s['kind']}.md", []).append(s)
    for name, rows in files.items():
        text = samples_markdown(rows)
        (rep / "samples" / name).write_text(text)
        tracker.log_text(text, f"samples/{name}")
    return rep
