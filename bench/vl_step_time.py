"""Step time of the training loop at `--scale tiny-vl` (images) against `--scale tiny` (text), in one process.

    .venv/bin/python bench/vl_step_time.py [--steps 8] [--warmup 1] [--method grpo] [--out bench/results/vl.json]

Both sides run zppo's own `Trainer.train_step()` (rollouts, grading, advantages, I=4 updates) on randomly
initialised models built from their preset (tiny: the 0.5M Qwen3 student on `modsum`; tiny-vl: the 0.7M Qwen3.5
VLM student on the visual families, images through the processor, the vision tower in every forward), with the
presets' n_new, G_S and I, and every completion exactly `rollout.max_new_tokens` long (EOS suppressed with
`min_new_tokens`), so both sides sample and train on the same number of completion tokens; prompts differ by
what they are (an image question carries its image tokens). No eval, checkpoints or tracking.

Paired schedule: one tiny step, then one tiny-vl step, `--steps` times after `--warmup` untimed pairs, so both
see the same machine load; reported: median wall time and median process CPU time per step of each side, and the
median of the per-pair ratios (tiny-vl / tiny). The machine is shared: read ratios, not absolute seconds.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def build(scale: str, method: str, run_dir: Path):
    import torch

    from zppo_core.config import load_config
    from zppo_core.models.load import PromptRenderer  # noqa: F401  (the loop's renderer)
    from zppo_core.rollout import make_engine
    from zppo_core.train.loop import Trainer
    from zppo_core.train.methods.registry import build_method
    from zppo_core.train.run import make_stream

    cfg = load_config(scale, method, ["tracking.enabled=false", "run.final_eval_per_level=0", "eval.every=0"])
    processor = None
    if scale == "tiny-vl":
        from zppo_core.models.tiny_vl import build_tiny_vlm, build_vl_processor

        processor = build_vl_processor(cfg.model.tiny_vision)
        tokenizer = processor.tokenizer
        model = build_tiny_vlm(cfg.model.tiny_student, cfg.model.tiny_vision, processor, seed=0)
    else:
        from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model

        tokenizer = build_char_tokenizer()
        model = build_tiny_model(cfg.model.tiny_student, tokenizer, seed=0)
    model.generation_config.min_new_tokens = cfg.rollout.max_new_tokens  # every completion full length
    engine = make_engine(cfg, model, tokenizer, processor)
    trainer = Trainer(cfg, run_dir, model, tokenizer, engine, make_stream(cfg), build_method(cfg), processor=processor)
    torch.manual_seed(0)
    return trainer, cfg


def timed(trainer) -> tuple[float, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    m = trainer.train_step()
    return time.perf_counter() - t0, time.process_time() - c0, m["perf/train_tokens"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--method", default="grpo")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: CPU time ~ work)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        sides = {s: build(s, args.method, Path(tmp) / s) for s in ("tiny", "tiny-vl")}
        rows: dict[str, list[tuple[float, float, float]]] = {s: [] for s in sides}
        for i in range(args.warmup + args.steps):
            for s, (trainer, _) in sides.items():
                r = timed(trainer)
                if i >= args.warmup:
                    rows[s].append(r)
    out = {"method": args.method, "steps": args.steps, "threads": args.threads, "machine": platform.processor() or
           platform.machine(), "sides": {}}
    for s, rs in rows.items():
        cfg = sides[s][1]
        out["sides"][s] = {"wall_s": statistics.median(r[0] for r in rs), "cpu_s": statistics.median(r[1] for r in rs),
                           "train_tokens": statistics.median(r[2] for r in rs), "n_new": cfg.algo.n_new,
                           "group_size": cfg.rollout.group_size, "max_new_tokens": cfg.rollout.max_new_tokens}
    out["ratio_wall"] = statistics.median(b[0] / a[0] for a, b in zip(rows["tiny"], rows["tiny-vl"]))
    out["ratio_cpu"] = statistics.median(b[1] / a[1] for a, b in zip(rows["tiny"], rows["tiny-vl"]))
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
