"""`zppo sweep`: help, listing, dry run and bad input (one line, exit 2, nothing created). No trial runs here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zppo_cli.app import app

runner = CliRunner()


@pytest.mark.parametrize("cmd", [["sweep"], ["sweep", "run"], ["sweep", "show"]], ids=" ".join)
def test_sweep_help(cmd):
    r = runner.invoke(app, cmd + ["--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "Usage" in r.output


def test_sweep_help_does_not_import_torch_or_optuna():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom zppo_cli.app import app\n"
            "for c in (['sweep', '--help'], ['sweep', 'run', '--help'], ['sweep', 'show', '--help']):\n"
            "    r = CliRunner().invoke(app, c)\n    assert r.exit_code == 0, r.output\n"
            "assert 'torch' not in sys.modules and 'optuna' not in sys.modules, 'heavy import'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_ls_sweeps_lists_buffer():
    r = runner.invoke(app, ["ls", "sweeps"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "buffer" in r.output and "graduation threshold" in r.output


def test_dry_run_shows_the_plan_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["sweep", "buffer", "--trials", "6", "--parallel", "2", "--dry-run"], terminal_width=200)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "study: buffer-tiny" in out and "zppo.capacity" in out and "× algo.n_new" in out and "zppo.tau" in out
    assert "maximize eval/tiny-ood/avg" in out and "6, 2 at a time" in out
    assert not (tmp_path / "runs").exists()
    # a GPU scale plans on this machine too (its trials would check CUDA on their nodes)
    r = runner.invoke(app, ["sweep", "buffer", "--scale", "2b", "--dry-run"], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "eval/llm/avg" in r.output


def _write(tmp_path: Path, name: str, text: str) -> str:
    p = tmp_path / name
    p.write_text(text)
    return str(p)


SPACE_OK = """
method: zppo
objective: {metric: eval/tiny-ood/avg}
set: ["eval.every=1", "eval.suites=[tiny-ood]"]
space:
  tau: {field: zppo.tau, low: 0.25, high: 0.75}
"""


def _bad(args, *fragments):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    text = " ".join((r.stderr or r.output).split())
    for f in fragments:
        assert f in text, text
    assert len((r.stderr or r.output).strip().splitlines()) <= 3, text  # one (soft-wrapped) line
    return text


def test_bad_inputs_exit_2_and_create_nothing(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    _bad(["sweep", "bufer"], "unknown sweep 'bufer'", "valid sweeps: buffer")
    _bad(["sweep", "show", "nothing"], "no sweep", "zppo sweep")
    bad_field = _write(tmp_path, "badfield.yaml", SPACE_OK.replace("zppo.tau", "zppo.taux"))
    _bad(["sweep", bad_field], "'zppo.taux' is not a config field", "tau")
    bad_section = _write(tmp_path, "badsection.yaml", SPACE_OK.replace("zppo.tau", "zppo"))
    _bad(["sweep", bad_section], "is a config section")
    empty = _write(tmp_path, "empty.yaml", SPACE_OK.replace("low: 0.25, high: 0.75", "low: 0.75, high: 0.25"))
    _bad(["sweep", empty], "empty range [0.75, 0.25]")
    out_of_schema = _write(tmp_path, "schema.yaml", SPACE_OK.replace("high: 0.75", "high: 1.5"))
    _bad(["sweep", out_of_schema], "value 1.5 is not valid for zppo.tau")
    no_eval = _write(tmp_path, "noeval.yaml", SPACE_OK.replace('set: ["eval.every=1", "eval.suites=[tiny-ood]"]',
                                                               'set: ["eval.every=0"]'))
    _bad(["sweep", no_eval], "needs periodic eval of suite 'tiny-ood'")
    _bad(["sweep", "buffer", "--trials", "2", "--parallel", "3"], "--parallel 3 is larger than the trial budget (2)")
    _bad(["sweep", "buffer", "--set", "zppo.tau=0.3"], "conflicts with the swept parameter 'tau'")
    _bad(["sweep", "buffer", "--storage", f"sqlite:///{tmp_path}/no/such/dir/optuna.db"], "cannot open it")
    _bad(["sweep", "buffer", "--resume"], "--resume: no sweep 'buffer-tiny'")
    _bad(["sweep", "buffer", "--executor", "cloud"], "unknown executor")
    _bad(["sweep", "buffer", "--scale", "3b"], "scale '3b'")
    assert list(work.iterdir()) == [], list(work.iterdir())
    assert not (tmp_path / "no").exists()
