"""`zppo serve teacher`: the vLLM server command it would run (--dry-run) and its bad input. Serving for real is
tested in tests/vllm/test_served_teacher.py, which starts the same command line."""

from __future__ import annotations

import importlib.util
import shlex

import pytest
from typer.testing import CliRunner

from zppo_cli.app import app
from zppo_cli.serve_cmd import server_env, vllm_serve_argv

runner = CliRunner()


def test_dry_run_at_tiny_serves_the_prepared_teacher_on_cpu(tmp_path):
    r = runner.invoke(app, ["serve", "teacher", "--dry-run", "--port", "8123", "--set",
                            f"prepare.cache_dir={tmp_path}"], terminal_width=400)
    assert r.exit_code == 0, r.output
    argv = shlex.split(r.output.splitlines()[0])
    assert argv[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--model") + 1].startswith(str(tmp_path)) and argv[argv.index("--model") + 1].endswith(
        "/teacher")
    assert argv[argv.index("--served-model-name") + 1] == "tiny"
    assert argv[argv.index("--host") + 1] == "127.0.0.1" and argv[argv.index("--port") + 1] == "8123"
    assert argv[argv.index("--dtype") + 1] == "float32" and "--enforce-eager" in argv
    assert argv[argv.index("--generation-config") + 1] == "vllm"
    assert "model.teacher_endpoint.url=http://127.0.0.1:8123/v1" in r.output
    assert not any(tmp_path.iterdir())  # a dry run prepares nothing


def test_dry_run_at_paper_scale_with_tensor_parallel_and_extra_args():
    r = runner.invoke(app, ["serve", "teacher", "--scale", "2b", "--dry-run", "-tp", "2", "--host", "0.0.0.0", "--",
                            "--max-num-seqs", "512"], terminal_width=400)
    assert r.exit_code == 0, r.output
    argv = shlex.split(r.output.splitlines()[0])
    assert argv[argv.index("--model") + 1] == "Qwen/Qwen3.5-27B-FP8"
    assert argv[argv.index("--served-model-name") + 1] == "Qwen/Qwen3.5-27B-FP8"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2" and argv[argv.index("--dtype") + 1] == "bfloat16"
    assert "--enforce-eager" not in argv and argv[-2:] == ["--max-num-seqs", "512"]


def test_served_name_follows_the_endpoint_config():
    argv = vllm_serve_argv("/m", "judge-7b", host="h", port=1, dtype="float32", cpu=False, python="py")
    assert argv[:4] == ["py", "-m", "vllm.entrypoints.openai.api_server", "--model"]
    r = runner.invoke(app, ["serve", "teacher", "--scale", "2b", "--dry-run", "--set",
                            "model.teacher_endpoint.model=t27"], terminal_width=400)
    assert "--served-model-name t27" in r.output
    env = server_env(cpu=True, environ={})
    assert env == {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"}
    assert server_env(cpu=True, environ={"OMP_NUM_THREADS": "2"})["OMP_NUM_THREADS"] == "2"


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    r = runner.invoke(app, ["serve", "teacher", "--model", str(tmp_path), "--dry-run"])
    assert r.exit_code == 2 and "not a Hugging Face model directory" in r.output
    r = runner.invoke(app, ["serve", "teacher", "--config", str(tmp_path / "config.yaml"), "--set", "a.b=1"])
    assert r.exit_code == 2 and "config.yaml does not exist" in " ".join(r.output.split())


def test_a_jobs_resolved_config_is_a_config_file_with_set_on_top(tmp_path):
    from zppo_core.config import dump_config, load_config

    job = tmp_path / "config.yaml"
    job.write_text(dump_config(load_config("2b", overrides=["model.teacher_endpoint.model=t27"])))
    r = runner.invoke(app, ["serve", "teacher", "--config", str(job), "--dry-run"], terminal_width=400)
    assert r.exit_code == 0, r.output
    assert "--served-model-name t27" in r.output and "--dtype bfloat16" in r.output
    r = runner.invoke(app, ["serve", "teacher", "-c", str(job), "--set", "model.teacher_endpoint.model=t9",
                            "--dry-run"], terminal_width=400)
    assert r.exit_code == 0 and "--served-model-name t9" in r.output


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_without_vllm_the_error_names_the_install(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    r = runner.invoke(app, ["serve", "teacher", "--model", str(tmp_path)], terminal_width=400)
    assert r.exit_code == 2
    assert "zppo serve needs vLLM" in r.output and "pip install 'zppo[vllm]'" in r.output


def _down_url() -> str:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


def test_an_unreachable_served_teacher_or_judge_stops_before_anything(tmp_path):
    down = _down_url()
    rd = tmp_path / "run"
    r = runner.invoke(app, ["train", "--method", "zppo", "--steps", "1", "--run-dir", str(rd), "--set",
                            f"model.teacher_endpoint.url={down}", "--set", "model.teacher_endpoint.max_retries=0"],
                      terminal_width=400)
    assert r.exit_code == 2, r.output
    assert f"teacher endpoint {down}: unreachable" in r.output and "zppo serve teacher" in r.output
    assert not rd.exists()
    out = tmp_path / "eval"
    r = runner.invoke(app, ["eval", "--judge", down, "--out", str(out), "--set", "eval.judge_endpoint.max_retries=0"],
                      terminal_width=400)
    assert r.exit_code == 2, r.output
    assert f"judge endpoint {down}: unreachable" in r.output and not out.exists()
    r = runner.invoke(app, ["eval", "--judge", "ftp://x", "--out", str(out)], terminal_width=400)
    assert r.exit_code == 2 and "http://host:port/v1" in r.output
