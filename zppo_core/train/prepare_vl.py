"""`prepare` for the tiny vision-language pair (`--scale tiny-vl`): SFT that gives a random-init Qwen3.5 VLM student
and a larger one as teacher their starting skills on the synthetic visual families.

The recipe is `prepare.py`'s, with images: a curriculum (the level-1 skill first, then the level mixture), a
student whose mixture targets carry random slips (`prepare.student_noise`) and consistent misconceptions (a
`prepare.misconceptions` / 100 share of each family's atoms misread at `prepare.misconception_rate`: blind spots,
misread digits, bars read short; `tasks.visual`), and a share of BCQ/NCQ-style prompts whose candidates are in the
text while the question's image is shown once. The teacher learns clean data. Every prompt is rendered by the
training loop's renderer (`PromptRenderer.prompt`), and the loss is the loop's per-token log-probs with the image
inputs (`models.logprobs.completion_logprobs`), so SFT sees exactly the inputs RL will.

Student and teacher train concurrently, one Python thread and one torch thread each (as `prepare.py` does).
Cached like the text pair (`prepare.ensure_prepared` dispatches here for `model.student=tiny-vl`; same lock and
atomic rename), keyed by everything that shapes the models, including the vision spec and this module's version.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from zppo_core.algo.reformulate import build_bcq, build_ncq, load_template, plain_prompt
from zppo_core.config.schema import TinyModelSpec, ZPPOConfig
from zppo_core.models.load import PromptRenderer
from zppo_core.tasks import QuestionStream, get_family

PREPARE_VL_VERSION = 1
PREPARE_SEED = 4321  # prepared models are shared by all runs of a config, whatever the run's seed
Example = tuple[str, tuple, str]  # (prompt text, the question's images, target response)


def cache_key(cfg: ZPPOConfig) -> str:
    from zppo_core.models.tiny_vl import CHAT_TEMPLATE_VL, VISION_TOKENS

    blob = {
        "v": PREPARE_VL_VERSION, "kind": "tiny-vl",
        "student": cfg.model.tiny_student.model_dump(), "teacher": cfg.model.tiny_teacher.model_dump(),
        "vision": cfg.model.tiny_vision.model_dump(),
        "prepare": cfg.prepare.model_dump(exclude={"cache_dir", "sft_attention"}),  # its SFT ignores sft_attention
        "families": cfg.data.families, "closer": cfg.data.closer, "levels": cfg.data.levels,
        "pixels": [cfg.data.min_pixels, cfg.data.max_pixels], "template": cfg.zppo.template,
        "tokens": VISION_TOKENS, "chat": CHAT_TEMPLATE_VL,
    }
    return "vl-" + hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sft_examples(
    cfg: ZPPOConfig,
    levels: dict[int, float] | None,
    seed: int,
    noise: dict[int, float] | None = None,
    candidate_share: float = 0.0,
    candidate_noise_scale: float = 0.0,
    beliefs: dict[str, Any] | None = None,
    belief_rate: float = 0.0,
) -> Iterator[Example]:
    """Endless (prompt text, images, target) triples over the visual families (as `prepare.sft_examples`):
    `noise[level]` of plain targets are decoys, `beliefs[family]` are written at `belief_rate`, and a
    `candidate_share` of items are BCQ/NCQ prompts (the image once, candidates in the text) with correct targets
    noised at `candidate_noise_scale`."""
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
            elif beliefs and q.family in beliefs:
                target = fam.believed_solution(q, beliefs[q.family], p_belief, rng)
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
            yield prompt, q.images, target


def sft(model, render: PromptRenderer, examples: Iterator[Example], steps: int, batch_size: int, lr: float,
        warmup: int, log: Callable[[str], None] = lambda s: None, name: str = "model",
        vision_lr_scale: float = 1.0) -> list[float]:
    """Cross-entropy on response tokens only, given the prompt and its images; AdamW, linear warmup + cosine. The
    vision tower learns at `vision_lr_scale` × `lr` (see `prepare.vision_lr_scale`)."""
    from zppo_core.models.logprobs import completion_logprobs

    tok = render.tokenizer
    vision = [p for n, p in model.named_parameters() if ".visual." in f".{n}"]
    ids = {id(p) for p in vision}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids]},
              {"params": vision, "lr": lr * vision_lr_scale}]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / max(warmup, 1)) * 0.5 * (1 + math.cos(math.pi * min(s / max(steps, 1), 1.0))),
    )
    model.train()
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(steps):
        batch = [next(examples) for _ in range(batch_size)]
        prompts = [render.prompt(text, images) for text, images, _ in batch]
        targets = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for _, _, t in batch]
        logprobs, mask, _ = completion_logprobs(model, [p.ids for p in prompts], targets, tok.pad_token_id,
                                                mm=[p.mm for p in prompts])  # [B, T], [B, T]
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
def measure(model, render: PromptRenderer, processor, cfg: ZPPOConfig, n_questions: int, seed: int,
            samples: int = 8) -> dict[str, Any]:
    """Mean accuracy over `samples` training-temperature rollouts per training question (with its image), and the
    share of hard questions (mean accuracy < 0.5)."""
    from zppo_core.rollout.hf import TransformersEngine
    from zppo_core.suites.heldout import evaluate_questions

    qs = QuestionStream(cfg.data.families, cfg.data.levels, seed).next(n_questions)
    engine = TransformersEngine(model, render.tokenizer, batch_size=cfg.rollout.batch_size, processor=processor)
    res = evaluate_questions(engine, render, qs, cfg.data.closer, samples=samples, temperature=1.0, top_p=1.0,
                             max_new_tokens=cfg.rollout.max_new_tokens)
    return {
        "accuracy": res.accuracy,
        "hard_share": sum(a < 0.5 for a in res.per_question) / len(res.per_question),
        "accuracy_by_level": res.by_level,
        "accuracy_by_family": res.by_family,
        "n_questions": n_questions,
        "samples": samples,
    }


def _phases(cfg: ZPPOConfig, who: str, seed: int) -> list[tuple[int, Iterator[Example], float, int]]:
    """(steps, examples, peak lr, warmup) per SFT phase: the level-1 skill first, then the level mixture."""
    p = cfg.prepare
    warm_levels = {min(lv for f in cfg.data.families for lv in get_family(f).levels): 1.0}
    if who == "student":
        rng = random.Random(seed)
        beliefs = {f: get_family(f).make_beliefs(p.misconceptions / 100, rng) for f in cfg.data.families
                   if hasattr(get_family(f), "make_beliefs")}
        mixture = sft_examples(cfg, p.student_levels, seed + 1, p.student_noise, p.candidate_prompt_share,
                               p.candidate_noise_scale, beliefs, p.misconception_rate)
        steps = (p.student_warm_steps, p.student_steps)
    else:
        mixture = sft_examples(cfg, p.teacher_levels, seed + 1)
        steps = (p.teacher_warm_steps, p.teacher_steps)
    return [(steps[0], sft_examples(cfg, warm_levels, seed), p.lr, p.warmup_steps),
            (steps[1], mixture, p.lr * 0.5, 0)]


def _train(cfg: ZPPOConfig, who: str, model, render: PromptRenderer, seed: int, log) -> dict[str, Any]:
    t0 = time.perf_counter()
    losses: list[float] = []
    phases = _phases(cfg, who, seed)
    for i, (steps, examples, lr, warmup) in enumerate(phases):
        losses += sft(model, render, examples, steps, cfg.prepare.batch_size, lr, warmup, log, f"{who} phase {i + 1}",
                      cfg.prepare.vision_lr_scale)
    return {"steps": sum(s for s, *_ in phases), "final_loss": losses[-1] if losses else None,
            "sft_seconds": round(time.perf_counter() - t0, 1)}


def prepare_into(cfg: ZPPOConfig, out: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Build, train (concurrently), measure and save the tiny-vl student and teacher into `out`."""
    from concurrent.futures import ThreadPoolExecutor

    from zppo_core.models.tiny_vl import build_tiny_vlm, build_vl_processor, save_vl

    rng = random.Random(PREPARE_SEED)
    seeds = {"student": rng.randrange(2**31), "teacher": rng.randrange(2**31)}
    specs: dict[str, TinyModelSpec] = {"student": cfg.model.tiny_student, "teacher": cfg.model.tiny_teacher}
    processor = build_vl_processor(cfg.model.tiny_vision)
    models = {who: build_tiny_vlm(specs[who], cfg.model.tiny_vision, processor, seeds[who]) for who in seeds}
    # one renderer per model: its cache is not shared between threads
    renders = {who: PromptRenderer(processor.tokenizer, processor, min_pixels=cfg.data.min_pixels,
                                   max_pixels=cfg.data.max_pixels) for who in seeds}
    report: dict[str, Any] = {"key": cache_key(cfg), "kind": "tiny-vl", "version": PREPARE_VL_VERSION,
                              "config": cfg.prepare.model_dump()}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="zppo-prepare-vl") as pool:
            futures = {who: pool.submit(_train, cfg, who, models[who], renders[who], seeds[who], log) for who in seeds}
            trained = {who: f.result() for who, f in futures.items()}
        report["sft_wall_seconds"] = round(time.perf_counter() - t0, 1)
    finally:
        torch.set_num_threads(threads)
    for who, model in models.items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seeds[who])
            stats = measure(model, renders[who], processor, cfg, n_questions=96, seed=seeds[who] + 7)
        save_vl(model, processor, out / who)
        log(f"prepare {who}: accuracy {stats['accuracy']:.2f}, hard share {stats['hard_share']:.2f} "
            f"({trained[who]['sft_seconds']:.0f}s SFT)")
        report[who] = {"params": sum(t.numel() for t in model.parameters()), **trained[who], **stats}
    return report
