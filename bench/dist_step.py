"""Step time and rollout tokens/s of the tiny zppo recipe on 1 rank vs N ranks on this machine (CPU, gloo).

    .venv/bin/python bench/dist_step.py                    # zppo, 1 vs 2 ranks, 2 warm-up + 8 timed steps each
    .venv/bin/python bench/dist_step.py --method grpo --ranks 1,2 --steps 12 --set algo.n_new=32

Each world size is a real run of `zppo train` (`train/run.py` through `zppo_cli.launch`, one thread per rank) on
the tiny preset with the same seed and work per step: `algo.n_new` questions x G rollouts, I updates, the teacher
in-process on every rank. Ranks split the step's questions, so the work per rank shrinks with N while the
collectives (gathering groups, all-reduces, the per-step full-weight gather for the rollout engine, DCP
checkpoints) are added. Read from metrics.jsonl (rank 0 writes it), warm-up steps dropped, medians:
`perf/step_time_s`, `perf/rollout_time_s`, `perf/update_time_s`, `perf/rollout_tokens_per_s` (all ranks' tokens over
rank 0's rollout time). The ratio is what matters: with 2 ranks on 2 shared cores the ideal is 0.5 x the step
time. The tiny pair is prepared once (short SFT schedule of the tests, cached under --cache).

Writes a JSON record (bench/results/dist_step.json) with every step, the load averages and the config.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUICK_PREPARE = ["prepare.student_warm_steps=150", "prepare.student_steps=30", "prepare.teacher_warm_steps=150",
                 "prepare.teacher_steps=30", "prepare.batch_size=32", "data.levels={1: 0.5, 2: 0.5}"]
KEYS = ("perf/step_time_s", "perf/rollout_time_s", "perf/update_time_s", "perf/rollout_tokens_per_s")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="zppo")
    p.add_argument("--ranks", default="1,2", help="world sizes to run, comma-separated (default 1,2)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per world size (default 8)")
    p.add_argument("--warmup", type=int, default=2, help="steps dropped first (default 2)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "zppo" / "prepared"))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "dist_step.json")
    return p.parse_args(argv)


def run_once(cfg, world: int, run_dir: Path) -> list[dict]:
    if world == 1:
        from zppo_core.train.run import train

        train(cfg, run_dir=run_dir)
    else:
        from zppo_cli.launch import launch

        launch(world, "zppo_core.train.run:train", {"cfg": cfg, "run_dir": run_dir})
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    from zppo_core.config import load_config
    from zppo_core.train.run import prepare_tiny

    torch.set_num_threads(1)
    worlds = [int(x) for x in args.ranks.split(",")]
    overrides = QUICK_PREPARE + [f"prepare.cache_dir={args.cache}", "run.threads=1", "eval.every=0",
                                 "run.final_eval_per_level=0", "tracking.enabled=false",
                                 f"run.steps={args.warmup + args.steps}", "run.checkpoint_every=1000"] + args.overrides
    cfg = load_config("tiny", method=args.method, overrides=overrides)
    prepare_tiny(cfg, print)
    load0 = os.getloadavg()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for world in worlds:
            t0 = time.perf_counter()
            rows = run_once(cfg, world, Path(tmp) / f"w{world}")
            timed = rows[args.warmup:]
            results[world] = {"wall_s": time.perf_counter() - t0, "steps": rows,
                              **{k: statistics.median(r[k] for r in timed) for k in KEYS}}
    base = results[worlds[0]]
    print(f"\nzppo {args.method} @ tiny, {args.steps} timed steps (median), one thread per rank, "
          f"load average at start {load0[0]:.1f}")
    print(f"{'ranks':>5} {'step s':>8} {'rollout s':>10} {'update s':>9} {'rollout tok/s':>14} {'step ratio':>11}")
    for world in worlds:
        r = results[world]
        print(f"{world:>5} {r['perf/step_time_s']:>8.3f} {r['perf/rollout_time_s']:>10.3f} "
              f"{r['perf/update_time_s']:>9.3f} {r['perf/rollout_tokens_per_s']:>14.0f} "
              f"{r['perf/step_time_s'] / base['perf/step_time_s']:>11.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({
        "method": args.method, "worlds": worlds, "warmup": args.warmup, "steps": args.steps,
        "load_avg_start": load0, "load_avg_end": os.getloadavg(), "torch": torch.__version__,
        "python": platform.python_version(), "config": cfg.model_dump(mode="json"),
        "results": {str(k): v for k, v in results.items()}}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
