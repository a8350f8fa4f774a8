"""`zppo_core.models.load` on real tiny models: resolution errors, causal LM vs vision-language loading, the
frozen/trainable contract, tokenizer sharing, and render / PromptRenderer."""

from __future__ import annotations

import pytest
import torch

from zppo_core.config import ConfigError, load_config
from zppo_core.config.schema import TinyModelSpec
from zppo_core.models.load import (
    PromptRenderer,
    is_vision_language,
    load_model,
    load_pair,
    model_paths,
    render,
    resolve_model,
)
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model, save_model
from zppo_core.rollout import make_engine
from zppo_core.rollout.base import SamplingParams


@pytest.fixture(scope="module")
def causal_dir(tmp_path_factory):
    tok = build_char_tokenizer()
    path = tmp_path_factory.mktemp("causal") / "model"
    save_model(build_tiny_model(TinyModelSpec(num_hidden_layers=1, hidden_size=32, head_dim=8), tok, 0), tok, path)
    return path


def test_resolve_model_names_the_field_and_the_fix(tmp_path):
    assert resolve_model("tiny", "model.student") == "tiny"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"model.teacher: .*empty has no config.json"):
        resolve_model(str(tmp_path / "empty"), "model.teacher")
    with pytest.raises(ConfigError, match=r"model.student: model 'nobody/nothing-here' .* --set model.student="):
        resolve_model("nobody/nothing-here", "model.student")


def test_model_paths_tiny_needs_the_prepared_pair(tmp_path):
    cfg = load_config("tiny")
    with pytest.raises(ConfigError, match="prepared first"):
        model_paths(cfg)
    assert model_paths(cfg, tmp_path) == (str(tmp_path / "student"), str(tmp_path / "teacher"))


def test_causal_lm_frozen_vs_trainable_and_shared_tokenizer(causal_dir):
    cfg = load_config("tiny")
    assert not is_vision_language(str(causal_dir))
    student, teacher = load_pair(cfg, str(causal_dir), str(causal_dir))
    assert student.processor is None and student.templater is student.tokenizer
    assert teacher.tokenizer is student.tokenizer  # one family, one tokenizer
    assert student.tokenizer.padding_side == "left" and student.tokenizer.pad_token_id is not None
    assert all(p.requires_grad for p in student.model.parameters())
    assert not teacher.model.training and not any(p.requires_grad for p in teacher.model.parameters())
    only, none = load_pair(cfg, str(causal_dir), None)
    assert none is None and only.model is not student.model


def test_render_and_prompt_renderer_agree(causal_dir):
    tok = load_model(str(causal_dir), load_config("tiny")).tokenizer
    ids = render(tok, "Compute 1+2.")
    assert tok.decode(ids) == "<|user|>Compute 1+2.<|assistant|>"
    conv = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]
    r = PromptRenderer(tok, max_cache=1)
    assert r("Compute 1+2.") == ids and r(conv) == render(tok, conv)
    assert r("Compute 1+2.") == ids and len(r._cache) == 1  # the cache holds at most max_cache prompts


def test_vision_language_model_loads_with_its_processor(tmp_path):
    from tests.unit.test_vlm_engine import build_tiny_vlm, messages, noise_image

    path = str(build_tiny_vlm(tmp_path / "vlm"))
    cfg = load_config("tiny")
    assert is_vision_language(path)
    m = load_model(path, cfg)
    assert m.processor is not None and m.templater is m.processor and m.tokenizer is m.processor.tokenizer
    assert m.tokenizer.padding_side == "left"
    # the processor holds the chat template: an image placeholder in a conversation renders to <image>
    ids = PromptRenderer.of(m)(messages("What is shown?"))
    assert "<image>" in m.tokenizer.decode(ids)
    engine = make_engine(cfg, m.model, m.tokenizer, m.processor)
    assert engine.supports_images
    torch.manual_seed(0)
    out = engine.generate_multimodal([(messages("What?"), [noise_image(1)])], SamplingParams(max_new_tokens=3))
    assert len(out) == 1 and len(out[0][0].token_ids) <= 3
