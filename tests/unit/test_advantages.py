"""Group advantages (ZPPO.md §2): hand-computed numbers for all three modes, edge cases, id relabelling."""

from __future__ import annotations

import math
from fractions import Fraction as F

import pytest
import torch

from zppo_core.algo.advantages import group_advantages, trivial_group_fraction

EPS = 1e-6

# The running example: three groups, ids 0, 1, 2.
#   group 0: [1, 0, 0, 0]  mean 1/4  -> A' = [3/4, -1/4, -1/4, -1/4]   non-trivial
#   group 1: [1, 1, 1, 1]  mean 1    -> A' = [0, 0, 0, 0]               trivial
#   group 2: [0, 1]        mean 1/2  -> A' = [-1/2, 1/2]                non-trivial
REWARDS = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0]
GROUPS = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2]
A1 = [F(3, 4), F(-1, 4), F(-1, 4), F(-1, 4), 0, 0, 0, 0, F(-1, 2), F(1, 2)]
NONTRIVIAL = [True] * 4 + [False] * 4 + [True] * 2


def _adv(rewards, groups, mode, dtype=torch.float64):
    return group_advantages(torch.tensor(rewards, dtype=dtype), torch.tensor(groups, dtype=torch.long), mode=mode)


def _expected(mu: F, var: F) -> list[float]:
    """(A' - mu) / (sigma + eps) on non-trivial rollouts, 0 on trivial ones."""
    sigma = math.sqrt(var)
    return [float((a - mu)) / (sigma + EPS) if nt else 0.0 for a, nt in zip(A1, NONTRIVIAL)]


def test_mode_none_is_group_centred_rewards():
    got = _adv(REWARDS, GROUPS, "none")
    assert torch.allclose(got, torch.tensor([float(a) for a in A1], dtype=torch.float64), atol=1e-12)


def test_mode_nontrivial_hand_computed():
    # Non-trivial rollouts: A' = [3/4, -1/4, -1/4, -1/4, -1/2, 1/2]  (6 rollouts; groups sum to 0 so mu_S = 0)
    #   mu_S   = (3/4 - 3/4 - 1/2 + 1/2) / 6 = 0
    #   E[A'^2] = (9/16 + 3 * 1/16 + 1/4 + 1/4) / 6 = (12/16 + 8/16) / 6 = (20/16) / 6 = 5/24
    #   sigma_S = sqrt(5/24)  (population std)
    nt = [a for a, keep in zip(A1, NONTRIVIAL) if keep]
    mu = sum(nt, F(0)) / len(nt)
    var = sum(((a - mu) ** 2 for a in nt), F(0)) / len(nt)
    assert mu == 0 and var == F(5, 24)
    got = _adv(REWARDS, GROUPS, "nontrivial")
    assert torch.allclose(got, torch.tensor(_expected(F(0), F(5, 24)), dtype=torch.float64), atol=1e-9)
    # e.g. the lone success of group 0: (3/4) / sqrt(5/24) ~= 1.643
    assert got[0].item() == pytest.approx(0.75 / math.sqrt(5 / 24), rel=1e-5)
    assert torch.all(got[4:8] == 0)  # trivial group: exactly 0


def test_mode_all_hand_computed():
    # All 10 rollouts, trivial ones as 0:  mu = 0;  E[A'^2] = (20/16) / 10 = 1/8;  sigma = sqrt(1/8)
    mu = sum(A1, F(0)) / len(A1)
    var = sum(((F(a) - mu) ** 2 for a in A1), F(0)) / len(A1)
    assert mu == 0 and var == F(1, 8)
    got = _adv(REWARDS, GROUPS, "all")
    assert torch.allclose(got, torch.tensor(_expected(F(0), F(1, 8)), dtype=torch.float64), atol=1e-9)
    assert torch.all(got[4:8] == 0)


