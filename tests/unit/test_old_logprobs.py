"""π_old helpers (`train/old_logprobs.py`) and the truncated importance-sampling weight in the PPO loss, with
hand-computed numbers."""

from __future__ import annotations

import math

import pytest
import torch

from zppo_core.algo.losses import ppo_clip_loss
from zppo_core.train.old_logprobs import (
    StepOldLogprobs,
    abs_diff,
    engine_logprobs,
    stack_old,
    tis_weights,
    trainer_logprobs,
)
from zppo_core.types import Completion, Rollout


def _rollout(lps):
    return Rollout("q", 0, "plain", [1], Completion(list(range(len(lps))), list(lps), "", True), 0.0, None)


def test_tis_weights_truncate_the_ratio_of_trainer_to_engine():
    # ρ = exp(old - engine): exp(0.5)=1.6487 kept, exp(2)=7.389 -> cap 2, exp(-1)=0.3679 kept; padding -> 1
    old = torch.tensor([[-1.0, -1.0, -3.0, 0.0]], dtype=torch.float64)  # [1, 4]
    eng = torch.tensor([[-1.5, -3.0, -2.0, 5.0]], dtype=torch.float64)  # [1, 4]
    mask = torch.tensor([[True, True, True, False]])
    w = tis_weights(old, eng, mask, cap=2.0)
    assert torch.allclose(w, torch.tensor([[math.exp(0.5), 2.0, math.exp(-1.0), 1.0]], dtype=torch.float64))
    assert not w.requires_grad


def test_is_weights_multiply_each_tokens_objective():
    # all ratios 1, A = [1, -2]; weights [[0.5, 2], [1, 0.25]]: J = [[0.5, 2], [-2, -0.5]], sum 0, loss 0;
    # gradient d loss / d logp = -w * ratio * A / N = -[[0.5, 2], [-2, -0.5]] / 4
    logp = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
    old = torch.zeros(2, 2, dtype=torch.float64)
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    mask = torch.ones(2, 2, dtype=torch.bool)
    w = torch.tensor([[0.5, 2.0], [1.0, 0.25]], dtype=torch.float64)
    loss, st = ppo_clip_loss(logp, old, adv, mask, is_weights=w)
    assert abs(float(loss.detach())) < 1e-12 and st.ratio_mean == 1.0
    loss.backward()
    assert torch.allclose(logp.grad, -torch.tensor([[0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64) / 4)
    unweighted, _ = ppo_clip_loss(logp.detach(), old, adv, mask)
    assert float(unweighted) == pytest.approx(-(1 + 1 - 2 - 2) / 4)
    with pytest.raises(ValueError, match="is_weights"):
        ppo_clip_loss(logp, old, adv, mask, is_weights=w[:, :1])


def test_engine_and_trainer_rows_pad_and_compare():
    rs = [_rollout([-1.0, -2.0]), _rollout([-0.5])]
    like = torch.zeros(2, 3)
    eng = engine_logprobs(rs, like)
    assert eng.tolist() == [[-1.0, -2.0, 0.0], [-0.5, 0.0, 0.0]]
    old = stack_old({0: torch.tensor([-1.25, -2.0]), 1: torch.tensor([-0.25])}, [0, 1], like)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert abs_diff(old, eng, mask) == (0.5, 0.25, 3.0)  # |0.25| + 0 + |0.25|, max 0.25, 3 tokens
    assert abs_diff(old, eng, torch.zeros_like(mask)) == (0.0, 0.0, 0.0)


def test_trainer_logprobs_use_the_given_forward_per_micro_batch():
    rs = [_rollout([-1.0, -1.0]), _rollout([-2.0]), _rollout([-3.0, -3.0, -3.0])]
    calls = []

    def forward(mb):  # log-prob = -(number of tokens) for every token: identifies the rows
        calls.append(len(mb))
        T = max(len(r.completion.token_ids) for r in mb)
        lp = torch.tensor([[-float(len(r.completion.token_ids))] * T for r in mb], requires_grad=True)
        return lp, None, None

    out = trainer_logprobs(forward, rs, [[2, 0], [1]])
    assert calls == [2, 1] and sorted(out) == [0, 1, 2]
    assert out[0].tolist() == [-2.0, -2.0] and out[1].tolist() == [-1.0] and out[2].tolist() == [-3.0] * 3
    assert not out[0].requires_grad


def test_step_metrics_first_mini_batch_max_kl_and_mismatch():
    rs = [_rollout([-1.0]), _rollout([-1.0])]

    def forward(mb):
        return torch.full((len(mb), 1), -1.5), None, None

    olds = StepOldLogprobs("trainer", 3.0, forward, rs, [[0], [1]])
    like = torch.zeros(1, 1)
    mask = torch.ones(1, 1, dtype=torch.bool)
    old, extra = olds.old([0], [rs[0]], like, mask, first=True)
    assert old.tolist() == [[-1.5]] and extra["is_weights"].item() == pytest.approx(math.exp(-0.5))
    olds.old([1], [rs[1]], like, mask, first=False)  # trainer mode: every micro-batch is compared
    olds.end_mini_batch(10.0, 10.0, 0.0)  # ratio mean 1, KL 0
    olds.end_mini_batch(5.0, 6.0, 0.5)  # ratio mean 1.2, KL 0.1
    m = olds.metrics()
    assert m["train/ratio_mean_first"] == 1.0 and m["train/approx_kl_first"] == 0.0
    assert m["train/approx_kl_max"] == pytest.approx(0.1)
    assert m["rollout/logprob_abs_diff_mean"] == 0.5 and m["rollout/logprob_abs_diff_max"] == 0.5
    assert m["train/tis_weight_mean"] == pytest.approx(math.exp(-0.5))
    # engine mode: π_old is the engine's; only the first mini-batch's current log-probs are compared
    eng = StepOldLogprobs("engine", None, forward, rs, [[0], [1]])
    old, extra = eng.old([0], [rs[0]], torch.full((1, 1), -1.25), mask, first=True)
    assert old.tolist() == [[-1.0]] and extra == {}
    eng.old([1], [rs[1]], torch.full((1, 1), -9.0), mask, first=False)  # after an update: not comparable
    assert eng.metrics()["rollout/logprob_abs_diff_max"] == 0.25
