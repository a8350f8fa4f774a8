"""Transformers rollout engine: batched, KV-cached sampling with `model.generate` (CPU or GPU).

Log-probs are taken from the raw (unprocessed) logits that `generate` returns (`output_logits=True`), so they
are the policy's log-probs under the weights that sampled, i.e. PPO's π_old, with no second forward pass.
Randomness comes from torch's global generator, which the trainer seeds and checkpoints.

Built with a processor that has an image processor (a vision-language model loaded with its processor and
`AutoModelForImageTextToText`), the engine also takes images: `generate_rendered` samples from rendered prompts
(`types.Prompt`: token ids with expanded image placeholders plus the processor's tensors, batched by
`models.vl.collate`, the same inputs the training forward builds), `generate_multimodal` from (chat messages,
images) requests rendered through the same `models.vl.render_prompt`. With a processor, the image/video
placeholder tokens are never sampled (`suppress_tokens`; the log-probs stay those of the raw logits).
"""

from __future__ import annotations

import torch

from zppo_core.algo.losses import gather_token_logprobs
from zppo_core.rollout.base import MultimodalRequest, SamplingParams
from zppo_core.types import Completion, Prompt


class TransformersEngine:
    def __init__(self, model, tokenizer, batch_size: int = 256, processor=None):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.processor = processor  # a multimodal processor (image processor + this tokenizer), or None
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id
        from zppo_core.models.vl import vision_token_ids

        self.suppress = vision_token_ids(processor)  # placeholder tokens a completion must never contain

    @property
    def supports_images(self) -> bool:
        return getattr(self.processor, "image_processor", None) is not None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sync_weights(self, model) -> None:
        if model is not self.model:
            self.model.load_state_dict(model.state_dict())

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        return self._batched(prompts, params, self._generate_batch)

    @torch.no_grad()
    def generate_multimodal(self, requests: list[MultimodalRequest], params: SamplingParams) -> list[list[Completion]]:
        """For each (chat messages, PIL images) request, `params.n` completions (see `rollout.base`)."""
        if not self.supports_images:
            raise ValueError("this engine has no image processor; build it with the model's AutoProcessor")
        from zppo_core.models.vl import render_prompt

        return self.generate_rendered([render_prompt(self.tokenizer, self.processor, m, imgs) for m, imgs in requests],
                                      params)

    @torch.no_grad()
    def generate_rendered(self, prompts: list[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """For each rendered prompt (token ids + image inputs, `types.Prompt`), `params.n` completions."""
        if any(p.mm for p in prompts) and not self.supports_images:
            raise ValueError("this engine has no image processor; build it with the model's AutoProcessor")
        return self._batched(prompts, params, self._generate_rendered_batch)

    def _batched(self, requests: list, params: SamplingParams, run) -> list[list[Completion]]:
        flat = [r for r in requests for _ in range(params.n)]
        out: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(flat), self.batch_size):
                out.extend(run(flat[start : start + self.batch_size], params))
        finally:
            self.model.train(was_training)
        return [out[i * params.n : (i + 1) * params.n] for i in range(len(requests))]

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        B = len(prompts)
        P = max(len(p) for p in prompts)
        input_ids = torch.full((B, P), self.pad_id, dtype=torch.long)  # [B, P] left-padded
        attention = torch.zeros((B, P), dtype=torch.long)  # [B, P]
        for i, p in enumerate(prompts):
            input_ids[i, P - len(p) :] = torch.tensor(p, dtype=torch.long)
            attention[i, P - len(p) :] = 1
        res = self.model.generate(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device), **self._sampling(params)
        )
        return self._completions(res, P)

    def _generate_rendered_batch(self, prompts: list[Prompt], params: SamplingParams) -> list[Completion]:
        from zppo_core.models.vl import collate

        input_ids, attention, mm, P = collate([p.ids for p in prompts], [p.mm for p in prompts], self.pad_id)
        inputs = {"input_ids": input_ids, "attention_mask": attention, **mm}  # [B, P] ids, mask, image inputs
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        if "pixel_values" in inputs:  # the vision tower's dtype (bfloat16 models)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        res = self.model.generate(**inputs, **self._sampling(params))
        return self._completions(res, P)

    def _sampling(self, params: SamplingParams) -> dict:
        """`model.generate` keywords for `params` (raw logits returned for the log-probs)."""
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
        if self.suppress:
            kwargs["suppress_tokens"] = self.suppress
        return kwargs

    def _completions(self, res, P: int) -> list[Completion]:
        """`generate`'s output for prompts left-padded to P tokens -> one Completion per row (cut after EOS)."""
        new = res.sequences[:, P:].cpu()  # [B, T] generated ids (padded after EOS)
        logits = torch.stack(res.logits, dim=1).float().cpu()  # [B, T, V] raw logits
        lp = gather_token_logprobs(logits, new)  # [B, T]
        completions = []
        for i in range(new.shape[0]):
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
