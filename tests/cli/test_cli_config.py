"""`--config FILE` on the commands, `zppo config show` (values and their sources), user presets in `zppo ls` and
`--scale`, bad files (exit 2, file:line, nothing created), and a resumed run that keeps its saved config."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from zppo_cli.app import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def shown_lines(output: str) -> dict[str, str]:
    """`key: value  # source` lines of `config show` -> {dotted key: source}."""
    out, stack = {}, []
    for line in output.splitlines():
        m = re.match(r"^( *)([^#:\s][^:]*):(.*?)(?:\s+# (.*))?$", line)
        if not m:
            continue
        depth = len(m.group(1)) // 2
        stack[depth:] = [m.group(2)]
        if m.group(4) is not None:
            out[".".join(stack)] = m.group(4)
    return out


def leaves(model, prefix: str = "") -> set[str]:
    from pydantic import BaseModel

    out: set[str] = set()
    for name in type(model).model_fields:
        key, value = f"{prefix}{name}", getattr(model, name)
        out |= leaves(value, key + ".") if isinstance(value, BaseModel) else {key}
    return out


def test_config_show_prints_the_resolved_yaml_with_every_values_source(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "base.yaml", "method: zppo\nrun:\n  steps: 50\nalgo:\n  n_new: 8\n")
    write(tmp_path / "more.yaml", "run:\n  steps: 30\n  seed: 2\n")
    r = runner.invoke(app, ["config", "show", "--config", "base.yaml", "-c", "more.yaml", "--set", "run.seed=5"],
                      terminal_width=80)
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0] == "# preset tiny < base.yaml < more.yaml < --set"
    from zppo_core.config import ZPPOConfig, load_config

    shown = ZPPOConfig.model_validate(yaml.safe_load(r.output))  # the output is the resolved config as YAML
    assert shown == load_config("tiny", files=["base.yaml", "more.yaml"], overrides=["run.seed=5"])
    src = shown_lines(r.output)
    assert src["scale"] == "default" and src["method"] == "base.yaml:1"
    assert src["run.steps"] == "more.yaml:2" and src["run.seed"] == "--set run.seed=5"
    assert src["algo.n_new"] == "base.yaml:5" and src["algo.updates_per_step"] == "preset tiny"
    assert src["algo.eps_low"] == "default" and src["model.tiny_student.hidden_size"] == "default"
    assert set(src) == leaves(shown)  # every value once, each with its source
    assert not list(tmp_path.glob("runs")) and not list(tmp_path.glob("mlruns"))


def test_train_dry_run_takes_config_files_and_shows_sources(tmp_path):
    f = write(tmp_path / "exp.yaml", "scale: tiny\nrun:\n  steps: 11\n")
    r = runner.invoke(app, ["train", "-c", str(f), "--steps", "7", "--dry-run"], terminal_width=100)
    assert r.exit_code == 0, r.output
    src = shown_lines(r.output)
    assert src["run.steps"] == "--steps" and src["scale"] == f"{f}:1"
    assert "steps: 7" in r.output


def test_the_example_config_file_resolves_at_paper_scale(monkeypatch):
    monkeypatch.setenv("ZPPO_DATA", "/data")
    monkeypatch.setenv("ZPPO_MODELS", "/models")
    r = runner.invoke(app, ["config", "show", "-c", str(REPO / "configs" / "2b-zppo.example.yaml")],
                      terminal_width=100)
    assert r.exit_code == 0, r.output
    from zppo_core.config import ZPPOConfig

    cfg = ZPPOConfig.model_validate(yaml.safe_load(r.output))
    assert cfg.scale == "2b" and cfg.method == "zppo" and cfg.data.path == "/data/train.jsonl"
    assert cfg.model.student == "/models/Qwen3.5-2B" and cfg.algo.n_new == 384
    monkeypatch.delenv("ZPPO_DATA")
    r = runner.invoke(app, ["config", "show", "-c", str(REPO / "configs" / "2b-zppo.example.yaml")])
    assert r.exit_code == 2 and "environment variable ZPPO_DATA is not set" in " ".join(r.output.split())


def test_user_presets_in_ls_and_scale(tmp_path, monkeypatch):
    cluster = tmp_path / "cluster"
    write(cluster / "tiny-short.yaml", "description: tiny, 3 steps\nscale: tiny\nrun:\n  steps: 3\n")
    monkeypatch.setenv("ZPPO_PRESETS", str(cluster))
    from zppo_cli.options import console

    monkeypatch.setattr(console, "width", 250)  # one table row per preset
    r = runner.invoke(app, ["ls", "presets"])
    assert r.exit_code == 0, r.output
    assert re.search(r"tiny-short\s+│ tiny, 3 steps \(based on tiny; .*cluster/tiny-short\.yaml\)", r.output)
    r = runner.invoke(app, ["config", "show", "--scale", "tiny-short"], terminal_width=250)
    assert r.exit_code == 0, r.output
    assert shown_lines(r.output)["run.steps"] == f"preset tiny-short ({cluster / 'tiny-short.yaml'}:4)"
    write(cluster / "2b.yaml", "scale: tiny\n")
    r = runner.invoke(app, ["ls", "presets"])
    assert r.exit_code == 2
    assert "cluster/2b.yaml has the name of the built-in preset '2b'" in " ".join(r.output.split())


def _bad(args, *fragments):
    r = runner.invoke(app, args, terminal_width=100)
    assert r.exit_code == 2, r.output
    text = " ".join((r.stderr or r.output).split())
    for f in fragments:
        assert f in text, text
    assert len((r.stderr or r.output).strip().splitlines()) <= 4, text  # one (soft-wrapped) line
    return text


def test_bad_config_files_exit_2_with_file_line_and_create_nothing(tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    unknown = write(tmp_path / "unknown.yaml", "run:\n  steps: 3\nalgo:\n  nnew: 8\n")
    wrong = write(tmp_path / "wrong.yaml", "optim:\n  lr: fast\n")
    broken = write(tmp_path / "broken.yaml", "run:\n  steps: [3\n")
    unset = write(tmp_path / "unset.yaml", "data:\n  path: ${ZPPO_TEST_NOT_SET}/x.jsonl\n")
    monkeypatch.delenv("ZPPO_TEST_NOT_SET", raising=False)
    for cmd in (["train"], ["config", "show"], ["eval", "--dry-run"], ["prepare"]):
        _bad(cmd + ["-c", str(unknown)], f"{unknown}:4: unknown config key 'algo.nnew'", "valid keys in algo",
             "n_new")
        _bad(cmd + ["-c", str(wrong)], f"{wrong}:2: config field 'optim.lr'", "got 'fast'")
        _bad(cmd + ["-c", str(broken)], f"{broken}:3: invalid YAML", "started on line 2")
        _bad(cmd + ["-c", str(tmp_path / "missing.yaml")], "missing.yaml does not exist")
        _bad(cmd + ["-c", str(unset)], f"{unset}:2: environment variable ZPPO_TEST_NOT_SET is not set")
    _bad(["train", "--executor", "slurm", "--dry-run", "-c", str(wrong)], f"{wrong}:2")
    assert list(work.iterdir()) == []


def test_slurm_dry_run_shows_the_resolved_config_the_job_gets(tmp_path, monkeypatch):
    monkeypatch.setenv("ZPPO_TEST_SEED", "7")
    f = write(tmp_path / "exp.yaml", "run:\n  seed: ${ZPPO_TEST_SEED}\n  steps: 4\n")
    r = runner.invoke(app, ["train", "-c", str(f), "--executor", "slurm", "--dry-run"], terminal_width=200)
    assert r.exit_code == 0, r.output
    src = shown_lines(r.output)
    assert src["run.seed"] == f"{f}:2" and re.search(r"^  seed: 7 ", r.output, re.M)
    assert src["run.checkpoint_minutes"].startswith("a quarter of the Slurm time limit")


def test_a_resumed_run_uses_its_saved_config_not_the_files(prepared, test_overrides, tmp_path):
    from zppo_core.config import parse_overrides

    tree = parse_overrides(test_overrides + ["run.steps=2", "run.final_eval_per_level=0", "eval.every=0"])
    exp = write(tmp_path / "exp.yaml", yaml.safe_dump(tree))
    run_dir = tmp_path / "run"
    r = runner.invoke(app, ["train", "-c", str(exp), "--run-dir", str(run_dir)], terminal_width=200)
    assert r.exit_code == 0, r.output
    saved = (run_dir / "config.yaml").read_text()
    assert yaml.safe_load(saved)["run"]["steps"] == 2
    r = runner.invoke(app, ["train", "--resume", str(run_dir), "-c", str(exp)])
    assert r.exit_code == 2 and "drop --config/--set/--steps/--seed" in " ".join(r.output.split())
    # the file now asks for more steps and another learning rate; a resume keeps what the run was started with
    tree["run"]["steps"], tree["optim"]["lr"] = 4, 0.5
    exp.write_text(yaml.safe_dump(tree))
    r = runner.invoke(app, ["train", "--resume", str(run_dir)], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["step"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert (run_dir / "config.yaml").read_text() == saved


def test_config_show_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom zppo_cli.app import app\n"
            "r = CliRunner().invoke(app, ['config', 'show', '--scale', '2b', '--set', 'run.seed=1'])\n"
            "assert r.exit_code == 0, r.output\nassert 'torch' not in sys.modules, 'heavy import'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_debug_executor_jobs_get_the_resolved_config(prepared, test_overrides, tmp_path, monkeypatch):
    """The Slurm jobs' own callables (run here by --executor debug): train gets the resolved config file (values
    from the file, ${VAR} expanded on the submitting side); eval gets the file's layers and applies them."""
    from zppo_core.config import parse_overrides

    monkeypatch.setenv("ZPPO_TEST_SEED", "6")
    tree = parse_overrides(test_overrides + ["run.steps=2", "run.final_eval_per_level=0", "eval.every=0"])
    tree["run"]["seed"] = "${ZPPO_TEST_SEED}"
    exp = write(tmp_path / "exp.yaml", yaml.safe_dump(tree))
    run_dir = tmp_path / "run"
    r = runner.invoke(app, ["train", "-c", str(exp), "--run-dir", str(run_dir), "--executor", "debug"],
                      terminal_width=200)
    assert r.exit_code == 0, r.output
    job_cfg = yaml.safe_load((tmp_path / "run.job" / "config.yaml").read_text())
    assert job_cfg == yaml.safe_load((run_dir / "config.yaml").read_text())
    assert job_cfg["run"]["seed"] == 6 and job_cfg["run"]["steps"] == 2 and job_cfg["algo"]["n_new"] == 4
    ev = write(tmp_path / "eval.yaml", "eval:\n  per_level: 1\n  samples: 2\n  max_new_tokens: 16\n")
    out = tmp_path / "ev"
    r = runner.invoke(app, ["eval", "--suite", "tiny", "--run", str(run_dir), "-c", str(ev), "--executor", "debug",
                            "--out", str(out)], terminal_width=200)
    assert r.exit_code == 0, r.output
    [bench] = json.loads((out / "results.json").read_text())["benchmarks"]
    rows = (out / "samples.jsonl").read_text().splitlines()
    assert len(rows) == 2 * bench["n"]  # eval.samples = 2 from the file (the run's own config says 4)


