"""CLI: --help for every command, dry run, listing, and bad input -> one line on stderr, exit 2, nothing created."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zppo_cli.app import app

runner = CliRunner()
COMMANDS = [[], ["train"], ["prepare"], ["eval"], ["sync"], ["ls"], ["ui"], ["runs"], ["runs", "ls"],
            ["runs", "compare"], ["report"], ["version"], ["serve"], ["serve", "teacher"], ["config"], ["config", "show"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "zppo")
def test_help_for_every_command(cmd):
    r = runner.invoke(app, cmd + ["--help"])
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output


def test_train_help_lists_the_documented_options():
    out = runner.invoke(app, ["train", "--help"], terminal_width=200).output
    for opt in ["--scale", "--method", "--steps", "--seed", "--set", "--run-dir", "--resume", "--dry-run"]:
        assert opt in out


def test_dry_run_prints_resolved_config_and_creates_nothing(tmp_path):
    run_dir = tmp_path / "r"
    r = runner.invoke(app, ["train", "--dry-run", "--steps", "7", "--seed", "3", "--set", "optim.lr=1e-4",
                            "--run-dir", str(run_dir)])
    assert r.exit_code == 0, r.output
    assert "steps: 7" in r.output and "seed: 3" in r.output and "lr: 0.0001" in r.output
    assert not run_dir.exists()


def test_ls_lists_presets_methods_families():
    r = runner.invoke(app, ["ls"], terminal_width=200)
    assert r.exit_code == 0, r.output
    for name in ["tiny", "2b", "9b", "grpo", "linear", "chain4"]:
        assert name in r.output


def _bad(args, *fragments, tmp_path=None):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    text = " ".join((r.stderr or r.output).split())
    for f in fragments:
        assert f in text, text
    return text


def test_bad_inputs_exit_2_with_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _bad(["train", "--scale", "3b"], "unknown scale '3b'", "tiny")
    _bad(["train", "--method", "ppo"], "unknown method 'ppo'", "grpo")
    _bad(["train", "--set", "algo.nope=1"], "unknown config key 'algo.nope'")
    _bad(["train", "--set", "optim.lr=fast"], "optim.lr")
    _bad(["train", "--set", "algo.n_new=3", "--set", "rollout.group_size=3"], "updates_per_step")
    _bad(["train", "--scale", "2b"], "needs CUDA")
    _bad(["ls", "things"], "unknown list 'things'")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()


def test_missing_model_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _bad(["train", "--set", "model.student=/nope/student", "--set", "model.teacher=/nope/teacher",
          "--set", "model.device=cpu", "--set", "model.requires_cuda=false", "--set", "rollout.engine=transformers"],
         "model.student", "/nope/student", "--set model.student=")
    assert not (tmp_path / "runs").exists()


def test_resume_dir_without_checkpoint(tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    _bad(["train", "--resume", str(empty)], "no config.yaml")
    (empty / "config.yaml").write_text(Path(__file__).read_text()[:0] + "scale: tiny\n")
    _bad(["train", "--resume", str(empty)], "has no checkpoint", "zppo train --run-dir")
    _bad(["train", "--resume", str(tmp_path / "missing")], "no config.yaml")


def test_existing_nonempty_run_dir_is_refused(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    (d / "something").write_text("x")
    _bad(["train", "--run-dir", str(d)], "already exists", "--resume")


def test_unwritable_run_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _bad(["train", "--run-dir", str(blocker / "run")], "not a directory")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores permission bits: the file case above covers it
            return
        _bad(["train", "--run-dir", str(ro / "run")], "not writable")
    finally:
        ro.chmod(0o700)
