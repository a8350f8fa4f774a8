"""`zppo runs ls|compare` and `zppo report` on real tiny runs in their own MLflow store (real sqlite, real files)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zppo_cli.app import app

runner = CliRunner()
RUN_SETS = ["run.steps=4", "eval.every=2", "eval.suites=[tiny-ood]", "eval.per_level=2", "eval.max_new_tokens=24",
            "zppo.compression=none", "zppo.template=compact"]


@pytest.fixture(scope="module")
def two_runs(prepared, test_overrides, tmp_path_factory):
    """A grpo and a zppo run (4 steps, tiny-ood every 2 steps) in a store of their own."""
    from zppo_core.config import load_config
    from zppo_core.train.run import train

    root = tmp_path_factory.mktemp("runs-cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        out = {}
        for method in ("grpo", "zppo"):
            cfg = load_config("tiny", method=method, overrides=test_overrides + RUN_SETS)
            out[method] = train(cfg, run_dir=root / method)
        yield root, out


@pytest.fixture
def store(two_runs, monkeypatch):
    root, runs = two_runs
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(root)
    return root, runs


def _name(run_id: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient().get_run(run_id).info.run_name


def test_ls_lists_runs_with_final_scores(store):
    root, runs = store
    r = runner.invoke(app, ["runs", "ls", "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert {row["method"] for row in rows} == {"grpo", "zppo"}
    for row in rows:
        res = runs[row["method"]]
        assert row["id"] == res.mlflow_run_id and row["status"] == "FINISHED"
        assert row["steps"] == 4 and row["total_steps"] == 4
        assert row["train_accuracy"] == pytest.approx(res.history[-1]["train/accuracy"])
        ood = row["eval"]["tiny-ood/avg"]
        assert ood["value"] == pytest.approx(next(h["eval/tiny-ood/avg"] for h in reversed(res.history)
                                                  if "eval/tiny-ood/avg" in h))
    only = json.loads(runner.invoke(app, ["runs", "ls", "--json", "--method", "zppo"]).output)
    assert [row["method"] for row in only] == ["zppo"]
    assert json.loads(runner.invoke(app, ["runs", "ls", "--json", "--sweep", "nope"]).output) == []
    # the table at 80 columns (the CLI's console width under the test runner): other columns shorten, the name never
    # (the scores themselves are checked through --json above)
    table = runner.invoke(app, ["runs", "ls"])
    assert table.exit_code == 0 and all(_name(res.mlflow_run_id) in table.output for res in runs.values())


def test_compare_by_dir_id_and_name(store):
    root, runs = store
    g, z = runs["grpo"], runs["zppo"]
    refs = [str(root / "grpo"), z.mlflow_run_id]
    r = runner.invoke(app, ["runs", "compare", *refs, "--json", "--out", str(root / "cmp.png")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert [x["id"] for x in data["runs"]] == [g.mlflow_run_id, z.mlflow_run_id]
    assert data["config_diff"]["method"] == ["grpo", "zppo"]
    assert "run.run_dir" not in data["config_diff"]  # where a run went is not part of its config
    final = {row["metric"]: row for row in data["final"]}
    ood = final["eval/tiny-ood/avg"]
    a, b = (v["value"] for v in ood["values"])
    assert ood["delta_vs_first"][1]["delta"] == pytest.approx(b - a)
    # both runs logged their final eval's samples: the difference is paired over the same questions
    from mlflow.tracking import MlflowClient

    from zppo_core.tracking.runs import read_table
    from zppo_core.tracking.stats import paired_difference

    tables = [read_table(Path(MlflowClient().download_artifacts(r.mlflow_run_id, "eval/samples_step_000004.json",
                                                                str(root / f"t{i}")))) for i, r in enumerate((g, z))]
    d, ci, n = paired_difference(*tables, ["modsum_long"])
    assert ood["delta_vs_first"][1]["paired"] is True
    assert ood["delta_vs_first"][1]["ci95"] == pytest.approx(list(ci)) and n == ood["values"][0]["n"]
    assert any(v.startswith("tiny-ood/modsum_long:") and "(paired)" in v for v in data["verdicts"])
    assert (root / "cmp.png").stat().st_size > 10_000
    by_name = runner.invoke(app, ["runs", "compare", _name(g.mlflow_run_id), _name(z.mlflow_run_id), "--out",
                                  str(root / "cmp2.png")])
    assert by_name.exit_code == 0, by_name.output
    out = by_name.output
    assert "tiny-ood/modsum_long" in out and "B − A" in out and "→ tiny-ood/modsum_long: " in out
    assert "cmp2.png" in out and "95% CI" in out


def test_compare_png_overlays_runs_in_distinct_colours(store):
    from PIL import Image

    root, runs = store
    png = root / "one.png"
    r = runner.invoke(app, ["runs", "compare", str(root / "grpo"), str(root / "zppo"), "--metric", "train/accuracy",
                            "--out", str(png)])
    assert r.exit_code == 0, r.output
    px = set(Image.open(png).convert("RGB").getdata())
    assert (31, 119, 180) in px and (255, 127, 14) in px  # tab10 blue and orange: one per run


@pytest.mark.parametrize("args,message", [
    (["runs", "compare", "no-such-run", "other"], "no run named 'no-such-run'"),
    (["runs", "compare", "grpo-"], "at least two runs"),
    (["runs", "ls", "--experiment", "nope"], "no MLflow experiment 'nope'"),
])
def test_bad_input_is_one_line_exit_2(store, args, message):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    assert message in r.output


def test_ambiguous_name_and_unknown_metric(store):
    from mlflow.tracking import MlflowClient

    root, runs = store
    r = runner.invoke(app, ["runs", "compare", str(root / "grpo"), str(root / "zppo"), "--metric", "nope/metric"])
    assert r.exit_code == 2 and "--metric nope/metric: none of these runs logged it" in r.output
    c = MlflowClient()
    exp = c.get_run(runs["grpo"].mlflow_run_id).info.experiment_id
    ids = [c.create_run(exp, run_name=f"dup-{i}").info.run_id for i in range(2)]  # bare runs: not listed by ls
    r = runner.invoke(app, ["runs", "compare", "dup", str(root / "zppo")])
    assert r.exit_code == 2 and "'dup' matches 2 runs" in r.output and "pass a longer name or the run id" in r.output
    r = runner.invoke(app, ["runs", "compare", "dup-1", str(root / "zppo"), "--json", "--out", str(root / "d.png"),
                            "--metric", "train/accuracy"])
    assert r.exit_code == 0, r.output  # an exact name wins over the prefix matches
    assert json.loads(r.output)["runs"][0]["id"] == ids[1]
    assert "dup-0" not in runner.invoke(app, ["runs", "ls"]).output


def test_report_is_self_contained_and_logged(store):
    from mlflow.tracking import MlflowClient

    root, runs = store
    out = root / "report.html"
    r = runner.invoke(app, ["report", str(root / "grpo"), str(root / "zppo"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    html = out.read_text()
    for section in ("Final scores", "Configuration", "Eval suites", "Training", "Replay buffer", "BCQ / NCQ",
                    "Graduation ·", "BCQ / NCQ prompts", "Eval samples ·", "modsum_long"):
        assert section in html, section
    assert not re.search(r'src="(?!data:)', html)  # every image is embedded
    assert html.count("data:image/png;base64,") >= 5
    for res in runs.values():
        arts = {a.path for a in MlflowClient().list_artifacts(res.mlflow_run_id, "report")}
        assert "report/report.html" in arts


def test_ui_without_a_store_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["ui"])
    assert r.exit_code == 2 and "no MLflow store at" in r.output
    assert not (tmp_path / "mlruns").exists()


def test_graduation_table_is_an_mlflow_table_in_percent(store):
    from mlflow.tracking import MlflowClient

    root, runs = store
    run = MlflowClient().get_run(runs["zppo"].mlflow_run_id)
    assert {"path": "graduation/table.json", "type": "table"} in json.loads(run.data.tags["mlflow.loggedArtifacts"])
    path = MlflowClient().download_artifacts(run.info.run_id, "graduation/table.json", str(root / "dl"))
    table = json.loads(Path(path).read_text())
    assert set(table) == {"columns", "data"} and "accuracy_history" in table["columns"]
    rows = [dict(zip(table["columns"], r)) for r in table["data"]]
    # G_S = 4: an entry accuracy is a multiple of 1/4, so in percent it equals its (percent) entry bin
    assert rows and all(r["entry_accuracy"] == r["entry_bin"] for r in rows)
    assert all(0 <= a <= 100 for r in rows for _, a in json.loads(r["accuracy_history"]))


def test_the_record_of_a_run(store):
    """Name, params that apply, provenance and the dataset input, as the MLflow UI lists them."""
    from mlflow.tracking import MlflowClient

    root, runs = store
    c = MlflowClient()
    g, z = (c.get_run(runs[m].mlflow_run_id) for m in ("grpo", "zppo"))
    assert re.fullmatch(r"grpo-tiny-s0-\d{8}-\d{6}", g.info.run_name)
    assert not [k for k in g.data.params if k.startswith(("zppo.", "tracking.", "run.run_dir"))]
    assert {"zppo.tau", "zppo.capacity", "zppo.rho_aug"} <= set(z.data.params)
    for run in (g, z):
        tags = run.data.tags
        assert tags["mlflow.note.content"] and tags["mlflow.user"] and tags["mlflow.source.type"] == "LOCAL"
        [ds] = run.inputs.dataset_inputs
        assert ds.dataset.name == "modsum" and ds.dataset.source_type == "code"
        assert {t.key: t.value for t in ds.tags}["mlflow.data.context"] == "training"
        assert "config.yaml" in {a.path for a in c.list_artifacts(run.info.run_id)}  # the full config
