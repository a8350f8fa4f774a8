"""prepare's SFT: packed rows give the padded batch's loss and gradient; encoding equals render(); a prepare is
bit-for-bit reproducible (weights hash) and leaves torch's thread count as it found it."""

from __future__ import annotations

import json

import pytest
import torch

from zppo_core.config import load_config
from zppo_core.config.schema import TinyModelSpec
from zppo_core.models.kv import attention_mask
from zppo_core.models.logprobs import completion_logprobs
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
from zppo_core.models.load import render
from zppo_core.train.prepare import (cache_key, encode_pairs, ensure_prepared, pack_rows,
                                     prepare_key_fields, sft_examples)


def test_pack_rows_layout():
    seqs = [([1, 2, 3], [4, 5]), ([6], [7, 8, 9]), ([10, 11], [12])]  # lengths 5, 4, 3
    ids, pos, mask, targets = pack_rows(seqs, pad_id=0, row_len=8)
    # first-fit decreasing: row 0 = seq 0 (5) + seq 2 (3) = 8; row 1 = seq 1 (4) + 4 padding
    assert ids.tolist() == [[1, 2, 3, 4, 5, 10, 11, 12], [6, 7, 8, 9, 0, 0, 0, 0]]
    assert pos.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 3, 0, 1, 2, 3]]
    # position t predicts token t+1 of the response; prompts and the last response token predict nothing
    assert targets.tolist() == [[-100, -100, 4, 5, -100, -100, 12, -100], [7, 8, 9, -100, -100, -100, -100, -100]]
    m = mask[:, 0]  # [R, S, S]
    assert m.shape == (2, 8, 8)
    assert m[0, 6].tolist() == [False] * 5 + [True, True, False]  # seq 2 sees itself only, causally
    assert m[0, 4].tolist() == [True] * 5 + [False] * 3
    assert m[1, 5].tolist() == [False] * 4 + [True, True, False, False]  # padding is a segment of its own


@pytest.mark.parametrize("attention", ["sdpa", "eager"])  # prepare.sft_attention: both read the packed mask
def test_packed_loss_and_gradient_equal_the_padded_batch(attention):
    cfg = load_config("tiny")
    tok = build_char_tokenizer()
    pairs = [next(ex) for ex in [sft_examples(cfg, None, 3, cfg.prepare.student_noise, 0.5, 0.5)] for _ in range(12)]
    seqs = encode_pairs(tok, pairs)
    grads = []
    for packed in (False, True):
        model = build_tiny_model(TinyModelSpec(num_hidden_layers=2), tok, seed=0)
        if packed:
            model.set_attn_implementation(attention)
            ids, pos, mask, targets = pack_rows(seqs, tok.pad_token_id, row_len=160)
            assert ids.shape[0] < len(seqs)  # several sequences share rows
            mask = attention_mask(model, mask)  # as sft() passes it: eager adds the mask to the scores
            logits = model(input_ids=ids, position_ids=pos, attention_mask=mask, use_cache=False).logits
            loss = torch.nn.functional.cross_entropy(logits[targets >= 0], targets[targets >= 0])
        else:
            lp, m, _ = completion_logprobs(model, [p for p, _ in seqs], [c for _, c in seqs], tok.pad_token_id)
            loss = -(lp * m).sum() / m.sum()
        loss.backward()
        grads.append((loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    assert abs(grads[0][0] - grads[1][0]) < 1e-5
    assert torch.allclose(grads[0][1], grads[1][1], atol=1e-6, rtol=1e-4)


def test_sft_attention_enters_the_cache_key_only_when_not_sdpa():
    """sdpa reproduces PREPARE_VERSION 2, so it leaves the key as it was before the setting existed (caches stay
    valid); eager trains other bits, so it is a different prepared pair."""
    sdpa, eager = (load_config("tiny", overrides=[f"prepare.sft_attention={a}"]) for a in ("sdpa", "eager"))
    assert "sft_attention" not in prepare_key_fields(sdpa) and prepare_key_fields(eager)["sft_attention"] == "eager"
    assert prepare_key_fields(sdpa) == sdpa.prepare.model_dump(exclude={"cache_dir", "sft_attention"})
    assert cache_key(sdpa) != cache_key(eager)


def test_encode_pairs_equals_render():
    cfg = load_config("tiny")
    tok = build_char_tokenizer()
    ex = sft_examples(cfg, None, 1, candidate_share=0.5)
    pairs = [next(ex) for _ in range(20)]
    for (p, r), (pi, ri) in zip(pairs, encode_pairs(tok, pairs)):
        assert pi == render(tok, p)
        assert ri == tok(r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]


def test_prepare_is_bit_for_bit_reproducible(tmp_path):
    over = ["prepare.student_warm_steps=6", "prepare.student_steps=4", "prepare.teacher_warm_steps=6",
            "prepare.teacher_steps=4", "prepare.batch_size=8", "model.tiny_student.num_hidden_layers=1",
            "model.tiny_teacher.num_hidden_layers=1", "rollout.max_new_tokens=8"]
    threads = torch.get_num_threads()
    reports = []
    for run in ("a", "b"):
        cfg = load_config("tiny", overrides=over + [f"prepare.cache_dir={tmp_path / run}"])
        reports.append(json.loads((ensure_prepared(cfg) / "report.json").read_text()))
    assert torch.get_num_threads() == threads
    for who in ("student", "teacher"):
        a, b = reports[0][who], reports[1][who]
        assert len(a["weights_sha256"]) == 64 and a["weights_sha256"] == b["weights_sha256"], who
        assert a["steps"] == 10 and a["accuracy"] == b["accuracy"]
    assert reports[0]["key"] == reports[1]["key"] and not reports[0]["key"].startswith(".tmp")
    assert reports[0]["student"]["weights_sha256"] != reports[0]["teacher"]["weights_sha256"]
