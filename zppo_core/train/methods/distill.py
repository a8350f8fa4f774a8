"""The distillation baselines (ZPPO.md §5; paper App. D.2): the teacher in the gradient, through a per-token
generalized Jensen-Shannon divergence between the student's and the teacher's next-token distributions.

- `off_distill` (Off-Distill): every step, G_T fresh teacher rollouts per prompt x ∈ X; the correct ones are the
  training sequences (prompt = x's plain prompt, response = the teacher's tokens); the loss is the per-token JSD
  along them (`algo/distill.py`). The student's plain rollouts are still sampled, graded and logged: they only
  feed the buffer bookkeeping (`off_distill_buffer`) and the train/accuracy curve, never the gradient.
- `on_distill` (On-Distill): the student's G_S plain rollouts per x are the training sequences; the teacher scores
  every token (its full next-token distribution along the student's own samples); same loss.

One optimizer step per rollout step (`DistillObjective.updates_per_step = 1`, the paper's "one update per step"),
over all of the step's sequences (micro-batched, token-level normaliser). No reward enters the loss; advantages
are computed by the loop but unused. β (`baselines.jsd_beta`, default 0.5: the symmetric JSD) as TRL's GKD.

The loss needs the teacher's full distribution at every position, so the teacher must be an in-process model
sharing the student's tokenizer (the tiny pair; Qwen3.5 students and teacher share one). A served teacher
(an OpenAI-compatible endpoint) returns only top-k log-probs per position; zppo refuses that case rather than
approximate the JSD on a truncated support (the loop's error names the fix).
With the `†` variants the replay buffer decides which questions recur (ρ_replay·n_new replayed per step, refresh
from the student's plain accuracies), exactly as for GRPO†.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from zppo_core.algo.distill import generalized_jsd_loss
from zppo_core.train.methods.base import ExtraPrompt, StepContext
from zppo_core.train.methods.common import Replay, ReplayState
from zppo_core.types import Group, Question


@dataclass
class DistillStats:
    jsd: float  # mean generalized JSD per unmasked token of the micro-batch (nats)

    def metrics(self) -> dict[str, float]:
        return {"train/jsd": self.jsd}


@dataclass
class DistillObjective:
    """Per-token generalized JSD to the teacher (ignores rewards, advantages and π_old)."""

    beta: float = 0.5
    needs_teacher_logits: bool = True
    updates_per_step: int | None = 1

    def loss(self, logprobs, old_logprobs, advantages, mask, num_tokens: float, logits=None, teacher_logits=None,
             is_weights=None):
        # is_weights (algo.tis_cap) corrects a policy gradient for the engine/trainer mismatch of the *sampled*
        # tokens; the JSD compares full distributions along given sequences, so there is nothing to reweight
        if logits is None or teacher_logits is None:
            raise ValueError("DistillObjective.loss needs the student's and the teacher's logits")
        loss, jsd = generalized_jsd_loss(logits, teacher_logits, mask, beta=self.beta, num_tokens=num_tokens)
        return loss, DistillStats(jsd)


@dataclass
class Distill(ReplayState):
    objective: DistillObjective
    name: str
    on_policy: bool  # True: train on the student's plain rollouts; False: on the teacher's correct responses
    replay: Replay | None
    teacher_group_size: int
    samples_to_log: int = 4
    needs_teacher: bool = True
    samples: list[dict[str, Any]] = field(default_factory=list)  # checkpointed

    @classmethod
    def from_config(cls, cfg, name: str, on_policy: bool, buffer: bool) -> "Distill":
        return cls(objective=DistillObjective(cfg.baselines.jsd_beta), name=name, on_policy=on_policy,
                   replay=Replay.from_config(cfg) if buffer else None,
                   teacher_group_size=cfg.zppo.teacher_group_size, samples_to_log=cfg.zppo.samples_to_log)

    def select_prompts(self, new: list[Question], ctx: StepContext) -> list[Question]:
        return self.replay.select(new, ctx) if self.replay is not None else list(new)

    def extra_prompts(self, plain: list[Group], ctx: StepContext) -> list[ExtraPrompt]:
        return []

    def train_groups(self, groups: list[Group], ctx: StepContext) -> list[Group]:
        plain = [g for g in groups if g.kind == "plain"]
        if self.on_policy:
            ctx.metrics["distill/sequences"] = float(sum(len(g.rollouts) for g in plain))
            return plain
        assert ctx.teacher_sample is not None, "Off-Distill needs a teacher"
        tgroups = ctx.teacher_sample([g.question for g in plain], self.teacher_group_size)
        n = sum(len(t.rollouts) for t in tgroups)
        kept = []
        for t in tgroups:
            correct = [r for r in t.rollouts if r.reward > 0]
            if correct:
                kept.append(Group(id=t.id, kind="teacher", question=t.question, prompt_text=t.prompt_text,
                                  rollouts=correct))
        ctx.metrics["zppo/teacher_accuracy"] = 100.0 * sum(r.reward for t in tgroups for r in t.rollouts) / max(n, 1)
        ctx.metrics["distill/sequences"] = float(sum(len(g.rollouts) for g in kept))
        self._keep_samples(kept)
        return kept

    def _keep_samples(self, kept: list[Group]) -> None:
        for g in kept[: max(self.samples_to_log - len(self.samples), 0)]:
            self.samples.append({"kind": "teacher", "question_id": g.question.id, "gold": g.question.answer,
                                 "prompt": g.prompt_text,
                                 "rollouts": [{"text": r.completion.text, "reward": r.reward} for r in g.rollouts]})

    def observe(self, plain: list[Group], groups: list[Group], ctx: StepContext) -> None:
        if self.replay is not None:
            self.replay.refresh(plain, ctx)
