"""Pieces every method with a replay buffer or a hard set shares: `Replay` (prompt replay, buffer refresh, its
metrics, checkpoint state and reports) and `capped_hard_set` (ZPPO.md §1 steps 3 and 5).

ZPPO and the GRPO† variants, the buffered distillation baselines and the guided baselines (Hint, Prefix,
rollout-matched and teacher-injected GRPO) compose these, so "the same replay buffer" and "the same capped hard
set" of the paper's baselines (App. D.2) are the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zppo_core.algo.replay_buffer import ReplayBuffer
from zppo_core.config.methods import slots
from zppo_core.types import Group, Question


@dataclass
class Replay:
    """The prompt replay buffer as a method uses it: ρ_replay·n_new replayed questions per step (select), refresh
    from PLAIN accuracies only (refresh), metrics under zppo/* and the graduation reports."""

    buffer: ReplayBuffer
    n_new: int
    rho_replay: float
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (step, size after refresh), checkpointed

    @classmethod
    def from_config(cls, cfg) -> "Replay":
        z = cfg.zppo
        return cls(ReplayBuffer(z.capacity, z.tau, cfg.rollout.group_size), cfg.algo.n_new, z.rho_replay)

    @property
    def slots(self) -> int:
        return slots(self.rho_replay, self.n_new)

    def select(self, new: list[Question], ctx) -> list[Question]:
        """Loop step 2: X = new ∪ up to ρ_replay·n_new buffered questions, uniformly without replacement; a
        buffered question already among the new ones is not drawn twice. Sets `ctx.replayed`."""
        if not len(self.buffer):
            return list(new)
        new_ids = {q.id for q in new}
        pool = [qid for qid in self.buffer.ids() if qid not in new_ids]
        k = min(self.slots, len(pool))
        chosen = ctx.rng.sample(pool, k) if k else []
        ctx.replayed = list(chosen)
        return list(new) + [self.buffer.entry(qid).question for qid in chosen]

    def refresh(self, plain: list[Group], ctx) -> None:
        """Loop step 8: admit plain r̄ < τ, graduate r̄ ≥ τ, FIFO-evict; metrics zppo/buffer_size, admitted, ..."""
        report = self.buffer.refresh(ctx.step, {g.question.id: (g.question, g.mean_reward) for g in plain})
        m = ctx.metrics
        m["zppo/replayed"] = float(len(ctx.replayed))
        m["zppo/buffer_size"] = float(report.size)
        m["zppo/admitted"] = float(len(report.admitted))
        m["zppo/graduated"] = float(len(report.graduated))
        m["zppo/evicted"] = float(len(report.evicted))
        self.sizes.append((ctx.step, report.size))

    def age_key(self, qid: str) -> tuple[int, int]:
        """Pre-cap tie-break: buffered questions first, older admissions first; then questions not buffered."""
        return (0, self.buffer.age_key(qid)) if qid in self.buffer else (1, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict(), "buffer_sizes": [list(x) for x in self.sizes]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("buffer") is not None:
            self.buffer.load_state_dict(state["buffer"])
        self.sizes = [tuple(x) for x in state.get("buffer_sizes", [])]

    def summary(self) -> dict[str, Any]:
        return {"fates_by_entry_bin": self.buffer.fates_by_entry_bin(), "buffer_size": len(self.buffer)}


def capped_hard_set(plain: list[Group], tau: float, cap: int, replay: Replay | None, rng) -> list[Group]:
    """The hard set X_hard = {x : r̄_x < τ} cut to its `cap` hardest (ascending r̄; ties: older buffer entries
    first, then new questions, then the run's seeded RNG), hardest first (ZPPO.md §1 steps 3 and 5)."""
    hard = [g for g in plain if g.mean_reward < tau]

    def key(g: Group):
        age = replay.age_key(g.question.id) if replay is not None else (1, 0)
        return (g.mean_reward, *age, rng.random())

    keyed = [(key(g), i, g) for i, g in enumerate(hard)]  # draw the tie-break numbers in a fixed order
    return [g for _, _, g in sorted(keyed, key=lambda t: (t[0], t[1]))][:cap]


class ReplayState:
    """The checkpoint state and reports of a method that holds `replay` (a `Replay`, or None without a buffer) and
    `samples` (the sample prompts it logs): ZPPO, the distillation and the guided baselines."""

    replay: Replay | None
    samples: list[dict[str, Any]]

    def state_dict(self) -> dict[str, Any]:
        return {
            **(self.replay.state_dict() if self.replay is not None else {"buffer": None, "buffer_sizes": []}),
            "samples": json.loads(json.dumps(self.samples)),  # a deep, JSON-clean copy
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.replay is not None:
            self.replay.load_state_dict(state)
        self.samples = list(state.get("samples", []))

    def summary(self) -> dict[str, Any]:
        return self.replay.summary() if self.replay is not None else {}

    def report(self, tracker: Any, out_dir: Path, step: int) -> None:
        report_replay(tracker, out_dir, self.replay, self.samples)


def report_replay(tracker: Any, out_dir: Path, replay: Replay | None, samples: list[dict[str, Any]]) -> None:
    """The graduation reports of a buffered method and the sample prompts of any method (tracking/graduation)."""
    from zppo_core.tracking.graduation import write_reports

    write_reports(
        tracker,
        Path(out_dir),
        table=replay.buffer.graduation_table() if replay is not None else None,
        fates_by_bin=replay.buffer.fates_by_entry_bin() if replay is not None else None,
        buffer_sizes=replay.sizes if replay is not None else [],
        samples=samples,
    )
