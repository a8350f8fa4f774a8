"""Checkpoints: atomic write, `latest` pointer, pruning, a failed save leaves the previous one intact."""

from __future__ import annotations

import pytest
import torch

from zppo_core.config.schema import TinyModelSpec
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
from zppo_core.train import checkpoint as ck


@pytest.fixture
def parts():
    tok = build_char_tokenizer()
    model = build_tiny_model(TinyModelSpec(num_hidden_layers=1, hidden_size=32, intermediate_size=64, head_dim=8,
                                           num_attention_heads=2, num_key_value_heads=1), tok, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    return model, tok, opt


def test_latest_pointer_and_pruning(tmp_path, parts):
    model, tok, opt = parts
    assert ck.latest_checkpoint(tmp_path) is None
    for step in (1, 2, 3):
        ck.save_checkpoint(tmp_path, step, model, tok, opt, {"step": step}, keep=2)
    assert ck.latest_checkpoint(tmp_path).name == "step_000003"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir() if p.is_dir()) == ["step_000002", "step_000003"]
    assert ck.load_state(ck.latest_checkpoint(tmp_path))["step"] == 3
    weights = ck.load_weights(ck.latest_checkpoint(tmp_path) / "model")
    for k, v in model.state_dict().items():
        if k in weights:
            assert torch.equal(weights[k], v)


def test_failed_save_keeps_previous_checkpoint(tmp_path, parts):
    model, tok, opt = parts
    ck.save_checkpoint(tmp_path, 1, model, tok, opt, {"step": 1})

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        ck.save_checkpoint(tmp_path, 2, model, tok, opt, {"step": 2, "bad": Unpicklable()})
    assert ck.latest_checkpoint(tmp_path).name == "step_000001"
    assert [p.name for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp")] == []
    assert not (tmp_path / "checkpoints" / "step_000002").exists()


def test_resaving_a_step_replaces_it(tmp_path, parts):
    model, tok, opt = parts
    ck.save_checkpoint(tmp_path, 4, model, tok, opt, {"step": 4, "v": 1})
    ck.save_checkpoint(tmp_path, 4, model, tok, opt, {"step": 4, "v": 2})
    assert ck.load_state(ck.latest_checkpoint(tmp_path))["v"] == 2


def test_require_checkpoint_messages(tmp_path):
    with pytest.raises(ck.CheckpointError, match="does not exist"):
        ck.require_checkpoint(tmp_path / "nope")
    with pytest.raises(ck.CheckpointError, match="has no checkpoint"):
        ck.require_checkpoint(tmp_path)
