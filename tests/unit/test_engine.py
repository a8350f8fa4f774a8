"""The transformers engine: its log-probs are the training forward's log-probs; EOS and padding handling."""

from __future__ import annotations

import pytest
import torch

from zppo_core.config.schema import TinyModelSpec
from zppo_core.models.logprobs import completion_logprobs
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
from zppo_core.rollout.base import Engine, SamplingParams
from zppo_core.rollout.hf import TransformersEngine
from zppo_core.models.load import render


def _setup():
    tok = build_char_tokenizer()
    model = build_tiny_model(TinyModelSpec(num_hidden_layers=2), tok, seed=0)
    return tok, model


def _bias_eos(model, tok, bias: float) -> None:
    def hook(module, inputs, output):
        output[..., tok.eos_token_id] += bias
        return output

    model.lm_head.register_forward_hook(hook)


def test_engine_logprobs_match_training_forward():
    tok, model = _setup()
    engine = TransformersEngine(model, tok, batch_size=5)  # batch smaller than the request: chunking is used
    assert isinstance(engine, Engine)
    prompts = [render(tok, t) for t in ["Compute 1+2.", "Solve 3x+5=20. Think."]]  # different lengths
    torch.manual_seed(0)
    outs = engine.generate(prompts, SamplingParams(n=4, max_new_tokens=12))
    assert [len(o) for o in outs] == [4, 4]
    flat_p = [p for p, o in zip(prompts, outs) for _ in o]
    flat_c = [c for o in outs for c in o]
    with torch.no_grad():
        lp, mask, _ = completion_logprobs(model, flat_p, [c.token_ids for c in flat_c], tok.pad_token_id)
    for i, c in enumerate(flat_c):
        n = len(c.token_ids)
        assert int(mask[i].sum()) == n and len(c.logprobs) == n
        assert torch.allclose(lp[i, :n], torch.tensor(c.logprobs), atol=1e-4), i


def test_completions_stop_at_eos_and_decode():
    tok, model = _setup()
    _bias_eos(model, tok, +100.0)  # EOS overwhelmingly likely at every position
    out = TransformersEngine(model, tok).generate([render(tok, "Compute 1+2.")], SamplingParams(n=3, max_new_tokens=8))
    for c in out[0]:
        assert c.finished and c.token_ids == [tok.eos_token_id] and c.text == ""


def test_truncated_completions_are_marked():
    tok, model = _setup()
    _bias_eos(model, tok, -100.0)  # EOS never sampled
    out = TransformersEngine(model, tok).generate([render(tok, "Compute 1+2.")], SamplingParams(n=2, max_new_tokens=5))
    assert all(not c.finished and len(c.token_ids) == 5 for c in out[0])


def test_same_seed_same_samples():
    tok, model = _setup()
    eng = TransformersEngine(model, tok)
    p = [render(tok, "Compute 4+4.")]
    torch.manual_seed(3)
    a = eng.generate(p, SamplingParams(n=3, max_new_tokens=10))
    torch.manual_seed(3)
    b = eng.generate(p, SamplingParams(n=3, max_new_tokens=10))
    assert [c.token_ids for c in a[0]] == [c.token_ids for c in b[0]]


# ---------------------------------------------------------------------------------------------------- lean loop
def _prompts(tok):
    # different lengths, and one prompt asked twice (its samples share one prefill)
    return [render(tok, t) for t in ["Compute 1+2.", "Solve 3x+5=20. Think.", "Add mod 10: 7+8+4.", "Compute 1+2."]]


CASES = [
    SamplingParams(n=4, max_new_tokens=16),  # training: temperature 1, top-p 1
    SamplingParams(n=3, temperature=0.6, top_p=0.95, top_k=5, presence_penalty=0.1, max_new_tokens=12),  # eval
    SamplingParams(n=1, temperature=0.0, max_new_tokens=12),  # greedy
]


def test_lean_loop_equals_generate_on_the_same_seed():
    """The lean loop consumes torch's generator exactly as `model.generate` does (same processors, softmax +
    multinomial over the same rows), so on one seed both give the same token ids and the same log-probs."""
    tok, model = _setup()
    lean = TransformersEngine(model, tok, batch_size=7)  # chunks of 7 rows: a prompt's samples span two chunks
    ref = TransformersEngine(model, tok, batch_size=7, decode="generate")
    assert lean.decode == "slots"
    prompts = _prompts(tok)
    for params in CASES:
        torch.manual_seed(11)
        a = ref.generate(prompts, params)
        after_ref = torch.rand(1)
        torch.manual_seed(11)
        b = lean.generate(prompts, params)
        assert torch.equal(torch.rand(1), after_ref), params  # the generator advanced by the same draws
        for ca, cb in zip([c for o in a for c in o], [c for o in b for c in o]):
            assert ca.token_ids == cb.token_ids and ca.text == cb.text and ca.finished == cb.finished, params
            assert torch.allclose(torch.tensor(ca.logprobs), torch.tensor(cb.logprobs), atol=1e-6, rtol=0), params


