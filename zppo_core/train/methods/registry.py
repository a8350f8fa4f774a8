"""Method name -> builder. The loop receives a built method object and never looks at its name."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from zppo_core.config.schema import ZPPOConfig
    from zppo_core.train.methods.base import Method

METHOD_HELP: dict[str, str] = {
    "grpo": "GRPO with the paper's recipe (clip-higher, dual clip, token-level loss, I updates/step); no buffer",
}


def build_method(cfg: "ZPPOConfig") -> "Method":
    from zppo_core.train.methods.base import PPOObjective
    from zppo_core.train.methods.grpo import GRPO

    objective = PPOObjective(cfg.algo.eps_low, cfg.algo.eps_high, cfg.algo.dual_clip)
    builders = {"grpo": lambda: GRPO(objective=objective)}
    if cfg.method not in builders:
        raise ValueError(f"unknown method '{cfg.method}'; valid methods: {', '.join(METHOD_HELP)}")
    return builders[cfg.method]()
