"""bench/gpu.py: the one-command GPU benchmark runs end to end on the CPU with --smoke (so CI proves it is not
broken without a GPU), and its FLOP count is the documented formula."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_smoke_run_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "gpu.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--out", str(out)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "rollout: transformers engine" in proc.stdout and "update (fwd+bwd+AdamW)" in proc.stdout
    r = json.loads(out.read_text())
    s = r["setup"]
    assert s["device"] == "cpu" and s["shape"]["num_hidden_layers"] == 4
    hf = r["rollout_transformers"]
    assert hf["decode_path"] == "model-cache"  # hybrid linear attention: the model's own cache
    assert hf["tokens"] == s["prompts"] * s["group_size"] * s["rollout_new_tokens"] and hf["tokens_per_s"] > 0
    up = r["update"]
    assert up["completion_tokens"] == hf["tokens"]
    assert up["tokens"] == hf["tokens"] + s["prompts"] * s["group_size"] * s["prompt_tokens"]
    assert up["model_flops"] > 6 * s["matmul_params"] * up["tokens"] and up["mfu"] is None  # no peak for a CPU
    assert r["rollout_vllm"]["status"] in ("not installed", "ok") or r["rollout_vllm"]["status"].startswith("failed")


def test_flops_are_six_n_tokens_plus_causal_attention():
    bench = _bench()
    args = bench.parse_args(["--smoke"])
    vocab = bench.SHAPE_SMOKE["vocab_size"]
    tok = bench.build_tokenizer(vocab)
    model = bench.build_model(bench.shape(args), tok, torch.device("cpu"), torch.float32)
    assert len(tok) == vocab and tok.decode([3, 4]) == "t3 t4"
    # tied embeddings: every matrix once, the embedding as the output projection
    n = sum(p.numel() for p in model.parameters() if p.dim() >= 2)
    assert bench.matmul_params(model) == n
    # one full-attention layer of 4 heads x 16: 6 * 1 * 64 * S^2 per sequence
    assert bench.update_flops(model, [3, 5]) == 6 * n * 8 + 6 * 64 * (9 + 25)
