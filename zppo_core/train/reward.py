"""The training reward (ZPPO.md §2): the rule grader first, the LLM judge for what it cannot decide.

Every completion is graded by the rule grader (`tasks.graders.grade`: the last ``\\boxed{}`` against the gold by
LaTeX/numeric equivalence). With a judge (`reward.judge: teacher | <model dir>`), a completion goes to the judge
when the rule grader cannot decide it:

- no ``\\boxed{}`` answer parses (none, or the last one is unclosed), or
- the question's answer type is free-form (a JSONL row with ``"answer_type": "free_form"``: OCR, open-ended
  answers, where a string mismatch says nothing) and the rule grader did not already find it correct (an
  equivalent boxed answer is correct without asking).

The judge is the one `zppo eval` uses (`suites.scoring.judge_verdicts` with the paper's strict JSON verdict
`{"correct": true|false}`, greedy; a malformed reply is wrong), asked once per batch of completions: the loop
grades each rollout phase of a step (plain, teacher, extra) in one batch, so one judge call per phase (the hard
set needs the plain rewards before the teacher and the extra prompts can be planned). Without a judge the rule
grader's verdict stands (tiny scale: every answer is a number).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zppo_core.algo.reformulate import strip_directives
from zppo_core.suites.data import EvalItem
from zppo_core.suites.scoring import judge_verdicts
from zppo_core.tasks.graders import grade
from zppo_core.tasks.jsonl_data import FREE_FORM
from zppo_core.types import Question


def is_free_form(question: Question) -> bool:
    return isinstance(question.meta, dict) and question.meta.get("answer_type") == FREE_FORM


def needs_judge(question: Question, reward: float, extracted: str | None) -> bool:
    """True when the rule grader cannot decide: no boxed answer parsed, or a free-form answer it did not accept."""
    return extracted is None or (is_free_form(question) and reward <= 0)


def judge_item(question: Question) -> EvalItem:
    """The question as the judge sees it: the bare question (directives stripped) and the gold answer."""
    meta: dict[str, Any] = {"question": strip_directives(question.prompt)}
    if isinstance(question.meta, dict) and question.meta.get("judge_answer"):
        meta["judge_answer"] = question.meta["judge_answer"]
    return EvalItem(id=question.id, prompt=question.prompt, answer=question.answer, meta=meta)


@dataclass(frozen=True)
class Graded:
    reward: float  # 1.0 or 0.0
    extracted: str | None  # the last boxed answer (None: none parsed)
    judged: bool  # the judge decided this reward


class Rewarder:
    """Grades (question, response) pairs: rule grader, then one batched judge call for the undecided ones.

    `judge`: an engine (the teacher's, or a judge model's) or None (rule grader only); `render`: the judge's
    user message -> prompt token ids (its chat template with the judge role's keywords)."""

    def __init__(self, judge: Any = None, render: Callable[[str], list[int]] | None = None,
                 max_new_tokens: int = 256):
        if judge is not None and render is None:
            raise ValueError("a judge engine needs its render function (the judge's chat template)")
        self.judge, self.render, self.max_new_tokens = judge, render, max_new_tokens

    def grade(self, pairs: Sequence[tuple[Question, str]]) -> list[Graded]:
        out = []
        for q, text in pairs:
            reward, extracted = grade(text, q.answer)
            out.append(Graded(reward, extracted, False))
        if self.judge is None:
            return out
        undecided = [i for i, (q, _) in enumerate(pairs) if needs_judge(q, out[i].reward, out[i].extracted)]
        if not undecided:
            return out
        verdicts = judge_verdicts(self.judge, self.render, [(judge_item(pairs[i][0]), pairs[i][1]) for i in undecided],
                                  max_new_tokens=self.max_new_tokens)
        for i, v in zip(undecided, verdicts, strict=True):
            out[i] = Graded(1.0 if v.correct else 0.0, out[i].extracted, True)
        return out

    def metrics(self, rollouts: Sequence[Any]) -> dict[str, float]:
        """train/judged_frac: the share of the step's student rollouts the judge decided (only with a judge)."""
        if self.judge is None:
            return {}
        return {"train/judged_frac": sum(bool(r.judged) for r in rollouts) / max(len(rollouts), 1)}
