"""The vLLM engine without vLLM: lazy import, the one-line install error, and the pure mappings between our types and
vLLM 0.33's (SamplingParams kwargs, TokensPrompt dicts, RequestOutput/CompletionOutput -> Completion). vLLM outputs
are stood in for by SimpleNamespace objects with the fields vLLM 0.33 fills (a data shape, not behaviour).

The `gpu` test runs the real engine on a tiny saved model and checks its log-probs against the training forward,
before and after `sync_weights`; it is skipped unless CUDA and vLLM are both present. The same checks (and more)
run for real on vLLM's CPU build in tests/vllm (`make test-vllm`).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import SimpleNamespace

import pytest

from zppo_core.config.schema import ZPPOConfig
from zppo_core.models.tiny import build_char_tokenizer
from zppo_core.rollout import vllm_engine as ve
from zppo_core.rollout.base import SamplingParams


@pytest.fixture(scope="module")
def tok():
    return build_char_tokenizer()


def _lp(token_id: int, logprob: float, rank: int = 1):
    """One position of vLLM's sample logprobs: {token_id: Logprob(logprob, rank, decoded_token)}."""
    return {token_id: SimpleNamespace(logprob=logprob, rank=rank, decoded_token=None)}


def _out(token_ids, logprobs, finish_reason, index=0, stop_reason=None):
    """Shaped like vllm.outputs.CompletionOutput."""
    return SimpleNamespace(
        index=index,
        text="",
        token_ids=token_ids,
        cumulative_logprob=None,
        logprobs=logprobs,
        finish_reason=finish_reason,
        stop_reason=stop_reason,
    )


# ---------------------------------------------------------------- import and error


