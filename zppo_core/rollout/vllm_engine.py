"""vLLM rollout engine (GPU, optional extra): the only module of zppo that imports vllm, and only lazily.

Verified against the vLLM 0.33.0 wheel's own sources (`vllm/_version.py`: 0.33.0):
`vllm/entrypoints/llm.py` (LLM, generate, apply_model, sleep/wake_up, reset_prefix_cache),
`vllm/v1/engine/llm_engine.py` (in-process `model_executor`, apply_model -> collective_rpc),
`vllm/v1/executor/uniproc_executor.py` + `vllm/v1/serial_utils.py::run_method` (in-process RPC: no pickling),
`vllm/v1/worker/worker_base.py::apply_model`, `vllm/v1/worker/gpu_worker.py` (sleep/wake_up save and restore
buffers), `vllm/device_allocator/cumem.py` (one sleep allocator per process), `vllm/sampling_params.py`,
`vllm/config/model.py` (`logprobs_mode`, `enable_sleep_mode`, `generation_config`), `vllm/v1/sample/sampler.py`,
`vllm/v1/core/sched/utils.py::check_stop`, `vllm/v1/engine/detokenizer.py`, `vllm/v1/engine/output_processor.py`,
`vllm/outputs.py`, `vllm/logprobs.py`, `vllm/inputs/llm.py` (TokensPrompt).

How it maps onto the Engine protocol:

- Prompts go in as token ids, `{"prompt_token_ids": ids}` (vLLM's `TokensPrompt` TypedDict); `n` samples per
  prompt come back as one RequestOutput with `n` CompletionOutputs.
- Log-probs: `logprobs=0` returns the sampled token's log-prob at each position. The engine is built with
  `logprobs_mode="raw_logprobs"` (0.33's default, set explicitly): log-softmax of the model's raw logits, taken
  *before* penalties, temperature and top-k/top-p (`Sampler.forward`). So they are the policy's temperature-1
  log-probs whatever the sampling temperature, exactly what `SamplingParams` promises and what the transformers
  engine returns (it also reads the raw logits). `processed_logprobs` (TRL's choice, for truncated importance
  sampling) would instead give the temperature/top-p distribution; at training temperature 1.0 / top-p 1.0 the
  two coincide.
- EOS: `check_stop` appends the sampled token to the request before checking it, and the detokenizer re-appends
  a stop token it skipped for the text (`detokenizer.py`, "Cleanup after skipping detokenization"), so
  `CompletionOutput.token_ids` ends with the EOS id and `logprobs` has its entry when `finish_reason == "stop"`.
  We ask for `stop_token_ids=[tokenizer.eos_token_id]` and `generation_config="vllm"` (no extra stop ids from
  generation_config.json), so the engine stops on exactly the token the transformers engine stops on, and
  `_completion_from_output` checks the EOS is there (its log-prob is PPO's π_old for that token).
- Text is decoded by our tokenizer (`detokenize=False` in vLLM), like the transformers engine.
- Images (`generate_multimodal`, engines built with the model's processor): each request goes in as vLLM's
  text prompt with multimodal data, `{"prompt": chat_template_text, "multi_modal_data": {"image": [PIL images]}}`
  (`vllm/inputs`); vLLM's own multimodal processor expands the image placeholders the chat template wrote
  (V1 allows up to 999 items per modality and prompt by default, `MultiModalConfig.limit_per_prompt`).
  Not yet run on a GPU.

Weight sync (`sync_weights`): vLLM 0.33 offers three ways to change weights in place: `apply_model(fn)` running
`fn(model)` inside the worker, `collective_rpc("reload_weights", weights_iterator=...)` (layerwise reload, built
for quantized checkpoints), and the weight-transfer engines (NCCL/IPC, for a trainer in another process). The
trainer and this engine share one process and one GPU, so we run the engine core in-process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`; then `LLM.apply_model` reaches the worker through plain function calls,
no serialization) and call the vLLM model's own `load_weights` on the trainer's tensors:
`llm.apply_model(lambda m: m.load_weights(state_dict.items()))`. `load_weights` copies into the existing
parameter storage (fusing q/k/v and gate/up, casting dtype), so CUDA-graph addresses stay valid; it is the path
TRL's colocate mode uses (`llm_engine.model_executor.driver_worker.model_runner.model.load_weights`), reached
through the public `apply_model`, which also unwraps the CUDA-graph wrapper. Then `reset_prefix_cache()`, since
cached KV blocks were computed by the old weights.

Sharing the GPU with training: `enable_sleep_mode` (when the platform has it). Between calls the engine sleeps
at level 2 (weights and KV cache freed; vLLM saves and restores its buffers). `sync_weights` wakes only the
weights and loads them; `generate` wakes the KV cache, samples, and sleeps again. Level 2 discards the weights,
so a `generate` after a sleep first re-pushes the weights of the model last given to `from_model`/`sync_weights`
(the loop never changes the model between a sync and its rollouts). vLLM's sleep allocator is one per process
and sleeps every tagged allocation in it, so only the first engine of a process sleeps; later ones (the
teacher) keep their memory.

Random sampling draws from vLLM's generator (seeded with `run.seed` at build time), which checkpoints do not
capture: a resumed vLLM run is statistically, not bitwise, identical to an uninterrupted one.
"""

