"""`zppo eval` without the CLI (`run.py`: which weights, results files, MLflow); what is evaluated and how it is
scored is `zppo_core.suites`."""
