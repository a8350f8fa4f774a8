"""How a training method plugs into the one loop (`zppo_core.train.loop`): the `Method` protocol below.

The loop never asks which method it runs. Every member of `Method` is part of the contract:

- `name`, `needs_teacher` (the run loads a teacher only when a method asks for one), `objective` (the loss of
  the mini-batch updates, loop step 7: PPO clip-higher + dual clip for the RL methods, the per-token generalized
  JSD for the distillation baselines). An objective also says how many optimizer steps a rollout step makes
  (`updates_per_step`: None = the config's I; distillation: 1) and whether it compares full next-token
  distributions with the teacher's (`needs_teacher_logits`: the loop then hands it the student's and the
  teacher's logits along every trained sequence; the teacher must be an in-process model for that).
- Four step hooks, called in this order with the step's `StepContext` (one per step, made by the loop; what the
  hooks share within a step lives there, not on the method):
  `select_prompts` (step 2) picks the step's prompts from the new questions (e.g. adds replayed ones);
  `extra_prompts` (step 4) plans extra prompts from the graded plain groups, each rolled out as its own group
  (BCQ, NCQ, hint, a teacher prefix forced on the response side, more plain samples, ...), and may use the
  teacher through the context;
  `train_groups` (step 5b) says which groups the update trains on: every rolled-out group for the RL methods;
  the teacher's correct responses for Off-Distill; plain groups with a teacher response injected as one more
  rollout for the drift baseline. Advantages are computed over exactly these groups;
  `observe` (step 8) does the bookkeeping from the plain groups (e.g. buffer admission and graduation).
  Hooks record the step's method metrics in `ctx.metrics`; the loop logs them with its own.
- `state_dict` / `load_state_dict`: what a checkpoint keeps of the method (buffer, counters, samples), so a
  resumed run equals an uninterrupted one.
- `report(tracker, out_dir, step)`: called from the loop's step tail whenever it checkpoints (and so at the
  end): writes the method's artifacts (tables, plots, sample prompts) into `out_dir` and logs them.
- `summary()`: the numbers for the end-of-run table (`zppo train` prints it).

GRPO implements the hooks as "no replay, no extra prompts, train on what was sampled, nothing to remember"; ZPPO
and its variants use all; the baselines of ZPPO.md §5 live in `guided.py` (Hint, Prefix, rollout-matched GRPO,
teacher-injected GRPO) and `distill.py` (Off-/On-Distill).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from zppo_core.algo.losses import ppo_clip_loss
from zppo_core.types import Group, Question, Rollout


@dataclass
class ExtraPrompt:
    """A prompt variant of a question to roll out as its own group (kind: 'bcq', 'ncq', 'hint', 'prefix', ...).

    `prefix_ids`: token ids forced at the start of the response (the Prefix baseline: the first 40 % of a correct
    teacher response). The loop appends them to the rendered prompt, so the student samples only the continuation,
    the prefix is never part of a rollout's trained tokens (masked from the loss by construction), and the reward
    grades prefix + continuation as one response."""

    kind: str
    question: Question
    text: str  # full user-message text (question, candidates, closer)
    meta: dict[str, Any] = field(default_factory=dict)
    prefix_ids: list[int] = field(default_factory=list)


@dataclass
class StepContext:
    """One step's plan, made by the loop and handed to each hook in turn: what a method may use inside a step and
    what its hooks share within it.

    `teacher_sample(questions, n)`: n teacher rollouts per question on its plain prompt, graded (one group each).
    `teacher_generate(texts, max_new_tokens, images=None)`: one greedy teacher completion per user-message text
    (compression); `images[i]` are shown with text i (its question's images: the teacher sees what the student sees).
    `student_logprobs(rollouts)`: per-token log-probs of the rollouts' completions under the student's current
    weights (no gradient), e.g. to treat a teacher response as if the student had sampled it.
    `replayed`: ids of the questions `select_prompts` drew from the method's memory this step.
    `metrics`: the step's method metrics, recorded by the hooks and logged by the loop after `observe`.
    """

    step: int
    rng: Any  # random.Random of the run (checkpointed)
    teacher_sample: Callable[[list[Question], int], list[Group]] | None = None
    teacher_generate: Callable[..., list[str]] | None = None
    student_logprobs: Callable[[list[Rollout]], list[list[float]]] | None = None
    replayed: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)


class Objective(Protocol):
    """The loss of the update (loop step 7), called once per micro-batch.

    `logprobs` [b, T] (grad), `old_logprobs` [b, T], `advantages` [b], `mask` [b, T], `num_tokens` (the mini-batch's
    token count, the normaliser); `logits` [b, T, V] (grad) and `teacher_logits` [b, T, V] are given only when
    `needs_teacher_logits` (else None). With `algo.tis_cap` set the loop also passes `is_weights=` ([b, T] truncated
    importance-sampling weights, `train/old_logprobs.py`); an objective that cannot weight tokens may refuse.
    Returns (loss, stats); `stats.metrics()` are logged as train/* (token-weighted over the step)."""

    needs_teacher_logits: bool
    updates_per_step: int | None  # optimizer steps per rollout step; None: the config's algo.updates_per_step

    def loss(self, logprobs, old_logprobs, advantages, mask, num_tokens: float, logits=None,
             teacher_logits=None, is_weights=None) -> tuple[Any, Any]: ...


@dataclass
class PPOObjective:
    """Token-level PPO with clip-higher and dual clip (ZPPO.md §2)."""

    eps_low: float = 0.2
    eps_high: float = 0.28
    dual_clip: float | None = 10.0
    needs_teacher_logits: bool = False
    updates_per_step: int | None = None

    def loss(self, logprobs, old_logprobs, advantages, mask, num_tokens: float, logits=None, teacher_logits=None,
             is_weights=None):
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

    def train_groups(self, groups: list[Group], ctx: StepContext) -> list[Group]:
        """Loop step 5b: the groups the update trains on (and advantages are computed over), from the step's
        rolled-out groups (plain first, then extra). RL methods return them unchanged."""
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
