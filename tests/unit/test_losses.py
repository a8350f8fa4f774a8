"""Token-level PPO loss (ZPPO.md §2): hand-computed values, gradients and stats; gradient accumulation; TRL as oracle.

Gradient of the loss w.r.t. a token's log-prob, by hand: J = ratio * A with ratio = exp(logp - old), so
dJ/dlogp = ratio * A on an unclipped token and 0 where a clip branch is active; d loss / d logp = -ratio * A / N.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from zppo_core.algo.losses import (
    LossStats,
    gather_token_logprobs,
    masked_mean,
    ppo_clip_loss,
    token_entropy_from_logits,
)

D = torch.float64
OLD = -1.0  # every old log-prob in the hand-computed cases; logp = OLD + log(ratio)


def _inputs(ratios, advantages, mask=None):
    """Build (logprobs leaf, old_logprobs, advantages, mask) from per-token ratios [B][T] and advantages [B]."""
    r = torch.tensor(ratios, dtype=D)  # [B, T]
    old = torch.full_like(r, OLD)  # [B, T]
    logp = (old + torch.log(r)).requires_grad_(True)  # [B, T] leaf
    adv = torch.tensor(advantages, dtype=D)  # [B]
    m = torch.ones_like(r, dtype=torch.bool) if mask is None else torch.tensor(mask, dtype=torch.bool)  # [B, T]
    return logp, old, adv, m


def _k3(r: float) -> float:
    return (r - 1.0) - math.log(r)


def _close(t: torch.Tensor, expected) -> None:
    assert torch.allclose(t.detach(), torch.as_tensor(expected, dtype=t.dtype), rtol=1e-9, atol=1e-12), (t, expected)


# ---------------------------------------------------------------------------------------------------------------
# hand-computed cases (B = 2, T = 3)
# ---------------------------------------------------------------------------------------------------------------


def test_unclipped():
    # A = [1, -1/2]; every ratio inside [0.8, 1.28] -> no clipping anywhere.
    # J row 0 = 1 * [1.0, 1.1, 0.9]        = [1.0, 1.1, 0.9]        sum  3.0
    # J row 1 = -1/2 * [1.0, 1.2, 0.85]    = [-0.5, -0.6, -0.425]   sum -1.525
    # loss = -(3.0 - 1.525) / 6 = -1.475 / 6
    logp, old, adv, m = _inputs([[1.0, 1.1, 0.9], [1.0, 1.2, 0.85]], [1.0, -0.5])
    loss, st = ppo_clip_loss(logp, old, adv, m)
    _close(loss, -1.475 / 6)
    loss.backward()
    # grad = -ratio * A / 6
    _close(logp.grad, [[-1.0 / 6, -1.1 / 6, -0.9 / 6], [0.5 / 6, 0.6 / 6, 0.425 / 6]])
    assert (st.clip_low_frac, st.clip_high_frac, st.dual_clip_frac) == (0.0, 0.0, 0.0)
    assert st.ratio_mean == pytest.approx((1.0 + 1.1 + 0.9 + 1.0 + 1.2 + 0.85) / 6)
    assert st.approx_kl == pytest.approx(sum(_k3(r) for r in [1.0, 1.1, 0.9, 1.0, 1.2, 0.85]) / 6)


CLIP_RATIOS = [[1.5, 0.5, 1.0], [0.5, 3.0, 12.0]]
CLIP_ADV = [2.0, -1.0]
# row 0, A = 2 > 0:
#   r = 1.5 > 1.28: min(3.0, 1.28 * 2 = 2.56) = 2.56       clip-high active, grad 0
#   r = 0.5:        min(1.0, 0.8 * 2 = 1.6)   = 1.0        unclipped (the low clip only binds for A < 0)
#   r = 1.0:        2.0                                    unclipped
# row 1, A = -1 < 0:
#   r = 0.5 < 0.8:  min(-0.5, -0.8)   = -0.8               clip-low active, grad 0
#   r = 3.0:        min(-3.0, -1.28)  = -3.0               unclipped (ratio above 1.28 is not clipped for A < 0)
#   r = 12 > c=10:  min(-12, -1.28) = -12; max(-12, -10) = -10   dual clip active, grad 0
# sum J = (2.56 + 1.0 + 2.0) + (-0.8 - 3.0 - 10.0) = 5.56 - 13.8 = -8.24  -> loss = 8.24 / 6


def test_clip_low_clip_high_and_dual_clip():
    logp, old, adv, m = _inputs(CLIP_RATIOS, CLIP_ADV)
    loss, st = ppo_clip_loss(logp, old, adv, m, eps_low=0.2, eps_high=0.28, dual_clip=10.0)
    _close(loss, 8.24 / 6)
    loss.backward()
    # unclipped grads: -r * A / 6 -> row 0: r=0.5: -1/6, r=1: -2/6 ; row 1: r=3: +3/6
    _close(logp.grad, [[0.0, -1.0 / 6, -2.0 / 6], [0.0, 3.0 / 6, 0.0]])
    assert st.clip_low_frac == pytest.approx(1 / 6)
    assert st.clip_high_frac == pytest.approx(1 / 6)
    assert st.dual_clip_frac == pytest.approx(1 / 6)
    assert st.ratio_mean == pytest.approx(18.5 / 6)
    assert st.approx_kl == pytest.approx(sum(_k3(r) for row in CLIP_RATIOS for r in row) / 6)


def test_dual_clip_off():
    # Same inputs, dual_clip=None: the r = 12 token keeps J = -12 and its gradient -(12 * -1) / 6 = 2.
    # sum J = 5.56 - 0.8 - 3.0 - 12.0 = -10.24 -> loss = 10.24 / 6
    logp, old, adv, m = _inputs(CLIP_RATIOS, CLIP_ADV)
    loss, st = ppo_clip_loss(logp, old, adv, m, dual_clip=None)
    _close(loss, 10.24 / 6)
    loss.backward()
    _close(logp.grad, [[0.0, -1.0 / 6, -2.0 / 6], [0.0, 3.0 / 6, 2.0]])
    assert st.dual_clip_frac == 0.0


def test_masked_tokens_ignored_and_num_tokens():
    # mask row 0 = [1, 1, 0], row 1 = [1, 0, 0]; masked positions hold garbage (huge ratio, -inf, nan).
    # A = [1, -2]; unmasked ratios: row 0 [1.2, 0.9], row 1 [0.95], all unclipped (1.2 < 1.28; 0.95 > 0.8)
    # J = 1 * 1.2 + 1 * 0.9 + (-2) * 0.95 = 2.1 - 1.9 = 0.2   -> loss = -0.2 / 3
    logp, old, adv, m = _inputs([[1.2, 0.9, 50.0], [0.95, 1e-3, 7.0]], [1.0, -2.0], [[1, 1, 0], [1, 0, 0]])
    with torch.no_grad():
        old[1, 1] = float("-inf")  # padding conventions must not leak into the loss or the grads
        logp[1, 2] = float("nan")
    loss, st = ppo_clip_loss(logp, old, adv, m)
    _close(loss, -0.2 / 3)  # 3 unmasked tokens
    loss.backward()
    _close(logp.grad, [[-1.2 / 3, -0.9 / 3, 0.0], [2 * 0.95 / 3, 0.0, 0.0]])
    assert st.ratio_mean == pytest.approx((1.2 + 0.9 + 0.95) / 3)
    assert (st.clip_low_frac, st.clip_high_frac, st.dual_clip_frac) == (0.0, 0.0, 0.0)

    # num_tokens = 10 (e.g. the token count of the whole mini-batch): same sum, divided by 10
    logp2, old2, adv2, m2 = _inputs([[1.2, 0.9, 50.0], [0.95, 1e-3, 7.0]], [1.0, -2.0], [[1, 1, 0], [1, 0, 0]])
    loss2, st2 = ppo_clip_loss(logp2, old2, adv2, m2.float(), num_tokens=10)  # float 0/1 mask works too
    _close(loss2, -0.2 / 10)
    loss2.backward()
    _close(logp2.grad, [[-1.2 / 10, -0.9 / 10, 0.0], [2 * 0.95 / 10, 0.0, 0.0]])
    assert st2.ratio_mean == pytest.approx(st.ratio_mean)  # stats stay per-call token means


def test_zero_advantage_and_empty_mask():
    logp, old, adv, m = _inputs([[2.0, 0.1, 1.0], [1.0, 1.0, 1.0]], [0.0, 0.0])
    loss, _ = ppo_clip_loss(logp, old, adv, m)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(logp.grad == 0)
    logp, old, adv, _ = _inputs([[2.0, 0.1, 1.0], [1.0, 1.0, 1.0]], [1.0, -1.0])
    loss, st = ppo_clip_loss(logp, old, adv, torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and st.ratio_mean == 0.0


def test_gradients_only_through_logprobs():
    logp, old, adv, m = _inputs(CLIP_RATIOS, CLIP_ADV)
    old.requires_grad_(True)
    adv.requires_grad_(True)
    loss, _ = ppo_clip_loss(logp, old, adv, m)
    loss.backward()
    assert old.grad is None and adv.grad is None and logp.grad is not None


def test_bad_arguments_raise():
    logp, old, adv, m = _inputs(CLIP_RATIOS, CLIP_ADV)
    with pytest.raises(ValueError):
        ppo_clip_loss(logp, old, adv, m, dual_clip=0.5)
    with pytest.raises(ValueError):
        ppo_clip_loss(logp, old, adv[:1], m)
    with pytest.raises(ValueError):
        ppo_clip_loss(logp, old[:, :2], adv, m)


def test_lossstats_are_plain_floats():
    logp, old, adv, m = _inputs(CLIP_RATIOS, CLIP_ADV)
    _, st = ppo_clip_loss(logp, old, adv, m)
    assert isinstance(st, LossStats)
    assert all(type(v) is float for v in vars(st).values())


# ---------------------------------------------------------------------------------------------------------------
# gradient accumulation: micro-batches normalised by the mini-batch token count add up to the mini-batch loss
# ---------------------------------------------------------------------------------------------------------------


def _random_batch(seed: int, b: int = 8, t: int = 6, scale: float = 0.5, dtype=D):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(b, t, generator=g, dtype=dtype) * 3  # [B, T] log-probs in (-3, 0]
    logp = old + torch.randn(b, t, generator=g, dtype=dtype) * scale  # ratios spread in and out of the clip range
    adv = torch.randn(b, generator=g, dtype=dtype)  # [B] mixed signs
    mask = torch.rand(b, t, generator=g) < 0.7  # [B, T]
    mask[:, 0] = True  # every rollout has at least one token
    return logp, old, adv, mask


@pytest.mark.parametrize("split", [[3, 5], [1, 2, 2, 3], [8]])
@pytest.mark.parametrize("dual_clip", [10.0, None])
def test_gradient_accumulation_equals_full_batch(split, dual_clip):
    logp, old, adv, mask = _random_batch(seed=sum(split), scale=1.5)  # scale 1.5: some ratios > 10
    full = logp.clone().requires_grad_(True)
    loss_full, _ = ppo_clip_loss(full, old, adv, mask, dual_clip=dual_clip)
    loss_full.backward()

    micro = logp.clone().requires_grad_(True)
    n_total = float(mask.sum())
    total = torch.zeros((), dtype=D)
    start = 0
    for size in split:
        sl = slice(start, start + size)
        part, _ = ppo_clip_loss(micro[sl], old[sl], adv[sl], mask[sl], dual_clip=dual_clip, num_tokens=n_total)
        part.backward()  # gradients accumulate in micro.grad, as in the training loop
        total = total + part.detach()
        start += size
    assert torch.allclose(total, loss_full.detach(), rtol=1e-12, atol=1e-14)
    assert torch.allclose(micro.grad, full.grad, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------------------------
# TRL as oracle
# ---------------------------------------------------------------------------------------------------------------


def _trl_loss(logp, old, adv, mask, *, eps_low, eps_high, num_items, delta=None):
    """Run the installed TRL GRPOTrainer._compute_loss on our tensors; returns (loss, metrics dict).

    The trainer is built with object.__new__ (no model loading, no accelerate set-up); only the attributes that
    _compute_loss reads are set, with a real GRPOConfig(loss_type="dapo", beta=0). The one model-facing method,
    _get_per_token_logps_and_entropies, is replaced on the instance to return our `logp` tensor, so TRL's own
    ratio, clipping, masking, normalisation and clip-metric code runs unchanged on it.
    """
    from trl import GRPOConfig, GRPOTrainer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        args = GRPOConfig(
            output_dir=tempfile.gettempdir(),
            loss_type="dapo",  # token-level: sum over active tokens / num_items_in_batch
            beta=0.0,
            epsilon=eps_low,
            epsilon_high=eps_high,
            delta=delta,
            importance_sampling_level="token",
            top_entropy_quantile=1.0,
            report_to=[],
            use_cpu=True,
        )
    tr = object.__new__(GRPOTrainer)
    tr.args = args
    tr.loss_type = args.loss_type
    tr.beta = args.beta
    tr.epsilon_low = args.epsilon
    tr.epsilon_high = args.epsilon_high
    tr.importance_sampling_level = args.importance_sampling_level
    tr.top_entropy_quantile = args.top_entropy_quantile
    tr.off_policy_mask_threshold = None
    tr.aux_loss_enabled = False
    tr.use_vllm = False
    tr._entropy_bonus_enabled = False
    tr.current_gradient_accumulation_steps = 1  # with args.steps_per_generation == 1: normaliser = num_items
    tr.model = torch.nn.Linear(1, 1).train()  # only `.training` is read
    tr._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    tr.accelerator = SimpleNamespace(
        num_processes=1, gather=lambda x: x, gather_for_metrics=lambda x: x, reduce=lambda x, reduction: x,
        sync_gradients=True,
    )
    tr._get_per_token_logps_and_entropies = lambda *a, **k: (logp, torch.zeros_like(logp), None)
    b, t = logp.shape
    inputs = {
        "prompt_ids": torch.zeros(b, 1, dtype=torch.long),
        "prompt_mask": torch.ones(b, 1, dtype=torch.long),
        "completion_ids": torch.zeros(b, t, dtype=torch.long),
        "completion_mask": mask.long(),
        "advantages": adv,
        "old_per_token_logps": old,
        "num_items_in_batch": torch.tensor(float(num_items), dtype=logp.dtype),
    }
    assert args.steps_per_generation == 1
    loss = tr._compute_loss(tr.model, inputs)
    return loss, tr._metrics["train"]


@pytest.mark.parametrize("seed", range(5))
def test_matches_trl_dapo_loss(seed):
    """Ours with dual_clip=None equals TRL GRPOTrainer loss_type="dapo", beta=0 (value, grads, clip fractions).

    TRL has no dual clip, hence dual_clip=None here; its `delta` option is compared in the next test.
    Also checks the normaliser: TRL's num_items_in_batch plays the role of our num_tokens.
    """
    pytest.importorskip("trl")
    eps_low, eps_high = [(0.2, 0.28), (0.1, 0.3), (0.2, 0.2), (0.3, 0.28), (0.15, 0.5)][seed]
    logp, old, adv, mask = _random_batch(seed, b=6, t=7, scale=0.6)
    for num_tokens in (None, float(mask.sum()) + 5.0):
        ours_lp = logp.clone().requires_grad_(True)
        ours, st = ppo_clip_loss(ours_lp, old, adv, mask, eps_low, eps_high, dual_clip=None, num_tokens=num_tokens)
        ours.backward()
        trl_lp = logp.clone().requires_grad_(True)
        n_items = float(mask.sum()) if num_tokens is None else num_tokens
        theirs, metrics = _trl_loss(trl_lp, old, adv, mask, eps_low=eps_low, eps_high=eps_high, num_items=n_items)
        theirs.backward()
        assert torch.allclose(ours.detach(), theirs.detach(), rtol=1e-12, atol=1e-14)
        assert torch.allclose(ours_lp.grad, trl_lp.grad, rtol=1e-12, atol=1e-14)
        # TRL logs its clip fractions in fp32
        assert st.clip_low_frac == pytest.approx(metrics["clip_ratio/low_mean"][-1], abs=1e-6)
        assert st.clip_high_frac == pytest.approx(metrics["clip_ratio/high_mean"][-1], abs=1e-6)
        # the random inputs do exercise both clip branches and the unclipped one
        assert st.clip_low_frac > 0 and st.clip_high_frac > 0 and st.clip_low_frac + st.clip_high_frac < 1


@pytest.mark.parametrize("seed", range(3))
def test_trl_delta_vs_dual_clip(seed):
    """TRL's `delta` ("two-sided clipping": ratio clamped from above at delta before the PPO min, on every token).

    With delta = c > 1 + eps_high this coincides with dual clip c: for A < 0 and ratio > c both give c * A with
    zero gradient; for A > 0 and ratio > c both are already clipped at (1 + eps_high) * A. Rows 0 and 1 get
    ratios around 20 (one negative, one positive advantage) so both cases are exercised.
    """
    pytest.importorskip("trl")
    logp, old, adv, mask = _random_batch(100 + seed, b=8, t=8, scale=1.5)
    jitter = 0.1 * torch.randn(2, 8, generator=torch.Generator().manual_seed(seed), dtype=D)  # [2, T]
    logp[:2] = old[:2] + math.log(20.0) + jitter  # ratios ~ 20 > c = 10
    adv[0], adv[1] = -abs(adv[0]), abs(adv[1])
    ours_lp = logp.clone().requires_grad_(True)
    ours, st = ppo_clip_loss(ours_lp, old, adv, mask, 0.2, 0.28, dual_clip=10.0)
    ours.backward()
    assert st.dual_clip_frac > 0
    trl_lp = logp.clone().requires_grad_(True)
    theirs, _ = _trl_loss(trl_lp, old, adv, mask, eps_low=0.2, eps_high=0.28, num_items=float(mask.sum()), delta=10.0)
    theirs.backward()
    assert torch.allclose(ours.detach(), theirs.detach(), rtol=1e-12, atol=1e-14)
    assert torch.allclose(ours_lp.grad, trl_lp.grad, rtol=1e-12, atol=1e-14)
    # and without delta, TRL differs from our dual clip exactly on the dual-clipped tokens
    plain, _ = _trl_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.28, num_items=float(mask.sum()))
    assert not torch.allclose(ours.detach(), plain.detach())


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def test_masked_mean():
    x = torch.tensor([[1.0, 2.0, float("nan")], [4.0, float("inf"), 6.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    assert masked_mean(x, m).item() == pytest.approx((1 + 2 + 4 + 6) / 4)
    assert torch.allclose(masked_mean(x, m.bool(), dim=-1), torch.tensor([1.5, 5.0]))
    assert masked_mean(x, torch.zeros_like(m)).item() == 0.0


def test_gather_token_logprobs_matches_log_softmax():
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 5, 11, generator=g) * 4).requires_grad_(True)  # [B, T, V]
    ids = torch.randint(0, 11, (3, 5), generator=g)  # [B, T]
    got = gather_token_logprobs(logits, ids)
    ref = torch.log_softmax(logits.double(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    assert got.dtype == torch.float32 and got.shape == (3, 5)
    assert torch.allclose(got.double(), ref, atol=1e-5)
    (gx,) = torch.autograd.grad(got.sum(), logits)
    (gr,) = torch.autograd.grad(ref.sum(), logits)
    assert torch.allclose(gx.double(), gr.double(), atol=1e-5)
    # bf16 logits come back as fp32 computed from the upcast values
    lb = logits.detach().bfloat16()
    got_bf = gather_token_logprobs(lb, ids)
    ref_bf = torch.log_softmax(lb.float(), -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    assert got_bf.dtype == torch.float32 and torch.allclose(got_bf, ref_bf, atol=1e-5)


def test_gather_token_logprobs_matches_trl_selective_log_softmax():
    trl_utils = pytest.importorskip("trl.trainer.utils")
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 9, generator=g, dtype=D) * 3
    ids = torch.randint(0, 9, (2, 4), generator=g)
    assert torch.allclose(gather_token_logprobs(logits, ids), trl_utils.selective_log_softmax(logits, ids))


@pytest.mark.parametrize("chunk", [None, 1, 2 * 7 * 13, 10**9])  # default, one row (at least), 2 rows, all
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_helpers_equal_one_row_at_a_time(monkeypatch, chunk, dtype):
    """gather_token_logprobs and token_entropy_from_logits run whole chunks of rows; values and gradients must be
    bit-identical to the one-row-at-a-time computation (what they did before), on a non-contiguous slice of
    logits as the training forward passes it."""
    import zppo_core.algo.losses as losses

    if chunk is not None:
        monkeypatch.setattr(losses, "CHUNK_ELEMENTS", chunk)
    g = torch.Generator().manual_seed(3)
    full = (torch.randn(5, 8, 13, generator=g) * 4).to(dtype)  # [B, T+1, V]
    full[1, 2, 4] = float("-inf")  # a masked vocabulary entry
    ids = torch.randint(0, 13, (5, 7), generator=g)  # [B, T]
    ids[1, 2] = 5
    a = full.clone().requires_grad_(True)
    b = full.clone().requires_grad_(True)
    w = torch.randn(5, 7, generator=g)  # [B, T] an arbitrary upstream gradient
    rows = []
    for row, row_ids in zip(a[:, :7], ids):  # [T, V], [T]: the reference, one row at a time
        r = row.float()
        rows.append(r.gather(-1, row_ids.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(r, dim=-1))
    ref = torch.stack(rows)  # [B, T]
    got = gather_token_logprobs(b[:, :7], ids)  # [B, T]
    assert torch.equal(got, ref)
    (ref * w).sum().backward()
    (got * w).sum().backward()
    assert torch.equal(a.grad, b.grad)
    ref_h = []
    for row in full[:, :7]:
        r = row.float()
        log_p = r - torch.logsumexp(r, dim=-1, keepdim=True)
        ref_h.append(-(torch.exp(log_p) * log_p.masked_fill(torch.isneginf(r), 0.0)).sum(-1))
    assert torch.equal(token_entropy_from_logits(full[:, :7]), torch.stack(ref_h))
    assert gather_token_logprobs(full[:0], ids[:0]).shape == (0, 7)
    assert token_entropy_from_logits(full[:0]).shape == (0, 8)


def test_token_entropy_from_logits():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 7, generator=g) * 5  # [B, T, V]
    got = token_entropy_from_logits(logits)
    ref = torch.distributions.Categorical(logits=logits.double()).entropy()
    assert got.dtype == torch.float32 and got.shape == (2, 4)
    assert torch.allclose(got.double(), ref, atol=1e-5)
    # uniform over V: log V; one-hot (others -inf): 0; huge logits stay finite (no overflow)
    assert token_entropy_from_logits(torch.zeros(1, 1, 8)).item() == pytest.approx(math.log(8))
    peaked = torch.full((1, 1, 5), float("-inf"))
    peaked[..., 2] = 3.0
    assert token_entropy_from_logits(peaked).item() == 0.0
    big = torch.tensor([[[1e4, 1e4, -1e4]]])
    # fp32 spacing at 1e4 is ~1e-3, which bounds the accuracy of logsumexp there (H = logZ - sum p z would lose it all)
    assert token_entropy_from_logits(big).item() == pytest.approx(math.log(2), abs=2e-3)
    assert token_entropy_from_logits(logits.bfloat16()).dtype == torch.float32
