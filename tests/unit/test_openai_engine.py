"""The served-model client (`rollout/openai_engine.py`): request mapping, concurrency, retries and every bad-input path.

The happy path runs against vLLM's real OpenAI server in tests/vllm/test_served_teacher.py. A real vLLM cannot be made
to answer non-JSON, to hang, to fail with HTTP 503 twice and then recover, or to refuse a key, so those paths run
here against a small real HTTP server on 127.0.0.1 (stdlib `http.server` in a thread) whose replies each test
scripts; its chat replies echo the request so the mapping can be checked.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from zppo_core.rollout.base import ChatEngine, SamplingParams, generate_messages
from zppo_core.rollout.openai_engine import EndpointError, EndpointSpec, OpenAIChatEngine, served_engine


class Script:
    """What the test server answers: a list of handlers per path, consumed in order (the last one repeats)."""

    def __init__(self):
        self.routes: dict[str, list] = {}
        self.requests: list[tuple[str, dict | None, dict]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def on(self, path, *handlers):
        self.routes[path] = list(handlers)
        return self

    def next(self, path):
        with self.lock:
            hs = self.routes.get(path)
            if not hs:
                return None
            return hs.pop(0) if len(hs) > 1 else hs[0]


def models(*names, owner="vllm"):
    return lambda body: (200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": owner}
                                                           for n in names]})


def echo_chat(body):
    """A chat completion whose content says which request it answers (user text + choice index)."""
    text = body["messages"][-1]["content"]
    n = body.get("n", 1)
    return 200, {"choices": [{"index": i, "message": {"role": "assistant", "content": f"{text}#{i}"},
                              "finish_reason": "stop" if i % 2 == 0 else "length",
                              "token_ids": [7, i] if body.get("return_token_ids") else None} for i in range(n)]}


@pytest.fixture
def server():
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _serve(self, method):
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            path = self.path.removeprefix("/v1")
            script.requests.append((f"{method} {path}", body, dict(self.headers)))
            handler = script.next(path)
            if handler is None:
                status, payload = 404, {"error": {"message": f"no route {path}"}}
            elif handler == "hang":
                script.release.wait(30)
                status, payload = 200, {}
            else:
                status, payload = handler(body)
            raw = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            self._serve("GET")

        def do_POST(self):
            self._serve("POST")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield script
    script.release.set()
    httpd.shutdown()
    httpd.server_close()


def engine(url, **kw):
    return OpenAIChatEngine(EndpointSpec(url=url, **kw), backoff_s=0.0)


def _msgs(*texts):
    return [[{"role": "user", "content": t}] for t in texts]


# ---------------------------------------------------------------- happy path and mapping


def test_check_picks_the_only_model_and_generate_maps_requests_in_order(server):
    server.on("/models", models("tiny")).on("/chat/completions", echo_chat)
    e = engine(server.url + "/").check()  # trailing slash tolerated
    assert e.model == "tiny" and e.is_vllm and isinstance(e, ChatEngine)
    outs = e.generate_chat(_msgs("a", "b", "c"), SamplingParams(n=2, temperature=0.7, top_p=0.9, max_new_tokens=9))
    assert [[c.text for c in o] for o in outs] == [["a#0", "a#1"], ["b#0", "b#1"], ["c#0", "c#1"]]
    assert [c.finished for c in outs[0]] == [True, False]  # stop / length
    assert outs[0][1].token_ids == [7, 1] and outs[0][1].logprobs == []
    body = next(b for k, b, _ in server.requests if k == "POST /chat/completions")
    assert body == {"model": "tiny", "messages": [{"role": "user", "content": body["messages"][0]["content"]}],
                    "n": 2, "max_completion_tokens": 9, "temperature": 0.7, "top_p": 0.9, "return_token_ids": True}


def test_greedy_with_n_above_one_is_n_requests_and_vllm_extensions_only_on_vllm(server):
    server.on("/models", models("m", owner="someone")).on("/chat/completions", echo_chat)
    e = engine(server.url, model="m").check()
    assert not e.is_vllm
    outs = e.generate_chat(_msgs("q"), SamplingParams(n=3, temperature=0.0, max_new_tokens=4))
    assert [c.text for c in outs[0]] == ["q#0"] * 3 and outs[0][0].token_ids == []
    posts = [b for k, b, _ in server.requests if k == "POST /chat/completions"]
    assert len(posts) == 3 and all(b["n"] == 1 and b["temperature"] == 0.0 and "return_token_ids" not in b
                                   for b in posts)
    with pytest.raises(EndpointError, match="top_k=20 needs vLLM's server"):
        e.generate_chat(_msgs("q"), SamplingParams(n=1, temperature=0.6, top_k=20))


def test_generate_messages_dispatches_by_engine_kind(server):
    server.on("/models", models("tiny")).on("/chat/completions", echo_chat)
    served = engine(server.url).check()
    out = generate_messages(served, _msgs("x"), SamplingParams(n=1), render=lambda c: pytest.fail("no render"))
    assert out[0][0].text == "x#0"

    class InProcess:
        def generate(self, prompts, params):
            return [[p] for p in prompts]

    assert generate_messages(InProcess(), _msgs("ab"), SamplingParams(), render=lambda c: [len(c)]) == [[[1]]]


def test_a_calls_chat_template_keywords_update_the_endpoints(server):
    """The role's keywords (the loop passes model.chat_template_kwargs.<role>) go with each request, over the
    endpoint's own; through generate_messages too. A non-vLLM server refuses them with one line."""
    server.on("/models", models("tiny")).on("/chat/completions", echo_chat)
    e = engine(server.url, chat_template_kwargs={"enable_thinking": True, "x": 1}).check()
    e.generate_chat(_msgs("a"), SamplingParams(n=2, temperature=1.0))  # the endpoint's keywords alone
    generate_messages(e, _msgs("b"), SamplingParams(n=1, temperature=0.0), render=lambda c: pytest.fail("no render"),
                      template_kwargs={"enable_thinking": False})
    posts = [b for k, b, _ in server.requests if k == "POST /chat/completions"]
    assert [b["chat_template_kwargs"] for b in posts] == [{"enable_thinking": True, "x": 1},
                                                         {"enable_thinking": False, "x": 1}]
    server.on("/models", models("m", owner="someone"))
    other = engine(server.url, model="m").check()
    assert other.generate_chat(_msgs("c"), SamplingParams(), template_kwargs={})[0][0].text == "c#0"
    msg = _err(lambda: other.generate_chat(_msgs("c"), SamplingParams(), template_kwargs={"enable_thinking": False}))
    assert "chat-template keywords ['enable_thinking'] need vLLM's server" in msg
    assert "model.chat_template_kwargs" in msg