def test_inference_mode_samples_what_no_grad_sampled():
    """`generate` runs under torch.inference_mode: on one seed, the same token ids and bit-identical log-probs as
    the same decode loop under plain no_grad (what it ran under before), and the model still trains afterwards
    (no inference tensor is left on it)."""
    tok, model = _setup()
    eng = TransformersEngine(model, tok, batch_size=7)
    prompts = _prompts(tok)
    for params in CASES:
        torch.manual_seed(5)
        with torch.no_grad():
            a = eng._batched(prompts, params, eng._decode_batch)
        torch.manual_seed(5)
        b = eng.generate(prompts, params)
        for ca, cb in zip([c for o in a for c in o], [c for o in b for c in o]):
            assert ca.token_ids == cb.token_ids and ca.logprobs == cb.logprobs, params
    lp, mask, _ = completion_logprobs(model, [prompts[0]], [b[0][0].token_ids], tok.pad_token_id)
    lp[mask].sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_lean_loop_honours_min_new_tokens():
    """The benchmarks fix completion lengths with the model's generation_config.min_new_tokens."""
    tok, model = _setup()
    _bias_eos(model, tok, +5.0)  # EOS likely at every position
    model.generation_config.min_new_tokens = 6
    out = TransformersEngine(model, tok).generate([render(tok, "Compute 1+2.")], SamplingParams(n=16, max_new_tokens=6))
    assert all(len(c.token_ids) == 6 and tok.eos_token_id not in c.token_ids for c in out[0])


def test_eager_attention_logprobs_match_training_forward():
    tok, model = _setup()
    model.config._attn_implementation = "eager"  # the additive float mask path
    engine = TransformersEngine(model, tok)
    assert engine.decode == "slots"
    prompts = _prompts(tok)
    torch.manual_seed(0)
    outs = engine.generate(prompts, SamplingParams(n=2, max_new_tokens=10))
    flat_p = [p for p, o in zip(prompts, outs) for _ in o]
    flat_c = [c for o in outs for c in o]
    with torch.no_grad():
        lp, _, _ = completion_logprobs(model, flat_p, [c.token_ids for c in flat_c], tok.pad_token_id)
    for i, c in enumerate(flat_c):
        assert torch.allclose(lp[i, : len(c.token_ids)], torch.tensor(c.logprobs), atol=1e-5), i


def test_decode_path_follows_the_model():
    tok, model = _setup()
    model.config.layer_types = ["sliding_attention", "full_attention"]
    assert TransformersEngine(model, tok).decode == "model-cache"
    with pytest.raises(ValueError, match="layer types"):
        TransformersEngine(model, tok, decode="slots")
    with pytest.raises(ValueError, match="choose auto"):
        TransformersEngine(model, tok, decode="fast")


def _tiny_qwen35(tok):
    from transformers import Qwen3_5ForCausalLM

    from zppo_core.models.tiny import qwen35_text_config, set_generation_ids

    cfg = qwen35_text_config(len(tok), num_hidden_layers=2, full_attention_interval=2, pad_token_id=tok.pad_token_id,
                             eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen3_5ForCausalLM(cfg)
    set_generation_ids(model, tok)
    return model


def test_model_cache_path_equals_generate_on_the_same_seed():
    """The model's own cache and 2-D masks: forced on the tiny Qwen3, and chosen for a hybrid linear-attention
    Qwen3.5 (whose prefill states are copied to each prompt's samples with the cache's reorder)."""
    tok, qwen3 = _setup()
    qwen35 = _tiny_qwen35(tok)
    assert TransformersEngine(qwen35, tok).decode == "model-cache"
    prompts = _prompts(tok)
    for model in (qwen3, qwen35):
        lean = TransformersEngine(model, tok, batch_size=7, decode="model-cache")
        ref = TransformersEngine(model, tok, batch_size=7, decode="generate")
        for params in CASES[::2]:
            torch.manual_seed(5)
            a = ref.generate(prompts, params)
            torch.manual_seed(5)
            b = lean.generate(prompts, params)
            for ca, cb in zip([c for o in a for c in o], [c for o in b for c in o]):
                assert ca.token_ids == cb.token_ids, (type(model).__name__, params)
                assert torch.allclose(torch.tensor(ca.logprobs), torch.tensor(cb.logprobs), atol=1e-6, rtol=0)
