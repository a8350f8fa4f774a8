"""Per-token log-probs (and entropies) of completions under a causal LM, for the training forward pass.

With `mm` (one entry per sequence: its prompt's image inputs, `types.Prompt.mm`, or None for a text prompt) the
model is a vision-language model: the batch carries the images' `pixel_values` / `image_grid_thw` concatenated in
row order and the per-token `mm_token_type_ids` left-padded and extended with zeros (text) over the completions,
and the positions are the model's multimodal rotary positions (`models.vl.position_ids`), as in the engine's
`generate`, so the log-probs are those the engine sampled with (tested to 1e-5 in fp32)."""

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
    model, prompts: list[list[int]], completions: list[list[int]], pad_id: int, with_entropy: bool = False,
    mm: list | None = None,
):
    """logprobs [B, T] (grad flows), mask [B, T], entropy [B, T] (detached) or None. `mm`: per sequence, its
    prompt's image inputs or None (see the module docstring); None for a text-only batch."""
    logprobs, mask, entropy, _ = completion_forward(model, prompts, completions, pad_id, with_entropy, mm=mm)
    return logprobs, mask, entropy


def completion_forward(
    model, prompts: list[list[int]], completions: list[list[int]], pad_id: int, with_entropy: bool = False,
    keep_logits: bool = False, mm: list | None = None,
):
    """`completion_logprobs` plus, with `keep_logits`, the fp32 logits [B, T, V] at the completion positions (grad
    flows; the distillation losses compare them with the teacher's). Returns (logprobs, mask, entropy, logits)."""
    device = next(model.parameters()).device
    ids, attn, pos, comp, mask, P = pack(prompts, completions, pad_id)
    T = comp.shape[1]
    extra: dict = {}
    if mm is not None or getattr(model.config, "vision_config", None) is not None:
        from zppo_core.models.vl import batch_mm, position_ids

        extra = batch_mm([len(p) for p in prompts], mm or [None] * len(prompts), P, P + T)  # per-token: [B, P+T]
        extra = {k: v.to(device) for k, v in extra.items()}
        vl_pos = position_ids(model, ids.to(device), attn.to(device), extra)  # [4, B, P+T] or None
        pos = vl_pos if vl_pos is not None else pos
        if "pixel_values" in extra:  # the vision tower's dtype (bfloat16 models)
            extra["pixel_values"] = extra["pixel_values"].to(model.dtype)
    # only the last T+1 positions' logits are needed (positions P-1 .. P+T-2 predict the completion): never
    # materialise [B, P+T, V] logits over the prompt (matters at real vocabularies and prompt lengths)
    out = model(input_ids=ids.to(device), attention_mask=attn.to(device), position_ids=pos.to(device),
                logits_to_keep=T + 1, **extra)
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
    mm = [r.prompt_mm for r in rollouts] if any(r.prompt_mm for r in rollouts) else None  # their images
    _, _, _, logits = completion_forward(teacher, [r.prompt_ids for r in rollouts],
                                         [r.completion.token_ids for r in rollouts], pad_id, keep_logits=True, mm=mm)
    return logits  # [b, T, V]
