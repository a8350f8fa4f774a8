"""An API key for a served teacher/judge is read from the environment and sent to the endpoint, and never lands in
the run: not in MLflow's params, tags or artifacts, not in any file of the run directory (config, checkpoints,
tracking records). A real tiny run against a scripted OpenAI-compatible HTTP server (the teacher as judge)."""

from __future__ import annotations

import secrets
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.unit.test_openai_engine import models, server  # noqa: F401 (server: the HTTP fixture)
from zppo_core.config import load_config
from zppo_core.train.run import train


def _judge_reply(body):
    return 200, {"choices": [{"index": i, "message": {"role": "assistant", "content": '{"correct": false}'},
                              "finish_reason": "stop"} for i in range(body.get("n", 1))]}


def test_a_planted_api_key_is_sent_but_never_logged(prepared, test_overrides, tmp_path, server, monkeypatch):  # noqa: F811
    key = "sk-zppo-" + secrets.token_hex(16)
    monkeypatch.setenv("ZPPO_TEST_TEACHER_KEY", key)
    server.on("/models", models("teacher")).on("/chat/completions", _judge_reply)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config("tiny", overrides=test_overrides + [
        "run.steps=2", "reward.judge=teacher", f"model.teacher_endpoint.url={server.url}",
        "model.teacher_endpoint.model=teacher", "model.teacher_endpoint.api_key_env=ZPPO_TEST_TEACHER_KEY",
        f"tracking.uri={uri}"])
    monkeypatch.chdir(tmp_path)
    res = train(cfg, run_dir=tmp_path / "run")

    sent = [h.get("Authorization") for _, _, h in server.requests]
    assert sent and all(a == f"Bearer {key}" for a in sent), sent  # the key was used

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(res.mlflow_run_id)
    assert run.data.params["model.teacher_endpoint.url"] == server.url  # the endpoint is recorded ...
    assert "model.teacher_endpoint.api_key_env" not in run.data.params  # ... its key's variable is not a param
    logged = list(run.data.params.items()) + list(run.data.tags.items())
    assert not [kv for kv in logged if key in kv[0] or key in kv[1]]
    art = Path(client.download_artifacts(res.mlflow_run_id, "", str(tmp_path / "artifacts")))
    files = [p for p in art.rglob("*") if p.is_file()] + [p for p in res.run_dir.rglob("*") if p.is_file()]
    assert any(p.name == "config.yaml" for p in files) and len(files) > 5
    leaks = [str(p) for p in files if key.encode() in p.read_bytes()]
    assert not leaks, leaks
