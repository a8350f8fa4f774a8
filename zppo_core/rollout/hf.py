"""Transformers rollout engine: batched, KV-cached sampling of token ids and their log-probs (CPU or GPU).

Text prompts go through our own decode loop over the model's forward (`_decode_batch`), not `model.generate`:

- each distinct prompt is prefilled once and its cache copied to its `n` samples (the G_S samples of a question
  share one prompt, so prefill costs 1/G_S of per-row prefill);
- one sampling step per token: the policy log-prob of the sampled token is taken from the raw logits on the spot
  (`generate` keeps [B, T, V] fp32 logits: 0.5 GB per step at a 248k vocabulary and 512 rows); the processors
  are transformers' own (repetition penalty, `min_new_tokens` from the model's generation_config, temperature,
  top-k, top-p, in `generate`'s order), then `softmax` + `multinomial` exactly as `generate` samples, so
  torch's global generator is consumed the same way and one seed gives the same tokens as `generate`.

Two cache paths (`decode_path` picks the fastest the model allows): "slots" for text decoders with full attention
in every layer and sdpa/eager attention (the tiny models, Qwen3, Llama): a KV cache preallocated for prompt +
`max_new_tokens` and written in place, and 4-D masks the model uses as they are (no growing `torch.cat`, no
per-step mask construction); "model-cache" for other text decoders (hybrid linear-attention Qwen3.5,
flash-attention kernels, sliding windows): the model's own cache and 2-D masks. Multimodal requests and models
use `model.generate` ("generate"). All paths return the same thing: per completion the token ids (cut after
EOS), the log-probs of the *policy* (temperature-1 softmax of the raw logits: PPO's π_old with
`algo.old_logprobs=engine`, no second forward pass; with `trainer` the loop recomputes π_old and compares,
`train/old_logprobs.py`) and the decoded text. Randomness comes from torch's global generator, which the trainer seeds and
checkpoints. The sampling spec is `SamplingParams` alone: of the model's generation_config only
`min_new_tokens` is honoured (the benchmarks fix completion lengths with it). Sampling runs under
`torch.inference_mode` (no version counters or view tracking on the ~100 ops of each decode step; the same
tokens and log-probs as under `no_grad`), and returns plain lists, so no inference tensor reaches training.

`autocast_dtype` (set by `make_engine` when the model's weights are fp32 masters and `model.dtype` is bf16):
sampling runs under `torch.autocast` in that dtype, i.e. with the same bf16 compute as the training forward
(`zppo_core.models.precision`), so the engine's log-probs are the trained policy's at training numerics.

Built with a processor that has an image processor (a vision-language model loaded with its processor and
`AutoModelForImageTextToText`), the engine also takes images: `generate_rendered` samples from rendered prompts
(`types.Prompt`: token ids with expanded image placeholders plus the processor's tensors, batched by
`models.vl.collate`, the same inputs the training forward builds), `generate_multimodal` from (chat messages,
images) requests rendered through the same `models.vl.render_prompt`; sampling is `model.generate`'s. With a
processor, the image/video placeholder tokens are never sampled (`suppress_tokens`; the log-probs stay those of
the raw logits).
"""

from __future__ import annotations

import contextlib

import torch

from zppo_core.algo.losses import gather_token_logprobs
from zppo_core.models.kv import DECODE_PATHS, attention_mask
from zppo_core.models.kv import cache_kwarg as _cache_kwarg
from zppo_core.models.kv import why_not as _why_not
from zppo_core.rollout.base import MultimodalRequest, SamplingParams
from zppo_core.types import Completion, Prompt


