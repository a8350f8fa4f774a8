"""`zppo eval` on a real tiny vision-language model directory: an image benchmark (MathVista, public schema,
generated PNGs) is evaluated through the transformers engine's image path, not skipped."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from tests.unit.test_vlm_engine import build_tiny_vlm
from zppo_cli.app import app

runner = CliRunner()


def test_eval_image_benchmark_on_a_vision_language_model(tmp_path, monkeypatch):
    from datasets import Dataset, Features, Image, Sequence, Value
    from PIL import Image as PILImage

    monkeypatch.chdir(tmp_path)
    model = build_tiny_vlm(tmp_path / "vlm")
    feats = Features({"pid": Value("string"), "question": Value("string"), "decoded_image": Image(),
                      "choices": Sequence(Value("string")), "answer": Value("string"),
                      "question_type": Value("string"), "answer_type": Value("string")})
    rows = [{"pid": "1", "question": "Which color?", "decoded_image": PILImage.new("RGB", (64, 32), "red"),
             "choices": ["red", "blue"], "answer": "red", "question_type": "multi_choice", "answer_type": "text"},
            {"pid": "2", "question": "How many?", "decoded_image": PILImage.new("RGB", (40, 40), "blue"),
             "choices": None, "answer": "3", "question_type": "free_form", "answer_type": "integer"},
            {"pid": "3", "question": "Past the limit", "decoded_image": PILImage.new("RGB", (8, 8), "green"),
             "choices": None, "answer": "1", "question_type": "free_form", "answer_type": "integer"}]
    Dataset.from_list(rows, features=feats).save_to_disk(str(tmp_path / "data" / "MathVista"))
    r = runner.invoke(app, ["eval", "--suite", "MathVista", "--model", str(model), "--data-dir",
                            str(tmp_path / "data"), "--limit", "2", "--judge", "none", "--out", str(tmp_path / "out"),
                            "--set", "eval.samples=1", "--set", "eval.max_new_tokens=8", "--set", "tracking.enabled=false"], terminal_width=250)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["skipped"] == {}
    assert [(b["benchmark"], b["family"], b["n"]) for b in res["benchmarks"]] == [("MathVista", "VLM", 2)]
    samples = [json.loads(x) for x in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert [(s["benchmark"], s["id"]) for s in samples] == [("MathVista", "1"), ("MathVista", "2")]
    assert all(isinstance(s["response"], str) and s["how"] in ("choice", "rule", "exact", "no-answer")
               for s in samples)
