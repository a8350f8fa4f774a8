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

Timing: zppo = wall time of `Trainer.train_step()`; TRL = wall time from the `on_step_end` callback that closes
one rollout step (I optimizer steps = one generation + its updates) to the one that closes the next. The first
`--warmup` rollout steps of each side are excluded; medians are reported. By default the schedule is paired:
after each timed TRL rollout step (inside TRL's callback, outside TRL's timed span) one zppo step runs, so both
sides see the same machine load step by step, and the median of the per-pair ratios is reported too.

The README next to this file explains every setting and the one structural difference (TRL's transformers
generation path returns no log-probs, so it runs an extra no-grad forward pass over the 128 completions to
get pi_old; zppo takes pi_old from the sampling logits).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=10, help="timed rollout steps per side (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rollout steps per side first (default 2)")
    p.add_argument("--max-new-tokens", type=int, default=None,
                   help="fixed completion length (default: the tiny preset's rollout.max_new_tokens)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra zppo config override (repeatable), e.g. --set algo.n_new=8")
    p.add_argument("--schedule", choices=["paired", "blocks"], default="paired",
                   help="paired (default): one zppo step after each TRL rollout step, so both see the same machine\n"
                        "load; blocks: all zppo steps, then all TRL steps")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for both sides (default: run.threads, else torch's default)")
    p.add_argument("--only", choices=["zppo", "trl"], default=None, help="time one side only")
    p.add_argument("--decode", choices=["auto", "slots", "model-cache", "generate"], default="auto",
                   help="zppo's transformers-engine decode path (generate: model.generate, the engine before\n"
                        "its own decode loop; default auto: the fastest the model allows)")
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


def load_snapshot() -> dict[str, Any]:
    la = os.getloadavg()
    return {"loadavg_1m": round(la[0], 2), "loadavg_5m": round(la[1], 2), "time": time.strftime("%H:%M:%S")}


# ---------------------------------------------------------------------------------------------------- zppo
class ZppoBench:
    """zppo's real Trainer (GRPO method, transformers engine, NullTracker), timed one train_step at a time."""

    def __init__(self, cfg, tokenizer, run_dir: Path, decode: str = "auto"):
        from zppo_core.rollout import make_engine
        from zppo_core.tracking import NullTracker
        from zppo_core.train.loop import Trainer
        from zppo_core.train.methods.registry import build_method
        from zppo_core.train.run import make_stream

        self.cfg = cfg
        run_dir.mkdir(parents=True, exist_ok=True)
        self.model = build_student(cfg, tokenizer)
        L = cfg.rollout.max_new_tokens
        self.model.generation_config.min_new_tokens = L  # EOS suppressed: every completion has exactly L tokens
        self.engine = make_engine(cfg, self.model, tokenizer)
        if decode != "auto":  # e.g. "generate": the engine as it was before its own decode loop
            from zppo_core.rollout.hf import TransformersEngine

            self.engine = TransformersEngine(self.model, tokenizer, batch_size=cfg.rollout.batch_size, decode=decode)
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
            t, c = time.perf_counter(), time.process_time()
            m = self.trainer.train_step()
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            gen = sum(self.gen_times[g0:])
            tokens = m["train/rollouts"] * m["train/response_len"]
            if abs(m["train/response_len"] - L) > 1e-9:
                raise RuntimeError(f"zppo completion length {m['train/response_len']} != fixed length {L}")
            self.records.append({
                "step": self.trainer.state.step, "timed": timed, "block": block, "wall_s": wall,
                "cpu_per_wall": cpu / wall, "cpu_s": cpu,
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
    """TRL's GRPOTrainer on a fresh copy of the student; a callback timestamps every optimizer step.

    `between(k)` (optional) runs after TRL's rollout step k has ended and before step k+1 begins; its time is
    excluded from TRL's numbers. The paired schedule uses it to run one zppo step between TRL's steps.
    """

    def __init__(self, cfg, tokenizer, prompts: list[str], answers: list[str], out_dir: Path, total_steps: int,
                 between: Callable[[int], None] | None = None):
        from datasets import Dataset
        from transformers import TrainerCallback
        from transformers.trainer_callback import PrinterCallback
        from trl import GRPOTrainer

        from zppo_core.tasks import grade

        self.cfg = cfg
        self.model = build_student(cfg, tokenizer)
        self.args = trl_args(cfg, out_dir, total_steps)

        def binary_reward(prompts, completions, answer, **kwargs):
            return [grade(c, a)[0] for c, a in zip(completions, answer)]

        ds = Dataset.from_dict({"prompt": prompts, "answer": answers})
        I = cfg.algo.updates_per_step
        bench = self
        self.begin: dict[int, float] = {}  # optimizer step -> on_step_begin time
        self.end: dict[int, tuple[float, float]] = {}  # optimizer step -> (wall, cpu) at on_step_end
        self.resume: dict[int, tuple[float, float]] = {}  # optimizer step -> (wall, cpu) after `between`

        class Clock(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                bench.resume[0] = (time.perf_counter(), time.process_time())

            def on_step_begin(self, args, state, control, **kw):
                bench.begin[state.global_step + 1] = time.perf_counter()

            def on_step_end(self, args, state, control, **kw):
                s = state.global_step
                bench.end[s] = (time.perf_counter(), time.process_time())
                if between is not None and s % I == 0:
                    between(s // I)
                bench.resume[s] = (time.perf_counter(), time.process_time())

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.trainer = GRPOTrainer(model=self.model, reward_funcs=binary_reward, args=self.args,
                                       train_dataset=ds, processing_class=tokenizer, callbacks=[Clock()])
        self.trainer.remove_callback(PrinterCallback)  # no log lines on stdout (TRL still computes its metrics)
        if getattr(self.model, "is_activation_checkpointing", False):
            raise RuntimeError("TRL enabled gradient checkpointing; the comparison needs it off")
        # time TRL's generation (model.generate + EOS masking) and its whole rollout phase (generate + decode +
        # reward + the extra pi_old forward + advantages)
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
        if len(self.gen) != len(self.rollout) or len(self.end) != len(self.gen) * I:
            raise RuntimeError(f"TRL ran {len(self.end)} optimizer steps and {len(self.gen)} generations; "
                               f"expected {I} optimizer steps per generation")
        records = []
        for k in range(len(self.gen)):
            first, last = k * I + 1, (k + 1) * I
            (w1, c1), (w0, c0) = self.end[last], self.resume[k * I]
            wall = w1 - w0  # everything TRL did from the end of rollout step k-1 to the end of rollout step k
            in_steps = sum(self.end[s][0] - self.begin[s] for s in range(first, last + 1))
            gen_s, tokens = self.gen[k]
            if tokens != N * L:
                raise RuntimeError(f"TRL generated {tokens} tokens, expected {N}x{L}: fixed length not enforced")
            records.append({
                "step": k + 1, "timed": k >= warmup, "wall_s": wall, "cpu_per_wall": (c1 - c0) / wall, "cpu_s": c1 - c0,
                "in_step_callbacks_s": in_steps,
                "rollout_s": self.rollout[k], "generate_s": gen_s, "update_s": wall - self.rollout[k],
                "completion_tokens": tokens, "rollout_tokens_per_s": tokens / self.rollout[k],
                "generate_tokens_per_s": tokens / gen_s,
            })
        return records


# ---------------------------------------------------------------------------------------------------- report
def summarise(records: list[dict[str, Any]]) -> dict[str, float]:
    timed = [r for r in records if r["timed"]]
    keys = ["wall_s", "cpu_s", "rollout_s", "generate_s", "update_s", "rollout_tokens_per_s", "generate_tokens_per_s"]
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
    row("  process CPU s / rollout step", "median_cpu_s", "{:.3f}")
    row("  rollout phase s", "median_rollout_s", "{:.3f}")
    row("    of which generate s", "median_generate_s", "{:.3f}")
    row("  update phase s (step - rollout phase)", "median_update_s", "{:.3f}")
    row("rollout tokens/s (rollout phase)", "median_rollout_tokens_per_s", "{:,.0f}")
    row("generate tokens/s", "median_generate_tokens_per_s", "{:,.0f}")
    row("min s / step", "min_wall_s", "{:.3f}")
    row("max s / step", "max_wall_s", "{:.3f}")
    Console().print(table)
    if result.get("ratio_zppo_over_trl") is not None:
        print(f"ratio zppo/TRL of median s/step = {result['ratio_zppo_over_trl']:.3f}")
    if result.get("paired_ratio_median") is not None:
        print(f"median of paired per-step ratios zppo/TRL = {result['paired_ratio_median']:.3f} (wall), "
              f"{result['paired_cpu_ratio_median']:.3f} (process CPU time)")
    print(f"zppo engine decode path: {cfg.get('zppo_decode_path')}")
    for side in ("zppo", "trl"):
        if side in result:
            cw = statistics.median(r["cpu_per_wall"] for r in result[side]["records"] if r["timed"])
            print(f"{side}: median process CPU/wall = {cw:.2f} (of {cfg['torch_threads']} threads; "
                  "well below it means the cores were shared)")


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
    from zppo_core.models.load import render
    from zppo_core.models.tiny import build_char_tokenizer
    from zppo_core.train.run import make_stream

    cfg = build_config(args)
    busy = os.getloadavg()[0]
    if not args.threads and busy > 0.5:
        print(f"warning: load average {busy:.1f} on {os.cpu_count()} cores before start. torch's default thread "
              "count oversubscribes shared cores and can make steps 3-30x slower at random; for a stable "
              "comparison on a busy machine use --threads 1", file=sys.stderr)
    if args.threads:
        torch.set_num_threads(args.threads)
    elif cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    threads = torch.get_num_threads()
    tokenizer = build_char_tokenizer()
    W, N = args.warmup, args.steps
    total = W + N
    n_prompts = cfg.algo.n_new

    # the exact question sequence zppo's trainer draws (same stream, same seed), pre-rendered for TRL
    questions = make_stream(cfg).next(n_prompts * total)
    user_texts = [plain_prompt(q, cfg.data.closer) for q in questions]
    templated = [tokenizer.apply_chat_template([{"role": "user", "content": u}], add_generation_prompt=True,
                                               tokenize=False) for u in user_texts]
    for u, s in zip(user_texts, templated):  # TRL tokenizes the string with the tokenizer's defaults
        if tokenizer(s)["input_ids"] != render(tokenizer, u):
            raise RuntimeError("TRL's prompt ids would differ from zppo's: check the tokenizer's special tokens")

    schedule = args.schedule if args.only is None else f"only-{args.only}"
    result: dict[str, Any] = {
        "benchmark": "step_time",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *(argv if argv is not None else sys.argv[1:])]),
        "setup": {
            "prompts_per_step": n_prompts, "group_size": cfg.rollout.group_size,
            "completions_per_step": n_prompts * cfg.rollout.group_size,
            "completion_tokens": cfg.rollout.max_new_tokens, "updates_per_step": cfg.algo.updates_per_step,
            "warmup_steps": W, "timed_steps": N, "torch_threads": threads,
            "torch_threads_source": "--threads" if args.threads else ("run.threads" if cfg.run.threads else "torch default"),
            "cpu_count": os.cpu_count(), "schedule": schedule, "zppo_decode": args.decode,
            "fixed_length": "EOS suppressed via min_new_tokens = max_new_tokens on both sides",
            "mean_prompt_tokens": statistics.mean(len(render(tokenizer, u)) for u in user_texts),
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
        zb = tb = None
        if args.only != "trl":
            zb = ZppoBench(cfg, tokenizer, tmp / "zppo-run", args.decode)
            result["setup"]["zppo_decode_path"] = getattr(zb.engine, "decode", None)
            if not same_weights(reference, zb.model):
                raise RuntimeError("zppo's student differs from the reference initialisation")
            zb.run(W, timed=False, block="warmup")
            if schedule != "paired":
                zb.run(N, timed=True, block="zppo-first")
            result["load"]["after_zppo_first"] = load_snapshot()
        if args.only != "zppo":
            between = None
            if schedule == "paired":
                def between(k: int) -> None:  # one zppo step after each timed TRL rollout step
                    if k > W:
                        zb.run(1, timed=True, block="paired")
            tb = TrlBench(cfg, tokenizer, templated, [q.answer for q in questions], tmp / "trl-out", total, between)
            if not same_weights(reference, tb.model):
                raise RuntimeError("TRL's student differs from the reference initialisation")
            trl_records = tb.run(W)
            if torch.get_num_threads() != threads:
                raise RuntimeError(f"TRL changed torch threads {threads} -> {torch.get_num_threads()}")
            result["load"]["after_trl"] = load_snapshot()
            opt = tb.trainer.optimizer
            result["trl"] = {"records": trl_records, "summary": summarise(trl_records),
                             "optimizer": repr(getattr(opt, "optimizer", opt)),
                             "args": json.loads(json.dumps(tb.args.to_dict(), default=str))}
        if zb is not None:
            result["zppo"] = {"records": zb.records, "summary": summarise(zb.records),
                              "optimizer": repr(zb.trainer.optimizer)}
            if args.profile:
                result["zppo_profile"] = profile_zppo(zb, args.profile)
    if "zppo" in result and "trl" in result:
        zs, ts = result["zppo"]["summary"], result["trl"]["summary"]
        result["ratio_zppo_over_trl"] = zs["median_wall_s"] / ts["median_wall_s"]
        if schedule == "paired":
            z = [r["wall_s"] for r in result["zppo"]["records"] if r["timed"]]
            t = [r["wall_s"] for r in result["trl"]["records"] if r["timed"]]
            result["paired_ratio_median"] = statistics.median(a / b for a, b in zip(z, t))
            zc = [r["cpu_s"] for r in result["zppo"]["records"] if r["timed"]]
            tc = [r["cpu_s"] for r in result["trl"]["records"] if r["timed"]]
            result["paired_cpu_ratio_median"] = statistics.median(a / b for a, b in zip(zc, tc))
    result["bench_wall_s"] = round(time.perf_counter() - t_start, 1)
    print_table(result)
    if "zppo_profile" in result:
        print(result["zppo_profile"])
    print(f"bench wall time {result['bench_wall_s']} s; load average {result['load']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