class TransformersEngine:
    def __init__(self, model, tokenizer, batch_size: int = 256, processor=None, autocast_dtype=None,
                 decode: str = "auto"):
        """`decode`: "auto" (the fastest path the model allows, see `decode_path`), or one of "slots",
        "model-cache" or "generate" to force a path (an impossible one raises ValueError)."""
        self.model = model
        self.autocast_dtype = autocast_dtype  # compute dtype over fp32 master weights (None: the weights' dtype)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.processor = processor  # a multimodal processor (image processor + this tokenizer), or None
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id
        from zppo_core.models.vl import vision_token_ids

        self.suppress = vision_token_ids(processor)  # placeholder tokens a completion must never contain
        best = decode_path(model)
        if decode not in ("auto", *DECODE_PATHS):
            raise ValueError(f"decode={decode!r}: choose auto, {', '.join(DECODE_PATHS)}")
        if decode != "auto" and DECODE_PATHS.index(decode) < DECODE_PATHS.index(best):
            raise ValueError(f"decode={decode!r} cannot drive this model ({_why_not(model, decode)}); "
                             f"it supports {best!r}")
        self.decode = best if decode == "auto" else decode

    @property
    def supports_images(self) -> bool:
        return getattr(self.processor, "image_processor", None) is not None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def sync_weights(self, model) -> None:
        if model is not self.model:
            self.model.load_state_dict(model.state_dict())

    @torch.inference_mode()
    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        return self._batched(prompts, params, self._generate_batch if self.decode == "generate" else self._decode_batch)

    @torch.inference_mode()
    def generate_multimodal(self, requests: list[MultimodalRequest], params: SamplingParams) -> list[list[Completion]]:
        """For each (chat messages, PIL images) request, `params.n` completions (see `rollout.base`)."""
        if not self.supports_images:
            raise ValueError("this engine has no image processor; build it with the model's AutoProcessor")
        from zppo_core.models.vl import render_prompt

        return self.generate_rendered([render_prompt(self.tokenizer, self.processor, m, imgs) for m, imgs in requests],
                                      params)

    @torch.inference_mode()
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
        compute = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype is not None
                   else contextlib.nullcontext())
        try:
            with compute:
                for start in range(0, len(flat), self.batch_size):
                    out.extend(run(flat[start : start + self.batch_size], params))
        finally:
            self.model.train(was_training)
        return [out[i * params.n : (i + 1) * params.n] for i in range(len(requests))]

    # ------------------------------------------------------------------ decode loop (text)
    def _decode_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        model, dev = self.model, self.device
        B, T = len(prompts), params.max_new_tokens
        uniq: dict[tuple[int, ...], int] = {}
        row_prompt = torch.tensor([uniq.setdefault(tuple(p), len(uniq)) for p in prompts], device=dev)  # [B]
        U, P = len(uniq), max(len(p) for p in prompts)
        ids = torch.full((U, P), self.pad_id, dtype=torch.long)  # [U, P] left-padded distinct prompts
        real = torch.zeros((U, P), dtype=torch.bool)  # [U, P]
        for p, u in uniq.items():
            ids[u, P - len(p) :] = torch.tensor(p, dtype=torch.long)
            real[u, P - len(p) :] = True
        ids, real = ids.to(dev), real.to(dev)
        pos = (real.long().cumsum(-1) - 1).clamp(min=0)  # [U, P] positions count real tokens only
        from transformers import DynamicCache


        slots = self.decode == "slots"
        cache = DynamicCache(config=model.config)
        kw = {_cache_kwarg(model): cache}
        if slots:  # 4-D mask: real keys only, causal; a padding query row sees itself (never read, no empty row)
            causal = torch.ones((P, P), dtype=torch.bool, device=dev).tril()  # [P, P]
            allowed = (causal & real[:, None, :]) | torch.eye(P, dtype=torch.bool, device=dev)  # [U, P, P]
            prefill_mask = attention_mask(model, allowed[:, None])  # [U, 1, P, P]
        else:
            prefill_mask = real.long()  # [U, P] the model builds its own masks (and its linear-attention masks)
        out = model(input_ids=ids, attention_mask=prefill_mask, position_ids=pos, use_cache=True, logits_to_keep=1,
                    **kw)
        if slots:
            _slot_layers(cache, row_prompt, P + T)  # each row starts from its prompt's prefilled K/V
        else:
            cache.reorder_cache(row_prompt)  # each row starts from its prompt's prefilled states
        logits = out.logits[:, -1].float()[row_prompt]  # [B, V] logits of the first new token

        keys = torch.zeros((B, P + T), dtype=torch.bool, device=dev)  # [B, P+T] attendable key slots
        keys[:, :P] = real[row_prompt]
        seq = torch.full((B, P + T), self.pad_id, dtype=torch.long, device=dev)  # [B, P+T] prompt + new ids
        seq[:, :P] = ids[row_prompt]
        next_pos = pos[row_prompt, -1] + 1  # [B]
        processors = self._processors(params, P)
        unfinished = torch.ones(B, dtype=torch.bool, device=dev)  # [B]
        lps = torch.zeros((B, T), dtype=torch.float32, device=dev)  # [B, T]
        t = 0
        while True:
            scores = processors(seq[:, : P + t], logits) if processors else logits  # [B, V]
            if params.greedy:
                tok = scores.argmax(-1)  # [B]
            else:
                tok = torch.multinomial(torch.softmax(scores, dim=-1), num_samples=1).squeeze(1)  # [B]
            tok = torch.where(unfinished, tok, self.pad_id)  # finished rows get padding, as in generate
            # [B] policy log-prob of the sampled token: gather - logsumexp of the raw logits, as gather_token_logprobs
            lps[:, t] = logits.gather(-1, tok[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
            seq[:, P + t] = tok
            keys[:, P + t] = True
            unfinished &= tok != self.eos_id
            t += 1
            if t == T or not bool(unfinished.any()):
                break
            mask = attention_mask(model, keys[:, None, None, : P + t]) if slots else keys[:, : P + t].long()
            out = model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos[:, None], use_cache=True,
                        **kw)
            logits = out.logits[:, -1].float()  # [B, V]
            next_pos = next_pos + 1
        return self._cut(seq[:, P : P + t].cpu(), lps[:, :t].cpu())

    def _processors(self, params: SamplingParams, prompt_len: int):
        """transformers' logits processors for `params`, in `generate`'s order (empty list: plain sampling)."""
        from transformers.generation.logits_process import (
            LogitsProcessorList,
            MinNewTokensLengthLogitsProcessor,
            RepetitionPenaltyLogitsProcessor,
            TemperatureLogitsWarper,
            TopKLogitsWarper,
            TopPLogitsWarper,
        )

        out = LogitsProcessorList()
        if params.presence_penalty:  # HF's closest knob; multiplicative rather than vLLM's additive presence penalty
            out.append(RepetitionPenaltyLogitsProcessor(penalty=1.0 + params.presence_penalty))
        min_new = getattr(self.model.generation_config, "min_new_tokens", None)
        if min_new:
            out.append(MinNewTokensLengthLogitsProcessor(prompt_len, min_new, torch.tensor([self.eos_id]),
                                                         device=self.device))
        if not params.greedy:
            if params.temperature != 1.0:
                out.append(TemperatureLogitsWarper(params.temperature))
            if params.top_k:
                out.append(TopKLogitsWarper(top_k=params.top_k))
            if params.top_p < 1.0:
                out.append(TopPLogitsWarper(top_p=params.top_p))
        return out

    # ------------------------------------------------------------------ model.generate (reference, multimodal)
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
        return self._cut(new, gather_token_logprobs(logits, new))  # [B, T] ids, [B, T] log-probs

    def _cut(self, new: torch.Tensor, lp: torch.Tensor) -> list[Completion]:
        """Generated ids [B, T] (padded after EOS) and their log-probs [B, T] -> Completions cut after EOS."""
        completions = []
        for ids, lps in zip(new.tolist(), lp.tolist()):
            finished = self.eos_id in ids
            n = ids.index(self.eos_id) + 1 if finished else len(ids)
            completions.append(Completion(token_ids=ids[:n], logprobs=lps[:n],
                                          text=self.tokenizer.decode(ids[:n], skip_special_tokens=True),
                                          finished=finished))
        return completions


# ---------------------------------------------------------------------------------------------------- support
def decode_path(model) -> str:
    """The fastest decode path that can drive `model`."""
    return next(p for p in DECODE_PATHS if _why_not(model, p) is None)


def _slot_layers(cache, rows: torch.Tensor, capacity: int) -> None:
    """Turn `cache` (a transformers DynamicCache holding the U distinct prompts' prefill) into a preallocated cache
    for the B decode rows: per layer [B, kv_heads, capacity, head_dim] keys and values, row b starting from prompt
    rows[b]'s prefill, each decode step written in place (a growing cache would copy all of it every step)."""
    from transformers.cache_utils import DynamicLayer

    class SlotLayer(DynamicLayer):
        def __init__(self, k_buf: torch.Tensor, v_buf: torch.Tensor, length: int):
            super().__init__()
            self.k_buf, self.v_buf, self.length = k_buf, v_buf, length  # [B, h, C, d] x2, filled slots
            self.device, self.is_initialized = k_buf.device, True
            self.keys, self.values = k_buf[:, :, :length], v_buf[:, :, :length]

        def update(self, key_states, value_states, *args, **kwargs):
            n = key_states.shape[-2]
            self.k_buf[:, :, self.length : self.length + n] = key_states
            self.v_buf[:, :, self.length : self.length + n] = value_states
            self.length += n
            self.keys, self.values = self.k_buf[:, :, : self.length], self.v_buf[:, :, : self.length]
            return self.keys, self.values

        def get_seq_length(self) -> int:
            return self.length

    layers = []
    for layer in cache.layers:
        k, v = layer.keys, layer.values  # [U, h, P, d]
        P = k.shape[-2]
        k_buf = k.new_empty((len(rows), k.shape[1], capacity, k.shape[-1]))  # [B, h, C, d]
        v_buf = v.new_empty((len(rows), v.shape[1], capacity, v.shape[-1]))  # [B, h, C, d]
        k_buf[:, :, :P] = k[rows]
        v_buf[:, :, :P] = v[rows]
        layers.append(SlotLayer(k_buf, v_buf, P))
    cache.layers = layers
