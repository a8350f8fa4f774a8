"""What travels between ranks during a step, and an engine whose calls are split over the ranks.

- `light(group)`: a graded group as the other ranks receive it (`Dist.map_shards`): its rollouts keep question,
  kind, text, reward, extracted answer and `finished`, but drop the prompt and completion token ids, log-probs and
  image inputs, which only the rank that trains on the group needs. The method's hooks (hard set, BCQ/NCQ candidates, buffer
  refresh) read texts and rewards only.
- `ShardedEngine(engine, dist)`: every rank calls `generate` with the same prompts (periodic and held-out
  evaluation, the teacher's compressions); each rank samples its round-robin share with its own engine and every
  rank gets all completions back, in order. A served engine (`generate_chat`, a ChatEngine) is split the same way,
  and the wrapper is a ChatEngine exactly when the wrapped engine is one. One rank: the wrapped engine's calls,
  unchanged.

Duck-typed on `zppo_core.types` (dataclasses) and the Engine protocol; nothing here imports them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from zppo_core.dist import Dist


def light(group: Any) -> Any:
    """`group` without prompt/completion token ids and log-probs (see the module docstring)."""
    return replace(group, rollouts=[
        replace(r, prompt_ids=[], prompt_mm=None, completion=replace(r.completion, token_ids=[], logprobs=[]))
        for r in group.rollouts])


class ShardedEngine:
    """An engine whose `generate` / `generate_multimodal` calls are split over the ranks (module docstring)."""

    def __init__(self, engine: Any, dist: Dist):
        self.engine, self.dist = engine, dist
        if hasattr(engine, "generate_chat"):  # an instance attribute, so isinstance(self, ChatEngine) follows engine
            self.generate_chat = lambda conversations, params, **kw: dist.map_shards(
                conversations, lambda mine: engine.generate_chat(mine, params, **kw))
        if hasattr(engine, "generate_rendered"):  # rendered prompts with images (rollout.base.generate_prompts)
            self.generate_rendered = lambda prompts, params: dist.map_shards(
                prompts, lambda mine: engine.generate_rendered(mine, params))

    def generate(self, prompts, params):
        return self.dist.map_shards(prompts, lambda mine: self.engine.generate(mine, params))

    def generate_multimodal(self, requests, params):
        return self.dist.map_shards(requests, lambda mine: self.engine.generate_multimodal(mine, params))

    def __getattr__(self, name: str):
        if name in ("engine", "dist"):  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.engine, name)
