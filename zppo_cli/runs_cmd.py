"""`zppo runs ls` and `zppo runs compare`: the MLflow record read back in the terminal.

A run is named by its MLflow run name (`<method>-<scale>-s<seed>-<time>`, a unique prefix is enough), its MLflow
run id, or its run directory. Scores are percentages; intervals are 95 % (see zppo_core/tracking/stats.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from zppo_cli.options import console, rel, user_errors

app = typer.Typer(help="List and compare runs from the MLflow store (names, ids or run dirs).",
                  no_args_is_help=True)

Store = typer.Option(None, "--store", help="Directory of the embedded store (default ./mlruns, or "
                     "$MLFLOW_TRACKING_URI when set).")
Uri = typer.Option(None, "--uri", help="A tracking URI instead (sqlite:///…, http://…).")
Experiment = typer.Option("zppo", "--experiment", "-e", help="MLflow experiment.")


def _fmt(v, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _est(e, with_n: bool = True) -> str:
    if e is None:
        return "-"
    ci = e.interval()
    s = f"{e.value:.1f}"
    if ci is not None:
        s += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
    elif e.se is not None:
        s += f" ±{1.96 * e.se:.1f}"
    if with_n and e.n:
        s += f" n={e.n}"
    return s


@app.command("ls")
def ls(
    method: Optional[str] = typer.Option(None, "--method", "-m", help="Only runs of this method."),
    scale: Optional[str] = typer.Option(None, "--scale", "-s", help="Only runs of this scale."),
    sweep: Optional[str] = typer.Option(None, "--sweep", help="Only the trials of this sweep (name or study)."),
    limit: int = typer.Option(50, "--limit", help="Newest N runs."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (for scripts) instead of a table."),
    store: Optional[str] = Store,
    uri: Optional[str] = Uri,
    experiment: str = Experiment,
) -> None:
    """Training runs, newest first: name, method, seed, steps, status, final training accuracy, final eval scores."""
    with user_errors():
        from zppo_core.tracking.runs import default_uri, list_runs, summarize

        runs = list_runs(default_uri(uri, store), experiment, method=method, scale=scale, sweep=sweep)[:limit]
        rows = summarize(runs)
        if as_json:
            print(json.dumps(rows, indent=2))
            return
        from rich.table import Table

        suites: list[str] = []
        for r in rows:
            suites += [k for k in r["eval"] if k not in suites]
        t = Table(title=f"runs · experiment {experiment}" + (f" · sweep {sweep}" if sweep else ""),
                  caption="accuracies in percent; eval: final score (step when it is not the last)")
        for col, just in (("name", "left"), ("method", "left"), ("seed", "right"), ("steps", "right"),
                          ("status", "left"), ("train acc", "right")):
            # a run's name is what users copy into `zppo runs compare`: never cut, other columns fold first
            t.add_column(col, justify=just, no_wrap=col == "name",
                         min_width=max((len(r["name"]) for r in rows), default=4) if col == "name" else None)
        for s in suites:
            t.add_column(s.removesuffix("/avg"), justify="right")
        style = {"FINISHED": "green", "RUNNING": "cyan", "FAILED": "red", "KILLED": "yellow"}
        for r in rows:
            steps = "-" if r["steps"] is None else (f"{r['steps']}/{r['total_steps']}" if r["total_steps"]
                                                     else str(r["steps"]))
            cells = [r["name"], r["method"], str(r["seed"]), steps,
                     f"[{style.get(r['status'], '')}]{r['status'].lower()}[/]", _fmt(r["train_accuracy"])]
            for s in suites:
                e = r["eval"].get(s)
                cells.append("-" if e is None else _fmt(e["value"]) + ("" if e["step"] == r["steps"] or e["step"]
                                                                       is None else f" @{e['step']}"))
            t.add_row(*cells)
        console.print(t)
        if not rows:
            console.print("no runs match; train one with `zppo train` (or drop the filters)")


@app.command("compare")
def compare(
    runs: list[str] = typer.Argument(..., help="Two or more runs: names, MLflow run ids or run directories."),
    metric: Optional[list[str]] = typer.Option(
        None, "--metric", help="Metric to plot (repeatable; default: the eval suites' averages and train/accuracy)."),
    out: Optional[Path] = typer.Option(None, "--out", help="PNG of the curves (default runs/compare/<time>.png)."),
    benchmarks: bool = typer.Option(True, "--benchmarks/--averages", help="Final scores per benchmark too, or "
                                    "only the suites' averages."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (config diff, final scores, Δ) instead."),
    store: Optional[str] = Store,
    uri: Optional[str] = Uri,
    experiment: Optional[str] = typer.Option(None, "--experiment", "-e", help="Look names up in this experiment "
                                             "only (default: all)."),
) -> None:
    """Runs side by side: what differs in their configs, final scores with 95% intervals and the difference to
    the first run, and a PNG of the chosen metrics' curves overlaid."""
    with user_errors():
        from zppo_core.config import ConfigError
        from zppo_core.tracking.runs import (config_diff, default_curve_keys, default_uri, final_table, plot_curves,
                                             resolve_runs, verdict)

        if len(runs) < 2:
            raise ConfigError("compare needs at least two runs (names, ids or run dirs); list them with "
                              "`zppo runs ls`")
        views = resolve_runs(runs, default_uri(uri, store), experiment)
        if len({v.id for v in views}) < len(views):
            raise ConfigError("the same run is named twice; pass different runs")
        keys = list(metric or default_curve_keys(views))
        missing = [k for k in keys if not any(k in v.metrics for v in views)]
        if missing:
            have = sorted({k for v in views for k in v.metrics if not k.startswith(("eval_n/", "eval_se/"))})
            raise ConfigError(f"--metric {missing[0]}: none of these runs logged it; e.g. {', '.join(have[:8])}")
        diff = config_diff(views)
        rows = final_table(views, extra=[k for k in keys if not k.startswith("eval/")], benchmarks=benchmarks)
        png = out or Path("runs") / "compare" / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.png"
        plot_curves(views, keys, png, title=" vs ".join(v.name for v in views))
        names = [v.name for v in views]
        if as_json:
            print(json.dumps({
                "runs": [{"name": v.name, "id": v.id, "method": v.method, "seed": v.seed, "status": v.status,
                          "steps": v.steps_done} for v in views],
                "config_diff": {k: vals for k, vals in diff},
                "final": [{"metric": r.key, "values": [None if e is None else
                                                        {"value": e.value, "n": e.n, "se": e.se,
                                                         "ci95": e.interval()} for e in r.estimates],
                           "steps": r.steps,
                           "delta_vs_first": [None if d is None else {"delta": d.value, "ci95": d.ci,
                                                                      "paired": d.paired}
                                              for d in r.deltas()]} for r in rows],
                "verdicts": [s for s in (verdict(r, names) for r in rows if r.key.endswith("/avg")) if s],
                "png": str(png)}, indent=2))
            return
        _print_compare(views, diff, rows, names, png, keys)


