"""Experiment tracking behind a small protocol, so the loop never asks "is logging on".

`NullTracker` does nothing; `MlflowTracker` (in `mlflow_tracker.py`, the only module that imports mlflow)
logs to a local sqlite store by default or to `$MLFLOW_TRACKING_URI`.

The rest of the package:
  stats.py       a score's n, standard error and 95 % interval; paired/unpaired differences between runs
  graduation.py  the replay buffer's graduation table, plots and sample prompts (written by the method)
  runs.py        the read side: runs by name, id or run dir (`RunStore` in mlflow_tracker.py), config diffs,
                 final scores, curves overlaid (`zppo runs`)
  report.py      the self-contained HTML report of one or more runs (`zppo report`)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Tracker(Protocol):
    run_id: str | None  # the tracked run's id (None: nothing is tracked)
    uri: str | None  # the store it lives in, recorded in run.json so a resumed run finds it

    def log_params(self, params: dict[str, str]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None: ...

    def log_text(self, text: str, artifact_file: str) -> None: ...

    def log_table(self, rows: list[dict[str, Any]], artifact_file: str) -> None: ...

    def set_tags(self, tags: dict[str, str]) -> None: ...

    def log_dataset(self, name: str, digest: str, source_type: str, source: dict[str, Any],
                    profile: dict[str, Any] | None = None, context: str = "training") -> None: ...

    def finish(self, status: str = "FINISHED") -> None: ...

    def delete(self) -> None:
        """Remove the run from the store (a run whose setup failed, or a discarded partial run)."""
        ...


class NullTracker:
    run_id: str | None = None
    uri: str | None = None

    def log_params(self, params: dict[str, str]) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        pass

    def log_text(self, text: str, artifact_file: str) -> None:
        pass

    def log_table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        pass

    def set_tags(self, tags: dict[str, str]) -> None:
        pass

    def log_dataset(self, name: str, digest: str, source_type: str, source: dict[str, Any],
                    profile: dict[str, Any] | None = None, context: str = "training") -> None:
        pass

    def finish(self, status: str = "FINISHED") -> None:
        pass

    def delete(self) -> None:
        pass


def delete_run(run_id: str, uri: str | None = None) -> None:
    """Delete a tracked run by id (e.g. the run.json of a discarded partial run dir names it)."""
    from zppo_core.tracking.mlflow_tracker import delete_run as delete

    delete(run_id, uri)