def test_module_imports_without_vllm_and_without_torch():
    code = (
        "import sys\nsys.modules['vllm'] = None\n"  # None in sys.modules: `import vllm` raises ImportError
        "import zppo_core.rollout.vllm_engine\n"
        "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"importing the module pulled in {out.stdout.strip()}"


def test_from_model_without_vllm_raises_one_line_install_hint(monkeypatch, tok):
    monkeypatch.setitem(sys.modules, "vllm", None)
    model = SimpleNamespace(name_or_path="/nowhere", config=SimpleNamespace(max_position_embeddings=512))
    with pytest.raises(RuntimeError) as err:
        ve.VLLMEngine.from_model(model, tok, ZPPOConfig())
    msg = str(err.value)
    assert "pip install 'zppo[vllm]'" in msg and "\n" not in msg


# ---------------------------------------------------------------- build arguments


def test_model_path_from_name_or_path_or_config():
    assert ve._model_path(SimpleNamespace(name_or_path="/m", config=SimpleNamespace())) == "/m"
    assert ve._model_path(SimpleNamespace(name_or_path="", config=SimpleNamespace(_name_or_path="/c"))) == "/c"
    with pytest.raises(ValueError, match="save_pretrained"):
        ve._model_path(SimpleNamespace(name_or_path="", config=SimpleNamespace(_name_or_path="")))


def test_max_model_len_is_prompt_plus_response_capped_by_context():
    assert ve._max_model_len(SimpleNamespace(max_position_embeddings=40960), 2048, 12288) == 14336
    assert ve._max_model_len(SimpleNamespace(max_position_embeddings=512), 2048, 48) == 512
    assert ve._max_model_len(SimpleNamespace(), 100, 20) == 120


def test_llm_kwargs_colocated_with_training():
    cfg = ZPPOConfig(model={"dtype": "bfloat16"}, run={"seed": 7}, rollout={"max_new_tokens": 48})
    kw = ve._llm_kwargs(
        "/m",
        "/t",
        cfg,
        SimpleNamespace(max_position_embeddings=4096),
        gpu_memory_utilization=0.35,
        enable_sleep_mode=True,
        tensor_parallel_size=1,
        max_prompt_len=1000,
    )
    assert kw == dict(
        model="/m",
        tokenizer="/t",
        dtype="bfloat16",
        seed=7,
        tensor_parallel_size=1,
        gpu_memory_utilization=0.35,
        max_model_len=1048,
        enable_sleep_mode=True,
        logprobs_mode="raw_logprobs",
        generation_config="vllm",
    )
    kw2 = ve._llm_kwargs(
        "/m", "/t", cfg, SimpleNamespace(), gpu_memory_utilization=0.5, enable_sleep_mode=False,
        tensor_parallel_size=2, max_prompt_len=10,
    )
    assert kw2["distributed_executor_backend"] == "external_launcher" and kw2["tensor_parallel_size"] == 2


# ---------------------------------------------------------------- sampling params and prompts


def test_sampling_kwargs_for_training_rollouts():
    kw = ve._to_vllm_sampling_kwargs(SamplingParams(n=8, temperature=1.0, top_p=1.0, max_new_tokens=48), eos_id=3)
    assert kw == dict(
        n=8,
        max_tokens=48,
        logprobs=0,
        presence_penalty=0.0,
        detokenize=False,
        stop_token_ids=[3],
        temperature=1.0,
        top_p=1.0,
        top_k=0,
    )


def test_sampling_kwargs_top_k_presence_penalty_and_greedy():
    kw = ve._to_vllm_sampling_kwargs(SamplingParams(temperature=0.7, top_p=0.9, top_k=20, presence_penalty=1.5))
    assert (kw["temperature"], kw["top_p"], kw["top_k"], kw["presence_penalty"]) == (0.7, 0.9, 20, 1.5)
    assert "stop_token_ids" not in kw
    for off in (0, -1, None):
        assert ve._to_vllm_sampling_kwargs(SamplingParams(top_k=off))["top_k"] == 0  # vLLM's "off"
    greedy = ve._to_vllm_sampling_kwargs(SamplingParams(temperature=0.0, top_p=0.5, top_k=5))
    assert (greedy["temperature"], greedy["top_p"], greedy["top_k"]) == (0.0, 1.0, 0)
    assert greedy["logprobs"] == 0


def test_greedy_with_n_above_one_becomes_n_copies_of_n_1():
    p, copies = ve._split_greedy(SamplingParams(n=3, temperature=0.0, max_new_tokens=5))
    assert (p.n, copies, p.max_new_tokens, p.greedy) == (1, 3, 5, True)
    sampled = SamplingParams(n=3, temperature=1.0)
    assert ve._split_greedy(sampled) == (sampled, 1)
    assert ve._split_greedy(SamplingParams(n=1, temperature=0.0))[1] == 1
    outs = [[f"a{i}"] for i in range(3)] + [[f"b{i}"] for i in range(3)]  # 2 prompts x 3 copies, n=1 each
    assert ve._regroup(outs, 3) == [["a0", "a1", "a2"], ["b0", "b1", "b2"]]
    assert ve._regroup([["x", "y"]], 1) == [["x", "y"]]


def test_supported_versions_and_cpu_defaults():
    ve._check_version("0.32.0")
    ve._check_version("0.33.1")
    ve._check_version("0.1.dev5+gabc")  # a source build: not refused
    with pytest.raises(RuntimeError, match=r"vLLM 0.31.2 is not supported.*0.32, 0.33"):
        ve._check_version("0.31.2")
    assert ve._cpu_defaults({}) == {"enforce_eager": True, "kv_cache_memory_bytes": 1 << 30}
    assert ve._cpu_defaults({"VLLM_CPU_KVCACHE_SPACE": "4"}) == {"enforce_eager": True}


def test_reload_noise_filter_drops_only_the_rotary_warning():
    import logging

    f = ve._DropReloadNoise()

    def rec(msg, args):
        return logging.LogRecord("vllm", logging.WARNING, "x", 1, msg, args, None)

    assert not f.filter(rec("%s: Failed to load weights", ("RotaryEmbedding",)))
    assert f.filter(rec("%s: Failed to load weights", ("QKVParallelLinear",)))  # a real failure still shows
    assert f.filter(rec("Reloading weights inplace...", ()))


def test_prompts_are_token_prompts():
    assert ve._to_vllm_prompts([[1, 2], [3]]) == [{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [3]}]


# ---------------------------------------------------------------- outputs -> Completions


def test_eos_terminated_completion_keeps_eos_and_flat_logprobs(tok):
    eos = tok.eos_token_id
    ids = tok("12", add_special_tokens=False)["input_ids"] + [eos]
    out = _out(ids, [_lp(ids[0], -0.5), _lp(ids[1], -1.25), _lp(eos, -0.125)], "stop")
    c = ve._completion_from_output(out, tok, eos)
    assert c.token_ids == ids and c.token_ids[-1] == eos
    assert c.logprobs == [-0.5, -1.25, -0.125]
    assert c.finished and c.text == "12"


def test_length_capped_completion_is_not_finished(tok):
    eos = tok.eos_token_id
    ids = tok("abc", add_special_tokens=False)["input_ids"]
    c = ve._completion_from_output(_out(ids, [_lp(t, -1.0) for t in ids], "length"), tok, eos)
    assert not c.finished and c.token_ids == ids and c.logprobs == [-1.0] * 3 and c.text == "abc"


def test_logprob_of_the_sampled_token_is_picked_among_top_entries(tok):
    eos = tok.eos_token_id
    ids = tok("ab", add_special_tokens=False)["input_ids"]
    a, b = ids
    # the sampled token need not be the top-1 entry of a position
    positions = [
        {b: SimpleNamespace(logprob=-0.1, rank=1), a: SimpleNamespace(logprob=-2.0, rank=2)},
        {b: SimpleNamespace(logprob=-0.3, rank=1)},
    ]
    c = ve._completion_from_output(_out(ids, positions, "length"), tok, eos)
    assert c.logprobs == [-2.0, -0.3]


def test_bad_outputs_raise(tok):
    eos = tok.eos_token_id
    ids = tok("ab", add_special_tokens=False)["input_ids"]
    with pytest.raises(RuntimeError, match="logprobs=0"):
        ve._completion_from_output(_out(ids, None, "length"), tok, eos)
    with pytest.raises(RuntimeError, match="positions"):
        ve._completion_from_output(_out(ids, [_lp(ids[0], -1.0)], "length"), tok, eos)
    with pytest.raises(RuntimeError, match="EOS"):  # stopped, but the EOS token is missing
        ve._completion_from_output(_out(ids, [_lp(t, -1.0) for t in ids], "stop"), tok, eos)
    with pytest.raises(RuntimeError, match="abort"):
        ve._completion_from_output(_out(ids, [_lp(t, -1.0) for t in ids], "abort"), tok, eos)


def test_request_output_gives_n_completions_in_sample_order(tok):
    eos = tok.eos_token_id
    x, y = tok("xy", add_special_tokens=False)["input_ids"]
    req = SimpleNamespace(
        request_id="0",
        prompt_token_ids=[5, 6],
        outputs=[_out([y, eos], [_lp(y, -0.2), _lp(eos, -0.3)], "stop", index=1), _out([x], [_lp(x, -0.1)], "length")],
        finished=True,
    )
    cs = ve._completions_from_request(req, tok, eos, n=2, prompt=[5, 6])
    assert [c.token_ids for c in cs] == [[x], [y, eos]]
    assert [c.finished for c in cs] == [False, True]
    with pytest.raises(RuntimeError, match="n=3"):
        ve._completions_from_request(req, tok, eos, n=3)
    with pytest.raises(RuntimeError, match="order"):
        ve._completions_from_request(req, tok, eos, n=2, prompt=[6, 5])


def test_generate_checks_lengths_before_touching_vllm(tok):
    engine = ve.VLLMEngine(llm=None, tokenizer=tok, max_model_len=10)
    assert engine.generate([], SamplingParams()) == []
    with pytest.raises(ValueError, match="max_model_len=10"):
        engine.generate([[1] * 8], SamplingParams(max_new_tokens=4))


# ---------------------------------------------------------------- real vLLM on a GPU


def _gpu_and_vllm() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_and_vllm(), reason="needs a CUDA GPU and vLLM (pip install 'zppo[vllm]')")
def test_vllm_logprobs_match_training_forward(tmp_path, tok):
    import torch
    from transformers import AutoModelForCausalLM

    from zppo_core.config.schema import TinyModelSpec
    from zppo_core.models.logprobs import completion_logprobs
    from zppo_core.models.tiny import build_tiny_model
    from zppo_core.rollout.base import Engine

    build_tiny_model(TinyModelSpec(num_hidden_layers=2), tok, seed=0).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).cuda()
    cfg = ZPPOConfig(model={"dtype": "float32"}, rollout={"max_new_tokens": 24}, run={"seed": 0})
    engine = ve.VLLMEngine.from_model(model, tok, cfg, gpu_memory_utilization=0.3, enforce_eager=True)
    assert isinstance(engine, Engine)

    from zppo_core.models.load import render

    prompts = [render(tok, t) for t in ["Compute 1+2.", "Solve 3x+5=20. Think.", "Hi"]]  # different lengths

    def check() -> list:
        outs = engine.generate(prompts, SamplingParams(n=16, max_new_tokens=24))
        assert [len(o) for o in outs] == [16, 16, 16]
        flat_p = [p for p, o in zip(prompts, outs) for _ in o]
        flat_c = [c for o in outs for c in o]
        with torch.no_grad():
            lp, mask, _ = completion_logprobs(model, flat_p, [c.token_ids for c in flat_c], tok.pad_token_id)
        for i, c in enumerate(flat_c):
            n = len(c.token_ids)
            assert 0 < n <= 24 and len(c.logprobs) == n and int(mask[i].sum()) == n
            assert c.finished == (c.token_ids[-1] == tok.eos_token_id)
            assert tok.eos_token_id not in c.token_ids[:-1]
            assert c.finished or n == 24
            diff = (lp[i, :n].cpu() - torch.tensor(c.logprobs)).abs().max().item()
            assert diff < 2e-3, (i, diff)
        return flat_c

    first = check()
    assert any(c.finished for c in first)  # near-uniform random model: EOS is sampled in ~20% of samples
    # greedy decoding is deterministic (n > 1 is sent as n requests of n = 1)
    g1 = engine.generate(prompts[:1], SamplingParams(n=2, temperature=0.0, max_new_tokens=8))[0]
    assert g1[0].token_ids == g1[1].token_ids

    # change the trainer's weights: the engine samples from them only after sync_weights
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    engine.sync_weights(model)
    check()
