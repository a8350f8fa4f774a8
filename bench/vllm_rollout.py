"""Rollout throughput of the vLLM engine against the transformers engine, on the same tiny model and batch.

    make install-vllm
    OMP_NUM_THREADS=1 .venv-vllm/bin/python bench/vllm_rollout.py [--prompts 16] [--n 8] [--new 128] [--repeats 5]

One process, one thread (OMP_NUM_THREADS=1 and torch.set_num_threads(1) before vLLM is built), CPU, fp32. Both
engines sample from the same randomly initialised tiny Qwen3 (the tiny student's shape, head_dim 32; `--hidden`,
`--layers` and `--head-dim` change it), saved once: `--prompts` rendered prompts x `--n` samples x `--new` tokens, with EOS
suppressed on both sides (transformers: `min_new_tokens` on the model's generation_config; vLLM: `min_tokens`),
so both generate exactly the same number of tokens. Reported (JSON on stdout, and `--out`):

- engine start: `import vllm` + `VLLMEngine.from_model` (LLM() build + first weight push), seconds;
- first generate call of each engine (warm-up), seconds;
- tokens/s of each engine: median over `--repeats` timed calls, alternating engines call by call so both see the
  same machine load; and the median of the per-pair ratios vLLM / transformers;
- sync time: median seconds of `VLLMEngine.sync_weights` (full state_dict through `reload_weights` + prefix-cache
  reset) over `--syncs` calls, and the transformers engine's `load_state_dict` copy for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--new", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--syncs", type=int, default=20)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32, help="32, 64, ... (vLLM's CPU attention needs one of these)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from transformers import AutoModelForCausalLM

    from zppo_core.config.schema import TinyModelSpec, ZPPOConfig
    from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
    from zppo_core.rollout.base import SamplingParams
    from zppo_core.rollout.hf import TransformersEngine
    from zppo_core.tasks import QuestionStream
    from zppo_core.algo.reformulate import plain_prompt
    from zppo_core.models.load import render

    tmp = Path(tempfile.mkdtemp(prefix="zppo-bench-vllm-"))
    tok = build_char_tokenizer()
    spec = TinyModelSpec(hidden_size=args.hidden, intermediate_size=4 * args.hidden, num_hidden_layers=args.layers,
                         head_dim=args.head_dim)
    build_tiny_model(spec, tok, seed=0).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    model = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32)
    model.generation_config.min_new_tokens = args.new  # EOS suppressed: exactly args.new tokens per sample
    params = sum(p.numel() for p in model.parameters())
    cfg = ZPPOConfig(model={"dtype": "float32"}, rollout={"max_new_tokens": args.new})
    questions = QuestionStream(["modsum"], None, 0).next(args.prompts)
    prompts = [render(tok, plain_prompt(q, cfg.data.closer)) for q in questions]
    sp = SamplingParams(n=args.n, temperature=1.0, max_new_tokens=args.new)

    hf = TransformersEngine(model, tok, batch_size=args.prompts * args.n)

    t0 = time.perf_counter()
    import vllm  # noqa: F401

    from zppo_core.rollout import vllm_engine as ve

    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    engine = ve.VLLMEngine.from_model(model, tok, cfg, max_prompt_len=max(len(p) for p in prompts))
    t_build = time.perf_counter() - t0
    import vllm as _v

    base_kwargs = ve._to_vllm_sampling_kwargs

    def no_eos_kwargs(p, eos_id=None):  # same token count as the transformers side
        kw = base_kwargs(p, eos_id)
        kw["min_tokens"] = p.max_new_tokens
        return kw

    ve._to_vllm_sampling_kwargs = no_eos_kwargs

    def timed(eng):
        t = time.perf_counter()
        outs = eng.generate(prompts, sp)
        dt = time.perf_counter() - t
        ntok = sum(len(c.token_ids) for o in outs for c in o)
        assert ntok == args.prompts * args.n * args.new, ntok
        return ntok / dt, dt

    first_v = timed(engine)[1]
    first_h = timed(hf)[1]
    v_tps, h_tps, ratios = [], [], []
    for _ in range(args.repeats):
        v = timed(engine)[0]
        h = timed(hf)[0]
        v_tps.append(v)
        h_tps.append(h)
        ratios.append(v / h)
    syncs, copies = [], []
    for _ in range(args.syncs):
        t = time.perf_counter()
        engine.sync_weights(model)
        syncs.append(time.perf_counter() - t)
        t = time.perf_counter()
        hf.model.load_state_dict(model.state_dict())
        copies.append(time.perf_counter() - t)
    result = {
        "model": {"params": params, "hidden": args.hidden, "layers": args.layers, "head_dim": spec.head_dim},
        "batch": {"prompts": args.prompts, "n": args.n, "new_tokens": args.new,
                  "prompt_tokens_max": max(len(p) for p in prompts)},
        "threads": torch.get_num_threads(), "vllm": _v.__version__,
        "vllm_import_s": round(t_import, 2), "vllm_engine_build_s": round(t_build, 2),
        "first_generate_s": {"vllm": round(first_v, 2), "transformers": round(first_h, 2)},
        "tokens_per_s": {"vllm": round(statistics.median(v_tps)), "transformers": round(statistics.median(h_tps))},
        "ratio_vllm_over_transformers": round(statistics.median(ratios), 2),
        "sync_s": {"vllm_reload_weights": round(statistics.median(syncs), 4),
                   "transformers_load_state_dict": round(statistics.median(copies), 4)},
    }
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
