"""Step time of zppo's training loop against TRL's GRPOTrainer, on the same tiny model and the same work.

    .venv/bin/python bench/step_time.py [--steps 10] [--warmup 2] [--out bench/results/step_time.json]

One process, CPU, no hub, no prepared checkpoints. Both sides get:

- the same randomly initialised tiny Qwen3 student (`build_tiny_model(cfg.model.tiny_student, char tokenizer,
  seed)`, built twice from the same seed; the two copies are checked to be bit-identical);
- the same questions in the same order (`make_stream(cfg)`: 16 new questions per rollout step), rendered with
  zppo's plain prompt + closer through the tokenizer's chat template; TRL receives the already-templated text
  as a plain-string prompt (so it applies no template of its own) and the token ids are checked to be the same;
- G=8 completions per question, all of exactly `max_new_tokens` tokens: EOS is suppressed with
  `min_new_tokens = max_new_tokens` (zppo: on the model's generation_config, which `generate` merges;
  TRL: `generation_kwargs`), so both sides sample, score and train on the same number of tokens;
- one generation of 128 completions, then I=4 AdamW steps on 4 shuffled mini-batches of 32 completions
  (TRL: per_device_train_batch_size=32, steps_per_generation=4, gradient_accumulation_steps=1,
  num_iterations=1), token-level loss (TRL "dapo"), beta=0, clip 0.2/0.28, dual clip 10 (TRL `delta`),
  same lr / weight decay / betas / eps / grad clip, constant lr, fp32, gradient checkpointing off,
  torch's default thread count, no eval, no checkpoints, no tracking;
- a binary reward from zppo's grader.

Timing: zppo = wall time of `Trainer.train_step()`; TRL = wall time between the `on_step_end` callbacks that
close consecutive rollout steps (I optimizer steps = one generation + its updates). The first `--warmup`
rollout steps of each side are excluded; medians are reported. By default zppo's timed steps are split into
two blocks run before and after TRL (A-B-A), so a change in machine load hits both sides alike.

The README next to this file explains every setting and the one structural difference (TRL's transformers
generation path returns no log-probs, so it runs an extra no-grad forward pass over the 128 completions to
get pi_old; zppo takes pi_old from the sampling logits).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed rollout steps per side (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rollout steps per side first (default 2)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="fixed completion length (default: the tiny preset's rollout.max_new_tokens)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra zppo config override (repeatable), e.g. --set algo.n_new=8")
    p.add_argument("--no-interleave", action="store_true",
                   help="run all zppo steps before TRL instead of splitting them around it")
    p.add_argument("--only", choices=["zppo", "trl"], default=None, help="time one side only")
    p.add_argument("--profile", type=int, default=0, metavar="K",
                   help="after timing, run K more zppo steps under cProfile and print where the time goes")
    p.add_argument("--out", type=Path, default=Path("bench/results/step_time.json"), help="JSON result file")
    return p.parse_args(argv)


# ---------------------------------------------------------------------------------------------------- setup
def build_config(args: argparse.Namespace):
    from zppo_core.config import load_config

    overrides = ["tracking.enabled=false", *args.overrides]
    if args.max_new_tokens is not None:
        overrides.append(f"rollout.max_new_tokens={args.max_new_tokens}")
    return load_config("tiny", method="grpo", overrides=overrides)


def build_student(cfg, tokenizer):
    from zppo_core.models.tiny import build_tiny_model

    return build_tiny_model(cfg.model.tiny_student, tokenizer, cfg.run.seed)


def same_weights(a, b) -> bool:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def n_rollout_steps(args) -> int:
    return args.warmup + args.steps


def load_snapshot() -> dict[str, Any]:
    la = os.getloadavg()
    return {"loadavg_1m": round(la[0], 2), "loadavg_5m": round(la[1], 2), "time": time.strftime("%H:%M:%S")}


class CpuClock:
    """Process CPU seconds vs wall seconds over a block: cpu/wall ~ threads in use; far below it = contention."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": round(self.wall, 3), "cpu_s": round(self.cpu, 3),
                "cpu_per_wall": round(self.cpu / max(self.wall, 1e-9), 3)}


