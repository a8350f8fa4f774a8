"""Rollout engines (token ids in, completions with log-probs out) and `make_engine`, the one place they are built.

`make_engine(cfg, model, tokenizer, processor=None)` picks the engine of `rollout.engine`: the transformers
engine (CPU/GPU; with a processor it also takes images) or the vLLM engine (GPU; imported lazily, only here and in
`vllm_engine.py`). A model loaded by `zppo_core.models.load.load_model` passes its `model`, `tokenizer` and
`processor`. Over the trained student (fp32 master weights) with `model.dtype=bfloat16`, the transformers
engine samples under bf16 autocast, the training forward's compute (`zppo_core.models.precision`); the vLLM
engine runs in `model.dtype` and `load_weights` casts the synced fp32 weights to it.

`served_engine(endpoint, role=..., field=...)` is the other kind: a model behind an OpenAI-compatible API
(`rollout/openai_engine.py`; the teacher with `model.teacher_endpoint.url`, a judge with `eval.judge_endpoint.url`,
any later role with its own `EndpointConfig`), checked at once (reachable, serves the model: `EndpointError`
otherwise). `teacher_engine(cfg, loaded_teacher)` picks the served teacher or an engine over the in-process one.
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
    from zppo_core.models.precision import Precision
    from zppo_core.rollout.hf import TransformersEngine

    compute = Precision.from_config(cfg).compute_dtype
    autocast = compute if next(model.parameters()).dtype != compute else None
    return TransformersEngine(model, tokenizer, batch_size=cfg.rollout.batch_size, processor=processor,
                              autocast_dtype=autocast)


def served_engine(endpoint, *, role: str, field: str, default_model: str | None = None, check: bool = True):
    """A ChatEngine for a config `EndpointConfig` with its url set (see `openai_engine.served_engine`)."""
    from zppo_core.rollout.openai_engine import served_engine as _served

    return _served(endpoint, role=role, field=field, default_model=default_model, check=check)


def teacher_is_served(cfg) -> bool:
    return cfg.model.teacher_endpoint.url is not None


def teacher_engine(cfg, loaded=None):
    """The teacher's engine: the served teacher when `model.teacher_endpoint.url` is set (its served name defaults
    to `model.teacher`), else the configured engine over the in-process teacher `loaded` (a LoadedModel)."""
    if teacher_is_served(cfg):
        return served_engine(cfg.model.teacher_endpoint, role="teacher", field="model.teacher_endpoint",
                             default_model=cfg.model.teacher)
    if loaded is None:
        return None
    return make_engine(cfg, loaded.model, loaded.tokenizer, loaded.processor)
