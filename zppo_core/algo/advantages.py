"""Group-relative advantages for ZPPO (ZPPO.md §2 "Advantage, two steps"; paper §3.1, App. C).

Each rollout i belongs to one group g(i) (all rollouts of one prompt; plain, BCQ and NCQ prompts are separate
groups, ZPPO.md §1 step 8). With binary rewards r_i:

    step 1   A'_i = r_i - mean_{j in g(i)} r_j                    (group-centred; NO division by the group std)
    step 2   A_i  = (A'_i - mu_S) / (sigma_S + eps)               for rollouts of non-trivial groups
             A_i  = 0                                             for rollouts of trivial groups

A group is *trivial* when all its rewards are equal (group reward std = 0: all wrong or all right); its
rollouts carry no learning signal. mu_S and sigma_S are the mean and the population standard deviation
(unbiased=False) of A' over the rollouts of the non-trivial groups only, computed over the whole rollout step
once, before the I updates (a [decision] in ZPPO.md §2). eps = 1e-6.

Two ablation variants (ZPPO.md §2), chosen by ``mode``:
    "nontrivial"  the paper default above;
    "none"        "no norm": step 1 only, A = A';
    "all"         "norm with zero groups": mu and sigma are taken over ALL rollouts, trivial ones contributing
                  their A' = 0; trivial groups still keep A = 0 exactly.

Several ranks (data-parallel rollouts; a group never spans ranks): each rank passes its own rollouts and an
``all_reduce`` that sums a small float64 tensor over the ranks. Step 1 is per group, so local; step 2's mu and
sigma come from global sums in two passes (count and sum of A', then the sum of squared deviations), so N ranks
compute what one rank computes on the union of their rollouts, up to the order of the float64 additions. One rank
uses the same two-pass formula (with the identity as ``all_reduce``).

Triviality is decided exactly (max == min within the group), not by a floating-point std, so a group of
rewards like [0.1, 0.1, 0.1] is trivial even when its float mean is not exactly 0.1.
Statistics are computed in float64 and the result is cast back to the rewards' dtype.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch

NormMode = Literal["nontrivial", "none", "all"]

_MODES: tuple[str, ...] = ("nontrivial", "none", "all")


def _group_index(rewards: torch.Tensor, group_ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Check shapes and map arbitrary group ids to 0..G-1. Returns (inverse index [N], G)."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [N], got shape {tuple(rewards.shape)}")
    if group_ids.shape != rewards.shape:
        raise ValueError(
            f"group_ids shape {tuple(group_ids.shape)} must equal rewards shape {tuple(rewards.shape)}"
        )
    uniq, inverse = torch.unique(group_ids, return_inverse=True)  # uniq: [G], inverse: [N] in 0..G-1
    return inverse, int(uniq.numel())


def _group_stats(r: torch.Tensor, inverse: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-rollout group mean and per-rollout 'group is trivial' flag. r: float64 [N]."""
    zeros_g = torch.zeros(num_groups, dtype=r.dtype, device=r.device)  # [G]
    sums = zeros_g.index_add(0, inverse, r)  # [G]
    counts = zeros_g.index_add(0, inverse, torch.ones_like(r))  # [G]
    mean_g = sums / counts  # [G] (every group has >= 1 rollout by construction of `inverse`)
    g_max = zeros_g.scatter_reduce(0, inverse, r, reduce="amax", include_self=False)  # [G]
    g_min = zeros_g.scatter_reduce(0, inverse, r, reduce="amin", include_self=False)  # [G]
    trivial_g = g_max == g_min  # [G] bool: all rewards of the group equal <=> group std == 0
    return mean_g[inverse], trivial_g[inverse]  # [N], [N]


def group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor,
    mode: NormMode = "nontrivial",
    eps: float = 1e-6,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Two-step group advantages of ZPPO.md §2.

    Args:
        rewards: float [N], one reward per rollout.
        group_ids: long [N], the group of each rollout; arbitrary ids (need not be contiguous or sorted).
        mode: "nontrivial" (paper default: normalise by mean/std over non-trivial groups' rollouts),
            "none" (step 1 only) or "all" (normalise by mean/std over all rollouts, trivial ones as 0).
        eps: added to the std in the denominator.
        all_reduce: sums a float64 tensor over the ranks (several ranks, each with its own groups); None: one rank.

    Returns:
        float [N] advantages (dtype of ``rewards`` when it is floating point, else the default float dtype).
        Rollouts of trivial groups get exactly 0 in every mode. If no group is non-trivial, all zeros.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    out_dtype = rewards.dtype if rewards.is_floating_point() else torch.get_default_dtype()
    inverse, num_groups = _group_index(rewards, group_ids)  # [N], G
    reduce = all_reduce if all_reduce is not None else (lambda t: t)
    r = rewards.detach().to(torch.float64)  # [N] fp64 for exact-ish statistics
    zero = torch.zeros_like(r)  # [N]
    if rewards.numel() == 0:
        mean_i, trivial_i = zero, torch.zeros_like(r, dtype=torch.bool)  # [0], [0]
    else:
        mean_i, trivial_i = _group_stats(r, inverse, num_groups)  # [N], [N] bool

    # step 1: centre by the group mean; trivial groups are exactly 0 (their A' is 0 mathematically)
    a1 = torch.where(trivial_i, zero, r - mean_i)  # [N]
    if mode == "none":
        return a1.to(out_dtype)  # [N]

    # step 2: statistics over the chosen population of rollouts (global over the ranks), two passes
    nontrivial_i = ~trivial_i  # [N] bool
    pop = a1[nontrivial_i] if mode == "nontrivial" else a1  # [N_S] or [N]
    local = torch.stack([nontrivial_i.sum().to(r), torch.tensor(float(pop.numel()), dtype=r.dtype), pop.sum()])  # [3]
    n_any, count, total = reduce(local).tolist()  # global: non-trivial rollouts, population size, sum of A'
    if n_any == 0:
        return zero.to(out_dtype)  # [N] no learning signal in this step
    mu = total / count  # mu_S (or mu over all rollouts)
    sigma = float(reduce(((pop - mu) ** 2).sum().reshape(1)).item() / count) ** 0.5  # population std
    a2 = (a1 - mu) / (sigma + eps)  # [N]
    return torch.where(nontrivial_i, a2, zero).to(out_dtype)  # [N] trivial groups keep exactly 0


def trivial_group_fraction(rewards: torch.Tensor, group_ids: torch.Tensor) -> float:
    """Fraction of groups whose rewards are all equal (std 0: all wrong or all right). 0.0 for no rollouts."""
    inverse, num_groups = _group_index(rewards, group_ids)  # [N], G
    if num_groups == 0:
        return 0.0
    r = rewards.detach().to(torch.float64)  # [N]
    zeros_g = torch.zeros(num_groups, dtype=r.dtype, device=r.device)  # [G]
    g_max = zeros_g.scatter_reduce(0, inverse, r, reduce="amax", include_self=False)  # [G]
    g_min = zeros_g.scatter_reduce(0, inverse, r, reduce="amin", include_self=False)  # [G]
    return float((g_max == g_min).double().mean().item())