# ---------------------------------------------------------------------------------------------------- zppo
class ZppoBench:
    """zppo's real Trainer (GRPO method, transformers engine, NullTracker), timed one train_step at a time."""

    def __init__(self, cfg, tokenizer, run_dir: Path):
        from zppo_core.tracking import NullTracker
        from zppo_core.train.loop import Trainer
        from zppo_core.train.methods.registry import build_method
        from zppo_core.train.run import make_engine, make_stream

        self.cfg = cfg
        run_dir.mkdir(parents=True, exist_ok=True)
        self.model = build_student(cfg, tokenizer)
        L = cfg.rollout.max_new_tokens
        self.model.generation_config.min_new_tokens = L  # EOS suppressed: every completion has exactly L tokens
        self.engine = make_engine(cfg, self.model, tokenizer)
        self.stream = make_stream(cfg)
        self.trainer = Trainer(cfg, run_dir, self.model, tokenizer, self.engine, self.stream, build_method(cfg),
                               NullTracker())
        self.gen_times: list[float] = []  # engine.generate only (sampling + logprob gather + decode)
        inner = self.engine.generate

        def timed_generate(prompts, params):
            t = time.perf_counter()
            out = inner(prompts, params)
            self.gen_times.append(time.perf_counter() - t)
            return out

        self.engine.generate = timed_generate
        self.records: list[dict[str, float]] = []

    def run(self, n: int, timed: bool, block: str) -> None:
        L = self.cfg.rollout.max_new_tokens
        for _ in range(n):
            g0 = len(self.gen_times)
            t = time.perf_counter()
            m = self.trainer.train_step()
            wall = time.perf_counter() - t
            gen = sum(self.gen_times[g0:])
            tokens = m["train/rollouts"] * m["train/response_len"]
            if abs(m["train/response_len"] - L) > 1e-9:
                raise RuntimeError(f"zppo completion length {m['train/response_len']} != fixed length {L}")
            self.records.append({
                "step": self.trainer.state.step, "timed": timed, "block": block, "wall_s": wall,
                "rollout_s": m["perf/rollout_time_s"], "generate_s": gen, "update_s": wall - m["perf/rollout_time_s"],
                "loop_update_time_s": m["perf/update_time_s"],
                "completion_tokens": tokens, "rollouts": m["train/rollouts"],
                "rollout_tokens_per_s": m["perf/rollout_tokens_per_s"], "generate_tokens_per_s": tokens / gen,
                "reward_mean": m["train/reward_mean"],
            })


# ---------------------------------------------------------------------------------------------------- TRL
def trl_args(cfg, out_dir: Path, total_rollout_steps: int):
    from trl import GRPOConfig

    I = cfg.algo.updates_per_step
    N = cfg.algo.n_new * cfg.rollout.group_size
    L = cfg.rollout.max_new_tokens
    return GRPOConfig(
        output_dir=str(out_dir),
        # hardware / precision
        use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False, activation_checkpointing=False,
        # batch geometry: one generation of N completions, I optimizer steps of N/I completions each
        num_generations=cfg.rollout.group_size,
        per_device_train_batch_size=N // I,
        gradient_accumulation_steps=1,
        steps_per_generation=I,
        num_iterations=1,
        max_steps=total_rollout_steps * I,
        shuffle_dataset=False,  # same question order as zppo's stream
        # sampling: fixed length L (EOS suppressed), temperature / top_p as zppo
        max_completion_length=L,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        top_k=0,
        generation_kwargs={"min_new_tokens": L},
        # loss: token-level PPO, clip-higher, dual clip, no KL
        loss_type="dapo", beta=0.0,
        epsilon=cfg.algo.eps_low, epsilon_high=cfg.algo.eps_high, delta=cfg.algo.dual_clip,
        scale_rewards="batch",  # closest to zppo's "nontrivial" (same cost; see README)
        mask_truncated_completions=False,
        # optimizer: zppo's AdamW settings, constant lr, no warmup
        learning_rate=cfg.optim.lr, lr_scheduler_type="constant", warmup_steps=0,
        weight_decay=cfg.optim.weight_decay, adam_beta1=cfg.optim.betas[0], adam_beta2=cfg.optim.betas[1],
        adam_epsilon=cfg.optim.eps, max_grad_norm=cfg.optim.grad_clip,
        # nothing else: no eval, no checkpoints, no tracking, no progress bar
        eval_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True, log_completions=False,
        dataloader_num_workers=0, seed=cfg.run.seed,
    )


