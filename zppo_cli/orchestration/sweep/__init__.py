"""Optuna sweeps over zppo training runs, in four parts:

    plan.py       plan_sweep(...) -> SweepPlan: every check before anything is created; where a sweep lives
    launchers.py  how trials start and end: local processes, or submitit jobs (Slurm arrays, debug)
    driver.py     Sweep(plan, observer).run() -> SweepOutcome: ask/tell, retries, --resume, the MLflow parent run
    report.py     trial rows, best trial, `zppo train` command, plots, `zppo sweep show` data (JSON-able)

The trial worker itself is `zppo_cli.orchestration.trial`; sweep definitions are read by `sweep_spec`. Nothing here
prints: the CLI (`zppo_cli.sweep_cmd`) draws events, progress and outcomes.
"""

from zppo_cli.orchestration.sweep.driver import Event, Sweep, SweepOutcome
from zppo_cli.orchestration.sweep.plan import SweepPlan, plan_sweep, shown_storage
from zppo_cli.orchestration.sweep.report import show_data

__all__ = ["Event", "Sweep", "SweepOutcome", "SweepPlan", "plan_sweep", "show_data", "shown_storage"]
