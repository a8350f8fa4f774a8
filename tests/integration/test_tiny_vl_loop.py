"""The loop on the tiny vision-language pair (`--scale tiny-vl`): real Qwen3.5 VLMs prepared by the real SFT with
images, real MLflow, real checkpoints. ZPPO runs to the end through the CLI and writes its graduation tables; every
prompt of the loop (plain, NCQ/BCQ, the teacher's rollouts and compression) carries its question's image once; a
resumed run equals an uninterrupted one; `zppo eval` on the run's checkpoint runs the image suites and a paper image
benchmark; bad image data stops `zppo train` with exit 2 naming the file and line, and so does image work for a
text-only student."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from zppo_cli.app import app
from zppo_core.config import load_config
from zppo_core.train.run import train

runner = CliRunner()


def _sets(overrides):
    return [x for o in overrides for x in ("--set", o)]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ptr = (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run_dir / "checkpoints" / ptr / "model" / "model.safetensors"))


def test_zppo_tiny_vl_runs_to_the_end_and_logs_graduation_tables(prepared_vl, test_vl_overrides, tmp_path):
    run_dir = tmp_path / "run"
    r = runner.invoke(app, ["train", "--scale", "tiny-vl", "--method", "zppo", "--steps", "3", "--seed", "1",
                            "--run-dir", str(run_dir), *_sets(test_vl_overrides + ["zppo.capacity=6", "eval.every=3"])],
                      terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "scale tiny-vl" in r.output and "replay buffer" in r.output
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in rows] == [1, 2, 3]
    assert {"eval/tiny-vl/count", "eval/tiny-vl-ood/digits_long", "eval/tiny-vl-blank/bars"} <= set(rows[-1])
    assert (run_dir / "reports" / "graduation" / "table.json").is_file()
    table = json.loads((run_dir / "reports" / "graduation" / "table.json").read_text())
    assert table and all(row["family"] in ("count", "digits", "bars") for row in table)
    # the checkpoint keeps the processor: `zppo eval` loads it as an image-text-to-text model
    ckpt = run_dir / "checkpoints" / "step_000003" / "model"
    assert (ckpt / "processor_config.json").is_file() and (ckpt / "chat_template.jinja").is_file()


def test_every_prompt_of_the_loop_carries_the_image_once(prepared_vl, test_vl_overrides, tmp_path, monkeypatch):
    """Inside the loop: every prompt sent to the student or the teacher (plain groups, NCQ/BCQ groups, the teacher's
    rollouts and its candidate compression) holds its question's image exactly once, as rendered ids and pixels."""
    from zppo_core.train import loop
    from zppo_core.train.methods.zppo import COMPRESS_PROMPT

    seen: list[tuple[int, str, int, int, int]] = []  # engine, prompt text, vision starts, image grids, images
    original = loop.generate_prompts

    def spy(engine, prompts, params, **kw):
        vision_start = engine.processor.vision_start_token_id
        for p in prompts:
            seen.append((id(engine), p.messages[0]["content"][-1]["text"], p.ids.count(vision_start),
                         int(p.mm["image_grid_thw"].shape[0]), len(p.images)))
        return original(engine, prompts, params, **kw)

    monkeypatch.setattr(loop, "generate_prompts", spy)
    cfg = load_config("tiny-vl", "zppo", test_vl_overrides + ["run.steps=2", "zppo.rho_aug=1.0",
                                                              "run.checkpoint_every=5", "zppo.compression=teacher",
                                                              "zppo.compression_max_tokens=8"])
    train(cfg, run_dir=tmp_path / "run")
    compress = COMPRESS_PROMPT.split("{")[0]
    assert len({e for e, *_ in seen}) == 2  # the student's engine and the teacher's
    assert any(t.startswith(compress) for _, t, *_ in seen)  # the teacher compressed candidates with the image
    assert any("<candidate>" in t and not t.startswith(compress) for _, t, *_ in seen)  # NCQ/BCQ groups
    assert all(s[2:] == (1, 1, 1) for s in seen), seen


