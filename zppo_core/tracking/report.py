"""`zppo report`: one self-contained HTML page about one or more runs, read back from MLflow.

The page (no external files: figures are embedded PNGs, the template is a sandboxed Jinja2 template with
autoescaping) holds, for the runs given:
  * who is who: name, id, method, scale, seed, status, steps, duration, git commit, the command line, data;
  * the config: what differs between the runs (one run: its method's own sections);
  * final scores with n and 95 % intervals, and the difference to the first run (tracking/stats.py);
  * curves overlaid across runs: accuracy, reward, hard share, entropy, step time, eval suites (with bands);
  * buffer dynamics (size, admitted / graduated / evicted per step) and BCQ/NCQ accuracies for methods with them;
  * each run's graduation plots and a fates-by-entry-bin table from its graduation table;
  * a few eval samples and the BCQ/NCQ prompts the student saw, with its rollouts.
"""

from __future__ import annotations

import base64
import tempfile
import time
from pathlib import Path
from typing import Any

from zppo_core.tracking.runs import (TRAIN_WINDOW, RunView, config_diff, final_table, plot_curves, read_table,
                                     run_colors, verdict)

CURVES = [("Training", ["train/accuracy", "train/reward_mean", "train/hard_frac", "train/trivial_group_frac",
                        "train/entropy", "train/response_len"]),
          ("Replay buffer", ["zppo/buffer_size", "zppo/admitted", "zppo/graduated", "zppo/evicted"]),
          ("BCQ / NCQ", ["zppo/bcq_accuracy", "zppo/ncq_accuracy", "zppo/bcq_match_positive",
                         "zppo/bcq_match_negative", "zppo/ncq_match_negative", "zppo/teacher_accuracy"]),
          ("Speed", ["perf/step_time_s", "perf/rollout_tokens_per_s"])]
