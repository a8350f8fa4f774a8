"""The transformers engine's decode paths against each other, on one model and one batch, in one process.

    .venv/bin/python bench/rollout_paths.py [--rounds 12] [--threads 1] [--set KEY=VALUE ...]

The tiny preset's random-init student (`build_tiny_model`), the step's batch (`algo.n_new` prompts from
`make_stream` x `rollout.group_size` samples x `rollout.max_new_tokens` tokens, EOS suppressed so every
completion has the full length), temperature 1. Each round runs `engine.generate` once per path ("generate":
`model.generate`, the engine before its own loop; "model-cache" and "slots": its decode loop), in turn, so all
paths see the same machine load; the first two rounds are dropped. It reports per path the median process CPU
and wall seconds and the ratio of CPU medians to "generate"'s (the steadier number on a shared machine). Each
path is seeded the same, and the script checks that all paths sample the same tokens.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

PATHS = ("generate", "model-cache", "slots")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=Path("bench/results/rollout_paths.json"))
    args = p.parse_args(argv)
    import torch

    from zppo_core.algo.reformulate import plain_prompt
    from zppo_core.config import load_config
    from zppo_core.models.load import render
    from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
    from zppo_core.rollout.base import SamplingParams
    from zppo_core.rollout.hf import TransformersEngine
    from zppo_core.train.run import make_stream

    torch.set_num_threads(args.threads)
    cfg = load_config("tiny", overrides=args.overrides)
    tok = build_char_tokenizer()
    model = build_tiny_model(cfg.model.tiny_student, tok, cfg.run.seed).eval()
    L = cfg.rollout.max_new_tokens
    model.generation_config.min_new_tokens = L
    prompts = [render(tok, plain_prompt(q, cfg.data.closer)) for q in make_stream(cfg).next(cfg.algo.n_new)]
    sp = SamplingParams(n=cfg.rollout.group_size, temperature=1.0, max_new_tokens=L)
    engines = {k: TransformersEngine(model, tok, batch_size=cfg.rollout.batch_size, decode=k) for k in PATHS}
    rec: dict[str, list[tuple[float, float]]] = {k: [] for k in PATHS}
    for r in range(args.rounds):
        tokens = {}
        for k, e in engines.items():
            torch.manual_seed(r)
            c, w = time.process_time(), time.perf_counter()
            out = e.generate(prompts, sp)
            rec[k].append((time.process_time() - c, time.perf_counter() - w))
            tokens[k] = [c.token_ids for group in out for c in group]
            if any(len(t) != L for t in tokens[k]):
                raise RuntimeError(f"{k}: a completion is shorter than {L} tokens (EOS not suppressed)")
        if any(tokens[k] != tokens["generate"] for k in PATHS):
            raise RuntimeError(f"round {r}: the decode paths sampled different tokens")
    med = {k: (statistics.median(c for c, _ in v[2:]), statistics.median(w for _, w in v[2:])) for k, v in rec.items()}
    n_tok = len(prompts) * sp.n * L
    result = {"benchmark": "rollout_paths", "batch": f"{len(prompts)} prompts x {sp.n} x {L} tokens",
              "threads": torch.get_num_threads(), "rounds_timed": args.rounds - 2,
              "paths": {k: {"median_cpu_s": c, "median_wall_s": w, "cpu_ratio_vs_generate": c / med["generate"][0],
                            "tokens_per_cpu_s": n_tok / c} for k, (c, w) in med.items()}}
    for k, v in result["paths"].items():
        print(f"{k:12s} CPU {v['median_cpu_s']:.3f} s  wall {v['median_wall_s']:.3f} s  "
              f"CPU / generate's {v['cpu_ratio_vs_generate']:.2f}  {v['tokens_per_cpu_s']:,.0f} tokens per CPU s")
    print(f"{result['batch']}, {result['threads']} thread(s), median of {result['rounds_timed']} rounds; "
          "all paths sampled the same tokens")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
