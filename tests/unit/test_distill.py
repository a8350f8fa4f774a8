"""Per-token generalized JSD (the distillation baselines' loss): a hand-computed value, masking and the token
normaliser, and TRL's `GKDTrainer.generalized_jsd_loss` as the oracle for values and gradients."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from zppo_core.algo.distill import generalized_jsd_loss, token_jsd
from zppo_core.train.methods.distill import DistillObjective

D = torch.float64


def test_hand_computed_two_token_vocabulary():
    # S = softmax([0, 0]) = (1/2, 1/2); T = softmax([ln 3, 0]) = (3/4, 1/4); M = (5/8, 3/8) at beta = 1/2
    # KL(T||M) = 3/4 ln(6/5) + 1/4 ln(2/3) = 0.0353749;  KL(S||M) = 1/2 ln(4/5) + 1/2 ln(4/3) = 0.0322693
    # JSD = (0.0353749 + 0.0322693) / 2 = 0.0338221
    s = torch.tensor([[[0.0, 0.0]]], dtype=D)  # [1, 1, 2]
    t = torch.tensor([[[math.log(3.0), 0.0]]], dtype=D)  # [1, 1, 2]
    kl_tm = 0.75 * math.log(1.2) + 0.25 * math.log(2 / 3)
    kl_sm = 0.5 * math.log(0.8) + 0.5 * math.log(4 / 3)
    assert token_jsd(s, t, 0.5).item() == pytest.approx(0.5 * (kl_tm + kl_sm), abs=1e-12)
    assert token_jsd(s, t, 0.5).item() == pytest.approx(0.0338221, abs=1e-7)
    # beta = 0: KL(T||S) = 3/4 ln(3/2) + 1/4 ln(1/2); beta = 1: KL(S||T) = 1/2 ln(2/3) + 1/2 ln 2
    assert token_jsd(s, t, 0.0).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-12)
    assert token_jsd(s, t, 1.0).item() == pytest.approx(0.5 * math.log(2 / 3) + 0.5 * math.log(2.0), abs=1e-12)
    assert token_jsd(t, t, 0.5).item() == pytest.approx(0.0, abs=1e-15)  # identical distributions


def test_mask_and_token_normaliser():
    s = torch.tensor([[[0.0, 0.0], [5.0, -5.0]]], dtype=D)  # [1, 2, 2]: the second position is masked out
    t = torch.tensor([[[math.log(3.0), 0.0], [-5.0, 5.0]]], dtype=D)  # [1, 2, 2]
    mask = torch.tensor([[True, False]])
    loss, mean = generalized_jsd_loss(s, t, mask, beta=0.5)
    assert loss.item() == pytest.approx(0.0338221, abs=1e-7) and mean == pytest.approx(0.0338221, abs=1e-7)
    loss4, _ = generalized_jsd_loss(s, t, mask, beta=0.5, num_tokens=4.0)  # a mini-batch of 4 tokens in all
    assert loss4.item() == pytest.approx(0.0338221 / 4, abs=1e-8)


def test_objective_needs_both_logits_and_makes_one_update():
    obj = DistillObjective(0.5)
    assert obj.needs_teacher_logits and obj.updates_per_step == 1
    lp = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="teacher's logits"):
        obj.loss(lp, lp, torch.zeros(1), torch.ones(1, 1, dtype=torch.bool), 1.0)


def test_shape_mismatch_names_the_vocabularies():
    with pytest.raises(ValueError, match="vocabulary"):
        token_jsd(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_matches_trl_value_and_gradient(beta):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from trl.experimental.gkd.gkd_trainer import GKDTrainer
    g = torch.Generator().manual_seed(7)
    s = torch.randn(3, 5, 11, generator=g, dtype=D)  # [B, T, V]
    t = torch.randn(3, 5, 11, generator=g, dtype=D)
    mask = torch.rand(3, 5, generator=g) > 0.3  # [B, T]
    labels = torch.where(mask, torch.zeros(3, 5, dtype=torch.long), torch.full((3, 5), -100))
    s1, s2 = s.clone().requires_grad_(True), s.clone().requires_grad_(True)
    ours, _ = generalized_jsd_loss(s1, t, mask, beta=beta)
    ref = GKDTrainer.generalized_jsd_loss(s2, t, labels=labels, beta=beta)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-10, abs=1e-12)
    ours.backward()
    ref.backward()
    assert torch.allclose(s1.grad, s2.grad, rtol=1e-9, atol=1e-12)
