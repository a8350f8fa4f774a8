"""Method name -> built method object. The loop receives the object and never looks at its name.

Which names exist and what each switches on is configuration (`zppo_core.config.methods`); this module only
builds: a distillation baseline when `distill` is set (distill.py), a guided baseline when `guide` is set
(guided.py: Hint, Prefix, rollout-matched and teacher-injected GRPO), GRPO when no switch is on, else one
`ZPPOMethod` with the spec's buffer/BCQ/NCQ switches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from zppo_core.config.methods import SPECS, validate

if TYPE_CHECKING:  # pragma: no cover
    from zppo_core.config.schema import ZPPOConfig
    from zppo_core.train.methods.base import Method


def build_method(cfg: "ZPPOConfig") -> "Method":
    from zppo_core.train.methods.base import PPOObjective
    from zppo_core.train.methods.grpo import GRPO

    validate(cfg)
    objective = PPOObjective(cfg.algo.eps_low, cfg.algo.eps_high, cfg.algo.dual_clip)
    spec = SPECS[cfg.method]
    if spec.distill is not None:
        from zppo_core.train.methods.distill import Distill

        return Distill.from_config(cfg, cfg.method, on_policy=spec.distill == "on", buffer=spec.buffer)
    if spec.guide is not None:
        from zppo_core.train.methods.guided import build_guided

        return build_guided(cfg, objective, cfg.method, spec.guide, spec.buffer)
    if not (spec.buffer or spec.bcq or spec.ncq):
        return GRPO(objective=objective)
    from zppo_core.train.methods.zppo import ZPPOMethod

    return ZPPOMethod.from_config(cfg, objective, name=cfg.method, buffer=spec.buffer, bcq=spec.bcq, ncq=spec.ncq)
