"""The comparison table of a multi-seed method study (`zppo reproduce`): read the runs, aggregate over seeds, render.

Input: one training run directory per (method, seed), read through `RunDir` (metrics.jsonl and the method's
reports). For every eval suite the runs logged (`eval/<suite>/avg`, percent):

    end   the value at the run's last step (the loop always evaluates a run's last step)
    auc   the area under the eval curve over the evaluated steps, divided by their span (`seeds.curve_area`)

Per method: mean ± 95 % Student-t interval over seeds (`seeds.summarize`); per method vs the reference method
(GRPO): paired per-seed differences with their t interval (`seeds.paired`); ablation rows: the paired difference
between two methods that differ in one component (`ABLATIONS`). Diagnostics (means over a run's steps, then over
seeds): hard share at the start and the end, the BCQ/NCQ accuracies and answer-match rates, the baselines' extra
groups, rollouts per step, seconds per step. Buffered methods: fates by entry bin summed over seeds (Fig. 5).

`build` returns plain JSON-able data (results.json); `markdown` renders it (results.md, and the terminal through
rich). Only finished runs count; unfinished ones are listed as missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zppo_core.run_dir import RunDir
from zppo_core.tracking.seeds import curve_area, paired, summarize

REFERENCE = "grpo"
# (label, a, b): b − a isolates one component (paired by seed)
ABLATIONS: tuple[tuple[str, str, str], ...] = (
    ("BCQ+NCQ (GRPO† → ZPPO)", "grpo_buffer", "zppo"),
    ("buffer (GRPO+Both → ZPPO)", "grpo_both", "zppo"),
    ("teacher in the prompt (rollout-matched GRPO† → ZPPO)", "grpo_rollout_matched", "zppo"),
    ("BCQ alone (GRPO† → GRPO†+BCQ)", "grpo_buffer", "grpo_buffer_bcq"),
    ("NCQ alone (GRPO† → GRPO†+NCQ)", "grpo_buffer", "grpo_buffer_ncq"),
)
SUITE_NAMES = {"tiny": "held-out", "tiny-ood": "OOD"}
# diagnostics: (table, column, metric, window) with window "first"/"last" (10 steps) or "all" (steps where logged)
DIAGNOSTICS: tuple[tuple[str, str, str, str], ...] = (
    ("training", "hard share, first 10 steps", "train/hard_frac", "first"),
    ("training", "hard share, last 10 steps", "train/hard_frac", "last"),
    ("training", "plain accuracy, last 10 steps", "train/accuracy", "last"),
    ("training", "teacher accuracy", "zppo/teacher_accuracy", "all"),
    ("training", "rollouts / step", "train/rollouts", "all"),
    ("training", "seconds / step", "perf/step_time_s", "all"),
    ("prompts", "BCQ accuracy", "zppo/bcq_accuracy", "all"),
    ("prompts", "BCQ answer = teacher's", "zppo/bcq_match_positive", "all"),
    ("prompts", "BCQ answer = student's wrong one", "zppo/bcq_match_negative", "all"),
    ("prompts", "NCQ accuracy", "zppo/ncq_accuracy", "all"),
    ("prompts", "NCQ repeats a listed wrong answer", "zppo/ncq_match_negative", "all"),
    ("prompts", "BCQ+NCQ instances / step", "zppo/instances", "all"),
    ("prompts", "hint accuracy", "zppo/hint_accuracy", "all"),
    ("prompts", "prefix accuracy", "zppo/prefix_accuracy", "all"),
    ("prompts", "matched groups / step", "zppo/matched_groups", "all"),
)
# the loop logs accuracies in percent (like evals) and these shares as fractions: shown in percent
FRACTION_DIAGNOSTICS = {"train/hard_frac", "zppo/bcq_match_positive", "zppo/bcq_match_negative",
                        "zppo/ncq_match_negative"}


@dataclass
class RunRecord:
    """One finished or unfinished run of the study, read from its directory."""

    method: str
    seed: int
    run_dir: Path
    total_steps: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    fates_by_bin: dict[str, dict[str, int]] | None = None
    wall_s: float | None = None

    @classmethod
    def read(cls, method: str, seed: int, run_dir: str | Path, total_steps: int,
             wall_s: float | None = None) -> "RunRecord":
        rd = RunDir(run_dir)
        table = rd.reports / "graduation" / "table.json"
        fates = None
        if table.is_file():
            fates = {}
            for row in json.loads(table.read_text()):
                b = f"{float(row['entry_bin']):g}"
                fates.setdefault(b, {"graduated": 0, "evicted": 0, "buffered": 0})[row["fate"]] += 1
        return cls(method, seed, Path(run_dir), total_steps, rd.metrics(), fates, wall_s)

    @property
    def finished(self) -> bool:
        return bool(self.rows) and int(self.rows[-1]["step"]) >= self.total_steps

    def curve(self, metric: str) -> list[tuple[int, float]]:
        return [(int(r["step"]), float(r[metric])) for r in self.rows if metric in r]

    def window(self, metric: str, which: str, n: int = 10) -> float | None:
        rows = self.rows[:n] if which == "first" else self.rows[-n:] if which == "last" else self.rows
        vals = [float(r[metric]) for r in rows if metric in r]
        if metric == "zppo/instances":
            vals = [float(r["zppo/bcq_instances"]) + float(r["zppo/ncq_instances"]) for r in rows
                    if "zppo/bcq_instances" in r]
        return sum(vals) / len(vals) if vals else None


def suites_of(records: list[RunRecord]) -> list[str]:
    """Eval suites the runs logged an average for (eval/<suite>/avg), in first-seen order."""
    out: list[str] = []
    for rec in records:
        for row in rec.rows:
            for k in row:
                if k.startswith("eval/") and k.endswith("/avg") and k[5:-4] not in out:
                    out.append(k[5:-4])
    return out


def build(records: list[RunRecord], methods: list[str], seeds: list[int], labels: dict[str, str]) -> dict[str, Any]:
    """results.json: per method per-seed values, summaries, differences vs GRPO, ablations, diagnostics, buffer."""
    done = [r for r in records if r.finished]
    suites = suites_of(done)
    keys = [f"{s}/{k}" for s in suites for k in ("end", "auc")]
    per: dict[str, dict[str, dict[int, float]]] = {m: {k: {} for k in keys} for m in methods}
    for r in done:
        for s in suites:
            c = r.curve(f"eval/{s}/avg")
            if c and c[-1][0] >= r.total_steps:
                per[r.method][f"{s}/end"][r.seed] = c[-1][1]
                per[r.method][f"{s}/auc"][r.seed] = curve_area(c)
    out: dict[str, Any] = {
        "interval": "95% Student t over seeds (n-1 degrees of freedom); differences paired by seed",
        "reference": REFERENCE, "suites": suites, "seeds": seeds, "methods": {}, "ablations": [],
        "missing": [{"method": r.method, "seed": r.seed, "run_dir": str(r.run_dir), "last_step": int(r.rows[-1]["step"])
                     if r.rows else 0} for r in records if not r.finished],
    }
    for m in methods:
        mine = [r for r in done if r.method == m]
        entry: dict[str, Any] = {
            "label": labels.get(m, m), "seeds_done": sorted(r.seed for r in mine),
            "per_seed": {k: {str(s): v for s, v in sorted(per[m][k].items())} for k in keys},
            "summary": {k: summarize(list(per[m][k].values())).to_dict() for k in keys},
            "diagnostics": {},
            "wall_minutes": summarize([r.wall_s / 60 for r in mine if r.wall_s is not None]).to_dict(),
        }
        if m != REFERENCE and REFERENCE in per:
            entry["vs_reference"] = {k: paired(per[REFERENCE][k], per[m][k]).to_dict() for k in keys}
        for _, col, metric, which in DIAGNOSTICS:
            vals = [v for v in (r.window(metric, which) for r in mine) if v is not None]
            if vals:
                scale = 100.0 if metric in FRACTION_DIAGNOSTICS else 1.0
                entry["diagnostics"][col] = summarize([scale * v for v in vals]).to_dict()
        fates = [r.fates_by_bin for r in mine if r.fates_by_bin is not None]
        if fates:
            total: dict[str, dict[str, int]] = {}
            for f in fates:
                for b, c in f.items():
                    t = total.setdefault(b, {"graduated": 0, "evicted": 0, "buffered": 0})
                    for k, v in c.items():
                        t[k] += v
            left = {b: c["graduated"] + c["evicted"] for b, c in total.items()}
            entry["buffer"] = {
                "fates_by_entry_bin": dict(sorted(total.items(), key=lambda kv: float(kv[0]))),
                "graduated_share_of_departed": {b: (total[b]["graduated"] / left[b] if left[b] else None)
                                                for b in sorted(total, key=float)},
                "graduated_share_all": (sum(c["graduated"] for c in total.values())
                                        / max(sum(left.values()), 1)),
            }
        out["methods"][m] = entry
    for label, a, b in ABLATIONS:
        if a in per and b in per and (per[a][keys[0]] if keys else None) and (per[b][keys[0]] if keys else None):
            out["ablations"].append({"label": label, "a": a, "b": b,
                                     "diff": {k: paired(per[a][k], per[b][k]).to_dict() for k in keys}})
    return out


def _fmt(d: dict[str, Any] | None, digits: int = 1, signed: bool = False) -> str:
    if not d or not d.get("n"):
        return "–"
    sign = "+" if signed else ""
    text = f"{d['mean']:{sign}.{digits}f}"
    return text if d.get("half_width") is None else f"{text} ± {d['half_width']:.{digits}f}"


def _suite(s: str) -> str:
    return f"{SUITE_NAMES[s]} ({s})" if s in SUITE_NAMES else s


def markdown(res: dict[str, Any], title: str = "", command: str | None = None) -> str:
    """results.md: accuracy table, differences vs GRPO, ablations, diagnostics, buffer fates (percent points)."""
    suites, methods = res["suites"], res["methods"]
    lines = [f"# {title}" if title else "# Method comparison", ""]
    if command:
        lines += [f"Made by `{command}`.", ""]
    n_seeds = len(res["seeds"])
    lines += [f"Accuracy in percent: mean ± half-width of the {res['interval']} ({n_seeds} seeds planned; `end` = "
              "the last step's eval, `AUC` = mean accuracy over the evaluated steps).", ""]
    head = ["method", "seeds"] + [f"{_suite(s)} {k}" for s in suites for k in ("end", "AUC")]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, e in methods.items():
        cells = [e["label"], str(len(e["seeds_done"]))]
        cells += [_fmt(e["summary"].get(f"{s}/{k}")) for s in suites for k in ("end", "auc")]
        lines.append("| " + " | ".join(cells) + " |")
    ref = res["reference"]
    if ref in methods and any("vs_reference" in e for e in methods.values()):
        lines += ["", f"Paired differences vs {methods[ref]['label']} (points, method − {methods[ref]['label']}, "
                  "same seeds):", ""]
        head = ["method"] + [f"Δ {_suite(s)} {k}" for s in suites for k in ("end", "AUC")]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for m, e in methods.items():
            if "vs_reference" in e:
                lines.append("| " + " | ".join([e["label"]] + [_fmt(e["vs_reference"].get(f"{s}/{k}"), signed=True)
                                                              for s in suites for k in ("end", "auc")]) + " |")
    if res["ablations"]:
        lines += ["", "Ablations (paired differences, points; the component named is what the second method adds):",
                  ""]
        head = ["component"] + [f"Δ {_suite(s)} {k}" for s in suites for k in ("end", "AUC")]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for a in res["ablations"]:
            lines.append("| " + " | ".join([a["label"]] + [_fmt(a["diff"].get(f"{s}/{k}"), signed=True)
                                                          for s in suites for k in ("end", "auc")]) + " |")
    for table, intro in (("training", "Training (means over a run's steps, then over seeds; rates in percent; run "
                                      "minutes = wall clock of the run's process):"),
                         ("prompts", "Reformulated and guided prompts (rates in percent of their rollouts; an answer "
                                     "'=' a candidate's means the student's final answer equals that candidate's):")):
        cols = [c for t, c, _, _ in DIAGNOSTICS if t == table and any(c in e["diagnostics"] for e in methods.values())]
        rows = [(m, e) for m, e in methods.items() if any(c in e["diagnostics"] for c in cols)]
        if not cols or not rows:
            continue
        extra = ["run minutes"] if table == "training" else []
        lines += ["", intro, "", "| method | " + " | ".join(cols + extra) + " |", "|" + "---|" * (len(cols) + 1 +
                                                                                         len(extra))]
        for m, e in rows:
            cells = [_fmt(e["diagnostics"].get(c)) for c in cols] + ([_fmt(e.get("wall_minutes"))] if extra else [])
            lines.append("| " + " | ".join([e["label"]] + cells) + " |")
    buffered = {m: e["buffer"] for m, e in methods.items() if "buffer" in e}
    if buffered:
        bins = sorted({b for v in buffered.values() for b in v["fates_by_entry_bin"]}, key=float)
        lines += ["", "Replay buffer, summed over seeds: graduated / left the buffer (graduated + evicted) by entry "
                  "bin, as in the paper's Fig. 5:", ""]
        lines += ["| method | all | " + " | ".join(f"entry {b}%" for b in bins) + " |", "|" + "---|" * (len(bins) + 2)]
        for m, v in buffered.items():
            cells = [methods[m]["label"], f"{100 * v['graduated_share_all']:.1f}%"]
            for b in bins:
                c = v["fates_by_entry_bin"].get(b)
                cells.append("–" if c is None else f"{c['graduated']}/{c['graduated'] + c['evicted']}")
            lines.append("| " + " | ".join(cells) + " |")
    if res["missing"]:
        lines += ["", "Not finished (left out of the table): " + ", ".join(
            f"{x['method']} seed {x['seed']} (step {x['last_step']})" for x in res["missing"])]
    return "\n".join(lines) + "\n"
