"""The methods a config may name, what each switches on, and the method-dependent config checks.

The paper's GRPO variants (ZPPO.md §5) are one method class with three switches: replay buffer, BCQ, NCQ. This
table is configuration (which name means which switches) and lives here so that validating a config imports
nothing from `train`; `train/methods/registry.py` builds the method objects from it.
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


SPECS: dict[str, MethodSpec] = {
    "grpo": MethodSpec("GRPO with the paper's recipe (clip-higher, dual clip, token-level loss, I updates/step); no buffer"),
    "grpo_buffer": MethodSpec("GRPO† : GRPO + the prompt replay buffer (hard questions recirculate until they graduate)",
                              buffer=True),
    "grpo_both": MethodSpec("GRPO+Both: BCQ and NCQ reformulations of hard questions, no buffer", bcq=True, ncq=True),
    "grpo_buffer_bcq": MethodSpec("GRPO†+BCQ: buffer + BCQ (one correct teacher + one wrong student candidate)",
                                  buffer=True, bcq=True),
    "grpo_buffer_ncq": MethodSpec("GRPO†+NCQ: buffer + NCQ (all the student's wrong answers listed)",
                                  buffer=True, ncq=True),
    "zppo": MethodSpec("ZPPO = GRPO† + BCQ + NCQ: the teacher in the prompt, never in the gradient",
                       buffer=True, bcq=True, ncq=True),
}
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
    if (spec.bcq or spec.ncq) and slots(z.rho_aug, n) < 1:
        raise ValueError(
            f"zppo.rho_aug={z.rho_aug} with algo.n_new={n} gives 0 BCQ/NCQ slots per step; "
            f"raise zppo.rho_aug or algo.n_new"
        )
    if spec.buffer and z.capacity < 1:
        raise ValueError(f"zppo.capacity={z.capacity}: method '{cfg.method}' needs a buffer of capacity >= 1")
    if spec.bcq or spec.ncq:
        from zppo_core.algo.reformulate import load_template

        load_template(z.template, "full")  # raises TemplateError (a ValueError) with file/key/line
