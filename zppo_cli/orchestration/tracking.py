"""Create the MLflow store and experiment before jobs start.

A fresh sqlite store is initialised (schema migrations) by the first process that opens it, and the experiment is
created by the first run that needs it; two processes doing either at once (a job and a local run, the tasks of a
job array) can collide ("table ... already exists", "experiment ... already exists"). Doing both once at submission
time, before any job starts, removes the race. Best effort: a store this machine cannot reach is left to the jobs.
"""

from __future__ import annotations

import os


def ensure_store(uri: str | None, experiment: str) -> str | None:
    """Open the tracking store and create `experiment` if missing; returns the store URI (None if unreachable)."""
    from zppo_core.tracking.mlflow_tracker import ensure_store as prepare, resolve_uri

    try:
        return prepare(uri, experiment)
    except Exception as err:  # the job reports it properly if its node cannot reach the store either
        if os.environ.get("ZPPO_DEBUG"):
            raise
        print(f"note: MLflow store {resolve_uri(uri)[0]} not prepared here ({type(err).__name__}); the job will "
              "open it")
        return None
