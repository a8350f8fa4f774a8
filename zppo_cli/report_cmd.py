"""`zppo report RUN...`: a self-contained HTML report of one or more runs, also logged to each run in MLflow."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Optional

import typer

from zppo_cli.options import console, rel, user_errors
from zppo_cli.runs_cmd import Store, Uri


def report(
    runs: list[str] = typer.Argument(..., help="One or more runs: names, MLflow run ids or run directories "
                                     "(the first is the reference for differences)."),
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file to write (default runs/reports/<name>.html)."),
    log: bool = typer.Option(True, "--log/--no-log", help="Also log the page to each run in MLflow "
                             "(artifact report/<file>)."),
    store: Optional[str] = Store,
    uri: Optional[str] = Uri,
    experiment: Optional[str] = typer.Option(None, "--experiment", "-e", help="Look names up in this experiment "
                                             "only (default: all)."),
) -> None:
    """Write an HTML report: curves, buffer dynamics, graduation plots, eval tables, BCQ/NCQ prompts."""
    with user_errors():
        from zppo_core.config import ConfigError
        from zppo_core.tracking.report import build_report
        from zppo_core.tracking.runs import default_uri, resolve_runs

        views = resolve_runs(runs, default_uri(uri, store), experiment)
        if len({v.id for v in views}) < len(views):
            raise ConfigError("the same run is named twice; pass different runs")
        if out is None:
            stem = views[0].name if len(views) == 1 else f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
            out = Path("runs") / "reports" / (re.sub(r"[^\w.-]+", "_", stem) + ".html")
        if out.suffix.lower() not in (".html", ".htm"):
            raise ConfigError(f"--out {out}: the report is one HTML file; give a path ending in .html")
        html = build_report(views)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(html)
        tmp.replace(out)
        if log:
            for v in views:
                v.store.log_artifact(v.id, out, "report")
        console.print(f"report: {rel(out)} ({len(html) / 1024:.0f} KiB, {len(views)} run"
                      f"{'s' if len(views) > 1 else ''})" + (" · logged to MLflow as report/" + out.name if log
                                                              else ""), highlight=False)
