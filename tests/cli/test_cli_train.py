"""`zppo train` end to end through the CLI on the small prepared test models: progress, summary, resume."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from zppo_cli.app import app

runner = CliRunner()


def _sets(overrides):
    out = []
    for o in overrides:
        out += ["--set", o]
    return out


def test_train_zppo_via_cli_prints_summary_and_buffer_table(prepared, test_overrides, tmp_path):
    run_dir = tmp_path / "run"
    r = runner.invoke(app, ["train", "--method", "zppo", "--steps", "3", "--seed", "2", "--run-dir", str(run_dir),
                            *_sets(test_overrides + ["algo.n_new=8", "zppo.capacity=6", "eval.every=3",
                                                    "eval.per_level=1", "eval.samples=1"])], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "zppo train · zppo · scale tiny · seed 2" in r.output
    assert "plain accuracy" in r.output and "replay buffer" in r.output and "entry bin" in r.output
    assert "periodic eval (percent, steps 3 → 3): tiny " in r.output and "tiny-ood " in r.output
    assert json.loads((run_dir / "run.json").read_text())["method"] == "zppo"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000003"
    # resuming a finished run is a no-op that still exits 0
    r = runner.invoke(app, ["train", "--resume", str(run_dir)], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 3  # nothing re-run, nothing lost
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000003"
    r = runner.invoke(app, ["train", "--resume", str(run_dir), "--steps", "5"])
    assert r.exit_code == 2 and "drop --config/--set/--steps/--seed" in " ".join(r.output.split())


def test_bad_user_template_is_rejected_before_compute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "tpl.yaml"
    bad.write_text("bcq: |-\n  {{ question }} no candidates here {{ closer }}\n")
    r = runner.invoke(app, ["train", "--method", "zppo", "--set", f"zppo.template={bad}"])
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "tpl.yaml" in text and "bcq" in text and "candidates" in text
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()


def test_run_dir_that_is_a_file_is_one_line_exit_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    f = tmp_path / "hostname"
    f.write_text("not a directory\n")
    r = runner.invoke(app, ["train", "--scale", "tiny", "--steps", "1", "--run-dir", str(f)], terminal_width=200)
    assert r.exit_code == 2, r.output
    assert "is a file, not a directory" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and f.read_text() == "not a directory\n"
