"""A sweep's MLflow parent run: opened (or resumed) when a sweep process starts, summarised when it ends.

The parent run holds the sweep's definition, plan and search space as params, its trials table, best trial,
best.json and plots; every trial's own run is nested under it (`tracking.parent_run_id` in the trial's config).
Several sweep processes on one study share one parent run (its id is in sweep.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from zppo_cli.orchestration.sweep.plan import SweepPlan, shown_storage
from zppo_cli.orchestration.sweep.report import best_trial, trial_rows


def open_parent_run(p: SweepPlan, run_id: str | None):
    """A new parent run (params, definition and base config as artifacts), or the sweep's existing one."""
    from zppo_core.tracking.mlflow_tracker import MlflowTracker

    cfg = p.base_cfg
    from zppo_core.train.record import provenance_tags

    tags = {**provenance_tags(cfg), "mlflow.note.content": p.command, "mlflow.source.name": "zppo sweep",
            "zppo.kind": "sweep", "zppo.sweep": p.spec.name, "zppo.scale": p.spec.scale,
            "zppo.method": cfg.method, "optuna.study": p.study, "optuna.storage": shown_storage(p.storage),
            "zppo.sweep_dir": str(p.sweep_dir.absolute()), **cfg.tracking.tags}
    tr = MlflowTracker(cfg.tracking.experiment, uri=cfg.tracking.uri, run_id=run_id, run_name=f"sweep-{p.study}",
                       tags=tags)
    if run_id is None:
        params = {"sweep.name": p.spec.name, "sweep.scale": p.spec.scale, "sweep.method": cfg.method,
                  "sweep.study": p.study, "sweep.storage": shown_storage(p.storage), "sweep.trials": p.trials,
                  "sweep.parallel": p.parallel, "sweep.executor": p.executor,
                  "sweep.sampler": json.dumps(p.spec.sampler), "sweep.pruner": json.dumps(p.spec.pruner),
                  "sweep.objective": p.spec.metric, "sweep.direction": p.spec.direction,
                  "sweep.set": json.dumps(p.spec.set + p.user_sets)}
        params.update({f"space.{x.name}": x.describe() for x in p.spec.params})
        tr.log_params(params)
        tr.log_artifact(p.sweep_dir / "definition.yaml", "sweep")
        tr.log_artifact(p.sweep_dir / "base_config.yaml", "sweep")
    else:
        tr.set_tags({"optuna.storage": shown_storage(p.storage)})
    return tr


def log_outcome(tracker, p: SweepPlan, study, best: dict[str, Any] | None, plots_dir: Path, status: str,
                seconds: float) -> None:
    """The trials table, the best trial (tags, metric, best.json), the plots; then the run ends with `status`."""
    rows = [{k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in row.items()}  # 4 significant digits
            for row in trial_rows(p.spec, study, p.base_cfg)]
    tracker.log_table(rows, "sweep/trials.json")
    if best is not None:
        bt = best_trial(study)
        tracker.set_tags({f"best.{k}": v for k, v in bt.params.items()})
        tracker.set_tags({f"best.{k}": v for k, v in best["config"].items()})
        tracker.set_tags({"best.trial": bt.number, "best.value": bt.value,
                          "best.mlflow_run_id": bt.user_attrs.get("mlflow_run_id", "")})
        tracker.log_artifact(p.sweep_dir / "best.json", "sweep")
    for f in sorted(plots_dir.glob("*")) if plots_dir.is_dir() else []:
        tracker.log_artifact(f, "plots")
    tracker.log_metrics({"sweep/seconds": seconds}, step=len(study.trials))
    tracker.finish(status)
