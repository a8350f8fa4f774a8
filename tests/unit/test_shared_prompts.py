"""The training forward's shared prompts (`models.logprobs`: a prompt repeated by several rows runs once, its KV
cache expanded to them) against the packed forward on tiny real models: the same log-probs, entropies, logits and
parameter gradients in fp32; perturbed positions or masks are caught; models that do not qualify pack; the update's
micro-batches keep a prompt's rows together within their mini-batch; and ZPPO steps train the same either way."""

from __future__ import annotations

import random

import pytest
import torch

import zppo_core.train.loop as loop
from zppo_core.config import load_config
from zppo_core.models.kv import why_not_shared_prompt
from zppo_core.models.logprobs import completion_forward, shares_prompts
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
from zppo_core.rollout.hf import TransformersEngine
from zppo_core.train.methods.registry import build_method
from zppo_core.types import Completion, Rollout


def _tiny():
    tok = build_char_tokenizer()
    model = build_tiny_model(load_config("tiny").model.tiny_student, tok, 0).float()
    return tok, model


def _batch(vocab: int):
    """Three prompts of lengths 30, 12, 21 (two repeated, one once) and completions of 1-9 tokens."""
    rng = random.Random(0)
    a, b, c = ([rng.randrange(3, vocab) for _ in range(n)] for n in (30, 12, 21))
    prompts = [a, b, a, c, b, a]
    completions = [[rng.randrange(3, vocab) for _ in range(n)] for n in (5, 9, 1, 7, 3, 9)]
    return prompts, completions


def _run(model, tok, prompts, completions, share: bool):
    """Outputs and parameter gradients of one forward + backward (a loss using log-probs and logits)."""
    model.zero_grad(set_to_none=True)
    lp, mask, ent, logits = completion_forward(model, prompts, completions, tok.pad_token_id, with_entropy=True,
                                               keep_logits=True, share_prompts=share)  # [B, T] x3, [B, T, V]
    w = torch.linspace(0.5, 1.5, lp.numel()).view_as(lp)  # [B, T] distinct weight per token
    ((lp * w * mask).sum() + 0.1 * logits[mask].pow(2).mean()).backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    return lp.detach(), mask, ent, logits.detach(), grads


def _max_diffs(a, b) -> dict[str, float]:
    mask = a[1]
    return {"logprobs": float((a[0] - b[0])[mask].abs().max()), "entropy": float((a[2] - b[2])[mask].abs().max()),
            "logits": float((a[3] - b[3])[mask].abs().max()),
            "grads": max(float((a[4][n] - b[4][n]).abs().max()) / max(float(a[4][n].abs().max()), 1e-12)
                         for n in a[4])}


def _calls(model):
    """Record the batch shape of every model call (input_ids [b, n])."""
    shapes: list[tuple[int, ...]] = []
    handle = model.register_forward_pre_hook(lambda m, args, kw: shapes.append(tuple(kw["input_ids"].shape)),
                                             with_kwargs=True)
    return shapes, handle


def test_shared_prompt_forward_equals_the_packed_forward():
    tok, model = _tiny()
    prompts, completions = _batch(len(tok))
    packed = _run(model, tok, prompts, completions, share=False)
    shapes, handle = _calls(model)
    shared = _run(model, tok, prompts, completions, share=True)
    handle.remove()
    assert shapes == [(3, 30), (6, 8)]  # 3 distinct prompts once (left-padded to 30), 6 rows x (9 - 1) tokens
    assert torch.equal(packed[1], shared[1])
    assert packed[1].sum() == sum(len(c) for c in completions)
    d = _max_diffs(packed, shared)
    assert d["logprobs"] < 2e-6 and d["logits"] < 2e-6 and d["entropy"] < 1e-5 and d["grads"] < 1e-5, d
    assert all(g.abs().max() > 0 for n, g in shared[4].items() if "embed" not in n)  # every layer got a gradient


