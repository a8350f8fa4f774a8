"""`prepare` time, old recipe against new, in one process: wall and CPU seconds, their ratio, and the skills.

    .venv/bin/python bench/prepare_time.py                 # tiny preset: old recipe, then new (several minutes)
    .venv/bin/python bench/prepare_time.py --scale tests   # the test suite's small prepared fixture
    .venv/bin/python bench/prepare_time.py --recipe new    # the new recipe only
    .venv/bin/python bench/prepare_time.py --recipe new --set prepare.teacher_steps=150   # a recipe experiment

"Old" is `prepare` as it was at PREPARE_VERSION 1 (commit 11c5584), kept here verbatim in `legacy_prepare`:
student then teacher, one after the other, at torch's thread count; every SFT step pads its 64 sequences to the
longest (candidate prompts make that 3x the mean); the accuracy measurement samples with `model.generate`; step
counts 250 + 200 (student) and 300 + 250 (teacher). "New" is `zppo_core.train.prepare._prepare_into` as it is now
(CPU seconds include its worker process).

Both write real prepared directories (temporary) and are then measured the same way, on 512 training questions x
8 samples (more than the recipe's own 128-question report, whose hard share moves by +-0.05 between question
sets), so the skills can be compared: the student's accuracy and hard share, the teacher's accuracy. Timings on a
shared machine are noisy: the JSON has load averages, CPU seconds (less sensitive to other processes than wall
time) and the ratio of both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LEGACY_STEPS = ["prepare.student_warm_steps=250", "prepare.student_steps=200", "prepare.teacher_warm_steps=300",
                "prepare.teacher_steps=250", "prepare.batch_size=64", "prepare.lr=0.002", "prepare.warmup_steps=30"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scale", choices=["tiny", "tests"], default="tiny",
                   help="tiny: the preset's models; tests: tests/conftest.py's small fixture")
    p.add_argument("--recipe", choices=["both", "old", "new"], default="both")
    p.add_argument("--questions", type=int, default=512, help="training questions for the skill measurement")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for the new recipe (repeatable), e.g. prepare.teacher_steps=150")
    p.add_argument("--out", type=Path, default=None, help="JSON result (default bench/results/prepare_time[_tests].json)")
    return p.parse_args(argv)


def config(scale: str, cache: Path, legacy: bool, overrides: list[str] = ()):
    from zppo_core.config import load_config

    over = [f"prepare.cache_dir={cache}"]
    if scale == "tests":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.conftest import TEST_OVERRIDES

        over = TEST_OVERRIDES + over
    elif legacy:
        over = LEGACY_STEPS + over
    return load_config("tiny", overrides=over + ([] if legacy else list(overrides)))


# ---------------------------------------------------------------------------------------------------- old recipe
def legacy_prepare(cfg, out: Path, log) -> dict[str, Any]:
    """prepare.py's `_prepare_into` at PREPARE_VERSION 1 (padded SFT batches, sequential, model.generate)."""
    import torch

    from zppo_core.models.logprobs import completion_logprobs
    from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model, save_model
    from zppo_core.tasks import get_family
    from zppo_core.tasks.synthetic import make_beliefs
    from zppo_core.models.load import render
    from zppo_core.train.prepare import PREPARE_SEED, sft_examples

    def encode_pair(tokenizer, prompt, response):
        return render(tokenizer, prompt), tokenizer(response, add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id]

    def sft(model, tokenizer, examples, steps, batch_size, lr, warmup):
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (
            1 + math.cos(math.pi * min(s / max(steps, 1), 1.0))))
        model.train()
        for _ in range(steps):
            batch = [encode_pair(tokenizer, *next(examples)) for _ in range(batch_size)]
            logprobs, mask, _ = completion_logprobs(model, [b[0] for b in batch], [b[1] for b in batch],
                                                    tokenizer.pad_token_id)  # [B, T], [B, T]
            loss = -(logprobs * mask).sum() / mask.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()

    rng = random.Random(PREPARE_SEED)
    seeds = rng.randrange(2**31), rng.randrange(2**31)
    p = cfg.prepare
    report: dict[str, Any] = {}
    for who, spec, seed in (("student", cfg.model.tiny_student, seeds[0]), ("teacher", cfg.model.tiny_teacher,
                                                                             seeds[1])):
        tokenizer = build_char_tokenizer()
        model = build_tiny_model(spec, tokenizer, seed)
        warm = {min(lv for f in cfg.data.families for lv in get_family(f).levels): 1.0}
        if who == "student":
            phases = [(p.student_warm_steps, sft_examples(cfg, warm, seed)),
                      (p.student_steps, sft_examples(cfg, p.student_levels, seed + 1, p.student_noise,
                                                     p.candidate_prompt_share, p.candidate_noise_scale,
                                                     make_beliefs(p.misconceptions, seed), p.misconception_rate))]
        else:
            phases = [(p.teacher_warm_steps, sft_examples(cfg, warm, seed)),
                      (p.teacher_steps, sft_examples(cfg, p.teacher_levels, seed + 1))]
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for i, (steps, examples) in enumerate(phases):
                sft(model, tokenizer, examples, steps, p.batch_size, p.lr if i == 0 else p.lr * 0.5,
                    p.warmup_steps if i == 0 else 0)
            sft_s = time.perf_counter() - t0
            stats = measure(model, tokenizer, cfg, 128, seed + 7, decode="generate")
        save_model(model, tokenizer, out / who)
        log(f"old recipe {who}: {sft_s:.0f}s SFT, accuracy {stats['accuracy']:.2f}, hard {stats['hard_share']:.2f}")
        report[who] = {"sft_seconds": round(sft_s, 1), **stats}
    return report


