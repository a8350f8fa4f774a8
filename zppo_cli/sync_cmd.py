"""`zppo sync RUN_DIR [--uri URI]`: send a run directory's records to a tracking store.

What a run could not send during training (a tracking-server outage that outlasted the run, a crash while the
server was away) and whole runs trained with tracking off (a cluster without access to the server) go to the store:
the run's outbox (params, tags, artifacts, status) and every metrics.jsonl point the store lacks. Running it again
adds nothing. See `zppo_core.tracking.durable`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zppo_cli.options import console, rel, user_errors


def sync(
    run_dir: Path = typer.Argument(..., help="Run directory made by `zppo train`."),
    uri: Optional[str] = typer.Option(
        None, "--uri", help="Tracking store to send to (default: the run's own, from run.json; else "
        "tracking.uri / $MLFLOW_TRACKING_URI / ./mlruns)."),
) -> None:
    """Send a run's local records (metrics.jsonl, params, tags, artifacts, status) to a tracking store; idempotent."""
    with user_errors():
        from zppo_core.config import ConfigError
        from zppo_core.tracking.durable import SyncError, sync_run

        try:
            res = sync_run(run_dir, uri)
        except SyncError as err:
            raise ConfigError(str(err)) from None
        where = "a new run" if res["created"] else "run"
        console.print(
            f"synced {rel(Path(run_dir))} → {res['uri']} ({where} {res['run_id']}): {res['points']} metric points "
            f"sent, {res['points_present']} already there; {res['records']} other records sent"
            + (f", {res['records_rejected']} rejected (see the warnings)" if res["records_rejected"] else ""),
            highlight=False, soft_wrap=True)
