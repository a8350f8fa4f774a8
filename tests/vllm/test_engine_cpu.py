"""The vLLM student engine, run for real on vLLM's CPU build: one in-process `LLM` shared by the module.

- log-probs equal the trainer's forward (`completion_logprobs`, fp32) within 1e-5, before and after each of three
  AdamW steps + `sync_weights`; a no-op sync after an update fails that check (negative control, asserted);
- the prefix cache must be reset after a sync (without it, cached prompt blocks keep the old weights' KV);
- EOS / length / finished flags; greedy with n > 1; building the engine leaves the caller's RNGs alone; on CPU the
  samples follow torch's global generator (which training checkpoints), so a reseed reproduces them.
"""

from __future__ import annotations

import random

import pytest

pytestmark = pytest.mark.vllm

TOL = 1e-5
MAX_NEW = 24


@pytest.fixture(scope="module")
def setup(tiny_dir):
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from zppo_core.config.schema import ZPPOConfig
    from zppo_core.rollout.vllm_engine import VLLMEngine

    tok = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir, dtype=torch.float32)
    cfg = ZPPOConfig(model={"dtype": "float32"}, rollout={"max_new_tokens": MAX_NEW}, run={"seed": 0})
    torch.manual_seed(1234)
    random.seed(99)
    np.random.seed(7)
    before = (torch.get_rng_state().clone(), random.getstate(), np.random.get_state()[1].copy())
    engine = VLLMEngine.from_model(model, tok, cfg, max_prompt_len=200)
    after = (torch.get_rng_state().clone(), random.getstate(), np.random.get_state()[1].copy())
    return dict(engine=engine, model=model, tok=tok, rng=(before, after))


def _prompts(tok):
    from zppo_core.models.load import render

    texts = ["Compute 1+2.", "Solve 3x+5=20. Think step by step and box the answer at the end please.", "Hi"]
    return [render(tok, t) for t in texts]  # different lengths; the long one spans several KV blocks


def _gap(engine, model, tok, prompts, n=8):
    """Sample n completions per prompt with the engine; max |engine log-prob - trainer forward log-prob|."""
    import torch

    from zppo_core.models.logprobs import completion_logprobs
    from zppo_core.rollout.base import SamplingParams

    outs = engine.generate(prompts, SamplingParams(n=n, max_new_tokens=MAX_NEW))
    flat_p = [p for p, o in zip(prompts, outs) for _ in o]
    flat_c = [c for o in outs for c in o]
    with torch.no_grad():
        lp, mask, _ = completion_logprobs(model, flat_p, [c.token_ids for c in flat_c], tok.pad_token_id)
    gaps = [(lp[i, : len(c.token_ids)] - torch.tensor(c.logprobs)).abs().max().item() for i, c in enumerate(flat_c)]
    return max(gaps), flat_p, flat_c


def _adamw_step(model, opt, prompts, completions, tok):
    """One policy-gradient-like AdamW step on the sampled completions (random signed advantages)."""
    import torch

    from zppo_core.models.logprobs import completion_logprobs

    lp, mask, _ = completion_logprobs(model, prompts, [c.token_ids for c in completions], tok.pad_token_id)
    adv = torch.randn(len(completions))  # [N]
    loss = -((lp * mask).sum(-1) * adv).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_building_the_engine_leaves_the_callers_rngs_alone(setup):
    import torch

    (t0, p0, n0), (t1, p1, n1) = setup["rng"]
    assert torch.equal(t0, t1) and p0 == p1 and (n0 == n1).all()


def test_logprobs_match_the_trainer_before_and_after_adamw_steps_and_syncs(setup):
    import torch

    engine, model, tok = setup["engine"], setup["model"], setup["tok"]
    prompts = _prompts(tok)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gap, fp, fc = _gap(engine, model, tok, prompts)
    gaps = [gap]
    stale = []
    for _ in range(3):
        _adamw_step(model, opt, fp, fc, tok)
        # negative control: without a sync the engine still samples from the old weights, and the check fails
        stale.append(_gap(engine, model, tok, prompts)[0])
        engine.sync_weights(model)
        gap, fp, fc = _gap(engine, model, tok, prompts)
        gaps.append(gap)
    print(f"max |logp_vllm - logp_trainer|: {['%.1e' % g for g in gaps]}; without sync: {['%.1e' % g for g in stale]}")
    assert max(gaps) < TOL, gaps
    assert min(stale) > 100 * TOL, stale  # a no-op sync is caught by the same check


def test_the_prefix_cache_reset_after_a_sync_matters(setup, monkeypatch):
    """A prompt seen before hits vLLM's prefix cache; synced without the reset, its cached KV blocks still come
    from the old weights and the log-probs are off (negative control); with the reset they match again."""
    import torch

    engine, model, tok = setup["engine"], setup["model"], setup["tok"]
    from zppo_core.models.load import render

    long = [render(tok, "Add the numbers " + " + ".join(str(i) for i in range(1, 30)) + ".")]  # > 2 KV blocks
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gap, fp, fc = _gap(engine, model, tok, long)  # caches the prompt's blocks under the current weights
    assert gap < TOL
    _adamw_step(model, opt, fp, fc, tok)
    monkeypatch.setattr(engine.llm, "reset_prefix_cache", lambda *a, **k: True)
    engine.sync_weights(model)
    stale = _gap(engine, model, tok, long)[0]
    monkeypatch.undo()
    engine.llm.reset_prefix_cache()
    fresh = _gap(engine, model, tok, long)[0]
    assert stale > 100 * TOL and fresh < TOL, (stale, fresh)


def test_eos_length_and_finished_flags(setup):
    from zppo_core.rollout.base import SamplingParams

    engine, tok = setup["engine"], setup["tok"]
    outs = engine.generate(_prompts(tok), SamplingParams(n=16, max_new_tokens=MAX_NEW))
    flat = [c for o in outs for c in o]
    assert [len(o) for o in outs] == [16, 16, 16]
    for c in flat:
        assert len(c.logprobs) == len(c.token_ids) > 0
        assert c.finished == (c.token_ids[-1] == tok.eos_token_id)
        assert tok.eos_token_id not in c.token_ids[:-1]
        assert c.finished or len(c.token_ids) == MAX_NEW
        assert c.text == tok.decode(c.token_ids, skip_special_tokens=True)
    assert any(c.finished for c in flat) and any(not c.finished for c in flat)  # both kinds occur


def test_greedy_with_n_above_one(setup):
    from zppo_core.rollout.base import SamplingParams

    engine, tok = setup["engine"], setup["tok"]
    outs = engine.generate(_prompts(tok)[:2], SamplingParams(n=3, temperature=0.0, max_new_tokens=12))
    assert [len(o) for o in outs] == [3, 3]
    for o in outs:
        assert o[0].token_ids == o[1].token_ids == o[2].token_ids and o[0].logprobs == o[2].logprobs


def test_samples_follow_the_global_torch_seed_on_cpu(setup):
    import torch

    from zppo_core.rollout.base import SamplingParams

    engine, tok = setup["engine"], setup["tok"]
    params = SamplingParams(n=4, max_new_tokens=12)

    def draw():
        return [c.token_ids for o in engine.generate(_prompts(tok), params) for c in o]

    torch.manual_seed(5)
    a = draw()
    b = draw()
    torch.manual_seed(5)
    assert draw() == a and a != b
