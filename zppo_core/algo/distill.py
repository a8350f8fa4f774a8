"""Per-token generalized Jensen-Shannon divergence between the student's and the teacher's next-token
distributions: the loss of the distillation baselines (ZPPO.md §5, Off-Distill and On-Distill; paper App. D.2).

For every completion position t of sequence b, with student distribution S = softmax(z_s) and teacher
distribution T = softmax(z_t) over the vocabulary (temperature 1):

    M_bt     = (1 - beta) * S_bt + beta * T_bt                            the mixture
    JSD_bt   = beta * KL(T_bt || M_bt) + (1 - beta) * KL(S_bt || M_bt)   0 < beta < 1 (beta = 0.5: the symmetric JSD)
    JSD_bt   = KL(T_bt || S_bt)  for beta = 0 (forward KL),   KL(S_bt || T_bt)  for beta = 1 (reverse KL)
    loss     = sum_{b,t} mask_bt * JSD_bt / num_tokens                   token-level averaging, like the PPO loss

This is TRL's `GKDTrainer.generalized_jsd_loss` (Agarwal et al. 2024, Eq. 1) with the same beta convention and
the same special cases at beta = 0 and 1; tests/unit/test_distill.py checks value and gradient against the
installed TRL. Gradients flow through the student logits only (the teacher's are detached). The paper says
"per-token Jensen-Shannon divergence" without a beta: zppo's default is 0.5 (`baselines.jsd_beta`), TRL's default.

Rows are processed one sequence at a time, so the fp32 [T, V] working copies exist for one row only.
"""

from __future__ import annotations

import math

import torch


def token_jsd(student_logits: torch.Tensor, teacher_logits: torch.Tensor, beta: float = 0.5) -> torch.Tensor:
    """Generalized JSD per position (summed over the vocabulary). logits: [B, T, V] each. Returns [B, T] fp32."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits must share shape [B, T, V]; got {tuple(student_logits.shape)} and "
            f"{tuple(teacher_logits.shape)} (do the two models share one tokenizer and vocabulary size?)"
        )
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1] (0.5: symmetric JSD), got {beta}")
    rows = []
    for s_row, t_row in zip(student_logits, teacher_logits):  # [T, V], [T, V]
        dtype = torch.promote_types(s_row.dtype, torch.float32)
        log_s = torch.log_softmax(s_row.to(dtype), dim=-1)  # [T, V]
        log_t = torch.log_softmax(t_row.detach().to(dtype), dim=-1)  # [T, V]
        if beta == 0.0:
            rows.append(_kl(log_t, log_s))  # [T] KL(T || S)
        elif beta == 1.0:
            rows.append(_kl(log_s, log_t))  # [T] KL(S || T)
        else:
            log_m = torch.logsumexp(
                torch.stack([log_s + math.log1p(-beta), log_t + math.log(beta)]), dim=0
            )  # [T, V] log of the mixture
            rows.append(beta * _kl(log_t, log_m) + (1.0 - beta) * _kl(log_s, log_m))  # [T]
    if not rows:
        return student_logits.new_zeros(student_logits.shape[:2], dtype=torch.float32)  # [0, T]
    return torch.stack(rows)  # [B, T]


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row from log-probs [T, V] -> [T] (torch's kl_div(input=log q, target=log p), as TRL)."""
    return torch.nn.functional.kl_div(log_q, log_p, reduction="none", log_target=True).sum(-1)  # [T]


def generalized_jsd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.5,
    num_tokens: float | None = None,
) -> tuple[torch.Tensor, float]:
    """Token-level mean of the generalized JSD over unmasked positions (see the module docstring).

    Args:
        student_logits: [B, T, V] the student's logits at the completion positions (requires grad).
        teacher_logits: [B, T, V] the teacher's logits at the same positions (detached).
        mask: [B, T] bool or 0/1, true on completion tokens that count.
        beta: mixture weight of the teacher (0.5: symmetric JSD; 0: forward KL; 1: reverse KL).
        num_tokens: normaliser; defaults to the number of unmasked tokens of this call (at least 1).

    Returns:
        (scalar loss, mean JSD per unmasked token of this call as a float).
    """
    if mask.shape != student_logits.shape[:2]:
        raise ValueError(f"mask must be [B, T] = {tuple(student_logits.shape[:2])}, got {tuple(mask.shape)}")
    jsd = token_jsd(student_logits, teacher_logits, beta)  # [B, T]
    m = mask.to(jsd.dtype)  # [B, T]
    total = (jsd * m).sum()  # []
    count = float(m.sum())
    denom = max(count, 1.0) if num_tokens is None else num_tokens
    return total / denom, float(total.detach()) / max(count, 1.0)
