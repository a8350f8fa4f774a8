"""`zppo eval` through the executors: debug (in-process job callable) and the real local Slurm cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zppo_cli.app import app

runner = CliRunner()
EVAL_SETS = ["--set", "eval.per_level=1", "--set", "eval.samples=1", "--set", "eval.max_new_tokens=32"]


@pytest.fixture(scope="module")
def short_run(prepared, test_overrides, tmp_path_factory) -> Path:
    from zppo_core.config import load_config
    from zppo_core.train.run import train

    cfg = load_config("tiny", overrides=test_overrides + ["run.steps=2", "run.final_eval_per_level=0"])
    return train(cfg, run_dir=tmp_path_factory.mktemp("evaljobs") / "run").run_dir


def _logged(run_dir: Path, name: str) -> list[int]:
    from mlflow.tracking import MlflowClient

    run_id = json.loads((run_dir / "run.json").read_text())["mlflow_run_id"]
    return [m.step for m in MlflowClient().get_metric_history(run_id, name)]


def test_eval_debug_executor_runs_the_job_callable(short_run, tmp_path):
    out = tmp_path / "dbg"
    r = runner.invoke(app, ["eval", "--suite", "tiny", "--run", str(short_run), "--executor", "debug",
                            "--out", str(out), *EVAL_SETS], terminal_width=250)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert [b["benchmark"] for b in res["benchmarks"]] == ["modsum"] and res["step"] == 2
    assert 2 in _logged(short_run, "eval/tiny/modsum")


def test_eval_on_slurm_waits_and_lands_in_the_training_run(slurm_cluster, short_run, tmp_path):
    out = tmp_path / "slurm-out"
    r = runner.invoke(app, ["eval", "--suite", "tiny-ood", "--run", str(short_run), "--executor", "slurm",
                            "--wait", "--out", str(out), *EVAL_SETS], terminal_width=250)
    assert r.exit_code == 0, r.output
    assert "submitted Slurm job" in r.output and "completed" in r.output
    res = json.loads((out / "results.json").read_text())
    assert [b["benchmark"] for b in res["benchmarks"]] == ["modsum_long"]
    assert _logged(short_run, "eval/tiny-ood/modsum_long") == [2]
    logs = list((tmp_path / "slurm-out.job").glob("*_0_log.out"))
    assert logs and "modsum_long (tiny-ood) n=2" in logs[0].read_text()
