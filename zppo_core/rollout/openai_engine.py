"""A served model as an engine: the teacher or a judge behind an OpenAI-compatible HTTP API (`vllm serve`).

At the paper's scale the 27B teacher runs on GPUs of its own (6 student + 2 teacher GPUs per node), served by
vLLM's OpenAI-compatible server; an LLM judge is served the same way. `OpenAIChatEngine` is the client side: it
sends chat completions (`POST {url}/chat/completions`) with many requests in flight (a thread pool over one
connection pool), a timeout per request, and retries with exponential backoff for what can heal (connection
refused or reset, timeouts, HTTP 429 / 5xx); what cannot (a wrong model name, a rejected key, a malformed reply)
fails at once. Every failure is an `EndpointError` whose one-line message names the endpoint and the fix.
`check()` (GET `{url}/models`) verifies at start that the server answers and serves the named model.

Why chat messages and not token ids. In-process engines take token ids rendered by the student's tokenizer and
chat template, which the in-process teacher shares. A served teacher or judge has its own tokenizer and chat
template (a judge is often another model family), and the teacher and judge only ever read and write *text*:
teacher rollouts become BCQ/NCQ candidate text, compressions and verdicts are text, nothing trains on their
tokens. Sending the student's token ids to `/v1/completions` would be silently wrong whenever the vocabularies
differ; sending the messages lets the server apply the served model's own template, which is right for any model.
So this engine implements `ChatEngine.generate_chat` (conversations in) and not `Engine.generate` (token ids in);
callers go through `rollout.base.generate_messages`, which renders token ids only for in-process engines.

Completions carry `text` and `finished` (finish_reason "stop" vs "length"). On vLLM (its model cards say
`owned_by: vllm`) the request asks for `return_token_ids`, so `token_ids` holds the served model's ids (its
vocabulary, EOS included when it stopped); log-probs are not requested (empty list): the served model is
prompt-side only, and PPO's π_old comes from the student's own engine or the trainer (`algo.old_logprobs`).
Greedy calls with n > 1 are sent as n requests of n = 1 (vLLM rejects greedy n > 1). vLLM extensions (top_k,
chat_template_kwargs) are refused with a clear error on other servers. The chat-template keywords sent are the
endpoint's (`<endpoint>.chat_template_kwargs`) updated by the call's own (`generate_chat(..., template_kwargs=)`:
the loop passes the role's `model.chat_template_kwargs`, e.g. thinking off for the teacher's compression calls
only). The server should run without a reasoning parser (`zppo serve` starts it so): the reply's `content` is
then the whole response, thinking included, as the in-process teacher would produce it.

The API key is read from the environment variable the config names (`api_key_env`) and sent as a bearer token;
it is never logged, saved, or put in an error message.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from zppo_core.rollout.base import Conversation, SamplingParams
from zppo_core.types import Completion

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    """A served model failed; str(err) is one line naming the endpoint and the fix."""


class ServedModelFailed(RuntimeError):
    """A served model failed mid-run (raised by the training run); str(err) is one line: the endpoint, the last
    checkpoint and the resume command."""


@dataclass(frozen=True)
class EndpointSpec:
    """Where and how to reach a served model (mirrors config `EndpointConfig`)."""

    url: str  # http://host:port/v1
    model: str | None = None  # served model name (None: the endpoint's only model)
    api_key_env: str | None = None  # environment variable holding the API key
    timeout_s: float = 1800.0  # per request
    max_retries: int = 3  # extra attempts for failures that can heal
    concurrency: int = 64  # requests in flight
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"enable_thinking": true} (vLLM)
    role: str = "teacher"  # who this is, for messages: teacher | judge
    field: str = "model.teacher_endpoint"  # the config section to name in messages


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class OpenAIChatEngine:
    """ChatEngine over an OpenAI-compatible `/v1` endpoint. Build with `OpenAIChatEngine(spec)`, then `check()`."""

    def __init__(self, spec: EndpointSpec, backoff_s: float = 0.5):
        import httpx

        self.spec = spec
        self.url = spec.url.rstrip("/")
        self.backoff_s = backoff_s
        self.model: str | None = spec.model
        self.is_vllm: bool | None = None  # learned by check()
        headers = {"Content-Type": "application/json"}
        if spec.api_key_env:
            key = os.environ.get(spec.api_key_env)
            if not key:
                raise EndpointError(
                    f"{spec.field}.api_key_env: environment variable {spec.api_key_env} is not set; export it "
                    f"with the API key of {self.url}, or unset {spec.field}.api_key_env"
                )
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=spec.concurrency, max_keepalive_connections=spec.concurrency)
        timeout = httpx.Timeout(spec.timeout_s, connect=min(10.0, spec.timeout_s))
        self._client = httpx.Client(headers=headers, timeout=timeout, limits=limits)
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # no key in reprs
        return f"OpenAIChatEngine({self.url!r}, model={self.model!r})"

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ HTTP with retries

    def _where(self) -> str:
        return f"{self.spec.role} endpoint {self.url}"

    def _request(self, method: str, path: str, payload: dict | None = None, retries: int | None = None,
                 timeout_s: float | None = None) -> Any:
        """One JSON request with retries for failures that can heal; returns the decoded JSON body."""
        import httpx

        retries = self.spec.max_retries if retries is None else retries
        timeout_s = self.spec.timeout_s if timeout_s is None else timeout_s
        timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        attempt = 0
        while True:
            attempt += 1
            try:
                resp = self._client.request(method, self.url + path, json=payload, timeout=timeout)
            except httpx.TimeoutException:
                problem = (f"no answer within timeout_s={timeout_s:g}", f"raise {self.spec.field}"
                           ".timeout_s or check the server's load")
            except httpx.TransportError as err:
                problem = (f"unreachable ({_one_line(err, 80) or type(err).__name__})",
                           f"start the server (zppo serve {self.spec.role}) or fix {self.spec.field}.url")
            else:
                if resp.status_code in RETRY_STATUS:
                    problem = (f"HTTP {resp.status_code} ({_one_line(resp.text, 80)})", "check the server's log")
                else:
                    return self._decode(resp, path)
            if attempt > retries:
                tries = f" after {attempt} attempts" if attempt > 1 else ""
                raise EndpointError(f"{self._where()}: {problem[0]}{tries}; {problem[1]}")
            time.sleep(self.backoff_s * 2 ** (attempt - 1))

    def _decode(self, resp, path: str) -> Any:
        if resp.status_code in (401, 403):
            hint = (f"check the key in ${self.spec.api_key_env}" if self.spec.api_key_env
                    else f"set {self.spec.field}.api_key_env to the variable holding its API key")
            raise EndpointError(f"{self._where()}: HTTP {resp.status_code}, the API key was refused; {hint}")
        try:
            body = resp.json()
        except ValueError:
            ctype = resp.headers.get("content-type", "?")
            raise EndpointError(
                f"{self._where()}: GET/POST {path} answered non-JSON (HTTP {resp.status_code}, {ctype}: "
                f"{_one_line(resp.text, 60)!r}); is {self.url} an OpenAI-compatible /v1 endpoint?"
            ) from None
        if resp.status_code >= 400:
            err = body.get("error", body) if isinstance(body, dict) else body
            msg = err.get("message", err) if isinstance(err, dict) else err
            if resp.status_code == 404 and self.model and self.model in str(msg):
                raise EndpointError(f"{self._where()}: does not serve model '{self.model}'; set "
                                    f"{self.spec.field}.model to a model it serves (GET {self.url}/models)")
            raise EndpointError(f"{self._where()}: HTTP {resp.status_code} on {path}: {_one_line(msg)}")
        return body

    # ------------------------------------------------------------------ start-up check

    def check(self, retries: int | None = None) -> "OpenAIChatEngine":
        """Reachability and model-name check (GET /models). Picks the model when the spec names none and the
        endpoint serves exactly one. Raises EndpointError (one line) otherwise."""
        body = self._request("GET", "/models", retries=retries, timeout_s=min(30.0, self.spec.timeout_s))
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not all(isinstance(m, dict) and "id" in m for m in data):
            raise EndpointError(f"{self._where()}: GET /models did not return an OpenAI model list; is {self.url} "
                                "an OpenAI-compatible /v1 endpoint (vllm serve ...)?")
        names = [str(m["id"]) for m in data]
        if self.model is None:
            if len(names) != 1:
                raise EndpointError(f"{self._where()} serves {len(names)} models ({', '.join(names) or 'none'}); "
                                    f"set {self.spec.field}.model to one of them")
            self.model = names[0]
        elif self.model not in names:
            raise EndpointError(f"{self._where()} does not serve model '{self.model}' (it serves: "
                                f"{', '.join(names) or 'none'}); set {self.spec.field}.model to one of them")
        owner = next(str(m.get("owned_by", "")) for m in data if m["id"] == self.model)
        self.is_vllm = owner == "vllm"
        if self.spec.chat_template_kwargs and not self.is_vllm:
            raise EndpointError(f"{self._where()}: chat_template_kwargs needs vLLM's server (this one is owned_by "
                                f"'{owner}'); unset {self.spec.field}.chat_template_kwargs")
        return self

    # ------------------------------------------------------------------ sampling

    def _payload(self, messages: Conversation, params: SamplingParams, n: int,
                 template_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
        p: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "n": n,
            "max_completion_tokens": params.max_new_tokens,
            "temperature": 0.0 if params.greedy else float(params.temperature),
            "top_p": 1.0 if params.greedy else float(params.top_p),
        }
        if params.presence_penalty:
            p["presence_penalty"] = float(params.presence_penalty)
        if params.top_k and params.top_k > 0 and not params.greedy:
            if not self.is_vllm:
                raise EndpointError(f"{self._where()}: top_k={params.top_k} needs vLLM's server; use top_k=0 with "
                                    "a non-vLLM endpoint")
            p["top_k"] = int(params.top_k)
        if template_kwargs and not self.is_vllm:
            raise EndpointError(f"{self._where()}: chat-template keywords {sorted(template_kwargs)} need vLLM's "
                                "server; unset them in model.chat_template_kwargs for this role")
        if self.is_vllm:
            p["return_token_ids"] = True
            kwargs = {**self.spec.chat_template_kwargs, **(template_kwargs or {})}
            if kwargs:
                p["chat_template_kwargs"] = kwargs
        return p

    def _completions(self, body: Any, n: int) -> list[Completion]:
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or len(choices) != n:
            got = len(choices) if isinstance(choices, list) else "no"
            raise EndpointError(f"{self._where()}: a chat completion came back with {got} choices, expected {n}; "
                                "is it an OpenAI-compatible server?")
        out = []
        for ch in sorted(choices, key=lambda c: c.get("index", 0)):
            msg = ch.get("message") or {}
            reason = ch.get("finish_reason")
            if reason not in ("stop", "length"):
                raise EndpointError(f"{self._where()}: a completion ended with finish_reason={reason!r} (expected "
                                    "stop or length); check the server's log")
            ids = [int(t) for t in (ch.get("token_ids") or [])]
            out.append(Completion(token_ids=ids, logprobs=[], text=msg.get("content") or "", finished=reason == "stop"))
        return out

    def generate_chat(self, conversations: list[Conversation], params: SamplingParams,
                      template_kwargs: dict[str, Any] | None = None) -> list[list[Completion]]:
        """For each conversation, `params.n` completions, in order; requests run concurrently. `template_kwargs`
        update the endpoint's chat-template keywords for these requests (vLLM only)."""
        if not conversations:
            return []
        if self.model is None or self.is_vllm is None:
            with self._lock:
                if self.model is None or self.is_vllm is None:
                    self.check()
        per_request = 1 if params.greedy else params.n
        copies = params.n if params.greedy else 1
        jobs = [(i, self._payload(c, params, per_request, template_kwargs))
                for i, c in enumerate(conversations) for _ in range(copies)]
        results: list[list[Completion]] = [[] for _ in conversations]

        def run(payload):
            return self._completions(self._request("POST", "/chat/completions", payload), per_request)

        pool = ThreadPoolExecutor(max_workers=min(self.spec.concurrency, len(jobs)))
        try:
            futures = [pool.submit(run, payload) for _, payload in jobs]
            wait(futures, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f.done() and not f.cancelled() and f.exception() is not None]
            if failed:  # the first failure in request order; requests not yet sent are dropped
                pool.shutdown(wait=False, cancel_futures=True)
                raise failed[0].exception()
        finally:
            pool.shutdown(wait=False)
        for (i, _), f in zip(jobs, futures):
            results[i].extend(f.result())
        return results

    def sync_weights(self, model) -> None:
        raise EndpointError(f"{self._where()}: a served model is frozen; only in-process engines take weights")


def served_engine(endpoint, *, role: str, field: str, default_model: str | None = None,
                  check: bool = True) -> OpenAIChatEngine:
    """An engine for a config `EndpointConfig` (url set), checked (reachable, serves the model) unless check=False.
    `default_model`: the served name to expect when `endpoint.model` is null (the teacher: model.teacher)."""
    spec = EndpointSpec(
        url=endpoint.url, model=endpoint.model or default_model, api_key_env=endpoint.api_key_env,
        timeout_s=endpoint.timeout_s, max_retries=endpoint.max_retries, concurrency=endpoint.concurrency,
        chat_template_kwargs=dict(endpoint.chat_template_kwargs), role=role, field=field,
    )
    engine = OpenAIChatEngine(spec)
    if check:
        engine.check()
    return engine
