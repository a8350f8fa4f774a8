"""The teacher served by vLLM's real OpenAI-compatible server (started as `zppo serve teacher` starts it) on the
prepared tiny teacher, used through `OpenAIChatEngine`:

- the start-up check passes for the served name and names the served models for a wrong one;
- greedy replies equal the in-process teacher's (transformers engine, same weights, fp32) token for token: the
  server's own chat template renders exactly what zppo's `render` gives the in-process teacher;
- sampled replies come n per conversation with consistent EOS / finished flags;
- `zppo train --method zppo` with `model.teacher_endpoint.url` takes its teacher rollouts and candidate compressions
  from the server; a wrong served name or an unreachable endpoint stops it before anything is written (exit 2);
  killing the server mid-run stops the run with one line (exit 1) naming the endpoint, the intact last checkpoint
  and the resume command, and `--resume` after a restart of the server finishes with every step recorded once.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def teacher_server(prepared, start_server):
    # judge prompts (eval) are longer than the tiny model's 512 positions in characters; like the in-process
    # transformers judge, let the served one run past them
    return start_server(prepared / "teacher", "tiny", extra=["--max-model-len", "2048"],
                        env={"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"})


@pytest.fixture(scope="module")
def questions():
    from zppo_core.tasks import QuestionStream

    return QuestionStream(["modsum"], {1: 0.5, 2: 0.5}, 3).next(12)


def _conversations(questions):
    from zppo_core.algo.reformulate import plain_prompt
    from zppo_core.config import load_config

    closer = load_config("tiny").data.closer
    return [[{"role": "user", "content": plain_prompt(q, closer)}] for q in questions]


def test_start_up_check(teacher_server):
    from zppo_core.config.schema import EndpointConfig
    from zppo_core.rollout.openai_engine import EndpointError, served_engine

    e = served_engine(EndpointConfig(url=teacher_server.url), role="teacher", field="model.teacher_endpoint",
                      default_model="tiny")
    assert e.model == "tiny" and e.is_vllm
    with pytest.raises(EndpointError) as err:
        served_engine(EndpointConfig(url=teacher_server.url, model="Qwen/Qwen3.5-27B-FP8"), role="teacher",
                      field="model.teacher_endpoint")
    assert str(err.value) == (f"teacher endpoint {teacher_server.url} does not serve model 'Qwen/Qwen3.5-27B-FP8' "
                              "(it serves: tiny); set model.teacher_endpoint.model to one of them")


def test_greedy_replies_equal_the_in_process_teacher(teacher_server, prepared, questions):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zppo_core.config.schema import EndpointConfig
    from zppo_core.rollout.base import SamplingParams, generate_messages
    from zppo_core.rollout.hf import TransformersEngine
    from zppo_core.rollout.openai_engine import served_engine
    from zppo_core.models.load import render

    tok = AutoTokenizer.from_pretrained(prepared / "student")
    tok.padding_side = "left"
    local = TransformersEngine(AutoModelForCausalLM.from_pretrained(prepared / "teacher", dtype=torch.float32), tok)
    served = served_engine(EndpointConfig(url=teacher_server.url), role="teacher", field="model.teacher_endpoint",
                           default_model="tiny")
    convs = _conversations(questions)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=40)
    want = generate_messages(local, convs, params, render=lambda c: render(tok, c))
    got = generate_messages(served, convs, params, render=lambda c: pytest.fail("a served engine renders itself"))
    assert [o[0].token_ids for o in got] == [o[0].token_ids for o in want]
    assert [o[0].text for o in got] == [o[0].text for o in want]
    assert [o[0].finished for o in got] == [o[0].finished for o in want]


def test_sampled_replies_are_n_per_conversation(teacher_server, prepared, questions):
    from transformers import AutoTokenizer

    from zppo_core.config.schema import EndpointConfig
    from zppo_core.rollout.base import SamplingParams
    from zppo_core.rollout.openai_engine import served_engine

    tok = AutoTokenizer.from_pretrained(prepared / "student")
    served = served_engine(EndpointConfig(url=teacher_server.url, concurrency=4), role="teacher",
                           field="model.teacher_endpoint", default_model="tiny")
    outs = served.generate_chat(_conversations(questions), SamplingParams(n=4, temperature=1.0, max_new_tokens=30))
    assert [len(o) for o in outs] == [4] * len(questions)
    for c in (c for o in outs for c in o):
        assert 0 < len(c.token_ids) <= 30 and c.finished == (c.token_ids[-1] == tok.eos_token_id)
        assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)
    assert len({c.text for o in outs for c in o}) > len(questions)  # sampling, not greedy


# ---------------------------------------------------------------- training with the served teacher (the CLI)

ZPPO_RUN = ["algo.n_new=8", "zppo.capacity=6", "zppo.compression=teacher", "zppo.compression_max_tokens=24",
            "tracking.enabled=false", "run.final_eval_per_level=0", "eval.every=0", "run.checkpoint_every=2"]


def _zppo(args, overrides, **kw):
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "zppo_cli.app", "train", "--scale", "tiny", "--method", "zppo", *args]
    for o in overrides:
        cmd += ["--set", o]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if kw.pop("background", False):
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def _steps(run_dir) -> list[int]:
    import json

    path = run_dir / "metrics.jsonl"
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.is_file() else []


def test_a_zppo_run_uses_the_served_teacher_for_rollouts_and_compression(teacher_server, test_overrides, tmp_path):
    import json

    rd = tmp_path / "run"
    out = _zppo(["--steps", "3", "--run-dir", str(rd)],
                test_overrides + ZPPO_RUN + [f"model.teacher_endpoint.url={teacher_server.url}"])
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (rd / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert any("zppo/teacher_accuracy" in r for r in rows)  # teacher rollouts came from the server
    log = teacher_server.log.read_text()
    assert log.count("POST /v1/chat/completions") > 0


def test_bad_endpoints_stop_before_training(teacher_server, test_overrides, tmp_path):
    from tests.vllm.conftest import free_port

    rd = tmp_path / "bad"
    wrong = _zppo(["--steps", "2", "--run-dir", str(rd)], test_overrides + ZPPO_RUN + [
        f"model.teacher_endpoint.url={teacher_server.url}", "model.teacher_endpoint.model=teacher-27b"])
    assert wrong.returncode == 2, wrong.stderr[-2000:]
    assert "does not serve model 'teacher-27b' (it serves: tiny)" in " ".join(wrong.stderr.split())
    down = f"http://127.0.0.1:{free_port()}/v1"
    gone = _zppo(["--steps", "2", "--run-dir", str(rd)], test_overrides + ZPPO_RUN + [
        f"model.teacher_endpoint.url={down}", "model.teacher_endpoint.max_retries=0"])
    assert gone.returncode == 2 and f"teacher endpoint {down}: unreachable" in " ".join(gone.stderr.split())
    assert not rd.exists()  # nothing half-written


def test_killing_the_server_mid_run_stops_resumably_and_resume_finishes(prepared, start_server, test_overrides,
                                                                        tmp_path):
    import time

    from zppo_core.train.checkpoint import latest_checkpoint

    srv = start_server(prepared / "teacher", "tiny")
    rd = tmp_path / "run"
    steps = 16
    sets = test_overrides + ZPPO_RUN + [f"model.teacher_endpoint.url={srv.url}", "model.teacher_endpoint.max_retries=1"]
    proc = _zppo(["--steps", str(steps), "--run-dir", str(rd)], sets, background=True)
    deadline = time.monotonic() + 600
    while len(_steps(rd)) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)  # waiting for the run to reach step 3, not timing it
    assert len(_steps(rd)) >= 3, proc.stderr.read()[-3000:] if proc.poll() is not None else "no progress"
    srv.stop()  # the teacher server dies mid-run
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-3000:]
    line = " ".join(err.split())
    assert f"teacher endpoint {srv.url}: unreachable" in line and f"zppo train --resume {rd}" in line
    ckpt = latest_checkpoint(rd)
    assert ckpt is not None and f"its last checkpoint ({ckpt.name}) is intact" in line
    assert "Traceback" not in err
    done = _steps(rd)
    assert done[-1] < steps
    srv.start()  # the same port again
    out = _zppo(["--resume", str(rd)], [])
    assert out.returncode == 0, out.stderr[-3000:]
    assert _steps(rd) == list(range(1, steps + 1))  # every step once: nothing lost, nothing doubled


def test_zppo_eval_with_a_served_judge(teacher_server, prepared, test_overrides, tmp_path):
    """MMLU-like local data: the tiny student never writes an option letter, so every sample goes to the judge,
    here the tiny teacher behind the server (`--judge http://...`); its replies are recorded as the verdicts'
    judge_output."""
    import json
    import os
    import subprocess
    import sys

    from datasets import Dataset

    data = tmp_path / "data"
    Dataset.from_list([
        {"question": "2 + 2 = ?", "subject": "math", "choices": ["3", "4", "5", "22"], "answer": 1},
        {"question": "H2O is?", "subject": "chemistry", "choices": ["water", "salt", "iron", "gold"], "answer": 0},
    ]).save_to_disk(str(data / "MMLU"))
    before = teacher_server.log.read_text().count("POST /v1/chat/completions")
    cmd = [sys.executable, "-m", "zppo_cli.app", "eval", "--suite", "MMLU", "--model", str(prepared / "student"),
           "--data-dir", str(data), "--limit", "2", "--judge", teacher_server.url, "--out", str(tmp_path / "out"),
           "--set", "eval.judge_endpoint.model=tiny", "--set", "eval.max_new_tokens=16", "--set",
           "tracking.enabled=false"]
    for o in test_overrides:
        cmd += ["--set", o]
    out = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    samples = [json.loads(x) for x in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert len({s["id"] for s in samples}) == 2  # 2 items x eval.samples
    assert all(s["how"] == "judge" and isinstance(s["judge_output"], str) for s in samples)
    assert teacher_server.log.read_text().count("POST /v1/chat/completions") >= before + len(samples)
