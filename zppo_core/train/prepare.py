"""`prepare`: SFT that gives the tiny student and the tiny teacher their starting skills (tiny scale only).

A pretrained student "knows the format and solves easy questions"; a tiny model built from config knows
nothing, so `prepare` plays pretraining: supervised fine-tuning on correct responses
(`<think>scratchpad</think>\\boxed{answer}`) of the in-distribution task families. The student sees mostly easy
levels and is trained briefly, so after it a substantial share of training questions is *hard* for it (mean
accuracy < 0.5 over G_S samples); the teacher is larger, sees all levels and trains longer (≥ 90 % accuracy
is the target). Held-out (OOD) families are never used here.

`model.student=tiny-vl` (the vision-language pair) is built by `prepare_vl.py` through the same cache.
Prepared models are cached under `prepare.cache_dir/<key>/{student,teacher}`, keyed by a hash of everything
that shapes them (architectures, SFT settings, families, closer, tokenizer, this module's version), written
atomically (temp dir + rename) under a file lock so concurrent runs (sweeps) prepare once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from zppo_core.algo.reformulate import plain_prompt
from zppo_core.config.schema import TinyModelSpec, ZPPOConfig
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model, save_model
from zppo_core.tasks import QuestionStream, get_family
from zppo_core.tasks.synthetic import make_beliefs

PREPARE_VERSION = 1
PREPARE_SEED = 1234  # prepared models are shared by all runs of a config, whatever the run's seed


def cache_key(cfg: ZPPOConfig) -> str:
    if cfg.model.student == "tiny-vl":
        from zppo_core.train.prepare_vl import cache_key as vl_key

        return vl_key(cfg)
    tok = build_char_tokenizer()
    blob = {
        "v": PREPARE_VERSION,
        "student": cfg.model.tiny_student.model_dump(),
        "teacher": cfg.model.tiny_teacher.model_dump(),
        "prepare": cfg.prepare.model_dump(exclude={"cache_dir"}),
        "families": cfg.data.families,
        "closer": cfg.data.closer,
        "levels": cfg.data.levels,
        "template": cfg.zppo.template,
        "vocab": sorted(tok.get_vocab().items()),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def cache_dir(cfg: ZPPOConfig) -> Path:
    return Path(os.path.expanduser(cfg.prepare.cache_dir)) / cache_key(cfg)


def is_prepared(cfg: ZPPOConfig) -> bool:
    return (cache_dir(cfg) / "report.json").is_file()


def ensure_prepared(cfg: ZPPOConfig, log: Callable[[str], None] = lambda s: None) -> Path:
    """Return the cached prepared directory (student/, teacher/, report.json), preparing it first if needed."""
    final = cache_dir(cfg)
    if (final / "report.json").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f".{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "report.json").is_file():  # someone else prepared it while we waited
            return final
        tmp = final.parent / f".tmp-{final.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            if cfg.model.student == "tiny-vl":  # the vision-language pair: train/prepare_vl.py
                from zppo_core.train.prepare_vl import prepare_into as build
            else:
                build = _prepare_into
            report = build(cfg, tmp, log)
            (tmp / "report.json").write_text(json.dumps(report, indent=2))
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def sft_examples(
    cfg: ZPPOConfig,
    levels: dict[int, float] | None,
    seed: int,
    noise: dict[int, float] | None = None,
    candidate_share: float = 0.0,
    candidate_noise_scale: float = 0.0,
    beliefs: dict[tuple[int, int], int] | None = None,
    belief_rate: float = 0.0,
):
    """Endless (prompt text, response text) pairs over the in-distribution families.

    With `noise`, a share noise[level] of plain targets is a plausible wrong solution (a random slip); with
    `beliefs`, families that support it write the believed wrong result at those steps with `belief_rate`
    (misconceptions). With `candidate_share`, that share of items is shown as a BCQ prompt (one correct + one
    wrong candidate, random order) or an NCQ prompt (1-3 wrong candidates); their targets are the correct
    solution, noised at candidate_noise_scale × (noise, belief_rate) — a student that follows references.
    """
    from zppo_core.algo.reformulate import build_bcq, build_ncq, load_template

    template = load_template(cfg.zppo.template, "full")
    rng = random.Random(seed)
    stream = QuestionStream(cfg.data.families, levels, seed)
    noise = noise or {}
    while True:
        for q in stream.next(256):
            fam = get_family(q.family)
            p_wrong, p_belief = noise.get(q.level, 0.0), belief_rate
            kind = "plain"
            if candidate_share and rng.random() < candidate_share:
                kind = "bcq" if rng.random() < 0.5 else "ncq"
                p_wrong *= candidate_noise_scale
                p_belief *= candidate_noise_scale
            if rng.random() < p_wrong:
                target = fam.wrong_solution(q, rng)
            elif beliefs and hasattr(fam, "believed_solution"):
                target = fam.believed_solution(q, beliefs, p_belief, rng)
            else:
                target = fam.solution(q)
            if kind == "plain":
                prompt = plain_prompt(q, cfg.data.closer)
            elif kind == "bcq":
                prompt, _ = build_bcq(q.prompt, fam.solution(q), fam.wrong_solution(q, rng), rng, cfg.data.closer,
                                      template)
            else:
                wrong = [fam.wrong_solution(q, rng) for _ in range(rng.randint(1, 3))]
                prompt, _ = build_ncq(q.prompt, wrong, cfg.data.closer, template)
            yield prompt, target


def _encode_pair(tokenizer, prompt: str, response: str) -> tuple[list[int], list[int]]:
    from zppo_core.models.load import render

    p = render(tokenizer, prompt)
    r = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p, r


def sft(
    model,
    tokenizer,
    examples,
    steps: int,
    batch_size: int,
    lr: float,
    warmup: int,
    log: Callable[[str], None] = lambda s: None,
    name: str = "model",
) -> list[float]:
    """Cross-entropy on response tokens only (prompt tokens masked), AdamW, linear warmup + cosine decay."""
    from zppo_core.models.logprobs import completion_logprobs

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * min(s / max(steps, 1), 1.0))),
    )
    model.train()
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        batch = [_encode_pair(tokenizer, *next(examples)) for _ in range(batch_size)]
        logprobs, mask, _ = completion_logprobs(
            model, [b[0] for b in batch], [b[1] for b in batch], tokenizer.pad_token_id
        )  # [B, T], [B, T]
        loss = -(logprobs * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log(f"prepare {name}: step {step + 1}/{steps} loss {sum(losses[-100:]) / len(losses[-100:]):.3f} "
                f"({time.perf_counter() - t0:.0f}s)")
    return losses


@torch.no_grad()
def measure(model, tokenizer, cfg: ZPPOConfig, n_questions: int, seed: int, samples: int = 8) -> dict[str, Any]:
    """Mean accuracy over `samples` training-temperature rollouts per training question, and the share of hard
    questions (mean accuracy < 0.5)."""
    from zppo_core.models.load import render
    from zppo_core.rollout.hf import TransformersEngine
    from zppo_core.suites.heldout import evaluate_questions

    qs = QuestionStream(cfg.data.families, cfg.data.levels, seed).next(n_questions)
    engine = TransformersEngine(model, tokenizer, batch_size=cfg.rollout.batch_size)
    res = evaluate_questions(engine, lambda t: render(tokenizer, t), qs, cfg.data.closer, samples=samples,
                             temperature=1.0, top_p=1.0, max_new_tokens=cfg.rollout.max_new_tokens)
    return {
        "accuracy": res.accuracy,
        "hard_share": sum(a < 0.5 for a in res.per_question) / len(res.per_question),
        "accuracy_by_level": res.by_level,
        "n_questions": n_questions,
        "samples": samples,
    }


def _prepare_one(cfg: ZPPOConfig, spec: TinyModelSpec, who: str, seed: int, out: Path, log) -> dict[str, Any]:
    p = cfg.prepare
    tokenizer = build_char_tokenizer()
    model = build_tiny_model(spec, tokenizer, seed)
    warm_levels = {min(lv for f in cfg.data.families for lv in get_family(f).levels): 1.0}
    if who == "student":
        phases = [
            (p.student_warm_steps, sft_examples(cfg, warm_levels, seed)),
            (p.student_steps, sft_examples(cfg, p.student_levels, seed + 1, p.student_noise, p.candidate_prompt_share,
                                           p.candidate_noise_scale, make_beliefs(p.misconceptions, seed),
                                           p.misconception_rate)),
        ]
    else:
        phases = [
            (p.teacher_warm_steps, sft_examples(cfg, warm_levels, seed)),
            (p.teacher_steps, sft_examples(cfg, p.teacher_levels, seed + 1)),
        ]
    t0 = time.perf_counter()
    losses: list[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i, (steps, examples) in enumerate(phases):
            losses += sft(model, tokenizer, examples, steps, p.batch_size, p.lr if i == 0 else p.lr * 0.5,
                          p.warmup_steps if i == 0 else 0, log, f"{who} phase {i + 1}")
        sft_time = time.perf_counter() - t0
        stats = measure(model, tokenizer, cfg, n_questions=128, seed=seed + 7)
    save_model(model, tokenizer, out / who)
    n_params = sum(t.numel() for t in model.parameters())
    log(f"prepare {who}: accuracy {stats['accuracy']:.2f}, hard share {stats['hard_share']:.2f} "
        f"({sft_time:.0f}s SFT)")
    return {"params": n_params, "steps": sum(s for s, _ in phases), "final_loss": losses[-1] if losses else None,
            "sft_seconds": round(sft_time, 1), **stats}


def _prepare_into(cfg: ZPPOConfig, out: Path, log) -> dict[str, Any]:
    rng = random.Random(PREPARE_SEED)
    seeds = rng.randrange(2**31), rng.randrange(2**31)
    report: dict[str, Any] = {"key": out.name, "config": cfg.prepare.model_dump()}
    report["student"] = _prepare_one(cfg, cfg.model.tiny_student, "student", seeds[0], out, log)
    report["teacher"] = _prepare_one(cfg, cfg.model.tiny_teacher, "teacher", seeds[1], out, log)
    return report
