"""`zppo reproduce` end to end on the session's prepared tiny test models: 2 methods × 2 seeds as parallel local
processes, the study killed (SIGKILL of its whole process group) after its first finished run, then `--resume`
completes it without rerunning that run; the table (terminal, results.md, results.json), the figures, one MLflow
parent run with the four training runs nested under it; `show`; bad input is one line and exit 2."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zppo_cli.app import app

runner = CliRunner()
CHEAP = ["run.steps=4", "eval.every=2", "eval.per_level=1", "eval.samples=1", "eval.max_new_tokens=24",
         "run.final_eval_per_level=0", "zppo.capacity=6"]


def _sets(items):
    return [a for s in items for a in ("--set", s)]


def _finished(run_dir: Path) -> bool:
    latest = run_dir / "checkpoints" / "latest"
    return latest.is_file() and latest.read_text().strip() == "step_000004"


def test_reproduce_killed_then_resumed_builds_the_table(prepared, test_overrides, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZPPO_STATE_DIR", str(tmp_path / "state"))
    study = tmp_path / "study"
    cmd = [sys.executable, "-m", "zppo_cli.app", "reproduce", "--scale", "tiny", "--seeds", "2", "--methods",
           "grpo,zppo", "--out", str(study), "--parallel", "2", *_sets(test_overrides + CHEAP)]
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    first = study / "runs" / "grpo-s0"
    deadline = time.monotonic() + 600
    while not _finished(first) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _finished(first), (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)  # the study and every training it started, at once
    proc.wait()
    kept = (first / "metrics.jsonl").read_bytes(), (first / "metrics.jsonl").stat().st_mtime_ns
    kept_run = json.loads((first / "run.json").read_text())["mlflow_run_id"]

    r = subprocess.run([sys.executable, "-m", "zppo_cli.app", "reproduce", "--out", str(study), "--resume"],
                       capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "grpo-s0: started" not in r.stderr  # the finished run is never launched again
    assert ((first / "metrics.jsonl").read_bytes(), (first / "metrics.jsonl").stat().st_mtime_ns) == kept
    assert "held-out (tiny) end" in r.stdout and "Paired differences vs GRPO" in r.stdout

    res = json.loads((study / "results.json").read_text())
    assert res["methods"]["grpo"]["seeds_done"] == [0, 1] == res["methods"]["zppo"]["seeds_done"]
    assert res["suites"] == ["tiny", "tiny-ood"] and not res["missing"]
    assert res["methods"]["zppo"]["vs_reference"]["tiny/end"]["n"] == 2
    assert "buffer" in res["methods"]["zppo"] and "buffer" not in res["methods"]["grpo"]
    md = (study / "results.md").read_text()
    assert "| ZPPO | 2 |" in md and "BCQ accuracy" in md and "entry 0" in md
    assert {p.name for p in (study / "figures").iterdir()} == {"curves_tiny.png", "curves_tiny-ood.png",
                                                                 "buffer_zppo.png"}

    meta = json.loads((study / "reproduce.json").read_text())
    client = MlflowClient()
    parent = client.get_run(meta["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["zppo.kind"] == "reproduce"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {"results.md", "results.json", "figures"}
    assert "reproduce/zppo/delta_tiny/end" in parent.data.metrics
    children = {}
    for name in ("grpo-s0", "grpo-s1", "zppo-s0", "zppo-s1"):
        run_id = json.loads((study / "runs" / name / "run.json").read_text())["mlflow_run_id"]
        child = client.get_run(run_id)
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id and child.info.status == "FINISHED"
        children[name] = run_id
    assert children["grpo-s0"] == kept_run

    shown = runner.invoke(app, ["reproduce", "show", str(study)], terminal_width=200)
    text = " ".join(shown.output.split())
    assert shown.exit_code == 0 and "held-out" in text and "ZPPO" in text and "study: finished" in text


@pytest.mark.parametrize("args, needle", [
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--seeds", "2", "--methods", "grpo,zpo"], "unknown method(s) zpo"),
    (["--seeds", "2", "--set", "eval.every=0"], "eval.every > 0"),
    (["--resume"], "holds no study"),
    (["--seeds", "2", "--executor", "nowhere"], "unknown executor"),
    (["--seeds", "2", "--profile", "local"], "only apply to --executor slurm"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["reproduce", "--out", str(tmp_path / "s"), *args], terminal_width=300)
    assert r.exit_code == 2, r.output
    assert needle in " ".join(r.output.split())
    assert not (tmp_path / "s").exists() and not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()


def test_existing_study_needs_resume_and_show_needs_a_study(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("")
    r = runner.invoke(app, ["reproduce", "--seeds", "1", "--out", str(tmp_path / "s")], terminal_width=300)
    assert r.exit_code == 2 and "already exists; complete it with --resume" in " ".join(r.output.split())
    r = runner.invoke(app, ["reproduce", "show", str(tmp_path)], terminal_width=300)
    assert r.exit_code == 2 and "is not a study directory" in " ".join(r.output.split())


def test_dry_run_shows_the_plan_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["reproduce", "--seeds", "4", "--dry-run"], terminal_width=300)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "14 methods × 4 seeds = 56 (seed-major)" in text and "zppo, off_distill" in text
    assert "nothing run, nothing created" in text and not (tmp_path / "runs").exists()


def test_reproduce_help_does_not_import_torch():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom zppo_cli.app import app\n"
            "for c in (['reproduce', '--help'], ['reproduce', 'show', '--help']):\n"
            "    r = CliRunner().invoke(app, c)\n    assert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules and 'mlflow' not in sys.modules, 'heavy import'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
