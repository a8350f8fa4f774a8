"""The tiny Qwen3.5 vision-language model (`Qwen3_5ForConditionalGeneration`, random init) through zppo's one render
path, the transformers engine and the training forward: log-probs agree, images reach the model, BCQ/NCQ prompts
show the question's image once, placeholder tokens are never sampled, the saved pair loads without torchvision."""

from __future__ import annotations

import random

import pytest
import torch

from zppo_core.algo.reformulate import TEMPLATES, build_bcq, build_ncq, plain_prompt
from zppo_core.config.schema import TinyModelSpec, TinyVisionSpec
from zppo_core.models.load import PromptRenderer
from zppo_core.models.logprobs import completion_logprobs
from zppo_core.rollout.base import SamplingParams, generate_prompts
from zppo_core.tasks import get_family
from zppo_core.tasks.images import blank_like, load_image

CLOSER = " <think></think>\\boxed{}"


@pytest.fixture(scope="module")
def vlm():
    from zppo_core.models.tiny_vl import build_tiny_vlm, build_vl_processor
    from zppo_core.rollout.hf import TransformersEngine

    proc = build_vl_processor(TinyVisionSpec())
    model = build_tiny_vlm(TinyModelSpec(num_hidden_layers=2), TinyVisionSpec(), proc, seed=0).eval()
    render = PromptRenderer(proc.tokenizer, proc, min_pixels=256, max_pixels=16384)
    return model, proc, render, TransformersEngine(model, proc.tokenizer, batch_size=64, processor=proc)


def _question(family: str, level: int, seed: int = 0):
    return get_family(family).make(random.Random(seed), level)


def test_training_forward_logprobs_equal_the_engines_with_images(vlm):
    """fp32: per-token log-probs of sampled completions from the training forward (image inputs, M-RoPE positions,
    left padding) equal the engine's within 1e-5, for prompts of mixed lengths and image sizes, a text-only prompt
    among them, and again when the same rows are batched differently (other padding)."""
    model, proc, render, engine = vlm
    qs = [_question("count", 1), _question("digits", 4, 1), _question("bars_long", 6, 2), _question("count", 3, 3)]
    prompts = [render.prompt(plain_prompt(q, CLOSER) + " x" * i, q.images) for i, q in enumerate(qs)]
    prompts.append(render.prompt("Plain text, no image." + CLOSER))
    assert len({len(p.ids) for p in prompts}) == len(prompts)  # all lengths differ: real left padding
    torch.manual_seed(0)
    outs = generate_prompts(engine, prompts, SamplingParams(n=3, temperature=1.0, max_new_tokens=24))
    rows = [(p, c) for p, cs in zip(prompts, outs) for c in cs]
    assert sum(len(c.token_ids) for _, c in rows) > 3 * len(rows)

    def check(subset):
        with torch.no_grad():
            lp, mask, _ = completion_logprobs(model, [p.ids for p, _ in subset], [c.token_ids for _, c in subset],
                                              proc.tokenizer.pad_token_id, mm=[p.mm for p, _ in subset])
        for i, (_, c) in enumerate(subset):
            n = len(c.token_ids)
            assert mask[i, :n].all() and not mask[i, n:].any()
            assert torch.allclose(lp[i, :n], torch.tensor(c.logprobs), atol=1e-5, rtol=0), (i, lp[i, :n], c.logprobs)

    check(rows)
    check(rows[::4])  # another micro-batch of the same rows: other padding, other image concatenation


