"""MLflow implementation of the Tracker protocol (the only module importing mlflow).

Default store: an embedded sqlite database at `./mlruns/mlflow.db` with artifacts in `./mlruns/artifacts`
(no server). `$MLFLOW_TRACKING_URI` or `tracking.uri` override it. Uses `MlflowClient` with an explicit run id
(no global "active run"), so a resumed or requeued run appends to the same MLflow run.

For a training run this tracker sits behind `durable.DurableTracker` (local records first, this client in a
background thread); the pieces it needs are here too: `check_reachable` (the start-up check: one short request, no
retries), `is_transient` (which failures are worth retrying), `http_defaults` (MLflow's own HTTP retries shortened:
the durable tracker retries for as long as it takes), the steps a run already holds per metric (`metric_steps`, so
a replay adds only what is missing) and `run_exists`.
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
LOGGED_ARTIFACTS = "mlflow.loggedArtifacts"  # MLflow's tag listing a run's table artifacts


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
        reopen: bool = True,
    ):
        """`run_id`: continue that run (`reopen`: mark it RUNNING now; False: no request here, call `reopen()`)."""
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
            if reopen:
                self.reopen()
        self.experiment = experiment

    def reopen(self) -> None:
        """Mark a continued run RUNNING again."""
        self.client.update_run(self.run_id, status="RUNNING")

    def log_params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        existing = self.client.get_run(self.run_id).data.params
        items = [p for p in items if p.key not in existing]  # params are immutable: a resume re-logs nothing
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int, timestamp_ms: int | None = None) -> None:
        """`timestamp_ms`: when the values were recorded (default now); the same point sent twice is stored once."""
        from mlflow.entities import Metric

        ts = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
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
        # the UI's grid reads a dot in a column name as a nested field (and shows nothing): zppo.capacity is
        # written zppo_capacity
        payload = {"columns": [c.replace(".", "_") for c in cols],
                   "data": [[_jsonable(r.get(c)) for c in cols] for r in rows]}
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / Path(artifact_file).name
            p.write_text(json.dumps(payload))
            parent = str(Path(artifact_file).parent)
            self.client.log_artifact(self.run_id, str(p), None if parent == "." else parent)
        # the UI shows an artifact as a table (not raw JSON) when the run's loggedArtifacts tag lists it; unlike
        # MlflowClient.log_table, re-logging overwrites the file instead of appending rows
        tags = self.client.get_run(self.run_id).data.tags
        logged = json.loads(tags.get(LOGGED_ARTIFACTS, "[]"))
        entry = {"path": artifact_file, "type": "table"}
        if entry not in logged:
            self.client.set_tag(self.run_id, LOGGED_ARTIFACTS, json.dumps(logged + [entry]))

    def log_dataset(self, name: str, digest: str, source_type: str, source: dict[str, Any],
                    profile: dict[str, Any] | None = None, context: str = "training") -> None:
        """Record a dataset as an input of the run (the UI's "Datasets used"); logged once per run."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        run = self.client.get_run(self.run_id)
        if any(d.dataset.name == name and d.dataset.digest == digest for d in (run.inputs.dataset_inputs or [])):
            return
        ds = Dataset(name=name, digest=digest, source_type=source_type, source=json.dumps(source),
                     profile=json.dumps(profile) if profile else None)
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(ds, tags=[InputTag("mlflow.data.context",
                                                                                      context)])])

    def metric_steps(self, keys) -> dict[str, set[int]]:
        """The steps this run already holds for each of `keys`."""
        return {k: {int(m.step) for m in self.client.get_metric_history(self.run_id, k)} for k in keys}

    def params(self) -> dict[str, str]:
        return dict(self.client.get_run(self.run_id).data.params)

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


