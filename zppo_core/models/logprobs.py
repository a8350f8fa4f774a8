"""Per-token log-probs (and entropies) of completions under a causal LM, for the training forward pass.

With `mm` (one entry per sequence: its prompt's image inputs, `types.Prompt.mm`, or None for a text prompt) the
model is a vision-language model: the batch carries the images' `pixel_values` / `image_grid_thw` concatenated in
row order and the per-token `mm_token_type_ids` left-padded and extended with zeros (text) over the completions,
and the positions are the model's multimodal rotary positions (`models.vl.position_ids`), as in the engine's
`generate`, so the log-probs are those the engine sampled with (tested to 1e-5 in fp32).

Shared prompts (`share_prompts`, text batches on the models `models.kv.why_not_shared_prompt` allows: full-attention
text decoders, as the engine's "slots" path): when rows repeat a prompt (a group's rollouts), each distinct prompt
runs once, its KV cache is expanded to its rows (`index_select`, so the rows' gradients add up in the one prompt
pass), and the completions run against it; the first completion token's log-prob comes from the prompt pass's last
logits. The same log-probs, entropies and gradients as one packed forward up to float summation order (tested to
1e-6 in fp32), for U x P + B x T tokens instead of B x (P + T). Other batches and models take the packed forward."""

from __future__ import annotations

import torch

from zppo_core.algo.losses import gather_token_logprobs, token_entropy_from_logits
from zppo_core.models.kv import cache_kwarg, why_not_shared_prompt


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
    keep_logits: bool = False, mm: list | None = None, share_prompts: bool = True, fixed_calls: bool = False,
):
    """`completion_logprobs` plus, with `keep_logits`, the fp32 logits [B, T, V] at the completion positions (grad
    flows; the distillation losses compare them with the teacher's). Returns (logprobs, mask, entropy, logits).
    `share_prompts`: run a prompt repeated by several rows once (module docstring) when the batch and the model
    allow it; False always packs. `fixed_calls` (an FSDP2-sharded model, whose forwards are collective: every rank
    must make the same calls): on a model that allows sharing, always the two calls of the shared path (a prompt
    pass, then a completion pass of at least one token), whether or not a prompt repeats."""
    device = next(model.parameters()).device
    if share_prompts and mm is None and (
            shares_prompts(model, prompts) or (fixed_calls and why_not_shared_prompt(model) is None)):
        logits, comp, mask = _shared_prompt_logits(model, prompts, completions, pad_id, fixed_calls)  # [B, T, V], [B, T] x2
        return _outputs(logits, comp.to(device), mask.to(device), with_entropy, keep_logits)
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
    return _outputs(logits, comp.to(device), mask.to(device), with_entropy, keep_logits)


def _outputs(logits, comp, mask, with_entropy: bool, keep_logits: bool):
    """(logprobs [B, T], mask [B, T], entropy [B, T] or None, logits [B, T, V] or None) from the fp32 logits."""
    logprobs = gather_token_logprobs(logits, comp)  # [B, T]
    entropy = token_entropy_from_logits(logits.detach()) if with_entropy else None  # [B, T]
    return logprobs, mask, entropy, (logits if keep_logits else None)


def shares_prompts(model, prompts: list[list[int]]) -> bool:
    """Whether `completion_forward` runs these rows' prompts once each: some prompt is repeated and the model
    allows it (`models.kv.why_not_shared_prompt`)."""
    return len({tuple(p) for p in prompts}) < len(prompts) and why_not_shared_prompt(model) is None


def _shared_prompt_logits(model, prompts: list[list[int]], completions: list[list[int]], pad_id: int,
                          fixed_calls: bool = False):
    """The fp32 logits [B, T, V] predicting each completion token, the completion ids [B, T] and mask [B, T], with each
    distinct prompt run once: prompt pass over the U distinct prompts (left-padded to P), its cache expanded to the
    B rows, then the completions (right-padded to T; the last token predicts nothing, so T - 1 of them) at positions
    continuing from each row's prompt length, attending to [prompt padding (masked) | prompt | completion].
    `fixed_calls`: a one-token completion still gets its (unused) completion pass, so every call makes two."""
    from transformers import DynamicCache

    device = next(model.parameters()).device
    uniq: dict[tuple[int, ...], int] = {}
    rows = [uniq.setdefault(tuple(p), len(uniq)) for p in prompts]  # row -> its distinct prompt
    U, B = len(uniq), len(prompts)
    P = max(len(p) for p in uniq)
    T = max(max(len(c) for c in completions), 1)
    ids = torch.full((U, P), pad_id, dtype=torch.long)  # [U, P] left-padded distinct prompts
    attn = torch.zeros((U, P), dtype=torch.long)  # [U, P]
    for p, u in uniq.items():
        ids[u, P - len(p) :] = torch.tensor(p, dtype=torch.long)
        attn[u, P - len(p) :] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)  # [U, P] positions count real tokens only
    comp = torch.full((B, T), pad_id, dtype=torch.long)  # [B, T] right-padded completions
    mask = torch.zeros((B, T), dtype=torch.bool)  # [B, T]
    for i, c in enumerate(completions):
        comp[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        mask[i, : len(c)] = True
    row = torch.tensor(rows, dtype=torch.long, device=device)  # [B]
    cache = DynamicCache(config=model.config)
    kw = {cache_kwarg(model): cache}
    out = model(input_ids=ids.to(device), attention_mask=attn.to(device), position_ids=pos.to(device),
                use_cache=True, logits_to_keep=1, **kw)
    first = out.logits[:, -1:].float().index_select(0, row)  # [B, 1, V] predicts each row's first completion token
    n = max(T - 1, 1) if fixed_calls else T - 1  # completion tokens to run (the last one predicts nothing)
    if n == 0:
        return first, comp, mask
    cache.reorder_cache(row)  # every layer's keys/values [U, h, P, d] -> [B, h, P, d] (differentiable)
    lens = torch.tensor([len(p) for p in prompts], dtype=torch.long)  # [B]
    cpos = lens[:, None] + torch.arange(n)[None, :]  # [B, n] positions after each row's prompt
    cattn = torch.cat([attn[rows], mask[:, :n].long()], dim=1)  # [B, P+n] keys: prompt | completion
    out = model(input_ids=comp[:, :n].to(device), attention_mask=cattn.to(device), position_ids=cpos.to(device),
                use_cache=True, **kw)
    return torch.cat([first, out.logits[:, : T - 1].float()], dim=1), comp, mask  # [B, T, V], [B, T], [B, T]


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