class TrlBench:
    def __init__(self, cfg, tokenizer, prompts: list[str], answers: list[str], out_dir: Path, total_steps: int):
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import GRPOTrainer

        from zppo_core.tasks import grade

        self.cfg = cfg
        self.model = build_student(cfg, tokenizer)
        self.args = trl_args(cfg, out_dir, total_steps)

        def binary_reward(prompts, completions, answer, **kwargs):
            return [grade(c, a)[0] for c, a in zip(completions, answer)]

        ds = Dataset.from_dict({"prompt": prompts, "answer": answers})
        bench = self
        self.begin: dict[int, float] = {}
        self.end: dict[int, float] = {0: math.nan}

        class Clock(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                bench.end[0] = time.perf_counter()

            def on_step_begin(self, args, state, control, **kw):
                bench.begin[state.global_step + 1] = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                bench.end[state.global_step] = time.perf_counter()

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.trainer = GRPOTrainer(model=self.model, reward_funcs=binary_reward, args=self.args,
                                       train_dataset=ds, processing_class=tokenizer, callbacks=[Clock()])
        from transformers.trainer_callback import PrinterCallback

        self.trainer.remove_callback(PrinterCallback)  # no log lines on stdout (TRL still computes its metrics)
        if getattr(self.model, "is_gradient_checkpointing", False):
            raise RuntimeError("TRL enabled gradient checkpointing; the comparison needs it off")
        # time TRL's generation (model.generate only) and its whole rollout phase (generate + decode + reward +
        # the extra pi_old forward + advantages)
        self.gen: list[tuple[float, int]] = []
        self.rollout: list[float] = []
        t = self.trainer
        inner_gen, inner_roll = t._generate_single_turn, t._generate_and_score_completions

        def timed_gen(*a, **kw):
            t0 = time.perf_counter()
            ids, lps = inner_gen(*a, **kw)
            self.gen.append((time.perf_counter() - t0, sum(len(c) for c in ids)))
            return ids, lps

        def timed_roll(*a, **kw):
            t0 = time.perf_counter()
            out = inner_roll(*a, **kw)
            self.rollout.append(time.perf_counter() - t0)
            return out

        t._generate_single_turn = timed_gen
        t._generate_and_score_completions = timed_roll

    def run(self, warmup: int) -> list[dict[str, float]]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.trainer.train()
        I = self.cfg.algo.updates_per_step
        N = self.cfg.algo.n_new * self.cfg.rollout.group_size
        L = self.cfg.rollout.max_new_tokens
        records = []
        for k in range(len(self.gen)):
            first, last = k * I + 1, (k + 1) * I
            wall = self.end[last] - self.end[k * I]  # on_step_end to on_step_end: everything in between
            in_steps = sum(self.end[s] - self.begin[s] for s in range(first, last + 1))
            gen_s, tokens = self.gen[k]
            if tokens != N * L:
                raise RuntimeError(f"TRL generated {tokens} tokens, expected {N}x{L}: fixed length not enforced")
            records.append({
                "step": k + 1, "timed": k >= warmup, "wall_s": wall, "in_step_callbacks_s": in_steps,
                "rollout_s": self.rollout[k], "generate_s": gen_s, "update_s": wall - self.rollout[k],
                "completion_tokens": tokens, "rollout_tokens_per_s": tokens / self.rollout[k],
                "generate_tokens_per_s": tokens / gen_s,
            })
        if math.isnan(records[0]["wall_s"]):
            raise RuntimeError("TRL callback did not see on_train_begin")
        return records


# ---------------------------------------------------------------------------------------------------- report
def summarise(records: list[dict[str, Any]]) -> dict[str, float]:
    timed = [r for r in records if r["timed"]]
    keys = ["wall_s", "rollout_s", "generate_s", "update_s", "rollout_tokens_per_s", "generate_tokens_per_s"]
    out = {f"median_{k}": statistics.median(r[k] for r in timed) for k in keys}
    w = [r["wall_s"] for r in timed]
    out.update(timed_steps=len(timed), min_wall_s=min(w), max_wall_s=max(w),
               iqr_wall_s=(statistics.quantiles(w, n=4)[2] - statistics.quantiles(w, n=4)[0]) if len(w) > 1 else 0.0)
    return out


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "platform": platform.platform()}
    for pkg in ("torch", "transformers", "trl", "accelerate", "datasets", "zppo"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "?"
    return out


def print_table(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    z, t = result.get("zppo", {}).get("summary"), result.get("trl", {}).get("summary")
    cfg = result["setup"]
    table = Table(title=(f"step time per rollout step: {cfg['prompts_per_step']} prompts x G={cfg['group_size']} "
                         f"x {cfg['completion_tokens']} tokens, I={cfg['updates_per_step']} updates "
                         f"({cfg['torch_threads']} torch threads, CPU)"))
    table.add_column("median over timed steps")
    table.add_column("zppo", justify="right")
    table.add_column("TRL GRPOTrainer", justify="right")
    table.add_column("zppo / TRL", justify="right")

    def row(label, key, fmt):
        a = z.get(key) if z else None
        b = t.get(key) if t else None
        ratio = f"{a / b:.3f}" if a and b else "-"
        table.add_row(label, fmt.format(a) if a is not None else "-", fmt.format(b) if b is not None else "-", ratio)

    row("seconds / rollout step", "median_wall_s", "{:.3f}")
    row("  rollout phase s", "median_rollout_s", "{:.3f}")
    row("    of which generate s", "median_generate_s", "{:.3f}")
    row("  update phase s (step - rollout)", "median_update_s", "{:.3f}")
    row("rollout tokens/s (rollout phase)", "median_rollout_tokens_per_s", "{:,.0f}")
    row("generate tokens/s", "median_generate_tokens_per_s", "{:,.0f}")
    row("min s / step", "min_wall_s", "{:.3f}")
    row("max s / step", "max_wall_s", "{:.3f}")
    Console().print(table)
    if result.get("ratio_zppo_over_trl") is not None:
        print(f"ratio zppo/TRL (median s/step) = {result['ratio_zppo_over_trl']:.3f}")


def profile_zppo(zb: ZppoBench, k: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    zb.run(k, timed=False, block="profile")
    prof.disable()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf).sort_stats("cumulative")
    st.print_stats(35)
    buf.write("\n---- by own time ----\n")
    st.sort_stats("tottime").print_stats(25)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.steps < 1 or args.warmup < 0:
        raise SystemExit("--steps must be >= 1 and --warmup >= 0")
    t_start = time.perf_counter()
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    from zppo_core.algo.reformulate import plain_prompt
    from zppo_core.models.tiny import build_char_tokenizer
    from zppo_core.train.loop import render
    from zppo_core.train.run import make_stream

    cfg = build_config(args)
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    threads = torch.get_num_threads()
    tokenizer = build_char_tokenizer()
    total = n_rollout_steps(args)
    extra = args.profile
    n_prompts = cfg.algo.n_new

    # the exact question sequence zppo's trainer will draw (same stream, same seed), pre-rendered for TRL
    questions = make_stream(cfg).next(n_prompts * (total + extra))[: n_prompts * total]
    user_texts = [plain_prompt(q, cfg.data.closer) for q in questions]
    templated = [tokenizer.apply_chat_template([{"role": "user", "content": u}], add_generation_prompt=True,
                                               tokenize=False) for u in user_texts]
    for u, s in zip(user_texts[:n_prompts], templated[:n_prompts]):  # TRL tokenizes the string with defaults
        if tokenizer(s)["input_ids"] != render(tokenizer, u):
            raise RuntimeError("TRL's prompt ids would differ from zppo's: check the tokenizer's special tokens")

    result: dict[str, Any] = {
        "benchmark": "step_time",
        "setup": {
            "prompts_per_step": n_prompts, "group_size": cfg.rollout.group_size,
            "completions_per_step": n_prompts * cfg.rollout.group_size,
            "completion_tokens": cfg.rollout.max_new_tokens, "updates_per_step": cfg.algo.updates_per_step,
            "warmup_steps": args.warmup, "timed_steps": args.steps, "torch_threads": threads,
            "cpu_count": os.cpu_count(), "interleaved": not args.no_interleave and args.only is None,
            "fixed_length": "EOS suppressed via min_new_tokens = max_new_tokens on both sides",
            "example_prompt": templated[0],
        },
        "versions": versions(),
        "load": {"start": load_snapshot()},
        "zppo_config": json.loads(cfg.model_dump_json()),
    }
    reference = build_student(cfg, tokenizer)  # both sides must start from exactly these weights
    result["setup"]["student_params"] = sum(p.numel() for p in reference.parameters())
    with tempfile.TemporaryDirectory(prefix="zppo-bench-") as tmp:
        tmp = Path(tmp)
        zb = None
        if args.only != "trl":
            zb = ZppoBench(cfg, tokenizer, tmp / "zppo-run")
            if not same_weights(reference, zb.model):
                raise RuntimeError("zppo's student differs from the reference initialisation")
            first = args.steps if (args.no_interleave or args.only) else math.ceil(args.steps / 2)
            with CpuClock() as cz1:
                zb.run(args.warmup, timed=False, block="warmup")
                zb.run(first, timed=True, block="A1")
            result["load"]["after_zppo_A1"] = load_snapshot()
        if args.only != "zppo":
            tb = TrlBench(cfg, tokenizer, templated, [q.answer for q in questions], tmp / "trl-out", total)
            if not same_weights(reference, tb.model):
                raise RuntimeError("TRL's student differs from the reference initialisation")
            with CpuClock() as ct:
                trl_records = tb.run(args.warmup)
            if torch.get_num_threads() != threads:
                raise RuntimeError(f"TRL changed torch threads {threads} -> {torch.get_num_threads()}")
            result["load"]["after_trl"] = load_snapshot()
            result["trl"] = {"records": trl_records, "summary": summarise(trl_records), "cpu": ct.as_dict(),
                             "optimizer": repr(tb.trainer.optimizer.optimizer if hasattr(tb.trainer.optimizer, "optimizer") else tb.trainer.optimizer),
                             "args": json.loads(json.dumps(tb.args.to_dict(), default=str))}
        if zb is not None:
            rest = args.steps - sum(r["timed"] for r in zb.records)
            cpu = {"A1": cz1.as_dict()}
            if rest:
                with CpuClock() as cz2:
                    zb.run(rest, timed=True, block="A2")
                cpu["A2"] = cz2.as_dict()
                result["load"]["after_zppo_A2"] = load_snapshot()
            result["zppo"] = {"records": zb.records, "summary": summarise(zb.records), "cpu": cpu,
                              "optimizer": repr(zb.trainer.optimizer)}
            if extra:
                result["zppo_profile"] = profile_zppo(zb, extra)
    if "zppo" in result and "trl" in result:
        result["ratio_zppo_over_trl"] = result["zppo"]["summary"]["median_wall_s"] / result["trl"]["summary"]["median_wall_s"]
    result["bench_wall_s"] = round(time.perf_counter() - t_start, 1)
    print_table(result)
    if "zppo_profile" in result:
        print(result["zppo_profile"])
    print(f"bench wall time {result['bench_wall_s']} s; load {result['load']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