from __future__ import annotations

import os
import weakref
from typing import Any

from zppo_core.rollout.base import SamplingParams
from zppo_core.types import Completion

INSTALL_HINT = (
    "vLLM is not installed; pip install 'zppo[vllm]' on a CUDA machine, or --set rollout.engine=transformers"
)

_sleeping_engine: weakref.ref | None = None  # the one engine of this process that uses sleep mode


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    return vllm


# ---------------------------------------------------------------- pure mappings (unit-tested without vllm)


def _model_path(model) -> str:
    """The local directory (or cached hub id) the HF model was loaded from: vLLM loads its own copy from there."""
    path = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", None)
    if not path:
        raise ValueError(
            "the vLLM engine builds from the model's directory, but this model has no name_or_path; "
            "save it with save_pretrained(dir) and load it with from_pretrained(dir)"
        )
    return str(path)


def _max_model_len(model_config, max_prompt_len: int, max_new_tokens: int) -> int:
    """Longest prompt + response the engine reserves KV room for, capped by the model's context."""
    want = max_prompt_len + max_new_tokens
    limit = getattr(model_config, "max_position_embeddings", None)
    return min(want, int(limit)) if limit else want


def _llm_kwargs(
    model_path: str,
    tokenizer_path: str,
    cfg,
    model_config,
    *,
    gpu_memory_utilization: float,
    enable_sleep_mode: bool,
    tensor_parallel_size: int,
    max_prompt_len: int,
) -> dict[str, Any]:
    """Keyword arguments of `vllm.LLM` for an engine colocated with training."""
    kwargs: dict[str, Any] = dict(
        model=model_path,
        tokenizer=tokenizer_path,
        dtype=cfg.model.dtype,
        seed=cfg.run.seed,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_model_len=_max_model_len(model_config, max_prompt_len, cfg.rollout.max_new_tokens),
        enable_sleep_mode=enable_sleep_mode,
        logprobs_mode="raw_logprobs",  # the policy's log-probs, before temperature / top-p (see module doc)
        generation_config="vllm",  # no sampling defaults or extra stop ids from generation_config.json
    )
    if tensor_parallel_size > 1:
        # one engine per torchrun rank, each holding a shard, all in-process (TRL's colocate mode); untested here
        kwargs["distributed_executor_backend"] = "external_launcher"
    return kwargs


def _to_vllm_sampling_kwargs(params: SamplingParams, eos_id: int | None = None) -> dict[str, Any]:
    """Our SamplingParams -> keyword arguments of `vllm.SamplingParams` (0.33)."""
    kwargs: dict[str, Any] = dict(
        n=params.n,
        max_tokens=params.max_new_tokens,
        logprobs=0,  # only the sampled token's log-prob
        presence_penalty=float(params.presence_penalty),  # vLLM's additive presence penalty, in [-2, 2]
        detokenize=False,  # text is decoded by our tokenizer
    )
    if eos_id is not None:
        kwargs["stop_token_ids"] = [eos_id]
    if params.greedy:
        kwargs.update(temperature=0.0, top_p=1.0, top_k=0)
    else:
        top_k = params.top_k or 0
        kwargs.update(
            temperature=float(params.temperature),
            top_p=float(params.top_p),
            top_k=top_k if top_k > 0 else 0,  # 0 is vLLM's "off" (-1 is accepted too)
        )
    return kwargs


def _to_vllm_prompts(prompts: list[list[int]]) -> list[dict[str, list[int]]]:
    """Token-id prompts as vLLM `TokensPrompt` dicts."""
    return [{"prompt_token_ids": list(p)} for p in prompts]


