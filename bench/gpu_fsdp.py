"""GPU benchmark of the multi-rank loop: FSDP2 student update time and rollout tokens/s at 1 and N GPUs.

    python bench/gpu_fsdp.py --gpus 1,2,4,8          # runs torchrun for each GPU count, prints one table
    torchrun --nproc-per-node 8 bench/gpu_fsdp.py    # one world size (its row; rank 0 prints)
    python bench/gpu_fsdp.py --smoke --gpus 1,2      # a tiny shape on the CPU (gloo) in about a minute; a test runs it

Nothing is downloaded. The student is a random-init Qwen3.5 text model (`Qwen3_5ForCausalLM`) of the 0.8B shape
(the 0.8b preset's student: hidden 1024, 24 layers as 6 x (3 Gated DeltaNet + 1 full attention), 8 query / 2 KV
heads of 256, MLP 3584, vocabulary 248,320, tied embeddings; the linear-attention head counts are assumed: the
preset does not fix them; --set overrides any field), with a word-level tokenizer over the whole vocabulary.
Every rank builds it from the same seed, keeps a bf16 copy for its rollout engine (zppo's TransformersEngine) and shards the trained
one with zppo's `shard_model` (fully_shard per decoder layer + the tied embedding/head group + root) under
`MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`: fp32 master weights and AdamW state, bf16 compute.

Phases per world size, each after a warm-up round, timed with device syncs, the slowest rank counted:
1. rollout: each rank samples `--prompts / world` random prompts x G completions of a fixed length (EOS suppressed
   with `min_new_tokens`) from its own copy; tokens/s over all ranks;
2. update: the loop's own steps 6-7 (`Trainer.learn`: global advantages, the I mini-batches cut from the global
   rollout list, micro-batched forward, token-level PPO loss with the global normaliser, backward with one
   reduce-scatter per mini-batch, global grad-norm clip, AdamW) on those rollouts with random 0/1 rewards;
3. sync: the loop's weight sync (`Trainer._sync_engine`: every parameter all-gathered to full, then loaded into
   the rollout copy).
With perfect scaling the update time per step falls as 1/N at a fixed global batch and rollout tokens/s grow N x.
Prints one table and writes bench/results/gpu_fsdp.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE_08B = dict(vocab_size=248_320, hidden_size=1024, intermediate_size=3584, num_hidden_layers=24,
                 full_attention_interval=4, num_attention_heads=8, num_key_value_heads=2, head_dim=256,
                 linear_num_key_heads=16, linear_num_value_heads=16, linear_key_head_dim=128,
                 linear_value_head_dim=128)
QWEN3_06B = dict(vocab_size=151_936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                 num_attention_heads=16, num_key_value_heads=8, head_dim=128)  # --arch qwen3: attention only
SHAPE_SMOKE = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                   full_attention_interval=4,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=16, linear_num_key_heads=2,
                   linear_num_value_heads=2, linear_key_head_dim=16, linear_value_head_dim=16)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gpus", default=None, help="GPU counts to run, e.g. 1,8 (driver mode: one torchrun each)")
    p.add_argument("--smoke", action="store_true", help="tiny shape on the CPU with gloo")
    p.add_argument("--arch", choices=["qwen3_5", "qwen3"], default="qwen3_5",
                   help="qwen3_5 (default: the 0.8B preset's family; install flash-linear-attention and causal-conv1d\n"
                        "for its fast kernels) or qwen3 (a 0.6B-shaped attention-only Qwen3)")
    p.add_argument("--prompts", type=int, default=None, help="prompts per step, all ranks (default 64; smoke 4)")
    p.add_argument("--group-size", type=int, default=None, help="G (default 8; smoke 2)")
    p.add_argument("--prompt-tokens", type=int, default=None, help="prompt length (default 256; smoke 12)")
    p.add_argument("--new-tokens", type=int, default=None, help="completion length (default 512; smoke 8)")
    p.add_argument("--updates", type=int, default=4, help="I: mini-batches per step (default 4)")
    p.add_argument("--micro-batch", type=int, default=16, help="sequences per forward/backward (default 16)")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds after the warm-up (default 2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=INT")
    p.add_argument("--row", type=Path, default=None, help=argparse.SUPPRESS)  # where a world size writes its row
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_fsdp.json")
    a = p.parse_args(argv)
    small = dict(prompts=4, group_size=2, prompt_tokens=12, new_tokens=8)
    big = dict(prompts=64, group_size=8, prompt_tokens=256, new_tokens=512)
    for k, v in (small if a.smoke else big).items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


# ---------------------------------------------------------------------------------------------------- one rank
def build(args, device: str):
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import (PreTrainedTokenizerFast, Qwen3_5ForCausalLM, Qwen3_5TextConfig, Qwen3Config,
                              Qwen3ForCausalLM)

    qwen3 = args.arch == "qwen3"
    shape = dict(SHAPE_SMOKE if args.smoke else (QWEN3_06B if qwen3 else SHAPE_08B))
    for item in args.overrides:
        k, v = item.split("=", 1)
        shape[k] = int(v)
    every = shape.pop("full_attention_interval", 4)
    layer_types = ["full_attention" if (i + 1) % every == 0 else "linear_attention"
                   for i in range(shape["num_hidden_layers"])]
    vocab = {f"w{i}": i for i in range(shape["vocab_size"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="w1"))
    core.pre_tokenizer, core.decoder = pre_tokenizers.WhitespaceSplit(), decoders.WordPiece()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="w0", unk_token="w1", eos_token="w2",
                                  padding_side="left")
    ids = dict(tie_word_embeddings=True, pad_token_id=0, eos_token_id=2, bos_token_id=2)
    if qwen3:
        config = Qwen3Config(**{k: v for k, v in shape.items() if not k.startswith("linear_")}, **ids)
    else:
        config = Qwen3_5TextConfig(**shape, layer_types=layer_types, **ids)
    torch.manual_seed(0)
    model = (Qwen3ForCausalLM if qwen3 else Qwen3_5ForCausalLM)(config).to(device)
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = 0, 2
    return model, tok


def rank_main(args) -> dict[str, Any] | None:
    import copy

    import torch
    from torch.distributed.fsdp import MixedPrecisionPolicy

    from zppo_core.config import load_config
    from zppo_core.dist import Dist, init_from_env
    from zppo_core.dist.fsdp import shard_model
    from zppo_core.rollout.base import SamplingParams
    from zppo_core.rollout.hf import TransformersEngine
    from zppo_core.tasks import QuestionStream
    from zppo_core.train.loop import Trainer
    from zppo_core.train.methods.registry import build_method
    from zppo_core.types import Group, Question, Rollout

    cuda = torch.cuda.is_available() and not args.smoke
    d = init_from_env(device_type="cuda" if cuda else "cpu")
    device = d.device if d.enabled else ("cuda" if cuda else "cpu")
    torch.set_num_threads(1 if args.smoke else torch.get_num_threads())
    model, tok = build(args, device)
    n_params = sum(p.numel() for p in model.parameters())
    engine_model = copy.deepcopy(model).to(torch.bfloat16 if cuda else torch.float32).eval().requires_grad_(False)
    engine_model.generation_config.min_new_tokens = args.new_tokens  # fixed lengths: the same work everywhere
    engine = TransformersEngine(engine_model, tok, batch_size=1 << 20)
    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if cuda else None
    if d.enabled:
        shard_model(model, d, mp_policy=mp)
    elif cuda:  # one GPU: the same FSDP2 mixed-precision path on a one-rank mesh, so the rows compare
        import torch.distributed as td

        td.init_process_group("nccl", device_id=torch.device("cuda:0"))
        shard_model(model, Dist(device="cuda:0"), mp_policy=mp)
    cfg = load_config("tiny", method="grpo", overrides=[
        f"algo.n_new={args.prompts}", f"rollout.group_size={args.group_size}", f"algo.updates_per_step={args.updates}",
        f"algo.micro_batch_size={args.micro_batch}", "algo.micro_batch_tokens=10000000", "tracking.enabled=false"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp), model, tok, engine, QuestionStream(["modsum"]), build_method(cfg), dist=d)
        params = SamplingParams(n=args.group_size, temperature=1.0, max_new_tokens=args.new_tokens)
        rng = random.Random(1234)
        prompts = [[rng.randrange(3, tok.vocab_size) for _ in range(args.prompt_tokens)] for _ in range(args.prompts)]

        def timed(fn):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn()
            if cuda:
                torch.cuda.synchronize()
            return out, d.max([time.perf_counter() - t0])[0]

        rows = []
        for rnd in range(args.rounds + 1):  # round 0 warms up
            outs, t_roll = timed(lambda: engine.generate(d.mine(prompts), params))
            groups, k = [], 0
            for i, comps in zip(range(d.rank, len(prompts), d.world), outs):
                q = Question(f"q{i}", "", "")
                g = Group(id=i, kind="plain", question=q, prompt_text="")
                for c in comps:
                    g.rollouts.append(Rollout(q.id, i, "plain", prompts[i], c, float(rng.random() < 0.5), None))
                groups.append(g)
                k += sum(len(c.token_ids) for c in comps)
            every = d.map_shards(list(range(len(prompts))), lambda mine: [groups[j] for j in range(len(mine))])
            tokens = d.sum([float(k)])[0]
            (upd, _, _), t_upd = timed(lambda: trainer.learn(every, {g.id for g in groups}))
            _, t_sync = timed(trainer._sync_engine)
            if rnd:
                rows.append({"rollout_s": t_roll, "update_s": t_upd, "sync_s": t_sync, "new_tokens": tokens,
                             "train_tokens": upd["perf/train_tokens"]})
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    if not d.is_main:
        return None
    med = {k: sorted(r[k] for r in rows)[len(rows) // 2] for k in rows[0]}
    return {"world": d.world, "params": n_params, "device": torch.cuda.get_device_name() if cuda else "cpu",
            "update_s": med["update_s"], "sync_s": med["sync_s"], "rollout_s": med["rollout_s"],
            "rollout_tok_s": med["new_tokens"] / med["rollout_s"],
            "update_tok_s": med["train_tokens"] / med["update_s"], "peak_gib": peak, "rounds": rows}


# ---------------------------------------------------------------------------------------------------- driver
def table(rows: list[dict[str, Any]], args) -> str:
    base = rows[0]
    shape = "smoke shape, CPU" if args.smoke else ("Qwen3 0.6B shape" if args.arch == "qwen3" else "Qwen3.5 0.8B shape")
    lines = [f"FSDP2 student, {base['params'] / 1e6:.3g}M params ({shape}), "
             f"{args.prompts} prompts x G={args.group_size} x {args.prompt_tokens}+{args.new_tokens} tokens, "
             f"I={args.updates}, device {base['device']}",
             "update tok/s = completion tokens trained per second; rollout tok/s = tokens sampled per second",
             f"{'GPUs':>4} {'update s':>9} {'update tok/s':>13} {'per GPU':>9} {'scaling':>8} {'rollout tok/s':>14} "
             f"{'sync s':>7} {'peak GiB':>9}"]
    for r in rows:
        eff = (r["update_tok_s"] / r["world"]) / (base["update_tok_s"] / base["world"])
        lines.append(f"{r['world']:>4} {r['update_s']:>9.3f} {r['update_tok_s']:>13.0f} "
                     f"{r['update_tok_s'] / r['world']:>9.0f} {eff:>8.2f} {r['rollout_tok_s']:>14.0f} "
                     f"{r['sync_s']:>7.3f} {r['peak_gib']:>9.1f}")
    return "\n".join(lines)


def drive(args, argv) -> int:
    rows = []
    passthrough, skip = [], False
    for a in argv:  # argv without --gpus and its value
        if skip or a.startswith("--gpus"):
            skip = a == "--gpus"
            continue
        passthrough.append(a)
    with tempfile.TemporaryDirectory() as tmp:
        for n in [int(x) for x in args.gpus.split(",")]:
            row = Path(tmp) / f"row{n}.json"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}",
                   str(Path(__file__).resolve()), *passthrough, "--row", str(row)]
            env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            if args.smoke:
                env["OMP_NUM_THREADS"] = "1"
            subprocess.run(cmd, check=True, env=env)
            rows.append(json.loads(row.read_text()))
    print(table(rows, args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    print(f"wrote {args.out}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.gpus:
        return drive(args, argv)
    row = rank_main(args)
    if row is not None:
        if args.row is not None:
            args.row.write_text(json.dumps(row))
        else:
            print(table([row], args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
