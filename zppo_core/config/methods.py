"""The methods a config may name, what each switches on, and the method-dependent config checks.

The paper's GRPO variants (ZPPO.md §5) are one method class with three switches: replay buffer, BCQ, NCQ. The
baselines add two: `guide` (what else the capped hard set gets: a teacher hint in the prompt, a forced teacher
prefix, more plain rollouts, or a teacher response injected into its group) and `distill` (off- or on-policy
distillation instead of RL). This table is configuration (which name means which switches) and lives here so
that validating a config imports nothing from `train`; `train/methods/registry.py` builds the method objects
from it. `TABLE` is the order of the paper's comparison (`zppo reproduce`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from zppo_core.config.schema import ZPPOConfig


@dataclass(frozen=True)
class MethodSpec:
    help: str
    buffer: bool = False
    bcq: bool = False
    ncq: bool = False
    guide: str | None = None  # hint | prefix | matched | injected: the capped hard set's treatment (guided.py)
    distill: str | None = None  # off | on: a distillation baseline (distill.py)
    label: str = ""  # the row name in the comparison table (the paper's notation)

    @property
    def uses_hard_set(self) -> bool:
        return self.bcq or self.ncq or self.guide is not None

    @property
    def needs_teacher(self) -> bool:
        return self.bcq or self.distill is not None or self.guide in ("hint", "prefix", "injected")


SPECS: dict[str, MethodSpec] = {
    "grpo": MethodSpec("GRPO with the paper's recipe (clip-higher, dual clip, token-level loss, I updates/step); no buffer",
                       label="GRPO"),
    "grpo_buffer": MethodSpec("GRPO† : GRPO + the prompt replay buffer (hard questions recirculate until they graduate)",
                              buffer=True, label="GRPO†"),
    "grpo_both": MethodSpec("GRPO+Both: BCQ and NCQ reformulations of hard questions, no buffer", bcq=True, ncq=True,
                            label="GRPO+Both"),
    "grpo_buffer_bcq": MethodSpec("GRPO†+BCQ: buffer + BCQ (one correct teacher + one wrong student candidate)",
                                  buffer=True, bcq=True, label="GRPO†+BCQ"),
    "grpo_buffer_ncq": MethodSpec("GRPO†+NCQ: buffer + NCQ (all the student's wrong answers listed)",
                                  buffer=True, ncq=True, label="GRPO†+NCQ"),
    "zppo": MethodSpec("ZPPO = GRPO† + BCQ + NCQ: the teacher in the prompt, never in the gradient",
                       buffer=True, bcq=True, ncq=True, label="ZPPO"),
    "off_distill": MethodSpec("Off-Distill: per-token JSD to the teacher along its correct responses to the step's "
                              "questions (G_T per question), one update per step; no buffer", distill="off",
                              label="Off-Distill"),
    "off_distill_buffer": MethodSpec("Off-Distill†: Off-Distill with the replay buffer choosing which questions recur",
                                     buffer=True, distill="off", label="Off-Distill†"),
    "on_distill": MethodSpec("On-Distill: the student samples G_S responses, the teacher scores every token, per-token "
                             "generalized JSD, one update per step; no buffer", distill="on", label="On-Distill"),
    "on_distill_buffer": MethodSpec("On-Distill†: On-Distill with the replay buffer", buffer=True, distill="on",
                                    label="On-Distill†"),
    "hint": MethodSpec("Hint: the teacher's short hint (no final answer) in the prompt of the capped hard set, one "
                       "extra group each; no buffer", guide="hint", label="Hint"),
    "prefix": MethodSpec("Prefix: the first 40% of a correct teacher response forced as the response's start for the "
                         "capped hard set (prefix masked from the loss), one extra group each; no buffer",
                         guide="prefix", label="Prefix"),
    "grpo_rollout_matched": MethodSpec("GRPO† + as many extra plain groups on the capped hard set as ZPPO builds "
                                       "BCQ/NCQ instances (no teacher): the control for 'more rollouts'",
                                       buffer=True, guide="matched", label="GRPO† rollout-matched"),
    "grpo_teacher_injected": MethodSpec("GRPO with a correct teacher response injected into the plain group of each "
                                        "capped hard question as if the student had sampled it (the drift baseline)",
                                        guide="injected", label="GRPO teacher-injected"),
}
TABLE: tuple[str, ...] = tuple(SPECS)
METHOD_HELP: dict[str, str] = {name: spec.help for name, spec in SPECS.items()}


def slots(rho: float, n_new: int) -> int:
    """ρ·n_new rounded half up (0.25·384 = 96 replayed questions / BCQ+NCQ instances per step in the paper)."""
    return int(rho * n_new + 0.5)


def validate(cfg: "ZPPOConfig") -> None:
    """Method-dependent checks (raise ValueError with one line naming the fix); no compute."""
    spec = SPECS.get(cfg.method)
    if spec is None:
        raise ValueError(f"unknown method '{cfg.method}'; valid methods: {', '.join(SPECS)}")
    z, n = cfg.zppo, cfg.algo.n_new
    if spec.buffer and slots(z.rho_replay, n) < 1:
        raise ValueError(
            f"zppo.rho_replay={z.rho_replay} with algo.n_new={n} gives 0 replayed questions per step; "
            f"raise zppo.rho_replay or algo.n_new (method '{cfg.method}' uses the buffer)"
        )
    if spec.uses_hard_set and slots(z.rho_aug, n) < 1:
        what = "BCQ/NCQ" if (spec.bcq or spec.ncq) else "hard-set"
        raise ValueError(
            f"zppo.rho_aug={z.rho_aug} with algo.n_new={n} gives 0 {what} slots per step; "
            f"raise zppo.rho_aug or algo.n_new (method '{cfg.method}' uses the capped hard set)"
        )
    if spec.distill is not None and cfg.model.teacher_endpoint.url is not None:
        raise ValueError(
            f"method '{cfg.method}' compares the student's full next-token distributions with the teacher's, but a "
            "served teacher (model.teacher_endpoint.url) returns only top-k log-probs; --set "
            "model.teacher_endpoint.url=null to load the teacher in-process, or choose another method"
        )
    if spec.buffer and z.capacity < 1:
        raise ValueError(f"zppo.capacity={z.capacity}: method '{cfg.method}' needs a buffer of capacity >= 1")
    if spec.bcq or spec.ncq or spec.guide == "hint":
        from zppo_core.algo.reformulate import load_template

        load_template(z.template, "full")  # raises TemplateError (a ValueError) with file/key/line