def test_nonzero_mu_s_with_non_binary_rewards():
    # Groups: [0, 1, 1] mean 2/3 -> A' = [-2/3, 1/3, 1/3];  [0.5, 0.5] trivial;  [0, 1] -> A' = [-1/2, 1/2]
    # Every group's A' sums to 0, so mu_S = 0 always: check that and the std with a 3-rollout group.
    #   E[A'^2] over 5 non-trivial rollouts = (4/9 + 1/9 + 1/9 + 1/4 + 1/4) / 5 = (6/9 + 1/2) / 5 = (7/6)/5 = 7/30
    rewards = [0.0, 1.0, 1.0, 0.5, 0.5, 0.0, 1.0]
    groups = [7, 7, 7, 3, 3, 9, 9]
    a1 = [F(-2, 3), F(1, 3), F(1, 3), 0, 0, F(-1, 2), F(1, 2)]
    nt = [True, True, True, False, False, True, True]
    var = sum((a * a for a, k in zip(a1, nt) if k), F(0)) / 5
    assert var == F(7, 30)
    want = [float(a) / (math.sqrt(7 / 30) + EPS) if k else 0.0 for a, k in zip(a1, nt)]
    got = _adv(rewards, groups, "nontrivial")
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-9)


def test_all_trivial_gives_zeros_in_every_mode():
    rewards = [1.0, 1.0, 0.0, 0.0, 0.0, 0.3]
    groups = [0, 0, 1, 1, 1, 2]  # group 2 has one rollout: trivial
    for mode in ("nontrivial", "none", "all"):
        got = _adv(rewards, groups, mode)
        assert torch.equal(got, torch.zeros(6, dtype=torch.float64)), mode


def test_trivial_group_with_inexact_float_mean_is_exactly_zero():
    # 0.1 * 3 / 3 != 0.1 in floating point; the group must still count as trivial and give exactly 0
    rewards = [0.1, 0.1, 0.1, 0.0, 1.0]
    groups = [5, 5, 5, 6, 6]
    for mode in ("nontrivial", "none", "all"):
        got = _adv(rewards, groups, mode, dtype=torch.float32)
        assert torch.all(got[:3] == 0), mode
    assert trivial_group_fraction(torch.tensor(rewards), torch.tensor(groups)) == pytest.approx(0.5)


@pytest.mark.parametrize("mode", ["nontrivial", "none", "all"])
def test_unsorted_noncontiguous_ids_equal_relabelled(mode):
    # Same three groups as REWARDS/GROUPS, rollouts shuffled and ids renamed 0->42, 1->-3, 2->1000
    perm = [9, 2, 5, 0, 7, 8, 1, 4, 6, 3]
    rename = {0: 42, 1: -3, 2: 1000}
    rewards = [REWARDS[i] for i in perm]
    groups = [rename[GROUPS[i]] for i in perm]
    got = _adv(rewards, groups, mode)
    ref = _adv(REWARDS, GROUPS, mode)[torch.tensor(perm)]
    assert torch.allclose(got, ref, atol=1e-12)


def test_dtype_and_shape():
    got = group_advantages(torch.tensor(REWARDS, dtype=torch.float32), torch.tensor(GROUPS))
    assert got.dtype == torch.float32 and got.shape == (10,)
    got_int = group_advantages(torch.tensor([1, 0, 1, 1]), torch.tensor([0, 0, 1, 1]))
    assert got_int.is_floating_point()
    assert group_advantages(torch.zeros(0), torch.zeros(0, dtype=torch.long)).shape == (0,)


def test_nontrivial_outputs_are_standardised():
    g = torch.Generator().manual_seed(0)
    rewards = (torch.rand(64, generator=g) < 0.3).double()
    groups = torch.arange(64) // 8
    got = group_advantages(rewards, groups)
    nt = got != 0
    # over the non-trivial rollouts: mean 0 and population std 1 (up to eps)
    assert got[nt].mean().abs() < 1e-9
    assert got[nt].std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(3), torch.zeros(3, dtype=torch.long), mode="std")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))


def test_trivial_group_fraction_hand_computed():
    # groups 0 and 2 non-trivial, group 1 trivial -> 1/3
    assert trivial_group_fraction(torch.tensor(REWARDS), torch.tensor(GROUPS)) == pytest.approx(1 / 3)
    assert trivial_group_fraction(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([4, 4, 9])) == pytest.approx(1.0)
    assert trivial_group_fraction(torch.zeros(0), torch.zeros(0, dtype=torch.long)) == 0.0