def test_resumed_tiny_vl_run_equals_uninterrupted(prepared_vl, test_vl_overrides, tmp_path):
    cfg = load_config("tiny-vl", "zppo", test_vl_overrides + ["run.steps=3", "run.seed=4", "run.checkpoint_every=1"])
    full = train(cfg, run_dir=tmp_path / "full")
    part = tmp_path / "part"
    train(cfg, run_dir=part, stop_after=2)
    resumed = train(None, run_dir=part, resume=True)
    w_full, w_res = _weights(full.run_dir), _weights(resumed.run_dir)
    assert set(w_full) == set(w_res) and all(torch.equal(w_full[k], w_res[k]) for k in w_full)

    def stable(rows):
        return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]

    assert stable(resumed.history) == stable(full.history)


def test_eval_on_a_tiny_vl_checkpoint_runs_the_image_suites(prepared_vl, test_vl_overrides, tmp_path):
    cfg = load_config("tiny-vl", "grpo", test_vl_overrides + ["run.steps=1"])
    res = train(cfg, run_dir=tmp_path / "run")
    r = runner.invoke(app, ["eval", "--run", str(res.run_dir), "--out", str(tmp_path / "ev")], terminal_width=200)
    assert r.exit_code == 0, r.output
    out = json.loads((tmp_path / "ev" / "results.json").read_text())
    got = {(b["family"], b["benchmark"]) for b in out["benchmarks"]}
    assert got == {(s, f) for s in ("tiny-vl", "tiny-vl-blank") for f in ("count", "digits", "bars")} | \
        {("tiny-vl-ood", f) for f in ("count_long", "digits_long", "bars_long")}
    assert all(0 <= b["parts"]["chance"] <= 100 for b in out["benchmarks"])
    # an image benchmark of the paper's suite (MathVista, public schema, generated images) on the same checkpoint
    from datasets import Dataset, Features, Image, Sequence, Value
    from PIL import Image as PILImage

    feats = Features({"pid": Value("string"), "question": Value("string"), "decoded_image": Image(),
                      "choices": Sequence(Value("string")), "answer": Value("string"),
                      "question_type": Value("string"), "answer_type": Value("string")})
    rows = [{"pid": "1", "question": "Which color?", "decoded_image": PILImage.new("RGB", (64, 32), "red"),
             "choices": ["red", "blue"], "answer": "red", "question_type": "multi_choice", "answer_type": "text"}]
    Dataset.from_list(rows, features=feats).save_to_disk(str(tmp_path / "data" / "MathVista"))
    r = runner.invoke(app, ["eval", "--run", str(res.run_dir), "--suite", "MathVista", "--data-dir",
                            str(tmp_path / "data"), "--judge", "none", "--out", str(tmp_path / "mv")], terminal_width=200)
    assert r.exit_code == 0, r.output
    mv = json.loads((tmp_path / "mv" / "results.json").read_text())
    assert mv["skipped"] == {} and [(b["benchmark"], b["n"]) for b in mv["benchmarks"]] == [("MathVista", 1)]


@pytest.mark.parametrize("value, needle", [
    ('"image": "missing.png"', "image 'missing.png' (field 'image') not found"),
    ('"image": "corrupt.png"', "field 'image': "),
    ('"images": 3', "field 'images' must be an image path (a string) or a list of paths, not int"),
])
def test_bad_image_data_exits_2_naming_file_and_line(tmp_path, monkeypatch, value, needle):
    """A real-model run reads its data before loading any model: exit 2, the file:line, and no run directory."""
    from PIL import Image

    monkeypatch.chdir(tmp_path)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")  # resolved, never loaded: the data fails first
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    data = tmp_path / "train.jsonl"
    data.write_text('{"question": "q1", "answer": "1", "image": "ok.png"}\n'
                    f'{{"question": "q2", "answer": "2", {value}}}\n')
    r = runner.invoke(app, ["train", "--run-dir", str(tmp_path / "run"), "--set", f"model.student={model}",
                            "--set", f"model.teacher={model}", "--set", "model.device=cpu",
                            "--set", f"data.path={data}", "--set", "tracking.enabled=false"], terminal_width=300)
    assert r.exit_code == 2, r.output
    assert f"{data}:2:" in " ".join(r.output.split()) and needle in " ".join(r.output.split())
    assert not (tmp_path / "run").exists()


