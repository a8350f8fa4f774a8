"""GPU benchmark: rollout tokens/s, update tokens/s, MFU and peak memory of a 0.8B-shaped Qwen3.5 student.

    python bench/gpu.py                      # one H100/H200, about 2-5 minutes; writes bench/results/gpu.json
    python bench/gpu.py --smoke              # a tiny shape on the CPU in seconds (CI runs this)
    python bench/gpu.py --no-vllm --rollout-new-tokens 1024 --set num_hidden_layers=12

Nothing is downloaded: the student is a random-init Qwen3.5 *text* model (`Qwen3_5ForCausalLM`) built from a
config of the 0.8B shape (`SHAPE_08B`: hidden 1024, 24 layers as 6 x (3 Gated DeltaNet + 1 gated full-attention),
8 query / 2 KV heads of 256, MLP 3584, vocabulary 248,320, tied embeddings; the linear-attention head counts are
assumed, the public card does not give them: override any field with --set), in bf16, with a synthetic
word-level tokenizer over the whole vocabulary. Completions have a fixed length (EOS suppressed with
`min_new_tokens`, as in bench/step_time.py), so every engine samples the same number of tokens.

Phases, each timed after a warm-up call, with torch.cuda.synchronize() around it:
1. rollout, transformers engine (zppo's TransformersEngine: its decode path for this model is printed);
2. rollout, vLLM (zppo's VLLMEngine.from_model) when vllm imports, else "not installed";
3. update: the loop's update on the rollouts' shape: I mini-batches, each micro-batched forward
   (`completion_logprobs`), token-level PPO loss (`ppo_clip_loss`), backward, grad clip and an AdamW step.

MFU = model FLOPs / time / peak bf16 dense FLOP/s of the GPU (H100/H200 SXM 989 TFLOP/s, `--peak-tflops`).
Model FLOPs per update: 6 * N * tokens + attention, where N = the parameters that multiply activations (every
weight matrix, the output projection counted once although it is tied to the input embedding, which is a
lookup) and tokens = prompt + completion tokens through the forward; attention = 6 * L_full * n_heads *
head_dim * S^2 per sequence of S tokens (QK^T and AV, forward x3 for backward, causal halving the 12x). Gated
DeltaNet recurrences (O(head_dim^2) per token and head, a few % here) and the recomputation of nothing (no
activation checkpointing) are not counted.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHAPE_08B = dict(vocab_size=248_320, hidden_size=1024, intermediate_size=3584, num_hidden_layers=24,
                 full_attention_interval=4, num_attention_heads=8, num_key_value_heads=2, head_dim=256,
                 linear_num_key_heads=16, linear_num_value_heads=16, linear_key_head_dim=128,
                 linear_value_head_dim=128, tie_word_embeddings=True)
SHAPE_SMOKE = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4, full_attention_interval=4,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16, linear_num_key_heads=2,
                   linear_num_value_heads=2, linear_key_head_dim=16, linear_value_head_dim=16, tie_word_embeddings=True)
PEAK_BF16_TFLOPS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1}  # dense; H100 PCIe: pass 756


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny shape and workload on the CPU (seconds; CI)")
    p.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    p.add_argument("--prompts", type=int, default=None, help="prompts per rollout (default 64; smoke 4)")
    p.add_argument("--group-size", type=int, default=8, help="samples per prompt, G (default 8; smoke 2)")
    p.add_argument("--prompt-tokens", type=int, default=None, help="prompt length (default 256; smoke 12)")
    p.add_argument("--rollout-new-tokens", type=int, default=None, help="completion length (default 512; smoke 8)")
    p.add_argument("--updates", type=int, default=4, help="I: AdamW steps per timed update phase (default 4)")
    p.add_argument("--micro-batch", type=int, default=16, help="sequences per forward/backward (default 16)")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak bf16 dense TFLOP/s for MFU (default: by GPU)")
    p.add_argument("--no-vllm", action="store_true", help="skip the vLLM rollout even if vllm is installed")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=INT",
                   help="model shape override (repeatable), e.g. --set num_hidden_layers=12")
    p.add_argument("--out", type=Path, default=Path("bench/results/gpu.json"), help="JSON result file")
    a = p.parse_args(argv)
    defaults = dict(prompts=4, group_size=2, prompt_tokens=12, rollout_new_tokens=8) if a.smoke else dict(
        prompts=64, prompt_tokens=256, rollout_new_tokens=512)
    for k, v in defaults.items():
        if getattr(a, k) is None or (a.smoke and k == "group_size" and a.group_size == 8):
            setattr(a, k, v)
    return a


# ---------------------------------------------------------------------------------------------------- build
def shape(args) -> dict[str, Any]:
    s = dict(SHAPE_SMOKE if args.smoke else SHAPE_08B)
    for item in args.overrides:
        key, _, value = item.partition("=")
        if key not in s:
            raise SystemExit(f"--set {item}: unknown field {key!r}; fields: {', '.join(s)}")
        s[key] = value.lower() == "true" if value.lower() in ("true", "false") else int(value)
    return s


def build_tokenizer(vocab_size: int):
    """A word-level tokenizer with one token per id ("<pad>", "<eos>", "<bos>", then "t3" ...): decodes anything
    the model samples, no hub access."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, **{f"t{i}": i for i in range(3, vocab_size)}}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                                   padding_side="left")


