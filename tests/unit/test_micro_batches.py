"""The update's micro-batching: long (BCQ/NCQ-like) prompts get micro-batches of their own instead of padding the
short rows to their length, and the accumulated gradient is the one-micro-batch gradient (same normaliser)."""

from __future__ import annotations

import random

import torch

import zppo_core.train.loop as loop
from zppo_core.config import load_config
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
from zppo_core.rollout.hf import TransformersEngine
from zppo_core.train.methods.registry import build_method
from zppo_core.types import Completion, Rollout


def _trainer(tmp_path, *sets):
    cfg = load_config("tiny", overrides=["algo.updates_per_step=1", *sets])
    tok = build_char_tokenizer()
    model = build_tiny_model(cfg.model.tiny_student, tok, 0)
    return loop.Trainer(cfg, tmp_path, model, tok, TransformersEngine(model, tok), None, build_method(cfg))


def _rollouts(vocab: int) -> list[Rollout]:
    rng = random.Random(0)
    out = []
    for k in range(14):  # 12 plain-like rows (prompt 20-27, completion 8-15), 2 long-prompt rows (prompt 150)
        p = 150 if k in (3, 9) else 20 + k % 8
        c = 8 + (k * 5) % 8
        comp = Completion([rng.randrange(3, vocab) for _ in range(c)], [-2.0 + 0.1 * rng.random() for _ in range(c)],
                          "", True)
        out.append(Rollout(f"q{k}", k // 4, "plain", [rng.randrange(3, vocab) for _ in range(p)], comp,
                           float(k % 2), None))
    return out


def test_long_prompts_get_their_own_micro_batch(tmp_path, monkeypatch):
    tr = _trainer(tmp_path)
    rs = _rollouts(len(tr.tokenizer))
    mbs = tr._micro_batches(rs, list(range(len(rs))))
    assert [sorted(m) for m in mbs] == [sorted(set(range(14)) - {3, 9}), [3, 9]]
    capped = _trainer(tmp_path, "algo.micro_batch_size=5")  # the sequence cap still applies
    assert [len(m) for m in capped._micro_batches(rs, list(range(14)))] == [5, 5, 2, 2]
    monkeypatch.setattr(loop, "PAD_SLACK", float("inf"))  # padding unbounded: one micro-batch
    assert len(tr._micro_batches(rs, list(range(14)))) == 1


def test_split_update_has_the_one_micro_batch_gradient(tmp_path, monkeypatch):
    grads = {}
    for slack in (loop.PAD_SLACK, float("inf")):
        monkeypatch.setattr(loop, "PAD_SLACK", slack)
        tr = _trainer(tmp_path)
        rs = _rollouts(len(tr.tokenizer))
        adv = torch.linspace(-1.0, 1.0, len(rs))  # [N]
        step = tr.optimizer.step

        def record(*a, _tr=tr, _slack=slack, _step=step, **k):
            grads[_slack] = {n: p.grad.clone() for n, p in _tr.model.named_parameters()}
            return _step(*a, **k)

        monkeypatch.setattr(tr.optimizer, "step", record)
        n_mb = len(tr._micro_batches(rs, list(range(len(rs)))))
        assert n_mb == (2 if slack != float("inf") else 1)
        tr._update(rs, adv)
    split, whole = grads[loop.PAD_SLACK], grads[float("inf")]
    scale = max(g.abs().max().item() for g in whole.values())
    assert scale > 0
    for n in whole:
        assert torch.allclose(split[n], whole[n], rtol=1e-4, atol=1e-5 * scale), n
