"""Token-level PPO loss of ZPPO, and small log-prob helpers (ZPPO.md §2 "Loss"; paper §3.1, App. C, Tab. 8).

For every completion token t of rollout b, with the sampling policy's log-prob (old) and the current one:

    ratio_bt = exp(logp_bt - old_logp_bt)
    J_bt     = min(ratio_bt * A_b, clip(ratio_bt, 1 - eps_low, 1 + eps_high) * A_b)        clip-higher (DAPO)
    J_bt     = max(J_bt, c * A_b)                                          only where A_b < 0 (dual clip, c = 10)
    loss     = - sum_{b,t} mask_bt * J_bt / num_tokens                     token-level averaging

with eps_low = 0.20, eps_high = 0.28, c = 10; no KL term, no entropy bonus. Optional ``is_weights`` [B, T]
(detached; truncated importance-sampling weights π_old/π_engine, see ``train/old_logprobs.py``) multiply each
token's objective J_bt before the sum, as TRL multiplies its per-token loss. ``num_tokens`` defaults to the
number of unmasked tokens of the call; the training loop passes the token count of the whole mini-batch when it
splits it into micro-batches, so that the sum of the micro-batch losses (and their gradients) equals the loss of
the mini-batch in one pass.

Where a clip branch is active the token's gradient is zero: A > 0 with ratio > 1 + eps_high, A < 0 with
ratio < 1 - eps_low, and A < 0 with ratio > c (dual clip). Gradients flow through ``logprobs`` only
(``old_logprobs`` and ``advantages`` are detached). Internals run in fp32 (fp64 for fp64 inputs).

Compared with TRL's GRPOTrainer (``loss_type="dapo"``, ``beta=0``, ``epsilon``/``epsilon_high``): identical
when ``dual_clip=None``. TRL has no option called dual clip, but its ``delta`` ("two-sided clipping": the ratio is
clamped at delta before the PPO min, for both signs of A) gives the same value and gradient as dual clip c = delta
whenever delta > 1 + eps_high: for A < 0 and ratio > c both give c * A; for A > 0 and ratio > c both are already
clipped at (1 + eps_high) * A. tests/unit/test_losses.py checks both equalities against the installed TRL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossStats:
    """Diagnostics of one ``ppo_clip_loss`` call, as plain floats, token-weighted over its masked tokens."""

    clip_low_frac: float  # A < 0 and ratio < 1 - eps_low (lower clip active)
    clip_high_frac: float  # A > 0 and ratio > 1 + eps_high (upper clip active)
    dual_clip_frac: float  # A < 0 and ratio > dual_clip (dual clip active); 0 when dual_clip is None
    ratio_mean: float  # mean ratio
    approx_kl: float  # mean of (ratio - 1) - log(ratio): the k3 estimator of KL(old || new)

    def metrics(self) -> dict[str, float]:
        """The stats under the names the training loop logs (train/*)."""
        return {"train/clip_low_frac": self.clip_low_frac, "train/clip_high_frac": self.clip_high_frac,
                "train/dual_clip_frac": self.dual_clip_frac, "train/ratio_mean": self.ratio_mean,
                "train/approx_kl": self.approx_kl}


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over positions where ``mask`` is true/1 (over all dims, or along ``dim``).

    Masked-out positions never contribute, even when they hold inf/nan. An empty mask gives 0, not nan.
    """
    m = mask.to(torch.bool)  # same shape as x
    x_kept = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))  # same shape as x
    if dim is None:
        return x_kept.sum() / m.sum().clamp(min=1)  # []
    return x_kept.sum(dim) / m.sum(dim).clamp(min=1)  # x.shape without dim


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    dual_clip: float | None = 10.0,
    num_tokens: float | None = None,
    is_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, LossStats]:
    """Token-level PPO with clip-higher and dual clip, no KL, no entropy term (see module docstring).

    Args:
        logprobs: [B, T] current policy log-probs of the completion tokens (requires grad).
        old_logprobs: [B, T] log-probs under the policy that sampled them (detached).
        advantages: [B] one advantage per rollout, broadcast over its tokens (detached).
        mask: [B, T] bool or 0/1 float, true on completion tokens that count.
        eps_low, eps_high: ratio clip range [1 - eps_low, 1 + eps_high].
        dual_clip: c > 1, lower bound c * A on the objective of A < 0 tokens; None disables it.
        num_tokens: normaliser; defaults to the number of unmasked tokens in this call (at least 1).
        is_weights: [B, T] per-token weights of the objective (detached), or None.

    Returns:
        (scalar loss, LossStats).
    """
    if logprobs.dim() != 2 or old_logprobs.shape != logprobs.shape or mask.shape != logprobs.shape:
        raise ValueError(
            f"logprobs, old_logprobs and mask must share shape [B, T]; got {tuple(logprobs.shape)}, "
            f"{tuple(old_logprobs.shape)}, {tuple(mask.shape)}"
        )
    if advantages.shape != logprobs.shape[:1]:
        raise ValueError(f"advantages must be [B] = [{logprobs.shape[0]}], got {tuple(advantages.shape)}")
    if dual_clip is not None and dual_clip <= 1.0:
        raise ValueError(f"dual_clip must be > 1 (paper: 10) or None, got {dual_clip}")

    dtype = torch.promote_types(logprobs.dtype, torch.float32)  # fp32, or fp64 for fp64 inputs
    m = mask.to(torch.bool)  # [B, T]
    m_f = m.to(dtype)  # [B, T]
    adv = advantages.detach().to(dtype).unsqueeze(-1)  # [B, 1]

    # masked positions get log-ratio 0 (ratio 1) so that padding values (-inf, nan) never reach exp or grads
    log_ratio = logprobs.to(dtype) - old_logprobs.detach().to(dtype)  # [B, T]
    log_ratio = torch.where(m, log_ratio, torch.zeros_like(log_ratio))  # [B, T]
    ratio = torch.exp(log_ratio)  # [B, T]

    surr_unclipped = ratio * adv  # [B, T]
    surr_clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv  # [B, T]
    objective = torch.minimum(surr_unclipped, surr_clipped)  # [B, T]
    neg_adv = adv < 0  # [B, 1]
    if dual_clip is not None:
        dual_floor = dual_clip * adv  # [B, 1]
        objective = torch.where(neg_adv, torch.maximum(objective, dual_floor), objective)  # [B, T]

    if is_weights is not None:
        if is_weights.shape != logprobs.shape:
            raise ValueError(f"is_weights must be [B, T] = {tuple(logprobs.shape)}, got {tuple(is_weights.shape)}")
        objective = objective * is_weights.detach().to(dtype)  # [B, T]
    denom = m_f.sum().clamp(min=1.0) if num_tokens is None else num_tokens  # [] or float
    loss = -(objective * m_f).sum() / denom  # []

    with torch.no_grad():
        r = ratio.detach()  # [B, T]
        pos_adv = adv > 0  # [B, 1]
        clip_low = neg_adv & (r < 1.0 - eps_low)  # [B, T]
        clip_high = pos_adv & (r > 1.0 + eps_high)  # [B, T]
        if dual_clip is not None:
            dual = neg_adv & (r > dual_clip)  # [B, T]
        else:
            dual = torch.zeros_like(m)  # [B, T]
        k3 = (r - 1.0) - log_ratio.detach()  # [B, T]
        count = m_f.sum().clamp(min=1.0)  # []
        per_token = torch.stack([clip_low.to(dtype), clip_high.to(dtype), dual.to(dtype), r, k3])  # [5, B, T]
        values = ((per_token * m_f).sum(dim=(1, 2)) / count).tolist()  # [5] -> one host sync
    stats = LossStats(
        clip_low_frac=values[0],
        clip_high_frac=values[1],
        dual_clip_frac=values[2],
        ratio_mean=values[3],
        approx_kl=values[4],
    )
    return loss, stats


CHUNK_ELEMENTS = 1 << 22  # logits elements handled per step of the two helpers below (16 MB in fp32)


def _row_chunks(logits: torch.Tensor):
    """Slices of whole rows of `logits` [B, T, V], each at most CHUNK_ELEMENTS elements (at least one row): the
    fp32 copy and the logsumexp temporaries stay that small at a real vocabulary, while a small batch (the tiny
    models: 32 x 40 x 108) runs in one call instead of B (per-row calls were ~2% of a tiny rollout step, forward
    and backward). Every position's reduction over V is the same, so the values match the one-row-at-a-time
    computation."""
    per_row = max(logits[0].numel(), 1) if logits.shape[0] else 1
    k = max(1, CHUNK_ELEMENTS // per_row)
    return [slice(s, s + k) for s in range(0, logits.shape[0], k)]


def gather_token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token_ids] per position, fp32: logits.gather(token) - logsumexp(logits).

    Never materialises a full [B, T, V] log-softmax; the fp32 copy of the logits is made a chunk of rows at a time
    (`_row_chunks`). logits: [B, T, V] (any float dtype); token_ids: [B, T] long. Returns [B, T] fp32 (fp64 for
    fp64 logits).
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    parts = []
    for rows in _row_chunks(logits):
        chunk = logits[rows].to(dtype)  # [k, T, V] fp32 (fp64 stays)
        picked = chunk.gather(-1, token_ids[rows].unsqueeze(-1)).squeeze(-1)  # [k, T]
        parts.append(picked - torch.logsumexp(chunk, dim=-1))  # [k, T]
    if not parts:
        return logits.new_zeros(token_ids.shape, dtype=dtype)  # [0, T]
    return parts[0] if len(parts) == 1 else torch.cat(parts)  # [B, T]


def token_entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) per position, fp32, computed stably: H = -sum p * log p, log p = z - logsumexp(z).

    Vocabulary entries at -inf (masked tokens) contribute 0. logits: [B, T, V], a chunk of rows at a time
    (`_row_chunks`). Returns [B, T] fp32 (fp64 for fp64).
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    parts = []
    for rows in _row_chunks(logits):
        chunk = logits[rows].to(dtype)  # [k, T, V] fp32 (fp64 stays)
        log_z = torch.logsumexp(chunk, dim=-1, keepdim=True)  # [k, T, 1]
        log_p = chunk - log_z  # [k, T, V] log-softmax; small numbers, so no cancellation of huge logits
        probs = torch.exp(log_p)  # [k, T, V]
        log_p = log_p.masked_fill(torch.isneginf(chunk), 0.0)  # [k, T, V] p = 0 there: avoid 0 * -inf
        parts.append(-(probs * log_p).sum(dim=-1))  # [k, T]
    if not parts:
        return logits.new_zeros(logits.shape[:-1], dtype=dtype)  # [0, T]
    return parts[0] if len(parts) == 1 else torch.cat(parts)  # [B, T]