def test_shared_prompts_under_bf16_autocast_stay_within_bf16_rounding():
    """The training forward's bf16 compute (`models.precision`): the shared path is as far from fp32 as the packed
    path is (bf16 rounding), not further."""
    tok, model = _tiny()
    prompts, completions = _batch(len(tok))
    fp32 = _run(model, tok, prompts, completions, share=False)
    bf16 = {}
    for share in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16[share] = _run(model, tok, prompts, completions, share=share)
    packed, shared = _max_diffs(fp32, bf16[False]), _max_diffs(fp32, bf16[True])
    assert 0 < packed["logprobs"] < 1e-2 and 0 < packed["grads"] < 5e-2, packed  # bf16 did round
    for k in ("logprobs", "logits", "grads"):
        assert shared[k] < 2 * packed[k] + 1e-3, (k, shared, packed)


@pytest.mark.parametrize("perturb", ["position offset", "prompt padding visible"])
def test_a_wrong_position_or_mask_in_the_completion_pass_is_caught(perturb):
    """Negative control: the same comparison fails when the completion pass (the call with a filled cache) gets its
    positions shifted by one or attends to the prompts' left padding."""
    tok, model = _tiny()
    prompts, completions = _batch(len(tok))
    packed = _run(model, tok, prompts, completions, share=False)

    def hook(module, args, kw):
        cache = kw.get("cache", kw.get("past_key_values"))
        if cache is None or cache.get_seq_length() == 0:
            return None
        if perturb == "position offset":
            kw["position_ids"] = kw["position_ids"] + 1
        else:
            kw["attention_mask"] = torch.ones_like(kw["attention_mask"])
        return args, kw

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    shared = _run(model, tok, prompts, completions, share=True)
    handle.remove()
    assert _max_diffs(packed, shared)["logprobs"] > 1e-3