def measure(model, tokenizer, cfg, n_questions: int, seed: int, decode: str = "auto") -> dict[str, Any]:
    import torch

    from zppo_core.suites.heldout import evaluate_questions
    from zppo_core.rollout.hf import TransformersEngine
    from zppo_core.tasks import QuestionStream
    from zppo_core.models.load import render

    qs = QuestionStream(cfg.data.families, cfg.data.levels, seed).next(n_questions)
    engine = TransformersEngine(model, tokenizer, batch_size=cfg.rollout.batch_size, decode=decode)
    with torch.no_grad():
        res = evaluate_questions(engine, lambda t: render(tokenizer, t), qs, cfg.data.closer, samples=8,
                                 temperature=1.0, top_p=1.0, max_new_tokens=cfg.rollout.max_new_tokens)
    return {"accuracy": round(res.accuracy, 4),
            "hard_share": round(sum(a < 0.5 for a in res.per_question) / len(res.per_question), 4),
            "accuracy_by_level": {k: round(v, 4) for k, v in res.by_level.items()}}


# ---------------------------------------------------------------------------------------------------- run
def cpu_seconds() -> tuple[float, float]:
    """CPU time of this process and of its finished children (the new recipe's worker process)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def run_recipe(name: str, args, log) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zppo_core.train.prepare import _prepare_into

    with tempfile.TemporaryDirectory(prefix=f"zppo-prepare-{name}-") as tmp:
        out = Path(tmp) / "prepared"
        out.mkdir()
        cfg = config(args.scale, Path(tmp) / "cache", legacy=name == "old", overrides=args.overrides)
        load0 = os.getloadavg()[0]
        w0, c0 = time.perf_counter(), cpu_seconds()
        report = legacy_prepare(cfg, out, log) if name == "old" else _prepare_into(cfg, out, log)
        c1 = cpu_seconds()
        wall, main_cpu, worker_cpu = time.perf_counter() - w0, c1[0] - c0[0], c1[1] - c0[1]
        cpu = main_cpu + worker_cpu
        log(f"{name} recipe: {wall:.1f}s wall, {cpu:.1f}s CPU")
        skills = {}
        for who in ("student", "teacher"):
            model = AutoModelForCausalLM.from_pretrained(out / who)
            tok = AutoTokenizer.from_pretrained(out / who)
            tok.padding_side = "left"
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                skills[who] = measure(model, tok, cfg, args.questions, seed=99)
    # on an idle machine with a core per process, the wall time is about the busier process's CPU time
    return {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "cpu_s_main": round(main_cpu, 1),
            "cpu_s_worker": round(worker_cpu, 1), "critical_path_cpu_s": round(max(main_cpu, worker_cpu), 1),
            "loadavg_1m_at_start": round(load0, 2),
            "report": report, f"skills_{args.questions}q": skills,
            "prepare_config": cfg.prepare.model_dump(exclude={"cache_dir"})}


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    log = lambda s: print(s, flush=True)  # noqa: E731
    result: dict[str, Any] = {"benchmark": "prepare_time", "scale": args.scale, "torch_threads": torch.get_num_threads(),
                              "cpu_count": os.cpu_count(), "platform": platform.platform(),
                              "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
    for name in (["old", "new"] if args.recipe == "both" else [args.recipe]):
        result[name] = run_recipe(name, args, log)
    if "old" in result and "new" in result:
        result["ratio_wall_new_over_old"] = round(result["new"]["wall_s"] / result["old"]["wall_s"], 3)
        result["ratio_cpu_new_over_old"] = round(result["new"]["cpu_s"] / result["old"]["cpu_s"], 3)
    print_table(result, args.questions)
    out = args.out or Path(f"bench/results/prepare_time{'_tests' if args.scale == 'tests' else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


def print_table(r: dict[str, Any], q: int) -> None:
    from rich.console import Console
    from rich.table import Table

    names = [n for n in ("old", "new") if n in r]
    t = Table(title=f"prepare ({r['scale']}), {r['torch_threads']} torch threads at start, {r['cpu_count']} CPUs")
    t.add_column("")
    for n in names:
        t.add_column(f"{n} recipe", justify="right")
    if len(names) == 2:
        t.add_column("new / old", justify="right")
    rows = [("wall seconds", lambda x: x["wall_s"], "{:.1f}"), ("CPU seconds", lambda x: x["cpu_s"], "{:.1f}"),
            ("CPU s of the busier process (idle-machine wall)", lambda x: x["critical_path_cpu_s"], "{:.1f}"),
            (f"student accuracy ({q} q)", lambda x: x[f"skills_{q}q"]["student"]["accuracy"], "{:.3f}"),
            (f"student hard share ({q} q)", lambda x: x[f"skills_{q}q"]["student"]["hard_share"], "{:.3f}"),
            (f"teacher accuracy ({q} q)", lambda x: x[f"skills_{q}q"]["teacher"]["accuracy"], "{:.3f}")]
    for label, get, fmt in rows:
        vals = [get(r[n]) for n in names]
        t.add_row(label, *[fmt.format(v) for v in vals], *([f"{vals[1] / vals[0]:.2f}"] if len(vals) == 2 else []))
    Console(width=max(Console().width, 100)).print(t)


if __name__ == "__main__":
    sys.exit(main())
