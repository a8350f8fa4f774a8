"""How a training method plugs into the one loop (`zppo_core.train.loop`).

A method is a small object with four hooks and its own state; the loop never asks which method it runs.

- `select_prompts` (loop step 2): the step's prompts from the new questions (e.g. add replayed ones).
- `extra_prompts` (loop step 4): after the plain rollouts are graded, extra prompts to roll out as their own
  groups (BCQ, NCQ, hint, ...). It may use the teacher through the context.
- `observe` (loop step 8): bookkeeping from the plain groups (e.g. buffer admission and graduation); returns
  metrics.
- `objective`: the loss used by the I mini-batch updates (PPO clip-higher + dual clip for the RL methods).
- `report` (at each checkpoint and at the end): write the method's artifacts (tables, plots, samples);
  `summary()` gives the numbers for the end-of-run table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from zppo_core.algo.losses import LossStats, ppo_clip_loss
from zppo_core.types import Group, Question


@dataclass
class ExtraPrompt:
    """A prompt variant of a question to roll out as its own group (kind: 'bcq', 'ncq', 'hint', ...)."""

    kind: str
    question: Question
    text: str  # full user-message text (question, candidates, closer)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepContext:
    """What a method may use inside a step.

    `teacher_sample(questions, n)`: n teacher rollouts per question on its plain prompt, graded (one group each).
    `teacher_generate(texts, max_new_tokens)`: one greedy teacher completion per user-message text (compression).
    """

    step: int
    rng: Any  # random.Random of the run (checkpointed)
    teacher_sample: Callable[[list[Question], int], list[Group]] | None = None
    teacher_generate: Callable[[list[str], int], list[str]] | None = None


class Objective(Protocol):
    def loss(self, logprobs, old_logprobs, advantages, mask, num_tokens: float) -> tuple[Any, LossStats]: ...


@dataclass
class PPOObjective:
    """Token-level PPO with clip-higher and dual clip (ZPPO.md §2)."""

    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = 10.0

    def loss(self, logprobs, old_logprobs, advantages, mask, num_tokens: float):
        return ppo_clip_loss(
            logprobs,
            old_logprobs,
            advantages,
            mask,
            eps_low=self.eps_low,
            eps_high=self.eps_high,
            dual_clip=self.dual_clip,
            num_tokens=num_tokens,
        )


class Method(Protocol):
    name: str
    needs_teacher: bool
    objective: Objective

    def select_prompts(self, new: list[Question], ctx: StepContext) -> list[Question]: ...

    def extra_prompts(self, plain: list[Group], ctx: StepContext) -> list[ExtraPrompt]: ...

    def observe(self, plain: list[Group], groups: list[Group], ctx: StepContext) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def report(self, tracker: Any, run_dir: Any, step: int) -> None: ...

    def summary(self) -> dict[str, Any]: ...
