"""MLflow implementation of the Tracker protocol (the only module importing mlflow).

Default store: an embedded sqlite database at `./mlruns/mlflow.db` with artifacts in `./mlruns/artifacts`
(no server). `$MLFLOW_TRACKING_URI` or `tracking.uri` override it. Uses `MlflowClient` with an explicit run id
(no global "active run"), so a resumed or requeued run appends to the same MLflow run.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_DIR = "mlruns"


def resolve_uri(uri: str | None) -> tuple[str, str | None]:
    """(tracking URI, artifact location for new experiments or None to let the server decide)."""
    if uri:
        return uri, None
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env, None
    root = Path(DEFAULT_DIR).resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}", (root / "artifacts").as_uri()


def get_or_create_experiment(client, experiment: str, artifact_location: str | None) -> str:
    """The experiment's id, creating it when missing (another process creating it at the same moment is fine)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(experiment, artifact_location=artifact_location)
    except Exception:
        exp = client.get_experiment_by_name(experiment)
        if exp is None:  # not a lost race: a real problem
            raise
        return exp.experiment_id


def ensure_store(uri: str | None, experiment: str) -> str:
    """Open the tracking store (a fresh sqlite store runs its schema migrations now) and create `experiment` if
    missing; returns the resolved URI. Lets a launcher do both once, before parallel jobs race on them."""
    import logging

    from mlflow.tracking import MlflowClient

    for name in ("alembic", "mlflow.store.db.utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    resolved, artifact_location = resolve_uri(uri)
    get_or_create_experiment(MlflowClient(tracking_uri=resolved), experiment, artifact_location)
    return resolved


class MlflowTracker:
    def __init__(
        self,
        experiment: str,
        uri: str | None = None,
        run_id: str | None = None,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
    ):
        import logging

        from mlflow.tracking import MlflowClient

        for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking._tracking_service.client"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri, artifact_location = resolve_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        if run_id is None:
            exp_id = get_or_create_experiment(self.client, experiment, artifact_location)
            all_tags = dict(tags or {})
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run = self.client.create_run(exp_id, run_name=run_name, tags=all_tags)
            self.run_id = run.info.run_id
        else:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
        self.experiment = experiment

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        existing = self.client.get_run(self.run_id).data.params
        items = [p for p in items if p.key not in existing]  # params are immutable: a resume re-logs nothing
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items() if v is not None and math.isfinite(v)]
        for i in range(0, len(items), 500):
            self.client.log_batch(self.run_id, metrics=items[i : i + 500])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_table(self, rows: list[dict[str, Any]], artifact_file: str) -> None:
        # MLflow's table artifact format (columns/data JSON) without pulling pandas into the hot path
        cols: list[str] = []
        for r in rows:
            for k in r:
                if k not in cols:
                    cols.append(k)
        payload = {"columns": cols, "data": [[_jsonable(r.get(c)) for c in cols] for r in rows]}
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / Path(artifact_file).name
            p.write_text(json.dumps(payload))
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(self.run_id, str(p), None if parent == "." else parent)

    def set_tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    @staticmethod
    def run_status(run_id: str, uri: str | None = None) -> str:
        """The status (RUNNING, FINISHED, FAILED, KILLED) of an existing run."""
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=resolve_uri(uri)[0]).get_run(run_id).info.status

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)

    def delete(self) -> None:
        self.client.delete_run(self.run_id)


def close_run(run_id: str, uri: str | None = None, status: str = "FINISHED") -> bool:
    """End an existing run that is still RUNNING (its process died after its work was done); False when it was
    already ended."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=resolve_uri(uri)[0])
    if client.get_run(run_id).info.status != "RUNNING":
        return False
    client.set_terminated(run_id, status=status)
    return True


def delete_run(run_id: str, uri: str | None = None) -> None:
    """Mark an existing run deleted (MLflow keeps it in the trash until `mlflow gc`)."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=resolve_uri(uri)[0]).delete_run(run_id)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return json.dumps(list(v))
    return v
