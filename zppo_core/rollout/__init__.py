"""Rollout engines (token ids in, completions with log-probs out) and `make_engine`, the one place they are built.

`make_engine(cfg, model, tokenizer, processor=None)` picks the engine of `rollout.engine`: the transformers
engine (CPU/GPU; with a processor it also takes images) or the vLLM engine (GPU; imported lazily, only here and in
`vllm_engine.py`). A model loaded by `zppo_core.models.load.load_model` passes its `model`, `tokenizer` and
`processor`.
"""

from __future__ import annotations

from typing import Any

VLM_MAX_PROMPT_LEN = 8192  # image placeholders expand to many tokens (up to 1280 per image at the paper's bounds)


def make_engine(cfg, model, tokenizer, processor: Any = None):
    """The configured engine over `model` (the student's, the teacher's or a judge's)."""
    if cfg.rollout.engine == "vllm":
        from zppo_core.rollout.vllm_engine import VLLMEngine

        if processor is not None:
            return VLLMEngine.from_model(model, tokenizer, cfg, processor=processor, max_prompt_len=VLM_MAX_PROMPT_LEN)
        return VLLMEngine.from_model(model, tokenizer, cfg)
    from zppo_core.rollout.hf import TransformersEngine

    return TransformersEngine(model, tokenizer, batch_size=cfg.rollout.batch_size, processor=processor)
