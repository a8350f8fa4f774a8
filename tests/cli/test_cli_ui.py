"""`zppo ui` (a real MLflow UI process): it listens on 127.0.0.1 only unless `--host` says otherwise."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ZPPO = str(Path(sys.executable).with_name("zppo"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


def test_ui_listens_on_localhost_unless_host_is_given(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("MLFLOW_TRACKING_URI", None)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # the venv's mlflow
    ports = {"default": _free_port(), "all": _free_port()}
    for name in ports:  # `zppo ui` refuses a directory with no store: make an (empty) MLflow store in each
        from mlflow.tracking import MlflowClient
        (tmp_path / name).mkdir()
        MlflowClient(tracking_uri=f"sqlite:///{tmp_path / name / 'mlflow.db'}").search_experiments()
    procs = {
        name: subprocess.Popen([ZPPO, "ui", "--port", str(port), "--store", str(tmp_path / name),
                                *(["--host", "0.0.0.0"] if name == "all" else [])],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                               start_new_session=True, text=True)
        for name, port in ports.items()}
    try:
        deadline = time.monotonic() + 300
        while not all(_answers("127.0.0.1", p) for p in ports.values()):
            assert all(p.poll() is None for p in procs.values()), {n: p.poll() for n, p in procs.items()}
            assert time.monotonic() < deadline, "the UIs did not come up"
            time.sleep(0.5)  # polling for readiness, not timing
        # 127.0.0.2 is this machine too, but not the address a 127.0.0.1-only listener is bound to
        assert not _answers("127.0.0.2", ports["default"])
        assert _answers("127.0.0.2", ports["all"])
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert f"MLflow UI on http://127.0.0.1:{ports['default']}" in procs["default"].stdout.read()