GRADUATION_PNGS = ("graduation/buffer_size.png", "graduation/fates_by_bin.png", "graduation/curves_by_bin.png")

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1180px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #eee}pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;font-size:12px}
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:6px;vertical-align:middle}
.muted{color:#777}.v{font-weight:600}
</style></head><body>
<h1>{{ title }}</h1>
<p class="muted">zppo report · {{ created }} · accuracies in percent; 95 % intervals: eval scores from their
item-level standard error (Wilson), differences paired over the same questions where marked; training metrics as
the mean ± se of their last {{ window }} steps</p>
<h2>Runs</h2>
<table><tr><th></th><th>run</th><th>method</th><th>scale</th><th>seed</th><th>status</th><th>steps</th>
<th>duration</th><th>git commit</th><th>data</th><th>MLflow run</th></tr>
{% for r in runs %}<tr><td><span class="sw" style="background:{{ r.color }}"></span>{{ r.letter }}</td>
<td>{{ r.name }}</td><td>{{ r.method }}</td><td>{{ r.scale }}</td><td>{{ r.seed }}</td><td>{{ r.status }}</td>
<td class="n">{{ r.steps }}</td><td class="n">{{ r.duration }}</td><td><code>{{ r.commit }}</code></td>
<td>{{ r.data }}</td><td><code>{{ r.id }}</code></td></tr>{% endfor %}</table>
{% for r in runs %}{% if r.description %}<p><b>{{ r.letter }}</b>: <code>{{ r.description }}</code></p>{% endif %}
{% endfor %}
{% for v in verdicts %}<p class="v">→ {{ v }}</p>{% endfor %}
<h2>Final scores</h2>
<table><tr><th>metric</th>{% for r in runs %}<th>{{ r.letter }}</th>{% endfor %}
{% for r in runs[1:] %}<th>{{ r.letter }} − A [95% CI]</th>{% endfor %}</tr>
{% for row in finals %}<tr><td>{{ row.label }}</td>{% for c in row.cells %}<td class="n">{{ c }}</td>{% endfor %}
</tr>{% endfor %}</table>
<h2>Configuration</h2>
<p class="muted">{{ config_note }}</p>
<table><tr><th>param</th>{% for r in runs %}<th>{{ r.letter }}</th>{% endfor %}</tr>
{% for k, vals in config %}<tr><td>{{ k }}</td>{% for v in vals %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>
{% for title, png in curves %}<h2>{{ title }}</h2><img alt="{{ title }}" src="data:image/png;base64,{{ png }}">
{% endfor %}
{% for r in runs %}{% if r.graduation or r.fates %}<h2>Graduation · {{ r.letter }} {{ r.name }}</h2>
{% if r.fates %}<table><tr><th>entry bin</th><th>graduated</th><th>evicted</th><th>buffered</th>
<th>graduated / left</th><th>mean steps to graduate</th></tr>
{% for f in r.fates %}<tr><td>{{ f.bin }}</td><td class="n">{{ f.graduated }}</td><td class="n">{{ f.evicted }}</td>
<td class="n">{{ f.buffered }}</td><td class="n">{{ f.share }}</td><td class="n">{{ f.steps }}</td></tr>{% endfor %}
</table>{% endif %}
{% for name, png in r.graduation %}<img alt="{{ name }}" src="data:image/png;base64,{{ png }}">
{% endfor %}{% endif %}{% endfor %}
{% for r in runs %}{% if r.eval_samples %}<h2>Eval samples · {{ r.letter }} {{ r.name }}</h2>
<table><tr><th>benchmark</th><th>question</th><th>response</th><th>answer</th><th>correct</th></tr>
{% for s in r.eval_samples %}<tr><td>{{ s.benchmark }}</td><td>{{ s.id }}</td><td><code>{{ s.response }}</code></td>
<td>{{ s.extracted }}</td><td>{{ s.correct }}</td></tr>{% endfor %}</table>{% endif %}{% endfor %}
{% for r in runs %}{% if r.samples_md %}<h2>BCQ / NCQ prompts · {{ r.letter }} {{ r.name }}</h2>
<pre>{{ r.samples_md }}</pre>{% endif %}{% endfor %}
</body></html>
"""


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _fmt_est(e) -> str:
    if e is None:
        return "-"
    ci = e.interval()
    s = f"{e.value:.1f}" + ("" if ci is None else f" [{ci[0]:.1f}, {ci[1]:.1f}]")
    return s + (f" n={e.n}" if e.n else "")


def _fmt_delta(d) -> str:
    if d is None:
        return "-"
    return f"{d.value:+.1f}" + ("" if d.ci is None else f" [{d.ci[0]:+.1f}, {d.ci[1]:+.1f}]") + \
        (" paired" if d.paired else "")


def _fates(table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by: dict[float, dict[str, Any]] = {}
    for row in table:
        d = by.setdefault(float(row["entry_bin"]), {"graduated": 0, "evicted": 0, "buffered": 0, "steps": []})
        d[row["fate"]] = d.get(row["fate"], 0) + 1
        if row["fate"] == "graduated" and row.get("steps_to_graduate") is not None:
            d["steps"].append(float(row["steps_to_graduate"]))
    out = []
    for b, d in sorted(by.items()):
        left = d["graduated"] + d["evicted"]
        out.append({"bin": f"{b:g}%", "graduated": d["graduated"], "evicted": d["evicted"], "buffered": d["buffered"],
                    "share": f"{100 * d['graduated'] / left:.0f}%" if left else "-",
                    "steps": f"{sum(d['steps']) / len(d['steps']):.1f}" if d["steps"] else "-"})
    return out


def _run_block(r: RunView, letter: str, color, tmp: Path, samples_limit: int) -> dict[str, Any]:
    arts = set(r.store.artifacts(r.id))
    block: dict[str, Any] = {
        "letter": letter, "name": r.name, "id": r.id, "method": r.method, "scale": r.scale, "seed": r.seed,
        "status": r.status.lower(), "color": "#%02x%02x%02x" % tuple(int(255 * c) for c in color[:3]),
        "steps": "-" if r.steps_done is None else f"{r.steps_done}/{r.total_steps or '?'}",
        "duration": "-" if r.seconds is None else f"{r.seconds / 60:.1f} min",
        "commit": (r.tags.get("mlflow.source.git.commit") or "-")[:10]
        + (" (dirty)" if r.tags.get("zppo.git_dirty") == "true" else ""),
        "description": r.tags.get("mlflow.note.content", ""),
        "data": ", ".join(f"{d['name']} ({d['digest']})" for d in r.data["datasets"]) or "-",
        "graduation": [], "fates": [], "samples_md": "", "eval_samples": [],
    }
    for name in (["graduation.png"] if "graduation.png" in arts else GRADUATION_PNGS):
        if name in arts:
            p = r.store.download(r.id, name, tmp / r.id)
            if p is not None:
                block["graduation"].append((name, _b64(p)))
    if "graduation/table.json" in arts:
        p = r.store.download(r.id, "graduation/table.json", tmp / r.id)
        if p is not None:
            block["fates"] = _fates(read_table(p))
    if "samples/bcq_ncq.md" in arts:
        p = r.store.download(r.id, "samples/bcq_ncq.md", tmp / r.id)
        if p is not None:
            block["samples_md"] = p.read_text()[:20_000]
    rows = r.final_samples()[1]  # the final periodic eval's verdicts, else a `zppo eval` samples table
    tables = sorted(a for a in arts if a.startswith("eval/") and a.endswith("/samples.json"))
    if rows is None and tables:
        p = r.store.download(r.id, tables[-1], tmp / r.id)
        rows = read_table(p) if p is not None else None
    if rows:
        picked = _spread(rows, samples_limit)
        block["eval_samples"] = [{k: (str(v)[:200] if k == "response" else v) for k, v in row.items()}
                                 for row in picked]
    return block


def _spread(rows: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """Up to `limit` rows, taken round-robin over the benchmarks, right and wrong answers alike."""
    groups: dict[tuple[str, bool], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row.get("benchmark")), bool(row.get("correct"))), []).append(row)
    out: list[dict[str, Any]] = []
    while len(out) < limit and any(groups.values()):
        for key in sorted(groups):
            if groups[key] and len(out) < limit:
                out.append(groups[key].pop(0))
    return out


def build_report(runs: list[RunView], samples_limit: int = 12) -> str:
    """The HTML page for `runs` (first = the reference of the differences)."""
    from jinja2.sandbox import SandboxedEnvironment

    letters = [chr(ord("A") + i) for i in range(len(runs))]
    colors = run_colors(len(runs))
    names = [r.name for r in runs]
    rows = final_table(runs)
    finals = []
    for row in rows:
        cells = [_fmt_est(e) for e in row.estimates]
        for d in row.deltas()[1:]:
            cells.append(_fmt_delta(d))
        finals.append({"label": row.label, "cells": cells})
    labels = [f"{letter} ({r.method})" for letter, r in zip(letters, runs)]
    verdicts = [v for v in (verdict(row, labels) for row in rows
                            if row.key.endswith("/avg") or row.key == "eval/heldout/accuracy") if v]
    if len(runs) > 1:
        config = [(k, ["—" if v is None else v for v in vals]) for k, vals in config_diff(runs)]
        note = "Only the parameters that differ; — = the parameter does not apply to that run's method."
    else:
        config = [(k, [v]) for k, v in sorted(runs[0].params.items())]
        note = "The parameters that apply to this method (the full resolved config is the run's config.yaml)."
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        curves = []
        eval_keys = []
        for r in runs:
            eval_keys += [k for k in r.eval_keys() if k.endswith("/avg") and k not in eval_keys]
        for title, keys in [("Eval suites", eval_keys)] + CURVES:
            have = [k for k in keys if any(k in r.metrics for r in runs)]
            if have:
                png = plot_curves(runs, have, tmp / f"{len(curves)}.png")
                curves.append((title, _b64(png)))
        blocks = [_run_block(r, letter, c, tmp, samples_limit) for r, letter, c in zip(runs, letters, colors)]
    env = SandboxedEnvironment(autoescape=True)
    return env.from_string(TEMPLATE).render(
        title="zppo report: " + " vs ".join(names), created=time.strftime("%Y-%m-%d %H:%M"), window=TRAIN_WINDOW,
        runs=blocks, finals=finals, verdicts=verdicts, config=config, config_note=note, curves=curves)