# ----------------------------------------------------------------------------------------------- reliability
HTTP_DEFAULTS = {  # MLflow's defaults retry a refused connection for ~5 minutes (7 retries, back-off factor 2)
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


def http_defaults() -> None:
    """Shorter MLflow HTTP retries for this process (variables the user set win): a caller that retries by itself
    (the durable tracker) learns of an outage in seconds instead of minutes. urllib3's line per retried request is
    silenced too: that caller says once that the server is away and once that it is back."""
    import logging

    for k, v in HTTP_DEFAULTS.items():
        os.environ.setdefault(k, v)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def check_reachable(uri: str, timeout_s: float = 10.0) -> str | None:
    """None when the tracking store answers, else why not (one phrase). A server gets one request (no retries) with
    a `timeout_s` time-out; a local store (sqlite, a directory) is not contacted here."""
    if not is_remote(uri):
        return None
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        resp = http_request(get_default_host_creds(uri), "/api/2.0/mlflow/experiments/get-by-name", "GET",
                            max_retries=0, timeout=timeout_s, params={"experiment_name": "Default"})
    except Exception as err:  # noqa: BLE001 - refused, unresolvable, timed out: all "does not answer"
        text = str(err).lower()
        if "refused" in text:
            return "refuses connections (nothing listens there)"
        if "timeout" in text or "timed out" in text:
            return f"does not answer within {timeout_s:g} s"
        if "name or service not known" in text or "name resolution" in text or "nodename nor servname" in text:
            return "is an unknown host name"
        return f"cannot be reached ({' '.join(str(err).split(' failed with exception ')[-1].split())[:160]})"
    if resp.status_code in (401, 403):
        return (f"refuses the request (HTTP {resp.status_code}); set MLFLOW_TRACKING_USERNAME/PASSWORD or "
                "MLFLOW_TRACKING_TOKEN")
    if resp.status_code >= 500 or resp.status_code == 429:
        return f"answers HTTP {resp.status_code} (overloaded or failing)"
    if resp.status_code not in (200, 404):
        return f"answers HTTP {resp.status_code}: is this an MLflow tracking server?"
    return None


def is_transient(err: BaseException) -> bool:
    """A tracking call that failed for a reason that passes: the server unreachable, timing out, restarting or
    overloaded (HTTP 5xx/429), a sqlite store busy. False: the call itself is wrong (retrying cannot help)."""
    from mlflow.exceptions import MlflowException

    if isinstance(err, (OSError, TimeoutError)):  # requests' ConnectionError/Timeout are OSErrors
        return True
    text = str(err).lower()
    if "database is locked" in text or "could not connect" in text:
        return True
    if isinstance(err, MlflowException):
        if err.error_code in ("TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "INTERNAL_ERROR",
                              "DEADLINE_EXCEEDED", "SERVICE_UNDER_MAINTENANCE"):
            return True
        return "failed with exception" in text or "timeout" in text
    return False


def run_exists(uri: str, run_id: str) -> bool:
    """The run is in the store and not deleted."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient(tracking_uri=uri).get_run(run_id).info.lifecycle_stage != "deleted"
    except MlflowException as err:
        if is_transient(err):
            raise
        return False


# ----------------------------------------------------------------------------------------------- read side
def read_uri(uri: str | None = None, store: str | Path | None = None) -> str:
    """The store to read: `uri`, else a store directory's sqlite file, else $MLFLOW_TRACKING_URI, else
    ./mlruns/mlflow.db. Creates nothing."""
    if uri:
        return uri
    if store is None and os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(store or DEFAULT_DIR).resolve() / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite URI (None for other stores)."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


class RunStore:
    """Read access to a tracking store for `zppo runs` and reports. Returns plain dicts and lists, so no mlflow
    object leaves this module:

        {"id", "name", "experiment_id", "status", "start_time", "end_time" (ms), "artifact_uri", "params",
         "tags", "metrics" (latest value), "metric_steps" (step of that value), "datasets" [{name, digest,
         source_type, context}]}
    """

    def __init__(self, uri: str):
        import logging

        from mlflow.tracking import MlflowClient

        for name in ("alembic", "mlflow.store.db.utils"):
            logging.getLogger(name).setLevel(logging.WARNING)
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # downloads are small and many
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)

    def experiment_id(self, name: str) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        return None if exp is None else exp.experiment_id

    def experiment_names(self) -> list[str]:
        return [e.name for e in self.client.search_experiments()]

    def search(self, experiment: str, filter_string: str = "", max_results: int = 5000) -> list[dict[str, Any]]:
        """Runs of `experiment` (newest first) matching an MLflow filter string; [] when it does not exist."""
        exp = self.experiment_id(experiment)
        if exp is None:
            return []
        runs = self.client.search_runs([exp], filter_string=filter_string, max_results=max_results,
                                       order_by=["attributes.start_time DESC"])
        return [_run_dict(r) for r in runs]

    def get(self, run_id: str) -> dict[str, Any] | None:
        from mlflow.exceptions import MlflowException

        try:
            return _run_dict(self.client.get_run(run_id))
        except MlflowException:
            return None

    def by_name(self, experiment: str | None, name: str, prefix: bool = False) -> list[dict[str, Any]]:
        """Runs whose name is `name` (or starts with it), in one experiment or in all of them."""
        quoted = name.replace("'", "\\'")
        flt = f"attributes.run_name LIKE '{quoted}%'" if prefix else f"attributes.run_name = '{quoted}'"
        exps = [experiment] if experiment else self.experiment_names()
        return [r for e in exps for r in self.search(e, flt)]

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of a metric, by step (the last value logged at a step wins, e.g. after a resume)."""
        by_step: dict[int, tuple[int, float]] = {}
        for m in self.client.get_metric_history(run_id, key):
            if m.step not in by_step or m.timestamp >= by_step[m.step][0]:
                by_step[m.step] = (m.timestamp, m.value)
        return [(s, v) for s, (_, v) in sorted(by_step.items())]

    def artifacts(self, run_id: str, path: str | None = None) -> list[str]:
        """Artifact file paths under `path` (recursively)."""
        out: list[str] = []
        for f in self.client.list_artifacts(run_id, path):
            out.extend(self.artifacts(run_id, f.path) if f.is_dir else [f.path])
        return out

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        """Add a file to an existing run (its status unchanged)."""
        self.client.log_artifact(run_id, str(path), artifact_path)

    def download(self, run_id: str, path: str, dst: str | Path) -> Path | None:
        """A copy of one artifact (file or folder) under `dst`; None when the run has no such artifact."""
        try:
            return Path(self.client.download_artifacts(run_id, path, str(dst)))
        except Exception:
            return None


def _run_dict(r) -> dict[str, Any]:
    metric_objs = getattr(r.data, "_metric_objs", None) or []
    steps = {m.key: int(m.step) for m in metric_objs}
    datasets = []
    for d in (r.inputs.dataset_inputs if r.inputs else None) or []:
        ctx = next((t.value for t in d.tags if t.key == "mlflow.data.context"), None)
        datasets.append({"name": d.dataset.name, "digest": d.dataset.digest, "source_type": d.dataset.source_type,
                         "context": ctx})
    return {"id": r.info.run_id, "name": r.info.run_name, "experiment_id": r.info.experiment_id,
            "status": r.info.status, "start_time": r.info.start_time, "end_time": r.info.end_time,
            "artifact_uri": r.info.artifact_uri, "params": dict(r.data.params), "tags": dict(r.data.tags),
            "metrics": dict(r.data.metrics), "metric_steps": steps, "datasets": datasets}
