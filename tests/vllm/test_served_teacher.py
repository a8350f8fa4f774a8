"""The teacher served by vLLM's real OpenAI-compatible server (started as `zppo serve teacher` starts it) on the
prepared tiny teacher, used through `OpenAIChatEngine`:

- the start-up check passes for the served name and names the served models for a wrong one;
- greedy replies equal the in-process teacher's (transformers engine, same weights, fp32) token for token: the
  server's own chat template renders exactly what zppo's `render` gives the in-process teacher;
- sampled replies come n per conversation with consistent EOS / finished flags;
- a server that goes away mid-use gives a one-line EndpointError naming the endpoint.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def teacher_server(prepared, start_server):
    return start_server(prepared / "teacher", "tiny")


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
    from zppo_core.train.loop import render

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


def test_a_server_that_goes_away_is_a_one_line_error(prepared, start_server, questions):
    from zppo_core.config.schema import EndpointConfig
    from zppo_core.rollout.base import SamplingParams
    from zppo_core.rollout.openai_engine import EndpointError, served_engine

    srv = start_server(prepared / "teacher", "tiny")
    served = served_engine(EndpointConfig(url=srv.url, max_retries=1), role="teacher",
                           field="model.teacher_endpoint", default_model="tiny")
    served.backoff_s = 0.0
    assert served.generate_chat(_conversations(questions[:2]), SamplingParams(n=1))  # up
    srv.stop()
    with pytest.raises(EndpointError) as err:
        served.generate_chat(_conversations(questions[:2]), SamplingParams(n=1))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"teacher endpoint {srv.url}: unreachable")
    assert "after 2 attempts" in msg and "zppo serve teacher" in msg