def test_a_sweep_takes_config_files_once_and_resumes_with_them(prepared, test_overrides, tmp_path, monkeypatch):
    """`zppo sweep -c FILE`: the files are read when the sweep starts (every trial, and a resumed sweep, gets
    those values even after the file changed); they sit under the definition's `set` and --set (eval.every goes
    on the command line here: the buffer sweep's tiny section sets it); `sweep show` gives a train command with
    the file."""
    from zppo_core.config import parse_overrides

    monkeypatch.chdir(tmp_path)
    tree = parse_overrides(list(test_overrides) + ["run.steps=2", "eval.per_level=1", "eval.samples=1",
                                                   "eval.max_new_tokens=24", "run.threads=1"])
    tree["optim"]["lr"] = 3e-4
    exp = write(tmp_path / "exp.yaml", yaml.safe_dump(tree))
    r = runner.invoke(app, ["sweep", "buffer", "-c", "exp.yaml", "--trials", "1", "--executor", "debug",
                            "--set", "eval.every=1", "--set", "run.final_eval_per_level=0"], terminal_width=200)
    assert r.exit_code == 0, r.output
    sdir = tmp_path / "runs" / "sweeps" / "buffer-tiny"
    assert [f["path"] for f in json.loads((sdir / "sweep.json").read_text())["user_files"]] == ["exp.yaml"]
    tree["optim"]["lr"] = 0.5  # edited after the start: not what the sweep runs with
    exp.write_text(yaml.safe_dump(tree))
    r = runner.invoke(app, ["sweep", "buffer", "--resume", "-c", "exp.yaml"])
    assert r.exit_code == 2 and "drop --set/--config" in " ".join(r.output.split())
    r = runner.invoke(app, ["sweep", "buffer", "--resume", "--trials", "2"], terminal_width=200)
    assert r.exit_code == 0, r.output
    for trial in ("0000", "0001"):
        cfg = yaml.safe_load((sdir / "trials" / trial / "config.yaml").read_text())
        assert cfg["optim"]["lr"] == 3e-4 and cfg["run"]["steps"] == 2 and cfg["algo"]["n_new"] == 4
    data = json.loads(runner.invoke(app, ["sweep", "show", "buffer", "--json"]).stdout)
    assert data["best"]["train_command"].startswith("zppo train --scale tiny -c exp.yaml --method zppo --set ")
    # a user preset based on tiny finds the same study (NAME-<built-in scale>) for show and --resume
    write(tmp_path / "presets" / "tiny-mine.yaml", "scale: tiny\n")
    monkeypatch.setenv("ZPPO_PRESETS", str(tmp_path / "presets"))
    r = runner.invoke(app, ["sweep", "show", "buffer", "--scale", "tiny-mine", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["study"] == "buffer-tiny"
    r = runner.invoke(app, ["sweep", "buffer", "--scale", "tiny-mine", "--resume", "--dry-run"], terminal_width=200)
    assert r.exit_code == 0 and "buffer-tiny" in r.output, r.output
