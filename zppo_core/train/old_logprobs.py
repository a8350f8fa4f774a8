"""PPO's π_old for the mini-batch updates, and what the engine/trainer log-prob mismatch costs.

`algo.old_logprobs` says where π_old comes from:

- `engine`: the rollout engine's per-token log-probs (what sampled the tokens). Exact when the engine computes
  with the trainer's numerics (the tiny scale: the transformers engine shares the trained module), the fast path.
- `trainer`: a no-grad forward of the trained model over every rollout of the step before the first update
  (EasyR1/verl and TRL do this; verl calls the engine path "bypass mode"). The forward uses exactly the micro-
  batches, mode and autocast of the updates, so the first mini-batch starts at ratio 1 bit for bit, however the
  engine's numerics (vLLM kernels, bf16, another batch shape) differ.

Whenever both are known the loop logs `rollout/logprob_abs_diff_mean|max` (|trainer - engine| over completion
tokens; TRL logs the same as `sampling/sampling_logp_difference/mean|max`): with `trainer` over every rollout,
with `engine` over the first mini-batch, whose forward precedes any update of the step.

Truncated importance sampling (`algo.tis_cap`, needs `trainer`; off by default): the tokens were sampled from
π_engine, not π_old, so each token's PPO objective is weighted by the detached ρ = min(π_old / π_engine, C).
Sources: TRL `GRPOConfig.vllm_importance_sampling_correction` with `vllm_importance_sampling_mode="token_truncate"`
and `vllm_importance_sampling_clip_max` (trl/trainer/grpo_trainer.py multiplies the per-token loss by the ratio;
TRL's default mode is `sequence_mask`, cap 3.0), and verl's rollout correction in decoupled mode,
`algorithm.rollout_correction.rollout_is: token` with `rollout_is_threshold` (default 2.0), which truncates with
`.clamp(max=threshold)` (verl docs/algo/rollout_corr.md). Here: token level, truncated, no rejection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from zppo_core.types import Rollout


def engine_logprobs(rollouts: Sequence[Rollout], like: torch.Tensor) -> torch.Tensor:
    """The engine's log-probs of a micro-batch, right-padded with 0 to `like`'s [b, T]."""
    old = torch.zeros_like(like)  # [b, T]
    for j, r in enumerate(rollouts):
        old[j, : len(r.completion.logprobs)] = torch.tensor(r.completion.logprobs)
    return old


@torch.no_grad()
def trainer_logprobs(
    forward: Callable[[list[Rollout]], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    rollouts: Sequence[Rollout],
    micro_batches: Sequence[Sequence[int]],
) -> dict[int, torch.Tensor]:
    """π_old by the trainer: rollout index -> its completion tokens' log-probs [T_i], from `forward(mb)` (the
    update's own forward: same micro-batches, same autocast) without grad."""
    out: dict[int, torch.Tensor] = {}
    for idx in micro_batches:
        lp, _, _ = forward([rollouts[i] for i in idx])  # [b, T]
        for j, i in enumerate(idx):
            out[i] = lp[j, : len(rollouts[i].completion.token_ids)].detach()  # [T_i]
    return out


def stack_old(old: dict[int, torch.Tensor], idx: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """A micro-batch's π_old [b, T] from `trainer_logprobs`' rows, right-padded with 0 to `like`'s shape."""
    out = torch.zeros_like(like)  # [b, T]
    for j, i in enumerate(idx):
        out[j, : old[i].shape[0]] = old[i]
    return out


def abs_diff(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> tuple[float, float, float]:
    """(sum, max, count) of |a - b| over masked tokens ([b, T] each), for the mismatch metrics."""
    d = (a.detach() - b.detach()).abs()[mask.bool()]  # [n]
    if d.numel() == 0:
        return 0.0, 0.0, 0.0
    return float(d.sum()), float(d.max()), float(d.numel())


def tis_weights(old: torch.Tensor, engine: torch.Tensor, mask: torch.Tensor, cap: float) -> torch.Tensor:
    """Token-level truncated IS weights min(exp(old - engine), cap) [b, T]; 1 on padding (masked out anyway)."""
    log_rho = torch.where(mask.bool(), old - engine, torch.zeros_like(old))  # [b, T]
    return torch.exp(log_rho.clamp(max=20.0)).clamp(max=cap).detach()  # [b, T]


class StepOldLogprobs:
    """π_old for one step's updates (`mode` = algo.old_logprobs) and the bookkeeping of its metrics.

    Built before the first update: with `trainer` it runs the no-grad forward over every micro-batch of `plan`
    (the update's own `forward`). Then per micro-batch `old(idx, mb, logprobs, mask, first)` gives π_old [b, T]
    and the keywords for the objective (`is_weights` with `tis_cap`); after each mini-batch `end_mini_batch`
    takes its (tokens, ratio sum, k3 sum); `metrics()` gives what the loop logs."""

    def __init__(self, mode: str, tis_cap: float | None, forward, rollouts: Sequence[Rollout],
                 micro_batches: Sequence[Sequence[int]]):
        self.tis_cap = tis_cap
        self.trainer = trainer_logprobs(forward, rollouts, micro_batches) if mode == "trainer" else None
        self.diff = [0.0, 0.0, 0.0]  # |trainer - engine| over tokens: sum, max, count
        self.tis = [0.0, 0.0]  # IS weight sum, tokens
        self.per_mb: list[tuple[float, float, float]] = []

    def old(self, idx: Sequence[int], mb: Sequence[Rollout], logprobs: torch.Tensor, mask: torch.Tensor,
            first: bool) -> tuple[torch.Tensor, dict]:
        engine = engine_logprobs(mb, logprobs)  # [b, T]
        old = engine if self.trainer is None else stack_old(self.trainer, idx, logprobs)  # [b, T]
        if self.trainer is not None or first:  # both known: before any update, the current log-probs are π_old
            s, m, n = abs_diff(old if self.trainer is not None else logprobs, engine, mask)
            self.diff = [self.diff[0] + s, max(self.diff[1], m), self.diff[2] + n]
        if self.tis_cap is None:
            return old, {}
        w = tis_weights(old, engine, mask, self.tis_cap)  # [b, T]
        self.tis = [self.tis[0] + float((w * mask).sum()), self.tis[1] + float(mask.sum())]
        return old, {"is_weights": w}

    def end_mini_batch(self, tokens: float, ratio_sum: float, kl_sum: float) -> None:
        self.per_mb.append((tokens, ratio_sum, kl_sum))

    def metrics(self) -> dict[str, float]:
        """train/ratio_mean_first, train/approx_kl_first (the first mini-batch, before any update of the step),
        train/approx_kl_max (the largest mini-batch's), rollout/logprob_abs_diff_mean|max (when any token was
        compared), train/tis_weight_mean (with tis_cap)."""
        out: dict[str, float] = {}
        if self.per_mb:
            tok, ratio, kl = self.per_mb[0]
            out["train/ratio_mean_first"] = ratio / max(tok, 1.0)
            out["train/approx_kl_first"] = kl / max(tok, 1.0)
            out["train/approx_kl_max"] = max(k / max(t, 1.0) for t, _, k in self.per_mb)
        if self.diff[2]:
            out["rollout/logprob_abs_diff_mean"] = self.diff[0] / self.diff[2]
            out["rollout/logprob_abs_diff_max"] = self.diff[1]
        if self.tis[1]:
            out["train/tis_weight_mean"] = self.tis[0] / self.tis[1]
        return out
