"""Per-token log-probs (and entropies) of completions under a causal LM, for the training forward pass."""

from __future__ import annotations

import torch

from zppo_core.algo.losses import gather_token_logprobs, token_entropy_from_logits


def pack(prompts: list[list[int]], completions: list[list[int]], pad_id: int):
    """Left-pad prompts to P, right-pad completions to T.

    Returns input_ids [B, P+T], attention_mask [B, P+T], position_ids [B, P+T], completion ids [B, T],
    completion mask [B, T] (bool) and P.
    """
    B = len(prompts)
    P = max(len(p) for p in prompts)
    T = max(max(len(c) for c in completions), 1)
    ids = torch.full((B, P + T), pad_id, dtype=torch.long)  # [B, P+T]
    attn = torch.zeros((B, P + T), dtype=torch.long)  # [B, P+T]
    for i, (p, c) in enumerate(zip(prompts, completions)):
        ids[i, P - len(p) : P] = torch.tensor(p, dtype=torch.long)
        ids[i, P : P + len(c)] = torch.tensor(c, dtype=torch.long)
        attn[i, P - len(p) : P + len(c)] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)  # [B, P+T] positions count real tokens only
    comp = ids[:, P:]  # [B, T]
    mask = attn[:, P:].bool()  # [B, T]
    return ids, attn, pos, comp, mask, P


def completion_logprobs(
    model, prompts: list[list[int]], completions: list[list[int]], pad_id: int, with_entropy: bool = False
):
    """logprobs [B, T] (grad flows), mask [B, T], entropy [B, T] (detached) or None."""
    logprobs, mask, entropy, _ = completion_forward(model, prompts, completions, pad_id, with_entropy)
    return logprobs, mask, entropy


def completion_forward(
    model, prompts: list[list[int]], completions: list[list[int]], pad_id: int, with_entropy: bool = False,
    keep_logits: bool = False,
):
    """`completion_logprobs` plus, with `keep_logits`, the fp32 logits [B, T, V] at the completion positions (grad
    flows; the distillation losses compare them with the teacher's). Returns (logprobs, mask, entropy, logits)."""
    device = next(model.parameters()).device
    ids, attn, pos, comp, mask, P = pack(prompts, completions, pad_id)
    T = comp.shape[1]
    # only the last T+1 positions' logits are needed (positions P-1 .. P+T-2 predict the completion): never
    # materialise [B, P+T, V] logits over the prompt (matters at real vocabularies and prompt lengths)
    out = model(input_ids=ids.to(device), attention_mask=attn.to(device), position_ids=pos.to(device),
                logits_to_keep=T + 1)
    logits = out.logits[:, :T].float()  # [B, T, V] logits predicting each completion token
    logprobs = gather_token_logprobs(logits, comp.to(device))  # [B, T]
    entropy = token_entropy_from_logits(logits.detach()) if with_entropy else None  # [B, T]
    return logprobs, mask.to(device), entropy, (logits if keep_logits else None)


@torch.no_grad()
def sequence_logprobs(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int,
                      batch_size: int = 64) -> list[list[float]]:
    """Per-token log-probs of each completion under `model` in eval mode, no gradient, one list per sequence (e.g.
    the student's own log-probs of a teacher response that is trained as if the student had sampled it)."""
    out: list[list[float]] = []
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            p, c = prompts[start : start + batch_size], completions[start : start + batch_size]
            lp, _, _ = completion_logprobs(model, p, c, pad_id)  # [b, T]
            out += [lp[j, : len(cj)].tolist() for j, cj in enumerate(c)]
    finally:
        model.train(was_training)
    return out


@torch.no_grad()
def teacher_completion_logits(teacher, rollouts, pad_id: int) -> torch.Tensor:
    """The teacher model's logits [b, T, V] along the rollouts' completions (no gradient): what a distillation loss
    compares the student's with. `teacher` must be an in-process model (config validation refuses a served one)."""
    if teacher is None:
        raise RuntimeError("the teacher's logits need the teacher loaded in this process (a served teacher gives "
                           "only top-k log-probs)")
    _, _, _, logits = completion_forward(teacher, [r.prompt_ids for r in rollouts],
                                         [r.completion.token_ids for r in rollouts], pad_id, keep_logits=True)
    return logits  # [b, T, V]
