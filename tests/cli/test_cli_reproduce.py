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
    killed = runner.invoke(app, ["reproduce", "show", str(study)], terminal_width=200)  # no time of its own yet
    assert killed.exit_code == 0 and "study: running, planned 20" in " ".join(killed.output.split())
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
    assert shown.exit_code == 0 and "held-out" in text and "ZPPO" in text and "study: finished" in text and " min in all" in text


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


def _exp_file(path: Path, steps: int, n_new: int, lr: float) -> Path:
    path.write_text(f"scale: tiny\nmethod: zppo\nrun:\n  steps: {steps}\nalgo:\n  n_new: {n_new}\noptim:\n  lr: {lr}\n")
    return path


def test_config_file_reaches_every_run_in_layer_order(tmp_path, monkeypatch):
    """preset < -c files in order < the run's method < --set, in the dry run and in every (method, seed) config."""
    from zppo_cli.orchestration.reproduce import plan_reproduce

    monkeypatch.chdir(tmp_path)
    first, second = _exp_file(tmp_path / "a.yaml", 9, 3, 1e-4), tmp_path / "b.yaml"
    second.write_text("run:\n  steps: 7\n")  # the later file wins; scale: comes from the first
    args = ["-c", str(first), "-c", str(second), "--seeds", "2", "--methods", "grpo,zppo", "--set", "optim.lr=2e-5"]
    r = runner.invoke(app, ["reproduce", *args, "--dry-run"], terminal_width=300)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "7 steps × 3 new questions" in text and f"config: {first} < {second}" in text
    assert "runs/reproduce/tiny" in text and "nothing run, nothing created" in text and not (tmp_path / "runs").exists()

    plan = plan_reproduce(None, 2, "grpo,zppo", ["optim.lr=2e-5"], tmp_path / "s", files=[first, second])
    cfgs = {r.name: plan.run_config(r, None) for r in plan.runs}
    assert sorted(cfgs) == ["grpo-s0", "grpo-s1", "zppo-s0", "zppo-s1"]
    for name, cfg in cfgs.items():  # file values; the run's method over the file's `method: zppo`; --set over both
        assert (cfg.run.steps, cfg.algo.n_new, cfg.optim.lr) == (7, 3, 2e-5), name
        assert cfg.method == name.split("-")[0] and cfg.run.seed == int(name[-1])
    assert "--config" in plan.command() and str(first) in plan.command()


def test_resume_uses_the_files_as_read_at_the_start(tmp_path, monkeypatch):
    from zppo_cli.orchestration.reproduce import PLAN_FILE, plan_reproduce
    from zppo_cli.orchestration.reproduce_run import Reproduce

    monkeypatch.chdir(tmp_path)
    exp, study = _exp_file(tmp_path / "exp.yaml", 6, 3, 1e-4), tmp_path / "study"
    plan = plan_reproduce(None, 1, "grpo,zppo", ["tracking.enabled=false"], study, files=[exp])
    rep = Reproduce(plan, None, None)
    rep._setup()  # what a started study writes first: the plan file (no run is launched)
    rep._unlock()
    assert json.loads((study / PLAN_FILE).read_text())["files"][0]["tree"]["run"]["steps"] == 6

    _exp_file(exp, 50, 8, 1e-3)  # changed after the start ...
    changed = plan_reproduce(None, None, None, [], study, resume=True)
    exp.unlink()  # ... then deleted
    resumed = plan_reproduce(None, None, None, [], study, resume=True)
    for p in (changed, resumed):
        for run in p.runs:
            cfg = p.run_config(run, None)
            assert (cfg.run.steps, cfg.algo.n_new, cfg.optim.lr) == (6, 3, 1e-4) and cfg.method == run.method
    r = runner.invoke(app, ["reproduce", "--out", str(study), "--resume", "--dry-run"], terminal_width=300)
    text = " ".join(r.output.split())
    assert r.exit_code == 0 and "6 steps × 3 new questions" in text and "as read when the study started" in text

    r = runner.invoke(app, ["reproduce", "--out", str(study), "--resume", "-c", str(tmp_path / "b.yaml")],
                      terminal_width=300)
    assert r.exit_code == 2 and "drop --seeds/--methods/--set/--config" in " ".join(r.output.split())


@pytest.mark.parametrize("content, needle", [
    ("run:\n  stepz: 4\n", "bad.yaml:2: unknown config key 'run.stepz'"),
    ("run:\n  steps: [1\n", "bad.yaml:3: invalid YAML"),
    ("optim:\n  lr: fast\n", "bad.yaml:2: config field 'optim.lr'"),
    (None, "bad.yaml"),
], ids=["unknown-key", "broken-yaml", "wrong-type", "missing"])
def test_bad_config_file_is_one_line_exit_2_and_no_study(tmp_path, monkeypatch, content, needle):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "bad.yaml").write_text(content)
    r = runner.invoke(app, ["reproduce", "-c", "bad.yaml", "--seeds", "2", "--out", str(tmp_path / "s")],
                      terminal_width=300)
    assert r.exit_code == 2, r.output
    assert needle in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "s").exists() and not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()
