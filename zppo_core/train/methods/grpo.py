"""GRPO with the paper's full recipe (ZPPO.md §2, §5): plain prompts only, no buffer, no reformulation.

Everything that makes it "the paper's GRPO" (clip-higher, dual clip, token-level loss, I mini-batch updates,
two-step advantage over non-trivial groups) lives in the shared loop and `PPOObjective`; this method only
says "no replay, no extra prompts, nothing to remember".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zppo_core.train.methods.base import ExtraPrompt, PPOObjective, StepContext
from zppo_core.types import Group, Question


@dataclass
class GRPO:
    objective: PPOObjective = field(default_factory=PPOObjective)
    name: str = "grpo"
    needs_teacher: bool = False

    def select_prompts(self, new: list[Question], ctx: StepContext) -> list[Question]:
        return list(new)

    def extra_prompts(self, plain: list[Group], ctx: StepContext) -> list[ExtraPrompt]:
        return []

    def train_groups(self, groups: list[Group], ctx: StepContext) -> list[Group]:
        return groups

    def observe(self, plain: list[Group], groups: list[Group], ctx: StepContext) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def report(self, tracker: Any, out_dir: Path, step: int) -> None:
        pass

    def summary(self) -> dict[str, Any]:
        return {}