def test_models_or_batches_that_do_not_qualify_take_the_packed_forward():
    from transformers import Qwen3_5ForCausalLM

    from zppo_core.models.tiny import qwen35_text_config

    tok, qwen3 = _tiny()
    prompts, completions = _batch(len(tok))
    assert why_not_shared_prompt(qwen3) is None and shares_prompts(qwen3, prompts)
    distinct = [p + [5] * i for i, p in enumerate(prompts)]  # no prompt repeated: one packed call
    assert not shares_prompts(qwen3, distinct)
    cfg = qwen35_text_config(len(tok), num_hidden_layers=2, full_attention_interval=2,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    hybrid = Qwen3_5ForCausalLM(cfg).float()  # linear-attention layers: a cache row is not only keys and values
    assert "layer types" in why_not_shared_prompt(hybrid)
    for model, ps in ((hybrid, prompts), (qwen3, distinct)):
        shapes, handle = _calls(model)
        got = completion_forward(model, ps, completions, tok.pad_token_id, with_entropy=True, share_prompts=True)
        handle.remove()
        assert len(shapes) == 1 and shapes[0][0] == len(ps)
        want = completion_forward(model, ps, completions, tok.pad_token_id, with_entropy=True, share_prompts=False)
        assert all(torch.equal(g, w) for g, w in zip(got[:3], want[:3]))
    qwen3.gradient_checkpointing_enable()  # no cache in training: pack
    assert "checkpointing" in why_not_shared_prompt(qwen3)


def _rollouts(vocab: int) -> list[Rollout]:
    """Two long prompts (150 and 140 tokens, 4 rows each) and 6 short distinct ones, completions of 8-23 tokens."""
    rng = random.Random(1)
    long_a, long_b = ([rng.randrange(3, vocab) for _ in range(n)] for n in (150, 140))
    out = []
    for k in range(14):
        prompt = long_a if k % 3 == 0 and k < 12 else long_b if k % 3 == 1 and k < 12 else \
            [rng.randrange(3, vocab) for _ in range(20 + k)]
        c = 8 + (k * 7) % 16
        comp = Completion([rng.randrange(3, vocab) for _ in range(c)], [-2.0] * c, "", True)
        out.append(Rollout(f"q{k}", k, "plain", list(prompt), comp, float(k % 2), None))
    return out


def test_micro_batches_keep_a_prompts_rows_together(tmp_path):
    cfg = load_config("tiny", overrides=["algo.micro_batch_size=6"])
    tok, model = _tiny()
    tr = loop.Trainer(cfg, tmp_path, model, tok, TransformersEngine(model, tok), None, build_method(cfg))
    assert tr.share_prompts
    rs = _rollouts(len(tok))
    chunk = [13, 0, 5, 1, 9, 12, 3, 4, 7, 6, 2, 10, 11, 8]
    mbs = tr._micro_batches(rs, chunk)
    assert sorted(i for mb in mbs for i in mb) == sorted(chunk)  # the mini-batch's members, each once
    by_prompt: dict[tuple, set[int]] = {}
    for k, mb in enumerate(mbs):
        for i in mb:
            by_prompt.setdefault(tuple(rs[i].prompt_ids), set()).add(k)
    assert all(len(ks) == 1 for ks in by_prompt.values())  # each prompt's rows in one micro-batch
    long_mbs = [mb for mb in mbs if len(rs[mb[0]].prompt_ids) >= 140]
    assert sorted(len(mb) for mb in long_mbs) == [4, 4]  # the long prompts, 4 rows each, prompt costed once
    tr.share_prompts = False  # the packed planner: 4 rows of a 150-token prompt are 4 x 150 padded prompt tokens
    packed = tr._micro_batches(rs, chunk)
    assert any(len({tuple(rs[i].prompt_ids) for i in mb}) > 1 for mb in packed if len(rs[mb[0]].prompt_ids) >= 140)


def test_zppo_steps_train_the_same_with_shared_prompts(prepared, test_overrides, tmp_path, monkeypatch):
    """A few ZPPO steps from the same seed, shared prompts on and off: the same rollouts and the same update up to
    float summation order (the prompt pass sums its rows' gradients, and micro-batches are cut differently)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("bench_method_step",
                                                  Path(__file__).resolve().parents[2] / "bench" / "method_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    import zppo_core.models.logprobs as lp

    shared_calls = []
    real = lp._shared_prompt_logits
    monkeypatch.setattr(lp, "_shared_prompt_logits", lambda *a: shared_calls.append(len(a[1])) or real(*a))
    runs = {}
    for share in (True, False):
        tr = bench.build("zppo", [*test_overrides, "zppo.capacity=6"], tmp_path / str(share))
        tr.share_prompts = share
        runs[share] = [tr.train_step() for _ in range(2)]
        assert bool(shared_calls) == share  # the shared path ran (on micro-batches repeating a prompt) or never
        shared_calls.clear()
    for a, b in zip(runs[True], runs[False]):
        assert a["train/rollouts"] == b["train/rollouts"] and a["perf/train_tokens"] == b["perf/train_tokens"]
        for k in ("train/loss", "train/grad_norm", "train/entropy", "train/ratio_mean"):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6), k
    assert any(s["train/grad_norm"] > 0 for s in runs[True])


def test_fixed_calls_make_two_calls_for_any_batch():
    """FSDP2's forwards are collective: with `fixed_calls` every batch makes the shared path's two calls, with no
    prompt repeated and with one-token completions too, and still gives the packed log-probs."""
    tok, model = _tiny()
    prompts, completions = _batch(len(tok))
    distinct = [p + [5] * i for i, p in enumerate(prompts)]
    for ps, cs in ((distinct, completions), (prompts, [c[:1] for c in completions]), ([[tok.pad_token_id]],) * 2):
        shapes, handle = _calls(model)
        got = completion_forward(model, ps, cs, tok.pad_token_id, with_entropy=True, fixed_calls=True)
        handle.remove()
        assert [s[0] for s in shapes] == [len({tuple(p) for p in ps}), len(ps)], shapes
        want = completion_forward(model, ps, cs, tok.pad_token_id, with_entropy=True, share_prompts=False)
        assert torch.equal(got[1], want[1])
        assert float((got[0] - want[0]).detach()[want[1]].abs().max()) < 2e-6  # over the completion tokens
