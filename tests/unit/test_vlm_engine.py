"""The transformers engine on a real (tiny, randomly initialised) vision-language model: images reach the model.

The model is a LLaVA (CLIP vision tower + Qwen3 text model) built from config, with the char tokenizer plus an
`<image>` token and a chat template that takes the Hugging Face multimodal content format; saved with
save_pretrained and loaded back with AutoProcessor / AutoModelForImageTextToText, as `zppo eval` loads a VLM.
(The Qwen-VL processors need torchvision in transformers 5.24, which the CPU environment does not have.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from zppo_core.rollout.base import Engine, ImageEngine, SamplingParams

IMAGE = "<image>"
TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}<|user|>{% else %}<|assistant|>{% endif %}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% if m['role'] != 'user' %}<eos>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_tiny_vlm(path: Path, seed: int = 0) -> Path:
    """Save a tiny LLaVA (32x32 images, 8-pixel patches: 16 image tokens) and its processor into `path`."""
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        Qwen3Config,
    )
    from transformers.utils import logging as hf_logging

    from zppo_core.models.tiny import build_char_tokenizer, set_generation_ids

    hf_logging.disable_progress_bar()
    tok = build_char_tokenizer()
    tok.add_special_tokens({"additional_special_tokens": ["<|user|>", "<|assistant|>", IMAGE]})
    tok.chat_template = TEMPLATE
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tok, chat_template=TEMPLATE, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, image_token=IMAGE)  # the CLS token, dropped by the "default" strategy
    config = LlavaConfig(
        text_config=Qwen3Config(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                                num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                                bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id),
        vision_config=CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, image_size=32, patch_size=8),
        image_token_id=tok.convert_tokens_to_ids(IMAGE), vision_feature_select_strategy="default",
        vision_feature_layer=-1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaForConditionalGeneration(config)
    set_generation_ids(model, tok)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def noise_image(seed: int, size=(48, 40)):
    from PIL import Image

    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def messages(text: str, n_images: int = 1) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


@pytest.fixture(scope="module")
def vlm(tmp_path_factory):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from zppo_core.rollout.hf import TransformersEngine

    path = build_tiny_vlm(tmp_path_factory.mktemp("vlm") / "model")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path).eval()
    return TransformersEngine(model, processor.tokenizer, batch_size=8, processor=processor)


def test_generate_multimodal_feeds_the_pixels(vlm):
    assert isinstance(vlm, ImageEngine) and vlm.supports_images
    greedy = SamplingParams(temperature=0.0, max_new_tokens=6)
    a, b = noise_image(1), noise_image(2)
    out = vlm.generate_multimodal([(messages("What is shown?"), [a]), (messages("What is shown?"), [b]),
                                   (messages("What is shown?"), [a])], greedy)
    ca, cb, ca2 = (o[0] for o in out)
    assert len(ca.token_ids) == len(ca.logprobs) > 0 and all(lp <= 0 for lp in ca.logprobs)
    # same text, different pixels: the model's first-token distribution changes; same pixels: identical
    assert abs(ca.logprobs[0] - cb.logprobs[0]) > 1e-4 or ca.token_ids != cb.token_ids
    assert ca2.token_ids == ca.token_ids and np.allclose(ca2.logprobs, ca.logprobs, atol=1e-5)


def test_left_padded_batches_match_single_requests(vlm):
    """A short and a long prompt (two images) in one batch give what each gives alone: padding and the image
    placeholders line up."""
    greedy = SamplingParams(temperature=0.0, max_new_tokens=5)
    reqs = [(messages("Hi"), [noise_image(3)]),
            (messages("Describe both pictures in detail, please.", 2), [noise_image(4), noise_image(5, (70, 30))])]
    batched = vlm.generate_multimodal(reqs, greedy)
    for req, got in zip(reqs, batched):
        alone = vlm.generate_multimodal([req], greedy)[0][0]
        assert got[0].token_ids == alone.token_ids
        assert np.allclose(got[0].logprobs, alone.logprobs, atol=1e-4)


def test_sampling_n_completions_per_request(vlm):
    torch.manual_seed(0)
    out = vlm.generate_multimodal([(messages("Say something."), [noise_image(6)])],
                                  SamplingParams(n=3, temperature=1.0, top_k=20, max_new_tokens=4))
    assert len(out) == 1 and len(out[0]) == 3
    assert all(len(c.token_ids) == len(c.logprobs) <= 4 for c in out[0])


def test_text_only_engine_has_no_image_path():
    from zppo_core.config.schema import TinyModelSpec
    from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
    from zppo_core.rollout.hf import TransformersEngine

    tok = build_char_tokenizer()
    engine = TransformersEngine(build_tiny_model(TinyModelSpec(num_hidden_layers=1), tok, seed=0), tok)
    assert isinstance(engine, Engine) and not engine.supports_images
    with pytest.raises(ValueError, match="no image processor"):
        engine.generate_multimodal([(messages("x"), [noise_image(0)])], SamplingParams())


def test_vllm_multimodal_prompts_carry_the_chat_text_and_images(vlm):
    """The vLLM request mapping (pure; vLLM itself needs a GPU): the processor's chat text, images in order."""
    from zppo_core.rollout.vllm_engine import _to_vllm_multimodal_prompts

    a, b = noise_image(7), noise_image(8)
    got = _to_vllm_multimodal_prompts([(messages("Two?", 2), [a, b]), (messages("None?", 0), [])], vlm.processor)
    assert got[0] == {"prompt": "<|user|><image><image>Two?<|assistant|>", "multi_modal_data": {"image": [a, b]}}
    assert got[1] == {"prompt": "<|user|>None?<|assistant|>"}


def _gpu_and_vllm() -> bool:
    import importlib.util

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_and_vllm(), reason="needs a CUDA GPU and vLLM (pip install 'zppo[vllm]')")
def test_vllm_generate_multimodal_feeds_the_pixels(tmp_path):
    """The vLLM image path on the same tiny LLaVA: same pixels, same greedy output; other pixels, other
    log-probs. (Not yet run: written on a machine without a GPU.)"""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from zppo_core.config.schema import ZPPOConfig
    from zppo_core.rollout.vllm_engine import VLLMEngine

    path = build_tiny_vlm(tmp_path / "model")
    processor = AutoProcessor.from_pretrained(path)
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).cuda()
    cfg = ZPPOConfig(model={"dtype": "float32"}, rollout={"max_new_tokens": 8}, run={"seed": 0})
    engine = VLLMEngine.from_model(model, processor.tokenizer, cfg, processor=processor, enable_sleep_mode=False,
                                   gpu_memory_utilization=0.3, enforce_eager=True, max_prompt_len=256)
    assert isinstance(engine, ImageEngine) and engine.supports_images
    a, b = noise_image(1), noise_image(2)
    out = engine.generate_multimodal([(messages("What is shown?"), [a]), (messages("What is shown?"), [b]),
                                      (messages("What is shown?"), [a])], SamplingParams(temperature=0.0,
                                                                                          max_new_tokens=6))
    ca, cb, ca2 = (o[0] for o in out)
    assert 0 < len(ca.token_ids) == len(ca.logprobs) <= 6
    assert ca2.token_ids == ca.token_ids
    assert abs(ca.logprobs[0] - cb.logprobs[0]) > 1e-4 or ca.token_ids != cb.token_ids
