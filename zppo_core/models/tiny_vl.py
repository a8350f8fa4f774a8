"""The tiny vision-language pair (`tiny-vl`): random-init Qwen3.5 VLMs (`Qwen3_5ForConditionalGeneration`, the
paper's students' architecture) with the character tokenizer and an image-only Qwen3-VL processor, built from
config (no hub access, ever).

- Tokenizer: `models.tiny.build_char_tokenizer` plus the Qwen vision tokens (`<|vision_start|>`, `<|image_pad|>`,
  `<|vision_end|>`, `<|video_pad|>`) as special tokens, and a chat template that takes the Hugging Face
  multimodal content format (an image part becomes `<|vision_start|><|image_pad|><|vision_end|>`; the processor
  expands the pad to one token per merged image feature).
- Processor: `models.vl.image_only_processor_class()` over a Pillow `Qwen2VLImageProcessorPil` whose patch and merge
  sizes are the vision tower's, pixel bounds 16×16 .. 128×128 (the synthetic images are 64-96 pixels a side).
- Model: the text part is sized like the tiny Qwen3 (`TinyModelSpec`: width, layers, heads), its layers
  alternating linear attention (Gated DeltaNet) and full attention as Qwen3.5's do (with 2 layers: one of each;
  the config's default would make two layers both linear); embeddings tied. The vision tower is `TinyVisionSpec`
  with its output width = the text width.
- Rotary positions span the whole head (Qwen3.5 rotates a quarter of it). Interleaved M-RoPE gives the image width
  axis every third frequency pair; a quarter of a 32-wide head has four pairs, so the width axis would get a single
  pair turning 0.01 rad per cell, and the text could not tell the cells of a strip apart by position (reading did
  not learn in 500 SFT steps). The whole head gives it five pairs, the fastest 0.32 rad per cell, about what a
  real Qwen3.5 head (256 wide, a quarter rotated, theta 1e7) gives (0.37 rad).

Measured facts behind these choices: `shared/ops/tiny-models-on-cpu.md` (tiny Qwen3.5 VLM section).
"""

from __future__ import annotations

from pathlib import Path

from zppo_core.config.schema import TinyModelSpec, TinyVisionSpec

VISION_TOKENS = ["<|vision_start|>", "<|image_pad|>", "<|vision_end|>", "<|video_pad|>"]
ROPE_THETA = 10000.0
MIN_PIXELS = 16 * 16
MAX_PIXELS = 128 * 128

CHAT_TEMPLATE_VL = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|>{% else %}<|assistant|>{% endif %}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}"
    "{% if m['role'] != 'user' %}<eos>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_vl_processor(vision: TinyVisionSpec):
    """The char tokenizer with vision tokens and the image-only Qwen3-VL processor over it."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from zppo_core.models.tiny import build_char_tokenizer
    from zppo_core.models.vl import image_only_processor_class

    tok = build_char_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>", *VISION_TOKENS]})
    tok.chat_template = CHAT_TEMPLATE_VL
    images = Qwen2VLImageProcessorPil(patch_size=vision.patch_size, temporal_patch_size=2,
                                      merge_size=vision.spatial_merge_size, min_pixels=MIN_PIXELS,
                                      max_pixels=MAX_PIXELS)
    return image_only_processor_class()(image_processor=images, tokenizer=tok, chat_template=CHAT_TEMPLATE_VL)


def _layer_types(n: int) -> list[str]:
    """Qwen3.5's pattern (three linear-attention layers, then one full-attention layer), with at least one full
    attention layer (the last) and, from two layers on, at least one linear one."""
    types = ["linear_attention" if (i + 1) % 4 else "full_attention" for i in range(n)]
    types[-1] = "full_attention"
    return types


def build_tiny_vlm(text: TinyModelSpec, vision: TinyVisionSpec, processor, seed: int):
    """A randomly initialised Qwen3_5ForConditionalGeneration sized by the specs, seeded, with the processor's
    special ids."""
    import torch
    from transformers import Qwen3_5Config, Qwen3_5ForConditionalGeneration

    from zppo_core.models.tiny import set_generation_ids

    tok = processor.tokenizer
    if text.head_dim % 2 or text.head_dim < 6:
        raise ValueError(f"tiny-vl: head_dim={text.head_dim} must be even and >= 6 (M-RoPE needs 3 sections)")
    half = text.head_dim // 2  # M-RoPE sections (temporal, height, width) sum to half the rotary dimension
    sections = [half - 2 * (half // 3), half // 3, half // 3]
    text_config = dict(
        vocab_size=len(tok), hidden_size=text.hidden_size, intermediate_size=text.intermediate_size,
        num_hidden_layers=text.num_hidden_layers, num_attention_heads=text.num_attention_heads,
        num_key_value_heads=text.num_key_value_heads, head_dim=text.head_dim,
        layer_types=_layer_types(text.num_hidden_layers),
        linear_num_key_heads=text.num_key_value_heads, linear_num_value_heads=text.num_attention_heads,
        linear_key_head_dim=text.head_dim, linear_value_head_dim=text.head_dim,
        max_position_embeddings=text.max_position_embeddings, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA, "partial_rotary_factor": 1.0,
                         "mrope_section": sections, "mrope_interleaved": True},
        pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
    )
    vision_config = dict(
        depth=vision.depth, hidden_size=vision.hidden_size, intermediate_size=vision.intermediate_size,
        num_heads=vision.num_heads, patch_size=vision.patch_size, spatial_merge_size=vision.spatial_merge_size,
        temporal_patch_size=2, out_hidden_size=text.hidden_size,
        num_position_embeddings=vision.num_position_embeddings,
    )
    config = Qwen3_5Config(
        text_config=text_config, vision_config=vision_config, image_token_id=processor.image_token_id,
        video_token_id=processor.video_token_id, vision_start_token_id=processor.vision_start_token_id,
        vision_end_token_id=processor.vision_end_token_id, tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen3_5ForConditionalGeneration(config)
    set_generation_ids(model, tok)
    return model


def save_vl(model, processor, path: str | Path) -> None:
    """Model weights + config and the processor (tokenizer, image processor, chat template) in one directory,
    loadable by `models.load.load_model`."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
