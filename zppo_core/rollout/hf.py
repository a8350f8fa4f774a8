"""Transformers rollout engine: batched, KV-cached sampling with `model.generate` (CPU or GPU).

Log-probs are taken from the raw (unprocessed) logits that `generate` returns (`output_logits=True`), so they
are the policy's log-probs under the weights that sampled: PPO's π_old with `algo.old_logprobs=engine` (no second
forward pass); with `trainer` the loop recomputes π_old and compares (`train/old_logprobs.py`).
Randomness comes from torch's global generator, which the trainer seeds and checkpoints.

`autocast_dtype` (set by `make_engine` when the model's weights are fp32 masters and `model.dtype` is bf16):
sampling runs under `torch.autocast` in that dtype, i.e. with the same bf16 compute as the training forward
(`zppo_core.models.precision`), so the engine's log-probs are the trained policy's at training numerics.

Built with a processor that has an image processor (a vision-language model loaded with `AutoProcessor` and
`AutoModelForImageTextToText`), the engine also takes images (`generate_multimodal`): the processor renders the
chat template, expands the image placeholders and turns the images into pixel values; sampling is the same.
"""

from __future__ import annotations

import contextlib

import torch

from zppo_core.algo.losses import gather_token_logprobs
from zppo_core.rollout.base import MultimodalRequest, SamplingParams
from zppo_core.types import Completion


class TransformersEngine:
    def __init__(self, model, tokenizer, batch_size: int = 256, processor=None, autocast_dtype=None):
        self.model = model
        self.autocast_dtype = autocast_dtype  # compute dtype over fp32 master weights (None: the weights' dtype)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.processor = processor  # a multimodal processor (image processor + this tokenizer), or None
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id

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
        return self._batched(requests, params, self._generate_multimodal_batch)

    def _batched(self, requests: list, params: SamplingParams, run) -> list[list[Completion]]:
        flat = [r for r in requests for _ in range(params.n)]
        out: list[Completion] = []
        was_training = self.model.training
        self.model.eval()
        compute = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype is not None
                   else contextlib.nullcontext())
        try:
            with compute:
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

    def _generate_multimodal_batch(self, requests: list[MultimodalRequest], params: SamplingParams) -> list[Completion]:
        texts = [self.processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m, _ in requests]
        images = [img for _, imgs in requests for img in imgs]  # in placeholder order, request after request
        inputs = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True,
                                padding_side="left")
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs:  # the vision tower's dtype (bfloat16 models)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        res = self.model.generate(**inputs, **self._sampling(params))
        return self._completions(res, inputs["input_ids"].shape[1])

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
