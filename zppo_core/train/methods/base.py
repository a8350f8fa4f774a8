"""How a training method plugs into the one loop (`zppo_core.train.loop`): the `Method` protocol below.

The loop never asks which method it runs. Every member of `Method` is part of the contract:

- `name`, `needs_teacher` (the run loads a teacher only when a method asks for one), `objective` (the loss of
  the I mini-batch updates, loop step 7: PPO clip-higher + dual clip for the RL methods).
- Three step hooks, called in this order with the step's `StepContext` (one per step, made by the loop; what the
  hooks share within a step lives there, not on the method):
  `select_prompts` (step 2) picks the step's prompts from the new questions (e.g. adds replayed ones);
  `extra_prompts` (step 4) plans extra prompts from the graded plain groups, each rolled out as its own group
  (BCQ, NCQ, hint, ...), and may use the teacher through the context;
  `observe` (step 8) does the bookkeeping from the plain groups (e.g. buffer admission and graduation).
  Hooks record the step's method metrics in `ctx.metrics`; the loop logs them with its own.
- `state_dict` / `load_state_dict`: what a checkpoint keeps of the method (buffer, counters, samples), so a
  resumed run equals an uninterrupted one.
- `report(tracker, out_dir, step)`: called from the loop's step tail whenever it checkpoints (and so at the
  end): writes the method's artifacts (tables, plots, sample prompts) into `out_dir` and logs them.
- `summary()`: the numbers for the end-of-run table (`zppo train` prints it).

GRPO implements the hooks as "no replay, no extra prompts, nothing to remember"; ZPPO and its variants use all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
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
    """One step's plan, made by the loop and handed to each hook in turn: what a method may use inside a step and
    what its hooks share within it.

    `teacher_sample(questions, n)`: n teacher rollouts per question on its plain prompt, graded (one group each).
    `teacher_generate(texts, max_new_tokens, images=None)`: one greedy teacher completion per user-message text
    (compression); `images[i]` are shown with text i (its question's images: the teacher sees what the student sees).
    `replayed`: ids of the questions `select_prompts` drew from the method's memory this step.
    `metrics`: the step's method metrics, recorded by the hooks and logged by the loop after `observe`.
    """

    step: int
    rng: Any  # random.Random of the run (checkpointed)
    teacher_sample: Callable[[list[Question], int], list[Group]] | None = None
    teacher_generate: Callable[..., list[str]] | None = None
    replayed: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    def loss(self, logprobs, old_logprobs, advantages, mask, num_tokens: float) -> tuple[Any, LossStats]:
        """The mini-batch loss. With `algo.tis_cap` set the loop also passes `is_weights=` ([B, T] truncated
        importance-sampling weights, `train/old_logprobs.py`); an objective that cannot weight tokens may refuse."""
        ...


@dataclass
class PPOObjective:
    """Token-level PPO with clip-higher and dual clip (ZPPO.md §2)."""

    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = 10.0

    def loss(self, logprobs, old_logprobs, advantages, mask, num_tokens: float, is_weights=None):
        return ppo_clip_loss(
            logprobs,
            old_logprobs,
            advantages,
            mask,
            eps_low=self.eps_low,
            eps_high=self.eps_high,
            dual_clip=self.dual_clip,
            num_tokens=num_tokens,
            is_weights=is_weights,
        )


class Method(Protocol):
    """A training method (see the module docstring for when the loop calls each member)."""

    name: str  # the config's method name (logs and tables only; the loop never branches on it)
    needs_teacher: bool  # load the teacher and give the hooks `ctx.teacher_sample` / `ctx.teacher_generate`
    objective: Objective  # the loss of the mini-batch updates (loop step 7)

    def select_prompts(self, new: list[Question], ctx: StepContext) -> list[Question]:
        """Loop step 2: the step's prompts X, the new questions first (replayed ones after them)."""
        ...

    def extra_prompts(self, plain: list[Group], ctx: StepContext) -> list[ExtraPrompt]:
        """Loop step 4: extra prompts planned from the graded plain groups, each rolled out as its own group."""
        ...

    def observe(self, plain: list[Group], groups: list[Group], ctx: StepContext) -> None:
        """Loop step 8: bookkeeping from the step's plain groups (all groups given too); metrics to ctx.metrics."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint saves of the method (JSON-able or torch-saveable)."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict()` on resume."""
        ...

    def report(self, tracker: Any, out_dir: Path, step: int) -> None:
        """Write the method's artifacts into `out_dir` and log them (called whenever the loop checkpoints)."""
        ...

    def summary(self) -> dict[str, Any]:
        """Numbers for the end-of-run table ({} when there is nothing to add)."""
        ...
