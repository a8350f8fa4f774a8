"""The baselines that treat ZPPO's capped hard set differently (ZPPO.md §5; paper App. D.2), and the two controls
zppo adds to separate "teacher in the prompt" from "more rollouts" and from "teacher in the gradient".

Every one of them takes the same hard set as ZPPO: X_hard = {x : r̄_x < τ} from the plain groups, cut to the
ρ_aug·n_new hardest (ascending r̄; ties: older buffer entries, new questions, seeded RNG) — `capped_hard_set`.

- `hint` (Hint): G_T teacher rollouts per kept question; for each question with a correct one, the teacher writes
  a short hint from it (no final answer, no box; compression `none`: the hint is the leading `hint_fraction` of
  that response's reasoning), shown in ``<hint>`` tags (`build_hint`); one extra group of G_S student rollouts
  each, trained under the hint prompt.
- `prefix` (Prefix): for each kept question with a correct teacher response, its first `prefix_fraction` (40 %)
  of tokens are forced at the start of the student's response; G_S student continuations form one extra group;
  the prefix is part of the prompt ids, so it is graded with the continuation but never trained. The teacher's
  token ids are used as the student's (the tiny pair and the Qwen3.5 family share a tokenizer; a served vLLM
  teacher returns its ids).
- `grpo_rollout_matched` (GRPO† + matched rollouts, no teacher): as many extra *plain* groups as ZPPO would build
  BCQ/NCQ instances, on the *same questions*: two per kept question (the BCQ and NCQ ZPPO builds when the teacher
  solves it), hardest first, stopping at the joint cap ρ_aug·n_new. Same questions rather than merely the same
  count, because ZPPO spends its extra samples exactly there; the only difference left is what the prompt holds.
  It is ZPPO's upper bound on instances (ZPPO builds no BCQ where the teacher fails); `zppo/matched_groups` and
  ZPPO's `zppo/bcq_instances + zppo/ncq_instances` show both counts. It keeps the replay buffer, so that
  rollout-matched GRPO† vs ZPPO isolates the teacher in the prompt.
- `grpo_teacher_injected` (the drift baseline): one correct teacher response per kept question is appended to that
  question's plain group as if the student had sampled it (π_old = the student's own log-probs of it, so its
  PPO ratio starts at 1); advantages are computed over the enlarged group. The teacher's tokens thus enter the
  gradient — what ZPPO avoids.

Hint, Prefix and the drift baseline have no buffer (the paper lists them without †); a kept question whose teacher
rollouts are all wrong gets nothing. Extra groups never feed the buffer (plain accuracies only).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from zppo_core.algo.reformulate import (
    HINT_PROMPT,
    PromptTemplate,
    build_hint,
    clean_hint,
    hint_from_solution,
    load_template,
    plain_prompt,
    prefix_length,
    strip_directives,
)
from zppo_core.config.methods import slots
from zppo_core.train.methods.base import ExtraPrompt, PPOObjective, StepContext
from zppo_core.train.methods.common import Replay, ReplayState, capped_hard_set
from zppo_core.types import Completion, Group, Question, Rollout


@dataclass
class GuidedGRPO(ReplayState):
    """GRPO (± replay buffer) whose capped hard set gets one treatment; subclasses say which."""

    objective: PPOObjective
    name: str
    replay: Replay | None
    tau: float
    cap: int  # ρ_aug·n_new
    teacher_group_size: int
    closer: str
    samples_to_log: int = 6
    needs_teacher: bool = True
    kind: str = "guided"  # the extra groups' kind (logs, samples)
    extra_groups: bool = True  # rolls out extra groups of `kind` (logged as zppo/<kind>_groups, _accuracy)
    samples: list[dict[str, Any]] = field(default_factory=list)  # checkpointed

    @classmethod
    def from_config(cls, cfg, objective: PPOObjective, name: str, buffer: bool, **extra) -> "GuidedGRPO":
        z = cfg.zppo
        return cls(objective=objective, name=name, replay=Replay.from_config(cfg) if buffer else None, tau=z.tau,
                   cap=slots(z.rho_aug, cfg.algo.n_new), teacher_group_size=z.teacher_group_size,
                   closer=cfg.data.closer, samples_to_log=z.samples_to_log, **extra)

    # ---------------------------------------------------------------- hooks
    def select_prompts(self, new: list[Question], ctx: StepContext) -> list[Question]:
        return self.replay.select(new, ctx) if self.replay is not None else list(new)

    def kept(self, plain: list[Group], ctx: StepContext) -> list[Group]:
        """The capped hard set, hardest first (recorded in ctx.metrics['zppo/hard'] as the uncapped size)."""
        ctx.metrics["zppo/hard"] = float(sum(g.mean_reward < self.tau for g in plain))
        return capped_hard_set(plain, self.tau, self.cap, self.replay, ctx.rng)

    def teacher_correct(self, kept: list[Group], ctx: StepContext) -> list[Rollout | None]:
        """G_T teacher rollouts per kept question; one correct rollout per question (uniform), None if none is."""
        if not kept:
            return []
        assert ctx.teacher_sample is not None, "the method needs a teacher"
        tgroups = ctx.teacher_sample([g.question for g in kept], self.teacher_group_size)
        n = sum(len(t.rollouts) for t in tgroups)
        ctx.metrics["zppo/teacher_accuracy"] = 100.0 * sum(r.reward for t in tgroups for r in t.rollouts) / max(n, 1)
        ctx.metrics["zppo/teacher_solved_frac"] = sum(t.mean_reward > 0 for t in tgroups) / len(tgroups)
        out: list[Rollout | None] = []
        for t in tgroups:
            correct = [r for r in t.rollouts if r.reward > 0]
            out.append(ctx.rng.choice(correct) if correct else None)
        return out

    def extra_prompts(self, plain: list[Group], ctx: StepContext) -> list[ExtraPrompt]:
        return []

    def train_groups(self, groups: list[Group], ctx: StepContext) -> list[Group]:
        return groups

    def observe(self, plain: list[Group], groups: list[Group], ctx: StepContext) -> None:
        extra = [g for g in groups if g.kind == self.kind]
        ctx.metrics.setdefault("zppo/hard", float(sum(g.mean_reward < self.tau for g in plain)))
        if self.extra_groups:
            ctx.metrics[f"zppo/{self.kind}_groups"] = float(len(extra))
        if extra:
            rolls = [r for g in extra for r in g.rollouts]
            ctx.metrics[f"zppo/{self.kind}_accuracy"] = 100.0 * sum(r.reward for r in rolls) / len(rolls)  # percent
            self._keep_samples(extra)
        if self.replay is not None:
            self.replay.refresh(plain, ctx)

    def _keep_samples(self, extra: list[Group]) -> None:
        for g in extra[: max(self.samples_to_log - len(self.samples), 0)]:
            forced = g.meta.get("response_prefix")
            shown = g.prompt_text + (f"\n[response forced to start with] {forced}" if forced is not None else "")
            self.samples.append({"kind": self.kind, "question_id": g.question.id, "gold": g.question.answer,
                                 "prompt": shown,
                                 "rollouts": [{"text": r.completion.text, "reward": r.reward} for r in g.rollouts]})


@dataclass
class Hint(GuidedGRPO):
    kind: str = "hint"
    template: PromptTemplate | None = None
    compression: str = "none"  # none: hint = leading share of the teacher's reasoning; teacher: the teacher writes it
    hint_fraction: float = 0.5
    hint_max_tokens: int = 128

    def extra_prompts(self, plain: list[Group], ctx: StepContext) -> list[ExtraPrompt]:
        kept = self.kept(plain, ctx)
        pairs = [(g, r) for g, r in zip(kept, self.teacher_correct(kept, ctx)) if r is not None]
        if self.compression == "teacher" and pairs:
            assert ctx.teacher_generate is not None
            asks = [HINT_PROMPT.format(max_tokens=self.hint_max_tokens, question=strip_directives(g.question.prompt),
                                       solution=r.completion.text) for g, r in pairs]
            hints = [clean_hint(h) for h in ctx.teacher_generate(asks, self.hint_max_tokens + 16)]
        else:
            hints = [hint_from_solution(r.completion.text, self.hint_fraction) for _, r in pairs]
        assert self.template is not None
        return [ExtraPrompt("hint", g.question, build_hint(g.question.prompt, h, self.closer, self.template),
                            {"hint": h}) for (g, _), h in zip(pairs, hints) if h]


@dataclass
class Prefix(GuidedGRPO):
    kind: str = "prefix"
    prefix_fraction: float = 0.4

    def extra_prompts(self, plain: list[Group], ctx: StepContext) -> list[ExtraPrompt]:
        kept = self.kept(plain, ctx)
        out = []
        for g, r in zip(kept, self.teacher_correct(kept, ctx)):
            if r is None:
                continue
            if not r.completion.token_ids:  # a served teacher that is not vLLM returns text only
                raise RuntimeError("the Prefix baseline forces the teacher's tokens, but the teacher returned none "
                                   "(serve it with vLLM, which returns token ids, or load it in-process)")
            k = prefix_length(len(r.completion.token_ids), self.prefix_fraction)
            if k < 1:
                continue
            out.append(ExtraPrompt("prefix", g.question, plain_prompt(g.question, self.closer),
                                   prefix_ids=list(r.completion.token_ids[:k])))  # meta["response_prefix"]: loop
        return out


@dataclass
class RolloutMatched(GuidedGRPO):
    kind: str = "matched"
    needs_teacher: bool = False

    def extra_prompts(self, plain: list[Group], ctx: StepContext) -> list[ExtraPrompt]:
        out: list[ExtraPrompt] = []
        for g in self.kept(plain, ctx):
            for _ in range(2):  # ZPPO's BCQ and NCQ of this question, as plain groups
                if len(out) < self.cap:
                    out.append(ExtraPrompt("matched", g.question, plain_prompt(g.question, self.closer)))
        return out


@dataclass
class TeacherInjected(GuidedGRPO):
    kind: str = "injected"
    extra_groups: bool = False

    def train_groups(self, groups: list[Group], ctx: StepContext) -> list[Group]:
        plain = [g for g in groups if g.kind == "plain"]
        kept = self.kept(plain, ctx)
        chosen = {g.id: r for g, r in zip(kept, self.teacher_correct(kept, ctx)) if r is not None}
        if not chosen:
            ctx.metrics["zppo/injected"] = 0.0
            return groups
        order = [gid for gid in chosen]
        student_lp = ctx.student_logprobs([chosen[gid] for gid in order]) if ctx.student_logprobs else None
        out = []
        for g in groups:
            r = chosen.get(g.id)
            if r is None:
                out.append(g)
                continue
            lp = student_lp[order.index(g.id)] if student_lp is not None else r.completion.logprobs
            injected = Rollout(g.question.id, g.id, "injected", r.prompt_ids,
                               Completion(list(r.completion.token_ids), list(lp), r.completion.text,
                                          r.completion.finished), r.reward, r.extracted)
            out.append(replace(g, rollouts=list(g.rollouts) + [injected]))  # a new group: `plain` stays the student's
        ctx.metrics["zppo/injected"] = float(len(chosen))
        return out


def build_guided(cfg, objective: PPOObjective, name: str, guide: str, buffer: bool) -> GuidedGRPO:
    b = cfg.baselines
    if guide == "hint":
        return Hint.from_config(cfg, objective, name, buffer, template=load_template(cfg.zppo.template, "full"),
                                compression=cfg.zppo.compression, hint_fraction=b.hint_fraction,
                                hint_max_tokens=b.hint_max_tokens)
    if guide == "prefix":
        return Prefix.from_config(cfg, objective, name, buffer, prefix_fraction=b.prefix_fraction)
    if guide == "matched":
        return RolloutMatched.from_config(cfg, objective, name, buffer)
    if guide == "injected":
        return TeacherInjected.from_config(cfg, objective, name, buffer)
    raise ValueError(f"unknown guide {guide!r}")