def _to_vllm_multimodal_prompts(requests, processor) -> list[dict[str, Any]]:
    """(chat messages, PIL images) requests as vLLM text prompts with their images (`multi_modal_data`)."""
    out = []
    for messages, images in requests:
        prompt: dict[str, Any] = {
            "prompt": processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        }
        if images:
            prompt["multi_modal_data"] = {"image": list(images)}
        out.append(prompt)
    return out


def _completion_from_output(output, tokenizer, eos_id: int) -> Completion:
    """One vLLM CompletionOutput (token_ids, logprobs: per-position {token_id: Logprob}, finish_reason,
    stop_reason) -> Completion with the EOS id kept and one float log-prob per token."""
    ids = [int(t) for t in output.token_ids]
    reason = output.finish_reason
    if reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM request ended with finish_reason={reason!r}, expected 'stop' or 'length'")
    if output.logprobs is None:
        raise RuntimeError("vLLM returned no log-probs; the request must set logprobs=0")
    if len(output.logprobs) != len(ids):
        raise RuntimeError(f"vLLM returned {len(output.logprobs)} log-prob positions for {len(ids)} tokens")
    logprobs = [float(position[tok].logprob) for tok, position in zip(ids, output.logprobs)]
    finished = reason == "stop"
    if finished and (not ids or ids[-1] not in {eos_id, output.stop_reason}):
        raise RuntimeError(
            f"vLLM stopped (finish_reason='stop') but the last returned token is {ids[-1] if ids else None}, not "
            f"EOS {eos_id}; training needs the EOS token and its log-prob (vLLM 0.33 returns both)"
        )
    return Completion(
        token_ids=ids,
        logprobs=logprobs,
        text=tokenizer.decode(ids, skip_special_tokens=True),
        finished=finished,
    )


def _completions_from_request(request_output, tokenizer, eos_id: int, n: int, prompt=None) -> list[Completion]:
    """One vLLM RequestOutput (prompt_token_ids, outputs) -> its `n` Completions in sample order."""
    if prompt is not None and request_output.prompt_token_ids is not None:
        if list(request_output.prompt_token_ids) != list(prompt):
            raise RuntimeError("vLLM returned outputs out of prompt order")
    outs = sorted(request_output.outputs, key=lambda o: o.index)
    if len(outs) != n:
        raise RuntimeError(f"vLLM returned {len(outs)} samples for a prompt, expected n={n}")
    return [_completion_from_output(o, tokenizer, eos_id) for o in outs]


# ---------------------------------------------------------------- the engine


