"""Vision-language plumbing shared by rendering, the engines and the training forward.

- `load_processor(path)`: the model directory's `AutoProcessor`; for the Qwen-VL family (Qwen2-VL .. Qwen3.5)
  where that fails because the stock processor wants a video processor that needs torchvision (whose wheels are
  CUDA builds that break beside a CPU torch), the same processor without its video part
  (`image_only_processor_class`: images go through the Pillow image processor; video in eval is sampled frames).
- `render_prompt(tokenizer, processor, messages, images)`: a conversation with image placeholders plus the
  decoded images -> `Prompt` (token ids with the placeholders expanded, and the processor's tensors for this one
  prompt). Engines and the training forward build their inputs from the same `Prompt`, so the pixels and the
  token ids that sampled a completion are exactly those its log-probs are trained on.
- `collate(ids, mms, pad_id)` / `batch_mm(...)`: a left-padded batch of prompts and their image inputs, as the
  processor would batch them: per-token inputs (`mm_token_type_ids`) padded with zeros (= text, also over the
  completions in the training forward), per-image inputs (`pixel_values`, `image_grid_thw`) concatenated in row
  order.
- `vision_token_ids(processor)`: the placeholder tokens a sampler must never emit (a sampled image-pad token
  would ask the model for image features that do not exist).
- `position_ids(model, ...)`: the multimodal rotary positions (M-RoPE) the Qwen-VL models compute during
  `generate`, for the same sequences in one forward pass.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

from zppo_core.types import Prompt

QWEN_VL_TYPES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_vl_moe", "qwen3_5", "qwen3_5_moe")


@lru_cache(maxsize=1)
def image_only_processor_class():
    """`Qwen3VLProcessor` without a video processor (its `__init__` names the sub-processors it is built from)."""
    from transformers import Qwen3VLProcessor

    class Qwen3VLImageProcessor(Qwen3VLProcessor):
        """Qwen3-VL / Qwen3.5 processor for images and text only (no torchvision needed)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return Qwen3VLImageProcessor


def load_processor(path: str, model_type: str | None = None):
    """The directory's processor (see the module docstring); ValueError with the fix when there is none."""
    from transformers import AutoProcessor

    err: Exception | None = None
    try:
        proc = AutoProcessor.from_pretrained(path)
        if getattr(proc, "image_processor", None) is not None:
            return _own_tokenizer(proc, path)
    except (ImportError, OSError, ValueError, TypeError, AttributeError) as e:  # e.g. no torchvision for video
        err = e
    if model_type in QWEN_VL_TYPES:
        return _own_tokenizer(image_only_processor_class().from_pretrained(path), path)
    why = f" ({err})" if err else " (it loads without an image processor)"
    raise ValueError(f"{path}: the vision-language model's processor does not load{why}; install what it asks for "
                     "(e.g. pip install torchvision) or save the model with its processor")


def _own_tokenizer(proc, path: str):
    """A tokenizer saved as a plain `TokenizersBackend` (the tiny pair's character tokenizer) stays one: the auto
    classes would otherwise rebuild it as the model type's tokenizer (Qwen3.5's byte-level pre-tokenizer drops the
    char-level split, and with it every space)."""
    import json
    from pathlib import Path

    cfg = Path(path) / "tokenizer_config.json"
    if cfg.is_file() and json.loads(cfg.read_text()).get("tokenizer_class") == "TokenizersBackend" and \
            type(proc.tokenizer).__name__ != "TokenizersBackend":
        from transformers.tokenization_utils_tokenizers import TokenizersBackend

        proc.tokenizer = TokenizersBackend.from_pretrained(path)
    return proc


def vision_token_ids(processor) -> list[int]:
    """Ids of the image/video placeholder and frame tokens of a processor's tokenizer (never to be sampled)."""
    if processor is None:
        return []
    ids = set()
    for attr in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id"):
        v = getattr(processor, attr, None)
        if isinstance(v, int) and v >= 0:
            ids.add(v)
    tok = getattr(processor, "tokenizer", None)
    for attr in ("image_token", "video_token"):
        t = getattr(processor, attr, None)
        if isinstance(t, str) and tok is not None:
            v = tok.convert_tokens_to_ids(t)
            if isinstance(v, int) and v >= 0 and v != getattr(tok, "unk_token_id", None):
                ids.add(v)
    return sorted(ids)


def user_message(text: str, n_images: int = 0) -> list[dict[str, Any]]:
    """One user message: `n_images` image placeholders first (the question's images, once), then the text."""
    if not n_images:
        return [{"role": "user", "content": text}]
    return [{"role": "user", "content": [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]}]


