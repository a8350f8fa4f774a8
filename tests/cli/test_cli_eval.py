"""`zppo eval` end to end on real tiny models: a run's checkpoint, a model directory, local benchmark files in
the public schemas (AIME-like jsonl, MMLU-like save_to_disk, an image benchmark), MLflow, missing data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zppo_cli.app import app

runner = CliRunner()


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def _norm(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def tiny_run(prepared, test_overrides, tmp_path_factory) -> Path:
    from zppo_core.config import load_config
    from zppo_core.train.run import train

    cfg = load_config("tiny", overrides=test_overrides + ["run.steps=2", "run.final_eval_per_level=0"])
    return train(cfg, run_dir=tmp_path_factory.mktemp("evalrun") / "run").run_dir


EVAL_SETS = ["eval.per_level=2", "eval.samples=2", "eval.max_new_tokens=40"]


def test_eval_tiny_suites_on_a_run_logs_into_its_mlflow_run_at_the_checkpoint_step(tiny_run, test_overrides):
    from mlflow.tracking import MlflowClient

    r = runner.invoke(app, ["eval", "--suite", "tiny,tiny-ood", "--run", str(tiny_run), *_sets(EVAL_SETS)],
                      terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "modsum" in r.output and "modsum_long" in r.output and "tiny average" in r.output
    out = tiny_run / "eval" / "step_000002-tiny-tiny-ood"
    res = json.loads((out / "results.json").read_text())
    assert res["step"] == 2 and res["kind"] == "run"
    names = [b["benchmark"] for b in res["benchmarks"]]
    assert names == ["modsum", "modsum_long"]
    samples = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    # 2 per level x 5 levels (modsum) + 2 x 2 levels (modsum_long), 2 samples each
    assert len(samples) == (10 + 4) * 2
    assert {"benchmark", "id", "response", "extracted", "correct", "how"} <= set(samples[0])
    by_bench = {}
    for s in samples:
        by_bench.setdefault(s["benchmark"], []).append(s["correct"])
    for b in res["benchmarks"]:  # the score is the mean of the recorded verdicts
        assert b["score"] == pytest.approx(100 * sum(by_bench[b["benchmark"]]) / len(by_bench[b["benchmark"]]), abs=0.01)
    run_id = json.loads((tiny_run / "run.json").read_text())["mlflow_run_id"]
    client = MlflowClient()
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"  # evaluating a finished run does not reopen it
    hist = client.get_metric_history(run_id, "eval/tiny/modsum")
    assert [(m.step, round(m.value, 2)) for m in hist] == [(2, res["benchmarks"][0]["score"])]
    assert client.get_metric_history(run_id, "eval/tiny-ood/avg")[0].step == 2
    # each score with its n (items) and standard error; the samples as an MLflow table
    assert client.get_metric_history(run_id, "eval_n/tiny/modsum")[0].value == 10
    assert client.get_metric_history(run_id, "eval_n/tiny-ood/avg")[0].value == 4  # modsum_long: 2 x 2 levels
    assert client.get_metric_history(run_id, "eval_se/tiny/modsum")[0].value >= 0
    tables = json.loads(client.get_run(run_id).data.tags["mlflow.loggedArtifacts"])
    assert {"path": f"eval/{out.name}/samples.json", "type": "table"} in tables


def test_eval_model_dir_on_local_benchmark_files(prepared, test_overrides, tmp_path, monkeypatch):
    """AIME-like jsonl (rule), MMLU-like save_to_disk (multiple choice, judge = tiny teacher for unparsable
    answers: its malformed verdicts count as wrong), an image benchmark on a text-only model (skipped, said why)."""
    from datasets import Dataset, Features, Image, Sequence, Value
    from mlflow.tracking import MlflowClient
    from PIL import Image as PILImage

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "data"
    for cfg_name, rows in (("AIME2025-I", [{"question": "Find 6*7.", "answer": "42"}]),
                           ("AIME2025-II", [{"question": "Find 2+2.", "answer": "4"}])):
        (data / "AIME25" / cfg_name).mkdir(parents=True)
        (data / "AIME25" / cfg_name / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    Dataset.from_list([
        {"question": "2 + 2 = ?", "subject": "math", "choices": ["3", "4", "5", "22"], "answer": 1},
        {"question": "H2O is?", "subject": "chemistry", "choices": ["water", "salt", "iron", "gold"], "answer": 0},
    ]).save_to_disk(str(data / "MMLU"))
    img = PILImage.new("RGB", (64, 32), "red")
    feats = Features({"pid": Value("string"), "question": Value("string"), "decoded_image": Image(),
                      "choices": Sequence(Value("string")), "answer": Value("string"),
                      "question_type": Value("string"), "answer_type": Value("string")})
    Dataset.from_list([{"pid": "1", "question": "Which color?", "decoded_image": img, "choices": ["red", "blue"],
                        "answer": "red", "question_type": "multi_choice", "answer_type": "text"}],
                      features=feats).save_to_disk(str(data / "MathVista"))
    student = prepared / "student"
    r = runner.invoke(app, ["eval", "--suite", "AIME25,MMLU,MathVista", "--model", str(student), "--data-dir",
                            str(data), "--limit", "2", "--out", str(tmp_path / "out"),
                            *_sets(test_overrides + ["eval.max_new_tokens=24"])], terminal_width=250)
    text = _norm(r.output)
    assert r.exit_code == 4, r.output  # MathVista could not be evaluated (text-only model)
    assert "MathVista" in text and "text-only" in text and "--allow-missing" in text
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    got = {b["benchmark"]: b for b in res["benchmarks"]}
    assert set(got) == {"AIME25", "MMLU"} and got["AIME25"]["n"] == 2 and got["MMLU"]["n"] == 2
    assert set(res["skipped"]) == {"MathVista"}
    samples = [json.loads(x) for x in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    mmlu = [s for s in samples if s["benchmark"] == "MMLU"]
    # the tiny student never writes an option letter: every MMLU sample went to the judge, whose replies are
    # not strict JSON verdicts -> wrong
    assert mmlu and all(s["how"] == "judge" and s["correct"] is False and s["judge_output"] is not None
                        for s in mmlu)
    assert got["MMLU"]["judged"] == len(mmlu) and got["MMLU"]["score"] == 0.0
    assert all(s["how"] in ("rule", "no-answer", "judge") for s in samples if s["benchmark"] == "AIME25")
    # a sample names its question: config and split beside the id (AIME25's row ids repeat across its configs)
    aime = {(s["config"], s["split"], s["id"]) for s in samples if s["benchmark"] == "AIME25"}
    assert aime == {("AIME2025-I", "test", "0"), ("AIME2025-II", "test", "0")}
    assert all(0.0 <= s["score"] <= 1.0 for s in samples)
    assert got["AIME25"]["comparable"] is False and got["AIME25"]["delta"] is None  # tiny: no paper number
    runs = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("zppo").experiment_id],
        filter_string=f"tags.`zppo.model` = '{student}'")
    assert len(runs) == 1 and runs[0].data.tags["zppo.kind"] == "eval"
    assert runs[0].data.metrics["eval/llm/MMLU"] == 0.0 and "eval/llm/avg" in runs[0].data.metrics
    # --allow-missing accepts the partial evaluation; --judge none counts unparsable answers wrong unjudged
    r = runner.invoke(app, ["eval", "--suite", "MMLU,MathVista", "--model", str(student), "--data-dir", str(data),
                            "--limit", "1", "--judge", "none", "--allow-missing", "--out", str(tmp_path / "o2"),
                            *_sets(test_overrides + ["eval.max_new_tokens=16"])], terminal_width=250)
    assert r.exit_code == 0, r.output
    s2 = [json.loads(x) for x in (tmp_path / "o2" / "samples.jsonl").read_text().splitlines()]
    assert s2 and all(s["how"] != "judge" and s["correct"] is False for s in s2)


def test_suite_all_on_an_empty_data_dir_lists_all_31_and_loads_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["eval", "--suite", "all", "--data-dir", str(tmp_path / "empty"),
                            "--out", str(tmp_path / "out")], terminal_width=300)
    assert r.exit_code == 4, r.output
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(res["skipped"]) == 31 and res["benchmarks"] == []
    text = _norm(r.output)
    assert "skipped 31" in text and "lmms-lab/ai2d" in text and str(tmp_path / "empty" / "AIME25") in text
    assert not (tmp_path / "mlruns").exists()  # nothing evaluated, nothing logged


@pytest.mark.parametrize("args, needle", [
    (["--suite", "nope"], "unknown suite or benchmark 'nope'"),
    (["--run", "x", "--model", "y"], "either --run RUN_DIR or --model PATH"),
    (["--checkpoint", "3"], "add --run RUN_DIR"),
    (["--model", "/nonexistent"], "not a Hugging Face model directory"),
    (["--run", "/nonexistent"], "not a zppo run directory"),
    (["--samples", "0"], "--samples and --limit must be >= 1"),
    (["--judge", "/nonexistent", "--suite", "tiny"], "--judge /nonexistent"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle, tmp_path, monkeypatch, test_overrides):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["eval", *args, *_sets(test_overrides)], terminal_width=300)
    assert r.exit_code == 2, r.output
    assert needle in _norm(r.output)
    assert not (tmp_path / "evals").exists() and not (tmp_path / "mlruns").exists()


def test_bad_checkpoint_step_names_the_available_ones(tiny_run):
    r = runner.invoke(app, ["eval", "--run", str(tiny_run), "--checkpoint", "7"], terminal_width=300)
    assert r.exit_code == 2 and "available: step_000002" in _norm(r.output)


def test_results_table_shows_the_delta_only_for_comparable_rows(tmp_path, monkeypatch):
    """A comparable score gets its delta; a score measured differently from the paper's (here OCRBench v2 with
    types skipped) says "no" with the reason under the table and shows no delta; a family average with
    benchmarks missing is not comparable either."""
    import io

    from rich.console import Console

    import zppo_cli.eval_cmd as eval_cmd
    from zppo_core.config import load_config
    from zppo_core.suites.evaluate import BenchmarkResult, EvalReport
    from zppo_core.eval.run import EvalOutcome, EvalTarget

    out = io.StringIO()
    monkeypatch.setattr(eval_cmd, "console", Console(file=out, width=250))
    report = EvalReport(results=[
        BenchmarkResult("AIME25", "LLM", 30, 30.0, reference=26.7),
        BenchmarkResult("OCRBench-v2-EN", "VLM", 4, 87.5, reference=48.8, parts={"text detection": 66.7},
                        not_comparable="1 item(s) skipped: no metric here for table parsing en (TEDS)",
                        skipped_items={"no metric here for table parsing en (TEDS)": 1}),
    ])
    target = EvalTarget("model", "m", load_config("2b"), str(tmp_path))
    eval_cmd._show(EvalOutcome(report, tmp_path, None, target, 1.0, {"LLM": 50.4, "VLM": 62.0}))
    rows = [ln.replace("│", " ").strip() for ln in out.getvalue().splitlines()]
    lines = {ln.split()[0]: ln for ln in rows if ln.startswith(("AIME25", "OCRBench"))}
    assert "yes" in lines["AIME25"] and "+3.3" in lines["AIME25"]
    assert "no (1)" in lines["OCRBench-v2-EN"] and "+" not in lines["OCRBench-v2-EN"].split("no (1)")[1]
    text = _norm(out.getvalue())
    assert "(1) OCRBench-v2-EN not comparable with the paper: 1 item(s) skipped: no metric here for table parsing en" \
        " (TEDS)" in text
    assert "comparable only when all of the family's benchmarks are" in text and "text detection 66.7" in text
    fam = [ln for ln in rows if "LLM average" in ln][0]
    assert "50.4" in fam and "-20.4" not in fam  # 1 of the 10 LLM benchmarks: no family delta