def build_model(s: dict[str, Any], tok, device, dtype):
    import torch
    from transformers import Qwen3_5ForCausalLM

    from zppo_core.models.tiny import qwen35_text_config, set_generation_ids

    cfg = qwen35_text_config(**s, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                             bos_token_id=tok.bos_token_id)
    with torch.device(device):
        torch.manual_seed(0)
        model = Qwen3_5ForCausalLM(cfg).to(dtype)
    set_generation_ids(model, tok)
    return model


def matmul_params(model) -> int:
    """Parameters that multiply activations: all but the input embedding (a lookup) and norms/biases (vectors);
    the output projection counts even when tied to the embedding."""
    n = sum(p.numel() for name, p in model.named_parameters() if p.dim() >= 2 and "embed_tokens" not in name)
    if model.config.tie_word_embeddings:
        n += model.get_output_embeddings().weight.numel()
    return n


def update_flops(model, seq_tokens: list[int]) -> float:
    """6 * N * tokens + causal attention of the full-attention layers (see the module docstring)."""
    cfg = model.config
    full = sum(t == "full_attention" for t in cfg.layer_types)
    attn = sum(6 * full * cfg.num_attention_heads * cfg.head_dim * s * s for s in seq_tokens)
    return 6 * matmul_params(model) * sum(seq_tokens) + attn


# ---------------------------------------------------------------------------------------------------- phases
class Meter:
    def __init__(self, device):
        import torch

        self.torch, self.cuda = torch, device.type == "cuda"

    def __enter__(self):
        if self.cuda:
            self.torch.cuda.synchronize()
            self.torch.cuda.reset_peak_memory_stats()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t0
        if self.cuda:
            self.peak_gib = self.torch.cuda.max_memory_allocated() / 2**30
        else:  # process peak RSS so far (Linux reports KiB)
            self.peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def make_prompts(args, vocab_size: int) -> list[list[int]]:
    import torch

    g = torch.Generator().manual_seed(1)
    return torch.randint(3, vocab_size, (args.prompts, args.prompt_tokens), generator=g).tolist()