def test_preflight_refuses_role_keywords_for_a_served_teacher_that_is_not_vllm(server, tmp_path):
    from zppo_core.config import ConfigError, load_config
    from zppo_core.train.run import preflight

    server.on("/models", models("tiny", owner="someone"))
    sets = [f"model.teacher_endpoint.url={server.url}", "tracking.enabled=false"]
    preflight(load_config("tiny", method="zppo", overrides=sets), tmp_path / "ok", resume=False)  # no keywords
    cfg = load_config("tiny", method="zppo", overrides=sets + ["model.chat_template_kwargs.compression="
                                                                "{enable_thinking: false}"])
    with pytest.raises(ConfigError) as err:
        preflight(cfg, tmp_path / "bad", resume=False)
    assert "model.chat_template_kwargs.compression" in str(err.value) and "not vLLM's server" in str(err.value)
    assert not (tmp_path / "bad").exists()
    grpo = load_config("tiny", method="grpo", overrides=sets + ["model.chat_template_kwargs.compression={x: 1}"])
    preflight(grpo, tmp_path / "grpo", resume=False)  # GRPO never calls the teacher: nothing to check
    server.on("/models", models("tiny"))  # vLLM's server takes them
    preflight(cfg, tmp_path / "vllm", resume=False)


def test_api_key_is_sent_but_never_shown(server, monkeypatch):
    server.on("/models", models("tiny"), lambda b: (401, {"error": {"message": "bad key"}}))
    monkeypatch.setenv("ZPPO_TEST_KEY", "sk-secret-123")
    e = engine(server.url, api_key_env="ZPPO_TEST_KEY").check()
    assert server.requests[0][2]["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in repr(e)
    with pytest.raises(EndpointError) as err:
        e.check()
    assert "API key was refused" in str(err.value) and "sk-secret" not in str(err.value)
    monkeypatch.delenv("ZPPO_TEST_KEY")
    with pytest.raises(EndpointError, match="environment variable ZPPO_TEST_KEY is not set"):
        engine(server.url, api_key_env="ZPPO_TEST_KEY")


# ---------------------------------------------------------------- bad input and failures


def _err(fn) -> str:
    with pytest.raises(EndpointError) as err:
        fn()
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def test_unreachable_endpoint_names_it_and_the_fix():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    msg = _err(lambda: engine(f"http://127.0.0.1:{port}/v1", max_retries=1).check())
    assert f"teacher endpoint http://127.0.0.1:{port}/v1: unreachable" in msg
    assert "after 2 attempts" in msg and "zppo serve teacher" in msg


def test_wrong_model_name_lists_what_is_served(server):
    server.on("/models", models("a", "b"))
    msg = _err(lambda: engine(server.url, model="c", field="model.teacher_endpoint").check())
    assert "does not serve model 'c' (it serves: a, b)" in msg and "model.teacher_endpoint.model" in msg
    msg = _err(lambda: engine(server.url, role="judge", field="eval.judge_endpoint").check())
    assert "judge endpoint" in msg and "serves 2 models (a, b); set eval.judge_endpoint.model" in msg


def test_non_json_and_non_openai_replies(server):
    server.on("/models", lambda b: (200, "<html>a login page</html>"))
    msg = _err(lambda: engine(server.url).check())
    assert "answered non-JSON" in msg and "OpenAI-compatible /v1 endpoint" in msg and server.url in msg
    server.on("/models", lambda b: (200, {"models": []}))
    assert "did not return an OpenAI model list" in _err(lambda: engine(server.url).check())
    server.on("/models", models("tiny")).on("/chat/completions", lambda b: (200, {"result": "?"}))
    e = engine(server.url).check()
    assert "came back with no choices, expected 1" in _err(lambda: e.generate_chat(_msgs("q"), SamplingParams()))
    server.on("/chat/completions", lambda b: (200, {"choices": [{"index": 0, "message": {"content": "x"},
                                                                 "finish_reason": "abort"}]}))
    assert "finish_reason='abort'" in _err(lambda: e.generate_chat(_msgs("q"), SamplingParams()))


def test_server_errors_are_retried_then_reported(server):
    fail = lambda b: (503, {"error": {"message": "overloaded"}})  # noqa: E731
    server.on("/models", models("tiny")).on("/chat/completions", fail, fail, echo_chat)
    e = engine(server.url, max_retries=2).check()
    assert e.generate_chat(_msgs("q"), SamplingParams())[0][0].text == "q#0"  # healed on the third attempt
    server.on("/chat/completions", fail)
    msg = _err(lambda: e.generate_chat(_msgs("q"), SamplingParams()))
    assert "HTTP 503 (" in msg and "after 3 attempts" in msg
    server.on("/chat/completions", lambda b: (400, {"error": {"message": "max_tokens too large"}}))
    n_before = len(server.requests)
    assert "HTTP 400 on /chat/completions: max_tokens too large" in _err(
        lambda: e.generate_chat(_msgs("q"), SamplingParams()))
    assert len(server.requests) == n_before + 1  # a client error is not retried


def test_a_hanging_server_times_out(server):
    server.on("/models", models("tiny")).on("/chat/completions", "hang")
    e = engine(server.url, timeout_s=0.5, max_retries=0).check()
    msg = _err(lambda: e.generate_chat(_msgs("q"), SamplingParams()))
    assert "no answer within timeout_s=0.5" in msg and "model.teacher_endpoint.timeout_s" in msg


def test_served_engine_from_config_uses_the_default_name(server):
    from zppo_core.config.schema import EndpointConfig

    server.on("/models", models("tiny", "other"))
    e = served_engine(EndpointConfig(url=server.url), role="teacher", field="model.teacher_endpoint",
                      default_model="tiny")
    assert e.model == "tiny"
    with pytest.raises(EndpointError, match="does not serve model 'Qwen/X'"):
        served_engine(EndpointConfig(url=server.url), role="teacher", field="model.teacher_endpoint",
                      default_model="Qwen/X")
    with pytest.raises(EndpointError, match="a served model is frozen"):
        e.sync_weights(None)
