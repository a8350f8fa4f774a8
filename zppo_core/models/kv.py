"""What a model's forward supports for KV-cache reuse: which decode path of the transformers engine can drive it
(`rollout/hf.py`) and whether the training forward may run a prompt shared by several rows once and expand its
cache to them (`models/logprobs.py`). Both need the same thing of the model: a text decoder whose forward takes
positions, `logits_to_keep` and a cache, and (for "slots" and the shared training prompt) full attention in every
layer with sdpa or eager attention, so that a cache row is one row's keys and values and nothing else."""

from __future__ import annotations

import inspect

# decode paths, fastest first: "slots" (preallocated KV slots and 4-D masks: full-attention text decoders with sdpa
# or eager attention), "model-cache" (the model's own cache and 2-D masks: any text decoder, e.g. hybrid
# linear-attention Qwen3.5 or flash-attention kernels), "generate" (model.generate: multimodal and other models)
DECODE_PATHS = ("slots", "model-cache", "generate")


def why_not(model, path: str) -> str | None:
    """Why decode path `path` cannot drive `model` (None: it can)."""
    if path == "generate":
        return None
    cfg = model.config
    if getattr(cfg, "is_encoder_decoder", False):
        return "encoder-decoder model"
    if cfg.get_text_config() is not cfg:
        return "multimodal model (its positions and masks come from its processor inputs)"
    params = inspect.signature(model.forward).parameters
    if "position_ids" not in params or "logits_to_keep" not in params:
        return "forward takes no position_ids/logits_to_keep"
    if not any(k in params for k in ("cache", "past_key_values")):
        return "forward takes no KV cache"
    if path == "model-cache":
        return None
    attn = getattr(cfg, "_attn_implementation", None)
    if attn not in ("sdpa", "eager"):
        return f"attention implementation {attn!r} (needs sdpa or eager, which take a 4-D mask)"
    kinds = set(getattr(cfg, "layer_types", None) or ["full_attention"])
    if kinds != {"full_attention"}:
        return f"layer types {sorted(kinds)} (needs full attention in every layer)"
    if getattr(cfg, "use_sliding_window", False) or (
        getattr(cfg, "layer_types", None) is None and getattr(cfg, "sliding_window", None)
        and getattr(cfg, "use_sliding_window", True)
    ):
        return "sliding-window attention"
    return None


def attention_mask(model, allowed):
    """A boolean [.., q, k] mask (True: attend) as `model`'s attention implementation takes it: sdpa the booleans,
    eager the scores it adds (0 / the most negative value of the model's dtype; a boolean would add 1)."""
    import torch

    if model.config._attn_implementation == "sdpa":
        return allowed
    dtype = next(model.parameters()).dtype
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, torch.finfo(dtype).min)


def cache_kwarg(model) -> str:
    """transformers renamed `past_key_values` to `cache` (5.2x); use whichever this model's forward takes."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def why_not_shared_prompt(model) -> str | None:
    """Why the training forward cannot run a prompt once for the rows that share it and expand its cache to them
    (`models.logprobs.completion_forward`; None: it can). The same models as the "slots" decode path, without
    gradient checkpointing (which turns the cache off in training)."""
    if getattr(model.config, "vision_config", None) is not None:
        return "vision-language model"
    reason = why_not(model, "slots")
    if reason is not None:
        return reason
    if any(getattr(m, "gradient_checkpointing", False) for m in model.modules()):  # transformers' flag per module
        return "gradient checkpointing (the model keeps no cache in training)"
    return None