def rollout(engine, prompts, args, exact: bool = True) -> dict[str, Any]:
    """Warm-up, then one timed call: G samples of every prompt. `exact`: every completion must have the fixed
    length (the transformers engine honours min_new_tokens; vLLM may stop at EOS, about once in 248k tokens)."""
    from zppo_core.rollout.base import SamplingParams

    L = args.rollout_new_tokens
    engine.generate(prompts[:2], SamplingParams(n=2, max_new_tokens=min(L, 16)))  # warm-up (kernels, allocator)
    with Meter(engine_device(engine)) as m:
        out = engine.generate(prompts, SamplingParams(n=args.group_size, max_new_tokens=L))
    lengths = [len(c.token_ids) for o in out for c in o]
    if exact and any(n != L for n in lengths):
        raise RuntimeError(f"completion lengths {set(lengths)} != {L}: the fixed length was not enforced")
    return {"seconds": m.seconds, "tokens": sum(lengths), "tokens_per_s": sum(lengths) / m.seconds,
            "peak_gib": m.peak_gib, "completions": out}


def engine_device(engine):
    import torch

    model = getattr(engine, "model", None)
    return next(model.parameters()).device if model is not None else torch.device("cuda")


def update(model, prompts, completions, args) -> dict[str, Any]:
    """I AdamW steps on the rollouts, shaped like the loop's update (zppo_core.train.loop.Trainer._update)."""
    import torch

    from zppo_core.algo.losses import ppo_clip_loss
    from zppo_core.models.logprobs import completion_logprobs

    rows = [(p, c) for p, cs in zip(prompts, completions) for c in cs]  # (prompt ids, Completion)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    adv = torch.randn(len(rows), generator=torch.Generator().manual_seed(2))  # [N] stand-in advantages
    chunks = [list(range(len(rows)))[i::args.updates] for i in range(args.updates)]
    model.train()

    def one_update(chunk: list[int]) -> None:
        n_tokens = float(sum(len(rows[i][1].token_ids) for i in chunk))
        opt.zero_grad(set_to_none=True)
        for s in range(0, len(chunk), args.micro_batch):
            idx = chunk[s : s + args.micro_batch]
            lp, mask, _ = completion_logprobs(model, [rows[i][0] for i in idx], [rows[i][1].token_ids for i in idx],
                                              0)  # [b, T] x2
            old = torch.tensor([rows[i][1].logprobs for i in idx], device=lp.device)  # [b, T] π_old from the engine
            loss, _ = ppo_clip_loss(lp, old, adv[idx].to(lp.device), mask, num_tokens=n_tokens)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    one_update(chunks[0][: args.micro_batch])  # warm-up: allocates grads and optimizer state
    with Meter(next(model.parameters()).device) as m:
        for chunk in chunks:
            one_update(chunk)
    seq_tokens = [len(p) + len(c.token_ids) for p, c in rows]
    flops = update_flops(model, seq_tokens)
    return {"seconds": m.seconds, "tokens": sum(seq_tokens), "tokens_per_s": sum(seq_tokens) / m.seconds,
            "completion_tokens": sum(len(c.token_ids) for _, c in rows), "model_flops": flops,
            "tflops_per_s": flops / m.seconds / 1e12, "peak_gib": m.peak_gib}