def test_visual_families_on_the_text_only_tiny_student_exit_2(tmp_path):
    """`--scale tiny` with a visual family: refused before anything is prepared or created, naming the field."""
    r = runner.invoke(app, ["train", "--scale", "tiny", "--run-dir", str(tmp_path / "run"), "--set",
                            "data.families=[modsum, count]", "--set", "tracking.enabled=false"], terminal_width=300)
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "data.families: count are visual" in text and "--scale tiny-vl" in text
    assert not (tmp_path / "run").exists()


def test_image_data_for_a_text_only_student_exits_2(tmp_path, monkeypatch):
    """Image questions and a text-only checkpoint: exit 2 with the fix, after the models load; the run directory
    created by then is removed (nothing half-written)."""
    from PIL import Image

    from zppo_core.config.schema import TinyModelSpec
    from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model, save_model

    monkeypatch.chdir(tmp_path)
    tok = build_char_tokenizer()
    save_model(build_tiny_model(TinyModelSpec(num_hidden_layers=1), tok, seed=0), tok, tmp_path / "text-model")
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    data = tmp_path / "train.jsonl"
    data.write_text('{"question": "q1", "answer": "1", "image": "ok.png"}\n')
    r = runner.invoke(app, ["train", "--method", "grpo", "--run-dir", str(tmp_path / "run"),
                            "--set", f"model.student={tmp_path / 'text-model'}",
                            "--set", f"model.teacher={tmp_path / 'text-model'}", "--set", "model.device=cpu",
                            "--set", f"data.path={data}", "--set", "tracking.enabled=false"], terminal_width=300)
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert "the training questions have images" in text and "text-only model" in text
    assert not (tmp_path / "run").exists()


def test_the_prompt_filter_counts_image_tokens(prepared_vl, test_vl_overrides, tmp_path, monkeypatch):
    """`data.max_prompt_tokens` measures an image question's rendered prompt, image tokens included: with a limit
    between some questions' text length and their full length, every question drawn fits in full."""
    from zppo_core.algo.reformulate import plain_prompt
    from zppo_core.models.load import PromptRenderer, load_model
    from zppo_core.train import loop
    from zppo_core.train.run import make_stream

    overrides = test_vl_overrides + ["run.steps=1", "run.checkpoint_every=5", "algo.n_new=8"]
    cfg = load_config("tiny-vl", "grpo", overrides)
    render = PromptRenderer.of(load_model(str(prepared_vl / "student"), cfg), cfg=cfg)
    closer = cfg.data.closer
    qs = make_stream(cfg).next(40)
    sizes = [(len(render(plain_prompt(q, closer))), len(render.prompt(plain_prompt(q, closer), q.images).ids))
             for q in qs]
    limit = sorted(full for _, full in sizes)[len(sizes) // 4]
    assert any(text <= limit < full for text, full in sizes)  # text-only counting would let these through
    drawn: list[int] = []
    original = loop.Trainer._draw_questions

    def spy(self, n):
        new, metrics = original(self, n)
        drawn.extend(len(self.render.prompt(plain_prompt(q, closer), q.images).ids) for q in new)
        return new, metrics

    monkeypatch.setattr(loop.Trainer, "_draw_questions", spy)
    res = train(load_config("tiny-vl", "grpo", overrides + [f"data.max_prompt_tokens={limit}"]),
                run_dir=tmp_path / "run")
    assert drawn and all(n <= limit for n in drawn), (limit, drawn)
    assert res.history[0]["data/filtered_questions"] > 0