class VLLMEngine:
    """Engine protocol on vLLM, colocated with the trainer on its GPU. Build it with `from_model`."""

    def __init__(self, llm, tokenizer, model=None, *, max_model_len: int, sleep_mode: bool = False,
                 processor=None):
        self.llm = llm
        self.tokenizer = tokenizer
        self.processor = processor  # the model's multimodal processor (chat template for image requests), or None
        self.eos_id = tokenizer.eos_token_id
        self.max_model_len = max_model_len
        self.sleep_mode = sleep_mode
        self._model = model  # weights source: re-pushed after a level-2 sleep discarded the engine's copy
        self._weights_asleep = False
        self._kv_asleep = False

    @classmethod
    def from_model(
        cls,
        model,
        tokenizer,
        cfg,
        *,
        gpu_memory_utilization: float = 0.35,
        enable_sleep_mode: bool = True,
        tensor_parallel_size: int = 1,
        max_prompt_len: int = 2048,
        processor=None,
        **llm_kwargs,
    ) -> "VLLMEngine":
        """Build a vLLM engine from the directory `model` was loaded from, then make it sample from `model`'s
        current weights. `gpu_memory_utilization` is the share of the GPU vLLM may take (weights + KV cache);
        the rest is the trainer's. `max_prompt_len` + `cfg.rollout.max_new_tokens` (capped by the model's
        context) is the longest sequence served. With `processor` (a vision-language model's AutoProcessor) the
        engine also takes images. Extra keywords go to `vllm.LLM` (e.g. enforce_eager=True)."""
        global _sleeping_engine
        vllm = _import_vllm()
        path = _model_path(model)
        tok_path = getattr(tokenizer, "name_or_path", None) or path
        if not os.path.isdir(tok_path):
            tok_path = path
        if enable_sleep_mode:
            from vllm.platforms import current_platform

            enable_sleep_mode = current_platform.is_sleep_mode_available() and (
                _sleeping_engine is None or _sleeping_engine() is None
            )
        kwargs = _llm_kwargs(
            path,
            tok_path,
            cfg,
            model.config,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_sleep_mode=enable_sleep_mode,
            tensor_parallel_size=tensor_parallel_size,
            max_prompt_len=max_prompt_len,
        )
        kwargs.update(llm_kwargs)
        # in-process engine core: `apply_model` then reaches the model by plain calls, so weights are pushed by
        # reference (read lazily by vllm.envs when the engine is built)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        llm = vllm.LLM(**kwargs)
        if getattr(llm.llm_engine, "model_executor", None) is None:
            raise RuntimeError(
                "the vLLM engine core runs in another process, so weights cannot be pushed in-process; build the "
                "engine before any other vLLM engine of this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)"
            )
        engine = cls(
            llm, tokenizer, model, max_model_len=kwargs["max_model_len"], sleep_mode=kwargs["enable_sleep_mode"],
            processor=processor,
        )
        if engine.sleep_mode:
            _sleeping_engine = weakref.ref(engine)
            llm.sleep(level=2)  # give the GPU back to training until the first rollout (which pushes weights)
            engine._weights_asleep = engine._kv_asleep = True
        else:
            engine.sync_weights(model)
        return engine

    # -- weights

    def sync_weights(self, model) -> None:
        """Copy `model`'s current weights into the engine (vLLM's `load_weights`, in place), then drop the
        prefix cache. With sleep mode only the weights are woken; the KV cache stays freed for training."""
        import torch

        self._model = model
        if self._weights_asleep:
            torch.cuda.empty_cache()
            self.llm.wake_up(tags=["weights"])
            self._weights_asleep = False
        weights = [(name, t.detach()) for name, t in model.state_dict().items()]

        def load(vllm_model) -> None:
            vllm_model.load_weights(weights)

        with torch.no_grad():
            self.llm.apply_model(load)
        self.llm.reset_prefix_cache()

    # -- sampling

    def generate(self, prompts: list[list[int]], params: SamplingParams) -> list[list[Completion]]:
        if not prompts:
            return []
        longest = max(len(p) for p in prompts)
        if longest + params.max_new_tokens > self.max_model_len:
            raise ValueError(
                f"a prompt of {longest} tokens + max_new_tokens={params.max_new_tokens} exceeds the vLLM engine's "
                f"max_model_len={self.max_model_len}; build it with a larger max_prompt_len"
            )
        vllm = _import_vllm()
        sampling = vllm.SamplingParams(**_to_vllm_sampling_kwargs(params, self.eos_id))
        self._wake_for_generation()
        try:
            outs = self.llm.generate(_to_vllm_prompts(prompts), sampling, use_tqdm=False)
        finally:
            self._sleep_after_generation()
        if len(outs) != len(prompts):
            raise RuntimeError(f"vLLM returned {len(outs)} request outputs for {len(prompts)} prompts")
        return [
            _completions_from_request(o, self.tokenizer, self.eos_id, params.n, prompt=p)
            for o, p in zip(outs, prompts)
        ]

    @property
    def supports_images(self) -> bool:
        return getattr(self.processor, "image_processor", None) is not None

    def generate_multimodal(self, requests, params: SamplingParams) -> list[list[Completion]]:
        """For each (chat messages, PIL images) request, `params.n` completions (see `rollout.base`)."""
        if not requests:
            return []
        if not self.supports_images:
            raise ValueError("this engine has no image processor; build it with processor=AutoProcessor(...)")
        vllm = _import_vllm()
        sampling = vllm.SamplingParams(**_to_vllm_sampling_kwargs(params, self.eos_id))
        self._wake_for_generation()
        try:
            outs = self.llm.generate(_to_vllm_multimodal_prompts(requests, self.processor), sampling, use_tqdm=False)
        finally:
            self._sleep_after_generation()
        if len(outs) != len(requests):
            raise RuntimeError(f"vLLM returned {len(outs)} request outputs for {len(requests)} requests")
        return [_completions_from_request(o, self.tokenizer, self.eos_id, params.n) for o in outs]

    def _wake_for_generation(self) -> None:
        if not self.sleep_mode:
            return
        if self._weights_asleep:  # level 2 discarded them: wake and re-push the last synced model's weights
            if self._model is None:
                raise RuntimeError("the vLLM engine slept with no model to restore its weights from")
            self.sync_weights(self._model)
        if self._kv_asleep:
            self.llm.wake_up(tags=["kv_cache"])
            self._kv_asleep = False

    def _sleep_after_generation(self) -> None:
        if self.sleep_mode and not (self._weights_asleep and self._kv_asleep):
            self.llm.sleep(level=2)
            self._weights_asleep = self._kv_asleep = True