def test_images_reach_the_model(vlm):
    """Same text, other pixels: other log-probs; same pixels: the same. A blank image is an image too."""
    model, proc, render, _ = vlm
    q1, q2 = _question("digits", 2, 1), _question("digits", 2, 2)
    text = plain_prompt(q1, CLOSER)
    blank = blank_like(load_image(q1.images[0], 256, 16384))
    prompts = [render.prompt(text, q1.images), render.prompt(text, q2.images), render.prompt(text, q1.images),
               render.prompt(text, (blank,))]
    assert prompts[0].ids == prompts[1].ids == prompts[3].ids  # the images are all the difference
    completion = proc.tokenizer("<think>1+2=3</think>", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        lp, _, _ = completion_logprobs(model, [p.ids for p in prompts], [completion] * 4,
                                       proc.tokenizer.pad_token_id, mm=[p.mm for p in prompts])
    assert torch.allclose(lp[0], lp[2], atol=1e-6)
    assert (lp[0] - lp[1]).abs().max() > 1e-4 and (lp[0] - lp[3]).abs().max() > 1e-4


def _count(ids: list[int], token_id: int) -> int:
    return sum(t == token_id for t in ids)


@pytest.mark.parametrize("kind", ["plain", "bcq", "ncq"])
def test_reformulated_prompts_show_the_image_once_and_the_candidates_in_text(vlm, kind):
    """Plain, BCQ and NCQ prompts of an image question render with the question's image exactly once (one
    vision block of one image's tokens, one image's pixels) and every candidate's text."""
    _, proc, render, _ = vlm
    q = _question("bars", 3, 5)
    fam = get_family("bars")
    template, rng = TEMPLATES["compact"], random.Random(0)
    right, wrong = fam.solution(q), fam.wrong_solution(q, rng)
    wrongs = [wrong, fam.wrong_solution(q, random.Random(9))]
    if kind == "plain":
        text, candidates = plain_prompt(q, CLOSER), []
    elif kind == "bcq":
        text, _ = build_bcq(q.prompt, right, wrong, rng, CLOSER, template)
        candidates = [right, wrong]
    else:
        text, _ = build_ncq(q.prompt, wrongs, CLOSER, template)
        candidates = wrongs
    p = render.prompt(text, q.images)
    alone = render.prompt(plain_prompt(q, CLOSER), q.images)
    n_tokens = int(alone.mm["image_grid_thw"].prod()) // 4  # merged 2x2 patches
    assert _count(p.ids, proc.vision_start_token_id) == 1 and _count(p.ids, proc.vision_end_token_id) == 1
    assert _count(p.ids, proc.image_token_id) == n_tokens == 4  # bars level 3: 4 cells = 4 image tokens
    assert torch.equal(p.mm["pixel_values"], alone.mm["pixel_values"])
    assert torch.equal(p.mm["image_grid_thw"], alone.mm["image_grid_thw"])
    assert int(p.mm["mm_token_type_ids"].sum()) == n_tokens
    decoded = proc.tokenizer.decode(p.ids, skip_special_tokens=False)
    assert all(c in decoded for c in candidates) and decoded.count("<candidate>") == len(candidates)
    assert p.messages[0]["content"][0] == {"type": "image"} and p.messages[0]["content"][1]["text"] == text


def test_placeholder_tokens_are_never_sampled(vlm):
    """A random-init model puts ~3% of its mass on the four vision tokens; sampling suppresses them (a sampled
    image pad would ask the training forward for image features that do not exist)."""
    model, proc, render, engine = vlm
    assert set(engine.suppress) == {proc.image_token_id, proc.video_token_id, proc.vision_start_token_id,
                                    proc.vision_end_token_id}
    q = _question("count", 2)
    torch.manual_seed(1)
    outs = generate_prompts(engine, [render.prompt(plain_prompt(q, CLOSER), q.images)],
                            SamplingParams(n=48, temperature=1.5, max_new_tokens=32))
    sampled = [t for c in outs[0] for t in c.token_ids]
    assert len(sampled) > 500 and not set(sampled) & set(engine.suppress)


def test_saved_pair_loads_with_its_processor_without_torchvision(vlm, tmp_path):
    """A tiny-vl directory loads through `load_model` as an image-text-to-text model with an image-only processor
    (the stock Qwen3-VL processor wants torchvision for video); rendering and outputs are unchanged."""
    import importlib.util

    from zppo_core.config import load_config
    from zppo_core.models.load import load_model
    from zppo_core.models.tiny_vl import save_vl

    model, proc, render, _ = vlm
    save_vl(model, proc, tmp_path / "m")
    loaded = load_model(str(tmp_path / "m"), load_config("tiny-vl"))
    assert type(loaded.model).__name__ == "Qwen3_5ForConditionalGeneration"
    assert loaded.processor is not None and loaded.processor.image_processor.patch_size == 8
    if importlib.util.find_spec("torchvision") is None:
        assert getattr(loaded.processor, "video_processor", None) is None
    q = _question("digits", 3)
    again = PromptRenderer.of(loaded, cfg=load_config("tiny-vl")).prompt(plain_prompt(q, CLOSER), q.images)
    first = render.prompt(plain_prompt(q, CLOSER), q.images)
    assert again.ids == first.ids and torch.equal(again.mm["pixel_values"], first.mm["pixel_values"])
    completion = [proc.tokenizer.convert_tokens_to_ids("<think>")]
    with torch.no_grad():
        a, _, _ = completion_logprobs(model, [first.ids], [completion], proc.tokenizer.pad_token_id, mm=[first.mm])
        b, _, _ = completion_logprobs(loaded.model, [again.ids], [completion], proc.tokenizer.pad_token_id,
                                      mm=[again.mm])
    assert torch.allclose(a, b, atol=1e-6)


def test_a_checkpoint_in_the_hub_layout_loads_with_an_image_only_processor(vlm, tmp_path):
    """The paper's Qwen3.5 checkpoints ship `preprocessor_config.json` + `video_preprocessor_config.json` for a
    `Qwen3VLProcessor`, whose video processor needs torchvision. Such a directory (the tiny pair rewritten into that
    layout) loads through `load_model` as an image-text-to-text model; without torchvision the processor is the
    image-only one, and prompts render to the same ids and pixels as the original processor's."""
    import importlib.util
    import json

    from zppo_core.config import load_config
    from zppo_core.models.load import load_model
    from zppo_core.models.tiny_vl import save_vl

    model, proc, render, _ = vlm
    d = tmp_path / "hub"
    save_vl(model, proc, d)
    image_cfg = json.loads((d / "processor_config.json").read_text())["image_processor"]
    (d / "processor_config.json").unlink()
    (d / "preprocessor_config.json").write_text(json.dumps({**image_cfg, "processor_class": "Qwen3VLProcessor"}))
    (d / "video_preprocessor_config.json").write_text(json.dumps({
        "video_processor_type": "Qwen3VLVideoProcessor", "processor_class": "Qwen3VLProcessor",
        "patch_size": image_cfg["patch_size"], "temporal_patch_size": 2, "merge_size": 2}))
    tok_cfg = json.loads((d / "tokenizer_config.json").read_text())
    (d / "tokenizer_config.json").write_text(json.dumps({**tok_cfg, "processor_class": "Qwen3VLProcessor"}))
    loaded = load_model(str(d), load_config("tiny-vl"))
    assert type(loaded.model).__name__ == "Qwen3_5ForConditionalGeneration"
    assert loaded.processor.image_processor.patch_size == image_cfg["patch_size"]
    if importlib.util.find_spec("torchvision") is None:
        assert type(loaded.processor).__name__ == "Qwen3VLImageProcessor"
    q = _question("bars", 2, 3)
    again = PromptRenderer.of(loaded, cfg=load_config("tiny-vl")).prompt(plain_prompt(q, CLOSER), q.images)
    first = render.prompt(plain_prompt(q, CLOSER), q.images)
    assert again.ids == first.ids and torch.equal(again.mm["pixel_values"], first.mm["pixel_values"])


def test_a_text_only_renderer_refuses_images():
    from zppo_core.models.tiny import build_char_tokenizer

    tok = build_char_tokenizer()
    with pytest.raises(ValueError, match="needs a vision-language model"):
        PromptRenderer(tok).prompt("Count red.", _question("count", 1).images)


def test_served_engines_get_the_images_as_openai_image_parts(vlm):
    """A served model (OpenAI-compatible chat) gets the prompt's messages with each image placeholder replaced, in
    order, by an image_url part holding that image as a PNG data URI, which decodes to the same pixels."""
    import base64
    import io

    from PIL import Image

    from zppo_core.rollout.base import chat_messages

    _, _, render, _ = vlm
    q = _question("count", 2, 4)
    p = render.prompt("Count twice.", (q.images[0], blank_like(load_image(q.images[0], 256, 16384))))
    [msg] = chat_messages(p)
    assert msg["role"] == "user" and [c["type"] for c in msg["content"]] == ["image_url", "image_url", "text"]
    decoded = [Image.open(io.BytesIO(base64.b64decode(c["image_url"]["url"].split(",", 1)[1])))
               for c in msg["content"][:2]]
    assert [list(d.convert("RGB").getdata()) for d in decoded] == [list(im.getdata()) for im in p.images]
    assert msg["content"][2] == {"type": "text", "text": "Count twice."}
    assert chat_messages(render.prompt("No image.")) == [{"role": "user", "content": "No image."}]
