"""Transformers rollout engine: batched, KV-cached sampling with `model.generate` (CPU or GPU).

Log-probs are taken from the raw (unprocessed) logits that `generate` returns (`output_logits=True`), so they
are the policy's log-probs under the weights that sampled, i.e. PPO's π_old, with no second forward pass.
Randomness comes from torch's global generator, which the trainer seeds and checkpoints.
"""

from __future__ import annotations

import torch

from zppo_core.algo.losses import gather_token_logprobs
from zppo_core.rollout.base import SamplingParams
from zppo_core.types import Completion


class TransformersEngine:
    def __init__(self, model, tokenizer, batch_size: int = 256):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sync_weights(self, model) -> None:
        if model is not self.model:
            self.model.load_state_dict(model.state_dict())

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        flat = [p for p in prompts for _ in range(params.n)]
        out: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(flat), self.batch_size):
                out.extend(self._generate_batch(flat[start : start + self.batch_size], params))
        finally:
            self.model.train(was_training)
        return [out[i * params.n : (i + 1) * params.n] for i in range(len(prompts))]

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        B = len(prompts)
        P = max(len(p) for p in prompts)
        input_ids = torch.full((B, P), self.pad_id, dtype=torch.long)  # [B, P] left-padded
        attention = torch.zeros((B, P), dtype=torch.long)  # [B, P]
        for i, p in enumerate(prompts):
            input_ids[i, P - len(p) :] = torch.tensor(p, dtype=torch.long)
            attention[i, P - len(p) :] = 1
        kwargs = dict(
            max_new_tokens=params.max_new_tokens,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
        if params.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(
                do_sample=True,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k or None,
            )
        if params.presence_penalty:
            # HF's closest knob; multiplicative rather than vLLM's additive presence penalty
            kwargs["repetition_penalty"] = 1.0 + params.presence_penalty
        res = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), **kwargs
        )
        new = res.sequences[:, P:].cpu()  # [B, T] generated ids (padded after EOS)
        logits = torch.stack(res.logits, dim=1).float().cpu()  # [B, T, V] raw logits
        lp = gather_token_logprobs(logits, new)  # [B, T]
        completions = []
        for i in range(B):
            ids = new[i].tolist()
            finished = self.eos_id in ids
            n = ids.index(self.eos_id) + 1 if finished else len(ids)
            ids = ids[:n]
            completions.append(
                Completion(
                    token_ids=ids,
                    logprobs=lp[i, :n].tolist(),
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    finished=finished,
                )
            )
        return completions
