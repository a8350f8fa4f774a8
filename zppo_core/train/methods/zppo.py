"""ZPPO and the GRPO variants that share its machinery (ZPPO.md §1, §3, §4, §5).

One class, three switches: `buffer` (prompt replay), `bcq` (one correct teacher + one wrong student candidate),
`ncq` (all the student's wrong answers listed). zppo = all three; grpo_buffer = buffer only; grpo_both = BCQ+NCQ
without buffer; grpo_buffer_bcq / grpo_buffer_ncq = buffer + one of them.

Per rollout step, in the loop's terms:
- select_prompts (step 2): X = new ∪ ρ_replay·n_new questions sampled uniformly (without replacement) from
  the buffer; a replayed question already among the new ones is not drawn twice.
- extra_prompts (step 4): hard set X_hard = {x : r̄_x < τ} from the plain groups; pre-cap keeps the ρ_aug·n_new
  hardest (ascending r̄; ties: older buffer entries first, then new questions, then the run's seeded RNG);
  G_T teacher rollouts on the kept questions (BCQ only), correct ones kept; candidates compressed (teacher) or
  truncated (none); then, in ascending r̄ order, BCQ (if x has a correct teacher rollout whose compressed form
  keeps the answer, and a wrong student rollout) then NCQ, stopping when ρ_aug·n_new instances exist in total
  (joint post-cap, BCQ first). Each instance is its own group, trained under its reformulated prompt.
- observe (step 8): buffer refresh from PLAIN accuracies only (admit < τ, graduate ≥ τ, FIFO-evict).

Teacher answers and candidates are drawn afresh on every visit; the buffer stores questions only.
[decision] compressed student candidates must keep their (wrong) answer; if compression changes it, the raw
candidate truncated to the cap is used instead, so compression can never leak a correct answer into NCQ/BCQ.

Compression replies (`parse_summary`): the text of the LAST non-empty `<summary>` outside any thinking block (a
`<think>...</think>` block, a leading `...</think>` whose `<think>` the chat template wrote, or an unclosed
`<think>` to the end of the reply; a Qwen3-family teacher in thinking mode writes its summary after them). A
reply without one falls back to the raw candidate truncated to `candidate_max_chars`, as does a student
candidate whose summary changed its final answer: `zppo/compression_fallback_frac` is the share of compressed
candidates that fell back either way. A teacher candidate whose summary lost the answer is not shown (another
correct teacher rollout, or no BCQ for that question), as before.

Metrics of the reformulated groups, conditioned as the paper's Tabs. 16-17: `zppo/bcq_match_positive` = the
share of CORRECT BCQ rollouts whose final answer equals the correct (teacher) candidate's, `zppo/bcq_match_negative`
= the share of WRONG BCQ rollouts whose answer equals the wrong (student) candidate's, `zppo/ncq_match_negative` =
the share of WRONG NCQ rollouts that repeat one of the listed wrong answers (absent in a step without such
rollouts). The same counts over all rollouts of the kind are `zppo/*_match_*_all`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from zppo_core.algo.reformulate import (
    PromptTemplate,
    boxed_answer,
    build_bcq,
    build_ncq,
    load_template,
    strip_directives,
    truncate_candidate,
)
from zppo_core.algo.replay_buffer import ReplayBuffer
from zppo_core.config.methods import slots
from zppo_core.tasks.graders import answers_equal
from zppo_core.train.methods.base import ExtraPrompt, PPOObjective, StepContext
from zppo_core.train.methods.common import Replay, ReplayState, capped_hard_set
from zppo_core.types import Group, Question

COMPRESS_PROMPT = (
    "Rewrite the following solution in at most 5 lines (at most {max_tokens} tokens), keeping only the essential "
    "steps and the final \\boxed{{}} answer exactly as it is. Put the rewrite inside <summary></summary>.\n\n"
    "Question: {question}\n\nSolution:\n{solution}"
)
_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)


def outside_thinking(text: str) -> str:
    """`text` without its thinking: closed `<think>` blocks, everything before a `</think>` that has no opener
    (the chat template opened the block in the prompt) and everything after an unclosed `<think>`."""
    first_close, first_open = text.find("</think>"), text.find("<think>")
    if first_close >= 0 and (first_open < 0 or first_close < first_open):
        text = text[first_close + len("</think>"):]
    text = _THINK_BLOCK.sub("", text)
    cut = text.find("<think>")
    return text if cut < 0 else text[:cut]


def parse_summary(text: str) -> str | None:
    """The last non-empty `<summary>` of a compression reply outside any thinking, stripped (up to its
    `</summary>`, or to the end when unclosed); None when there is none (the caller falls back)."""
    parts = outside_thinking(text).split("<summary>")[1:]
    bodies = [p.split("</summary>", 1)[0].strip() for p in parts]
    return next((b for b in reversed(bodies) if b), None)


@dataclass
class ZPPOMethod(ReplayState):
    objective: PPOObjective
    name: str
    replay: Replay | None
    bcq: bool
    ncq: bool
    n_new: int
    tau: float
    rho_replay: float
    rho_aug: float
    teacher_group_size: int
    compression: str
    candidate_max_chars: int
    compression_max_tokens: int
    closer: str
    template: PromptTemplate
    samples_to_log: int = 6
    needs_teacher: bool = False
    # state (checkpointed; the buffer's lives in `replay`)
    samples: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_config(cls, cfg, objective: PPOObjective, name: str, buffer: bool, bcq: bool, ncq: bool) -> "ZPPOMethod":
        z = cfg.zppo
        return cls(
            objective=objective,
            name=name,
            replay=Replay.from_config(cfg) if buffer else None,
            bcq=bcq,
            ncq=ncq,
            n_new=cfg.algo.n_new,
            tau=z.tau,
            rho_replay=z.rho_replay,
            rho_aug=z.rho_aug,
            teacher_group_size=z.teacher_group_size,
            compression=z.compression,
            candidate_max_chars=z.candidate_max_chars,
            compression_max_tokens=z.compression_max_tokens,
            closer=cfg.data.closer,
            template=load_template(z.template, "full"),
            samples_to_log=z.samples_to_log,
            needs_teacher=bcq or (ncq and z.compression == "teacher"),
        )

    @property
    def buffer(self) -> ReplayBuffer | None:
        return self.replay.buffer if self.replay is not None else None

    @property
    def replay_slots(self) -> int:
        return self.replay.slots if self.replay is not None else 0

    @property
    def aug_slots(self) -> int:
        return slots(self.rho_aug, self.n_new) if (self.bcq or self.ncq) else 0

    # ---------------------------------------------------------------- step 2
    def select_prompts(self, new: list[Question], ctx: StepContext) -> list[Question]:
        return self.replay.select(new, ctx) if self.replay is not None else list(new)

    # ---------------------------------------------------------------- step 4
    def _compress(self, ctx: StepContext, items: list[tuple[Question, str]]) -> list[tuple[str, bool]]:
        """(candidate text, fell back) in order: compressed by the teacher, or the raw text truncated (mode none,
        or no summary in the teacher's reply: a fallback)."""
        if self.compression == "none" or not items:
            return [(truncate_candidate(text, self.candidate_max_chars), False) for _, text in items]
        assert ctx.teacher_generate is not None
        prompts = [
            COMPRESS_PROMPT.format(max_tokens=self.compression_max_tokens, question=strip_directives(q.prompt),
                                   solution=text)
            for q, text in items
        ]
        outs = ctx.teacher_generate(prompts, self.compression_max_tokens + 16,
                                   images=[q.images for q, _ in items])
        parsed = [parse_summary(o) for o in outs]
        return [(p, False) if p is not None else (truncate_candidate(raw, self.candidate_max_chars), True)
                for p, (_, raw) in zip(parsed, items)]

    def extra_prompts(self, plain: list[Group], ctx: StepContext) -> list[ExtraPrompt]:
        hard = [g for g in plain if g.mean_reward < self.tau]
        ctx.metrics["zppo/hard"] = float(len(hard))
        ctx.metrics["zppo/replayed"] = float(len(ctx.replayed))
        cap = self.aug_slots
        if cap == 0 or not hard:
            return []
        kept = capped_hard_set(plain, self.tau, cap, self.replay, ctx.rng)  # pre-cap
        # teacher rollouts (BCQ only): G_T per kept question, correct ones kept
        teacher_correct: dict[int, list[str]] = {}
        if self.bcq:
            assert ctx.teacher_sample is not None
            tgroups = ctx.teacher_sample([g.question for g in kept], self.teacher_group_size)
            n_roll = sum(len(t.rollouts) for t in tgroups)
            ctx.metrics["zppo/teacher_accuracy"] = 100.0 * sum(t.mean_reward * len(t.rollouts) for t in tgroups) / max(
                n_roll, 1
            )
            ctx.metrics["zppo/teacher_solved_frac"] = sum(t.mean_reward > 0 for t in tgroups) / max(
                len(tgroups), 1
            )
            for g, t in zip(kept, tgroups):
                teacher_correct[g.id] = [r.completion.text for r in t.rollouts if r.reward > 0]
        # candidates: one correct teacher text per question (shuffled fallbacks), wrong student texts
        plans = []
        to_compress: list[tuple[Question, str]] = []
        for g in kept:
            wrong = [r.completion.text for r in g.rollouts if r.reward <= 0]
            correct = list(teacher_correct.get(g.id, []))
            ctx.rng.shuffle(correct)
            bcq_wrong = ctx.rng.choice(wrong) if (self.bcq and wrong and correct) else None
            # the wrong candidates that can be shown: every one for NCQ, else only BCQ's
            shown_wrong = wrong if self.ncq else ([bcq_wrong] if bcq_wrong else [])
            plans.append((g, len(correct), shown_wrong, bcq_wrong))
            to_compress += [(g.question, text) for text in correct + shown_wrong]
        done = self._compress(ctx, to_compress)  # one batch, consumed in the same order
        fallbacks = sum(fell for _, fell in done)
        compressed = iter(done)
        instances: list[ExtraPrompt] = []
        for g, n_correct, shown_wrong, bcq_wrong in plans:
            comp_correct = [next(compressed)[0] for _ in range(n_correct)]
            comp_wrong = {}
            for raw in shown_wrong:
                text, fell = next(compressed)
                comp_wrong[raw] = self._keep_wrong(raw, text)
                fallbacks += not fell and comp_wrong[raw] != text  # the summary changed the wrong answer
            if len(instances) >= cap:
                break
            if self.bcq and bcq_wrong is not None:
                raw_answers = [boxed_answer(t) for t in teacher_correct.get(g.id, [])]
                teacher_text = next((c for c in comp_correct if _keeps_answer(c, g.question.answer, raw_answers)),
                                    None)
                if teacher_text is not None:
                    text, meta = build_bcq(g.question.prompt, teacher_text, comp_wrong[bcq_wrong], ctx.rng,
                                           self.closer, self.template)
                    meta["gold"] = g.question.answer
                    instances.append(ExtraPrompt("bcq", g.question, text, meta))
            if self.ncq and shown_wrong and len(instances) < cap:
                text, meta = build_ncq(g.question.prompt, [comp_wrong[w] for w in shown_wrong], self.closer,
                                       self.template)
                instances.append(ExtraPrompt("ncq", g.question, text, meta))
        if self.compression != "none" and to_compress:
            ctx.metrics["zppo/compression_fallback_frac"] = fallbacks / len(to_compress)
        return instances[:cap]

    def _keep_wrong(self, raw: str, compressed: str) -> str:
        if self.compression == "none":
            return compressed
        same = (boxed_answer(raw) or "") == (boxed_answer(compressed) or "")
        return compressed if same else truncate_candidate(raw, self.candidate_max_chars)

    # ---------------------------------------------------------------- step 5b
    def train_groups(self, groups: list[Group], ctx: StepContext) -> list[Group]:
        return groups  # plain, BCQ and NCQ groups, each under the prompt that produced it

    # ---------------------------------------------------------------- step 8
    def observe(self, plain: list[Group], groups: list[Group], ctx: StepContext) -> None:
        m = ctx.metrics
        m.setdefault("zppo/hard", float(sum(g.mean_reward < self.tau for g in plain)))
        bcq = [g for g in groups if g.kind == "bcq"]
        ncq = [g for g in groups if g.kind == "ncq"]
        m["zppo/bcq_instances"] = float(len(bcq))
        m["zppo/ncq_instances"] = float(len(ncq))
        if bcq:
            rolls = [r for g in bcq for r in g.rollouts]
            m["zppo/bcq_accuracy"] = 100.0 * sum(r.reward for r in rolls) / len(rolls)  # percent
            pos = [r for g in bcq for r in g.rollouts if _matches(r, _candidate_answer(g, "teacher"))]
            neg = [r for g in bcq for r in g.rollouts if _matches(r, _candidate_answer(g, "student"))]
            m.update(_match_rates("bcq_match_positive", pos, rolls, correct=True))
            m.update(_match_rates("bcq_match_negative", neg, rolls, correct=False))
        if ncq:
            rolls = [r for g in ncq for r in g.rollouts]
            m["zppo/ncq_accuracy"] = 100.0 * sum(r.reward for r in rolls) / len(rolls)  # percent
            hit = [r for g in ncq for r in g.rollouts
                   if any(_matches(r, a) for a in g.meta["wrong_answers"] if a is not None)]
            m.update(_match_rates("ncq_match_negative", hit, rolls, correct=False))
        self._keep_samples(bcq, ncq)
        if self.replay is not None:
            self.replay.refresh(plain, ctx)

    def _keep_samples(self, bcq: list[Group], ncq: list[Group]) -> None:
        for kind, gs in (("bcq", bcq), ("ncq", ncq)):
            have = sum(s["kind"] == kind for s in self.samples)
            for g in gs[: max(self.samples_to_log - have, 0)]:
                self.samples.append({
                    "kind": kind,
                    "question_id": g.question.id,
                    "gold": g.question.answer,
                    "prompt": g.prompt_text,
                    "rollouts": [{"text": r.completion.text, "reward": r.reward} for r in g.rollouts],
                })


def _keeps_answer(candidate: str, gold: str, raw_answers: list[str | None] = ()) -> bool:
    """The candidate's final answer equals the gold, or the answer of a correct raw teacher rollout (a judged
    free-form answer need not rule-match the gold)."""
    ans = boxed_answer(candidate)
    return ans is not None and (answers_equal(ans, gold) or any(a is not None and answers_equal(ans, a)
                                                                for a in raw_answers))


def _candidate_answer(g: Group, source: str) -> str | None:
    """The final answer of the BCQ candidate from `source` ("teacher" | "student")."""
    return dict(zip(g.meta["order"], g.meta["candidate_answers"])).get(source)


def _matches(r, answer: str | None) -> bool:
    return r.extracted is not None and answer is not None and answers_equal(r.extracted, answer)


def _match_rates(name: str, matched: list, rolls: list, correct: bool) -> dict[str, float]:
    """zppo/<name>: matched share among the correct (or wrong) rollouts, absent when there are none (the paper's
    conditioning); zppo/<name>_all: among all rollouts."""
    ids = {id(r) for r in matched}
    cond = [r for r in rolls if (r.reward > 0) == correct]
    out = {f"zppo/{name}_all": len(ids) / len(rolls)}
    if cond:
        out[f"zppo/{name}"] = sum(id(r) in ids for r in cond) / len(cond)
    return out