def _print_compare(views, diff, rows, names, png: Path, keys: list[str]) -> None:
    from rich import box
    from rich.table import Table

    from zppo_core.tracking.runs import verdict

    letters = [chr(ord("A") + i) for i in range(len(views))]
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for col in ("", "name", "method", "seed", "steps", "status", "id"):
        t.add_column(col, no_wrap=col == "name")
    for letter, v in zip(letters, views):
        steps = "-" if v.steps_done is None else f"{v.steps_done}/{v.total_steps or '?'}"
        t.add_row(letter, v.name, v.method, str(v.seed), steps, v.status.lower(), v.id[:8])
    console.print(t)

    console.print("\n[bold]config[/]: only what differs (— = does not apply to that method)")
    c = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    c.add_column("param")
    for letter in letters:
        c.add_column(letter, overflow="fold")
    for key, vals in _collapse(diff):
        c.add_row(key, *["—" if x is None else str(x) for x in vals])
    if not diff:
        c.add_row("(identical configs)", *["" for _ in views])
    console.print(c)

    console.print("\n[bold]final scores[/], percent: value [95% CI] n=items (@step)")
    f = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    f.add_column("metric")
    for letter in letters:
        f.add_column(letter, justify="right")
    for letter in letters[1:]:
        f.add_column(f"{letter} − A [95% CI]", justify="right")
    for r in rows:
        cells = [r.label + _at(r.steps)]
        cells += [_est(e) for e in r.estimates]
        for d in r.deltas()[1:]:
            cells.append("-" if d is None else f"{d.value:+.1f}" + ("" if d.ci is None else
                                                                  f" [{d.ci[0]:+.1f}, {d.ci[1]:+.1f}]")
                         + ("ᵖ" if d.paired else ""))
        f.add_row(*cells)
    console.print(f)
    if any(d is not None and d.paired for r in rows for d in r.deltas()):
        console.print("[dim]ᵖ paired over the same questions (both runs' final-eval samples); others unpaired[/]")
    for r in rows:
        if r.key.endswith("/avg") or r.key == "eval/heldout/accuracy":
            s = verdict(r, [f"{letter} ({v.method})" for letter, v in zip(letters, views)])
            if s:
                console.print(f"→ {s}", highlight=False)
    console.print(f"curves ({', '.join(keys)}): {rel(png)}", highlight=False)


def _at(steps: list) -> str:
    known = {s for s in steps if s is not None}
    return f" @{known.pop()}" if len(known) == 1 else ""


def _collapse(diff):
    """Rows of a section that does not apply to some runs (the same runs lack all its params) become one row."""
    out, groups = [], {}
    for key, vals in diff:
        section = key.split(".")[0]
        pattern = tuple(v is None for v in vals)
        if any(pattern) and "." in key:
            groups.setdefault((section, pattern), []).append((key, vals))
        else:
            out.append((key, vals))
    for (section, pattern), items in groups.items():
        if len(items) < 3:
            out.extend(items)
            continue
        joined = []
        for i, missing in enumerate(pattern):
            text = " ".join(f"{k.split('.', 1)[1]}={v[i]}" for k, v in items)
            joined.append(None if missing else (text if len(text) <= 150 else text[:149] + "…"))
        out.append((f"{section}.* ({len(items)})", joined))
    return out