def render_prompt(tokenizer, processor, messages: list[dict[str, Any]], images: list | tuple,
                  template_kwargs: dict[str, Any] | None = None) -> Prompt:
    """A conversation with image placeholders and its decoded images -> Prompt (see the module docstring);
    `template_kwargs` go to the chat template (the role's `model.chat_template_kwargs`)."""
    kw = dict(template_kwargs or {})
    if not images:
        templater = processor if processor is not None else tokenizer
        chat = templater.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kw)
        return Prompt(tokenizer(chat, add_special_tokens=False)["input_ids"], None, messages, ())
    if getattr(processor, "image_processor", None) is None:
        raise ValueError("an image question needs a vision-language model (a text-only model cannot see images); "
                         "use a vision-language student/teacher or data without images")
    chat = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, **kw)
    enc = processor(text=[chat], images=list(images), return_tensors="pt")
    ids = enc["input_ids"]  # [1, P]
    P = ids.shape[1]
    mm = {}
    for k, v in enc.items():
        if k in ("input_ids", "attention_mask"):
            continue
        if hasattr(v, "shape") and v.dim() >= 2 and v.shape[0] == 1 and v.shape[1] == P:
            mm[k] = v[0]  # [P] per-token input (e.g. mm_token_type_ids)
        else:
            mm[k] = v  # per-image input, concatenated across a batch (e.g. pixel_values [N, D])
    return Prompt(ids[0].tolist(), mm, messages, tuple(images))


def per_token_keys(mm: dict[str, Any], length: int) -> set[str]:
    return {k for k, v in mm.items() if hasattr(v, "dim") and v.dim() == 1 and v.shape[0] == length}


def batch_mm(lengths: list[int], mms: list[dict[str, Any] | None], P: int, L: int) -> dict[str, Any]:
    """The image inputs of a batch whose prompt i (`lengths[i]` tokens) is left-padded to end at position P, rows
    L long: per-token inputs [B, L] (zeros = text over padding and whatever follows the prompt), per-image inputs
    concatenated in row order. {} when no prompt has images."""
    import torch

    present = [(i, m) for i, m in enumerate(mms) if m]
    if not present:
        return {}
    out: dict[str, Any] = {}
    token_keys = per_token_keys(present[0][1], lengths[present[0][0]])
    for k in token_keys:
        t = torch.zeros((len(lengths), L), dtype=present[0][1][k].dtype)  # [B, L]
        for i, m in present:
            t[i, P - lengths[i] : P] = m[k]
        out[k] = t
    for k in present[0][1]:
        if k not in token_keys:
            out[k] = torch.cat([m[k] for _, m in present], dim=0)
    return out


def collate(ids: list[list[int]], mms: list[dict[str, Any] | None], pad_id: int):
    """Left-padded prompts: input_ids [B, P], attention_mask [B, P], their image inputs (`batch_mm`), P."""
    import torch

    P = max(len(p) for p in ids)
    input_ids = torch.full((len(ids), P), pad_id, dtype=torch.long)  # [B, P]
    attn = torch.zeros((len(ids), P), dtype=torch.long)  # [B, P]
    for i, p in enumerate(ids):
        input_ids[i, P - len(p) :] = torch.tensor(p, dtype=torch.long)
        attn[i, P - len(p) :] = 1
    return input_ids, attn, batch_mm([len(p) for p in ids], mms, P, P), P


def position_ids(model, input_ids, attention_mask, mm: dict[str, Any]):
    """[4, B, L] M-RoPE positions for a Qwen-VL model that computes them from `mm_token_type_ids` (text position
    row + temporal/height/width rows, as `generate` builds them), or None when the model has no such method."""
    import torch

    inner = getattr(model, "model", None)
    rope = getattr(inner, "get_rope_index", None)
    if rope is None or "mm_token_type_ids" not in inspect.signature(rope).parameters:
        return None
    types = mm.get("mm_token_type_ids")
    if types is None:
        types = torch.zeros_like(input_ids)
    vision, _ = rope(input_ids, mm_token_type_ids=types, image_grid_thw=mm.get("image_grid_thw"),
                     video_grid_thw=mm.get("video_grid_thw"), attention_mask=attention_mask)  # [3, B, L]
    text = (attention_mask.cumsum(-1) - 1).clamp(min=0)  # [B, L]
    return torch.cat([text[None].to(vision.device), vision], dim=0)  # [4, B, L]
