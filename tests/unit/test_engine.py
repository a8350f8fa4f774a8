"""The transformers engine: its log-probs are the training forward's log-probs; EOS and padding handling."""

from __future__ import annotations

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