def vllm_rollout(model, tok, prompts, args, tmp: Path) -> dict[str, Any]:
    if args.no_vllm:
        return {"status": "skipped (--no-vllm)"}
    if importlib.util.find_spec("vllm") is None:
        return {"status": "not installed"}
    from zppo_core.config import load_config
    from zppo_core.rollout.vllm_engine import VLLMEngine

    path = tmp / "student"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    model.config._name_or_path = str(path)  # VLLMEngine builds from the model's directory
    cfg = load_config("0.8b", overrides=[f"rollout.max_new_tokens={args.rollout_new_tokens}"])
    try:
        engine = VLLMEngine.from_model(model, tok, cfg, gpu_memory_utilization=0.45, enable_sleep_mode=False,
                                       max_prompt_len=args.prompt_tokens)
        res = rollout(engine, prompts, args, exact=False)
    except Exception as e:  # noqa: BLE001 - the table says why, the other phases still report
        return {"status": f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    res.pop("completions")
    return {"status": "ok", **res}


# ---------------------------------------------------------------------------------------------------- report
def peak_tflops(args, device) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops
    if device.type != "cuda":
        return None
    import torch

    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def print_table(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    s = r["setup"]
    t = Table(title=f"{s['model']} on {s['device_name']}: {s['prompts']} prompts x G={s['group_size']}, "
                    f"{s['prompt_tokens']} + {s['rollout_new_tokens']} tokens, I={s['updates']}")
    for col in ("phase", "tokens/s", "seconds", "peak memory GiB", "notes"):
        t.add_column(col, justify="left" if col in ("phase", "notes") else "right")
    hf, vl, up = r["rollout_transformers"], r["rollout_vllm"], r["update"]
    t.add_row("rollout: transformers engine", f"{hf['tokens_per_s']:,.0f}", f"{hf['seconds']:.2f}",
              f"{hf['peak_gib']:.2f}", f"decode path {hf['decode_path']}")
    if vl.get("status") == "ok":
        t.add_row("rollout: vLLM", f"{vl['tokens_per_s']:,.0f}", f"{vl['seconds']:.2f}", f"{vl['peak_gib']:.2f}", "")
    else:
        t.add_row("rollout: vLLM", "-", "-", "-", vl["status"])
    mfu = f"MFU {up['mfu']:.1%}" if up.get("mfu") is not None else "MFU n/a (no peak FLOP/s for this device)"
    t.add_row("update (fwd+bwd+AdamW)", f"{up['tokens_per_s']:,.0f}", f"{up['seconds']:.2f}", f"{up['peak_gib']:.2f}",
              f"{up['tflops_per_s']:.1f} TFLOP/s, {mfu}")
    Console(width=max(Console().width, 120)).print(t)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    import torch
    import transformers

    from zppo_core.rollout.hf import TransformersEngine

    transformers.logging.set_verbosity_error()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() and not args.smoke else "cpu"))
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    s = shape(args)
    tok = build_tokenizer(s["vocab_size"])
    model = build_model(s, tok, device, dtype)
    model.generation_config.min_new_tokens = args.rollout_new_tokens  # fixed completion length
    prompts = make_prompts(args, s["vocab_size"])
    result: dict[str, Any] = {
        "benchmark": "gpu",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "setup": {
            "model": f"Qwen3.5 text, random init, {sum(p.numel() for p in model.parameters()) / 1e6:,.1f}M params",
            "shape": s, "params": sum(p.numel() for p in model.parameters()), "matmul_params": matmul_params(model),
            "dtype": str(dtype).removeprefix("torch."), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
            or "cpu", "prompts": args.prompts, "group_size": args.group_size, "prompt_tokens": args.prompt_tokens,
            "rollout_new_tokens": args.rollout_new_tokens, "updates": args.updates, "micro_batch": args.micro_batch,
            "linear_attention_kernels": {k: importlib.util.find_spec(k) is not None
                                         for k in ("fla", "causal_conv1d")},
            "flops_counted": "6*N*tokens + 6*L_full*heads*head_dim*S^2 per sequence (module docstring)",
        },
        "versions": {k: _version(k) for k in ("torch", "transformers", "vllm")},
    }
    engine = TransformersEngine(model, tok, batch_size=args.prompts * args.group_size)
    hf = rollout(engine, prompts, args)
    completions = hf.pop("completions")
    result["rollout_transformers"] = {**hf, "decode_path": engine.decode}
    up = update(model, prompts, completions, args)
    peak = peak_tflops(args, device)
    up["peak_tflops"] = peak
    up["mfu"] = up["tflops_per_s"] / peak if peak else None
    result["update"] = up
    del engine, completions
    model.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # give the update's cached blocks back before vLLM sizes its KV cache
    with tempfile.TemporaryDirectory(prefix="zppo-gpu-bench-") as tmp:
        result["rollout_vllm"] = vllm_rollout(model, tok, prompts, args, Path(tmp))
    result["bench_wall_s"] = round(time.perf_counter() - t_start, 1)
    print_table(result)
    print(f"bench wall time {result['bench_wall_s']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


def _version(pkg: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(pkg)
    except md.PackageNotFoundError:
        return None


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.exit(main())
