"""ZPPO against GRPO: seconds per rollout step on the tiny preset at equal new questions, in one process.

    .venv/bin/python bench/method_step.py [--steps 8] [--warmup 2] [--threads 1] [--set KEY=VALUE ...]

Two real `Trainer`s built as `zppo train` builds them (`load_models`, `make_engine`, `teacher_engine`,
`make_stream`, `build_method`), from the same prepared tiny student (prepared first if not cached) and the same
question stream: GRPO, and ZPPO (the method's full recipe: replay buffer, teacher rollouts, BCQ/NCQ). Each step
draws `algo.n_new` new questions on both sides; ZPPO adds replayed questions and BCQ/NCQ prompts on top, which is
the overhead measured. No tracker, no eval, no checkpoint: `train_step()` alone is timed.

Schedule: `--warmup` untimed steps each, then pairs (one GRPO step, then one ZPPO step), so both see the same
machine load; it reports the median of the per-pair ratios of wall time and of process CPU time (on a shared
machine the CPU-time ratio is the steadier one), and per side the median of every `perf/*` phase. The two runs
train their students apart, so later steps of each see a slightly different policy (more or fewer hard
questions); the per-step work (rollouts, prompt tokens) is in the JSON to show it.
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
from typing import Any

PHASES = ["plain_rollout", "teacher_rollout", "compression", "extra_rollout", "update", "other"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=8, help="timed steps per side (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per side first (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine may be shared)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for both sides (repeatable)")
    p.add_argument("--out", type=Path, default=Path("bench/results/method_step.json"), help="JSON result file")
    return p.parse_args(argv)


def build(method: str, overrides: list[str], run_dir: Path):
    from zppo_core.config import load_config
    from zppo_core.rollout import make_engine, teacher_engine
    from zppo_core.tracking import NullTracker
    from zppo_core.train.loop import Trainer
    from zppo_core.train.methods.registry import build_method
    from zppo_core.train.run import load_models, make_stream

    cfg = load_config("tiny", method=method, overrides=overrides)
    m = build_method(cfg)
    student, teacher_model, _ = load_models(cfg, m.needs_teacher, lambda s: print(s, file=sys.stderr))
    engine = make_engine(cfg, student.model, student.tokenizer, student.processor)
    teacher = teacher_engine(cfg, teacher_model) if m.needs_teacher else None
    return Trainer(cfg, run_dir, student.model, student.tokenizer, engine, make_stream(cfg), m, NullTracker(),
                   teacher)


def step(trainer, timed: bool) -> dict[str, Any]:
    c0, w0 = time.process_time(), time.perf_counter()
    m = trainer.train_step()
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"timed": timed, "wall_s": wall, "cpu_s": cpu, "rollouts": m["train/rollouts"],
            "groups": m["train/groups"], "train_tokens": m["perf/train_tokens"],
            **{k: v for k, v in m.items() if k.startswith("perf/") or k.startswith("zppo/")}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    torch.set_num_threads(args.threads)
    sets = [*args.overrides, "eval.every=0", "run.final_eval_per_level=0"]
    records: dict[str, list[dict[str, Any]]] = {"grpo": [], "zppo": []}
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: build(name, sets, Path(tmp) / name) for name in records}
        for k in range(args.warmup + args.steps):
            for name, tr in trainers.items():  # GRPO then ZPPO: a pair sees the same load
                records[name].append(step(tr, timed=k >= args.warmup))
    timed = {n: [r for r in rs if r["timed"]] for n, rs in records.items()}
    summary = {n: {k: statistics.median(r[k] for r in rs)
                   for k in ["wall_s", "cpu_s", "rollouts", "train_tokens", "perf/rollout_tokens_per_s",
                             "perf/update_tokens_per_s", *(f"perf/{p}_time_s" for p in PHASES)]}
               for n, rs in timed.items()}
    pairs = list(zip(timed["zppo"], timed["grpo"]))
    result = {
        "benchmark": "method_step", "command": " ".join(["bench/method_step.py", *(argv or sys.argv[1:])]),
        "setup": {"preset": "tiny", "overrides": sets, "warmup_steps": args.warmup, "timed_steps": args.steps,
                  "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                  "loadavg_1m_start": round(load0, 2), "loadavg_1m_end": round(os.getloadavg()[0], 2)},
        "paired_wall_ratio_median": statistics.median(z["wall_s"] / g["wall_s"] for z, g in pairs),
        "paired_cpu_ratio_median": statistics.median(z["cpu_s"] / g["cpu_s"] for z, g in pairs),
        "summary": summary, "records": records, "bench_wall_s": round(time.perf_counter() - t_start, 1),
    }
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    g, z = r["summary"]["grpo"], r["summary"]["zppo"]
    t = Table(title=f"tiny preset, median over {r['setup']['timed_steps']} timed steps per side "
                    f"({r['setup']['torch_threads']} torch thread(s))")
    for c in ("", "GRPO", "ZPPO", "ZPPO / GRPO"):
        t.add_column(c, justify="right" if c else "left")
    rows = [("seconds / step", "wall_s", "{:.3f}"), ("process CPU s / step", "cpu_s", "{:.3f}"),
            *((f"  {p.replace('_', ' ')} s", f"perf/{p}_time_s", "{:.3f}") for p in PHASES),
            ("student rollouts / step", "rollouts", "{:.0f}"), ("trained tokens / step", "train_tokens", "{:,.0f}"),
            ("rollout tokens/s", "perf/rollout_tokens_per_s", "{:,.0f}"),
            ("update tokens/s", "perf/update_tokens_per_s", "{:,.0f}")]
    for label, key, fmt in rows:
        ratio = f"{z[key] / g[key]:.2f}" if g[key] >= 0.01 else "-"  # no ratio to a phase GRPO hardly has
        t.add_row(label, fmt.format(g[key]), fmt.format(z[key]), ratio)
    Console().print(t)
    print(f"median of paired per-step ratios ZPPO/GRPO: {r['paired_wall_ratio_median']:.3f} (wall), "
          f"{r['paired_cpu_ratio_median']:.3f} (process CPU time); bench wall {r['bench_wall_s']} s, "
          f"load average {r['setup']['loadavg_1m_start']} -> {r['setup']['loadavg_1m_end']}")


if __name__ == "__main__":
    sys.exit(main())
