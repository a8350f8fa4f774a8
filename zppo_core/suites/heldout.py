"""Held-out accuracy on the synthetic families (tiny scale): questions from the families' evaluation split,
which training streams never yield, sampled with the paper's evaluation temperature and graded by the rule
grader. Used at the end of every tiny run, by `prepare` to measure the student, and by the offline eval suites
(`tiny`, `tiny-ood`, `tiny-vl`, `tiny-vl-ood`, `tiny-vl-blank`) of `zppo eval` and periodic eval.

Visual questions are rendered with their images through the renderer's `prompt` (a `models.load.PromptRenderer`)
and sampled with `rollout.base.generate_prompts`, the training loop's path. `blank=True` replaces every image by a
white one of the same size: the control that shows the answers need the images (accuracy falls to the blind
baseline, `tasks.visual.chance_accuracy`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from zppo_core.algo.reformulate import plain_prompt
from zppo_core.rollout.base import Engine, SamplingParams, generate_prompts
from zppo_core.tasks import grade, make_eval_set
from zppo_core.types import Prompt, Question


@dataclass
class HeldoutResult:
    accuracy: float
    by_family: dict[str, float]
    by_level: dict[int, float]
    n_questions: int
    per_question: list[float]
    graded: list[list[tuple[str, float, str | None]]] = field(default_factory=list)  # per question, per sample:
    # (response text, reward, extracted answer)


def heldout_questions(families: list[str], per_level: int, seed: int = 12345) -> list[Question]:
    """The fixed held-out questions of `families` (the same for every run, checkpoint and periodic eval)."""
    return list(_heldout_cached(tuple(families), per_level, seed))


@lru_cache(maxsize=32)
def _heldout_cached(families: tuple[str, ...], per_level: int, seed: int) -> tuple[Question, ...]:
    return tuple(make_eval_set(list(families), per_level, seed))  # visual questions draw images: build them once


def evaluate_questions(
    engine: Engine,
    render,
    questions: list[Question],
    closer: str,
    samples: int = 4,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int = 64,
    top_k: int = 0,
    presence_penalty: float = 0.0,
    blank: bool = False,
) -> HeldoutResult:
    """Mean@`samples` accuracy (pass@1 estimated over samples), overall, per family and per level. `render`: a
    `PromptRenderer` (needed for image questions) or a text -> token ids callable; `blank`: see the module doc."""
    outs = generate_prompts(
        engine,
        [question_prompt(render, plain_prompt(q, closer), q, blank) for q in questions],
        SamplingParams(n=samples, temperature=temperature, top_p=top_p, top_k=top_k,
                       presence_penalty=presence_penalty, max_new_tokens=max_new_tokens),
    )
    graded = [[(c.text, *grade(c.text, q.answer)) for c in comps] for q, comps in zip(questions, outs)]
    per_q = [sum(r for _, r, _ in g) / samples for g in graded]
    fam: dict[str, list[float]] = {}
    lev: dict[int, list[float]] = {}
    for q, a in zip(questions, per_q):
        fam.setdefault(q.family, []).append(a)
        lev.setdefault(q.level, []).append(a)
    mean = lambda v: sum(v) / len(v)  # noqa: E731
    return HeldoutResult(
        accuracy=mean(per_q) if per_q else 0.0,
        by_family={k: mean(v) for k, v in sorted(fam.items())},
        by_level={k: mean(v) for k, v in sorted(lev.items())},
        n_questions=len(questions),
        per_question=per_q,
        graded=graded,
    )


def question_prompt(render, text: str, q: Question, blank: bool = False) -> Prompt:
    """`text` (a prompt of `q`) rendered with `q`'s images (white ones of the same size when `blank`)."""
    if not q.images:
        return render.prompt(text) if hasattr(render, "prompt") else Prompt(render(text))
    if not hasattr(render, "prompt"):
        raise ValueError(f"question {q.id} has images but the renderer is text-only; render with a vision-language "
                         "model's PromptRenderer")
    images = q.images
    if blank:
        from zppo_core.tasks.images import blank_like, load_image

        images = tuple(blank_like(load_image(im, render.min_pixels, render.max_pixels)) for im in q.images)
    return render.prompt(text, images)
