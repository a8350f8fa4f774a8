"""Training precision (`zppo_core.models.precision`): bf16 compute over fp32 master weights tracks an fp32 run,
pure bf16 does not and is refused, models load and engines sample in the right dtypes.

The update-loss numbers of the README come from `bench/precision.py` (a 4-layer model); these tests run the same
measurement on a smaller tiny Qwen3 so they stay fast, with the tolerances stated where they are asserted."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from zppo_core.config import ConfigError, load_config
from zppo_core.config.schema import TinyModelSpec
from zppo_core.models.precision import Precision
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model, save_model

SPEC = TinyModelSpec(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                     num_key_value_heads=2, head_dim=16)
STEPS, LR = 10, 1e-6


def _train(variant: str):
    """10 AdamW steps at the paper's settings (lr 1e-6, betas 0.9/0.999, eps 1e-8, wd 0.1, clip 1.0) on a fixed
    next-token loss: 'fp32' reference, 'mixed' (fp32 masters, bf16 autocast forward), 'bf16' (pure bf16)."""
    tok = build_char_tokenizer()
    model = build_tiny_model(SPEC, tok, seed=0)  # initializer_range 0.02: σ = 0.02 matrices
    if variant == "bf16":
        model = model.to(torch.bfloat16)
    model.train()
    batch = torch.randint(10, len(tok), (4, 32), generator=torch.Generator().manual_seed(1))  # [B, S]
    w0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    prec = Precision("bfloat16" if variant == "mixed" else "float32")
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        with prec.autocast("cpu"):
            loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model, w0, opt


def _flat(d, keys, dtype=torch.float32):
    return torch.cat([d[k].to(dtype).flatten() for k in keys])


@pytest.fixture(scope="module")
def runs():
    return {v: _train(v) for v in ("fp32", "mixed", "bf16")}


def test_fp32_masters_with_bf16_compute_move_like_the_fp32_reference(runs):
    ref, ref0, _ = runs["fp32"]
    mixed, w0, opt = runs["mixed"]
    keys = [k for k, _ in ref.named_parameters()]
    d_ref = _flat(dict(ref.named_parameters()), keys) - _flat(ref0, keys)  # [P] reference update
    w = dict(mixed.named_parameters())
    d = _flat(w, keys) - _flat(w0, keys)  # [P] the master weights' update
    assert all(p.dtype == torch.float32 for p in mixed.parameters())  # the masters stay fp32
    assert all(s.dtype == torch.float32 for st in opt.state.values() for s in st.values() if s.is_floating_point())
    assert (d != 0).float().mean() == 1.0  # every master weight moved, as in fp32
    # tolerance: the update differs from the fp32 one only through bf16 gradients (measured 0.07 on the bench
    # model); stated bound 0.15 relative L2, cosine >= 0.99
    assert (d - d_ref).norm() / d_ref.norm() < 0.15
    assert torch.nn.functional.cosine_similarity(d, d_ref, dim=0) > 0.99
    # the bf16 copy (what autocast and an engine compute with) is the master rounded to nearest, at every weight,
    # and it moved for a real share of weights (10 steps of 1e-6 cross many bf16 rounding boundaries)
    copy = Precision("bfloat16").compute_state_dict(mixed)
    for k in keys:
        assert copy[k].dtype == torch.bfloat16 and torch.equal(copy[k], w[k].detach().to(torch.bfloat16))
    moved = (_flat(copy, keys, torch.bfloat16) != _flat(w0, keys, torch.bfloat16)).float().mean()
    assert moved > 0.1


def test_pure_bf16_rounds_the_updates_away(runs):
    """The contrast that makes the test above mean something: on bf16 weights only a few updates survive."""
    ref, ref0, _ = runs["fp32"]
    bf, w0, _ = runs["bf16"]
    keys = [k for k, _ in ref.named_parameters()]
    d_ref = _flat(dict(ref.named_parameters()), keys) - _flat(ref0, keys)
    w = dict(bf.named_parameters())
    changed = torch.cat([(w[k] != w0[k]).flatten() for k in keys]).float().mean()
    d = _flat(w, keys) - _flat(w0, keys)
    assert changed < 0.1  # measured ~2 % on the bench model
    assert (d - d_ref).norm() / d_ref.norm() > 0.9


def test_pure_bf16_training_is_refused_with_one_line():
    with pytest.raises(ConfigError) as err:
        load_config("2b", overrides=["model.master_dtype=bfloat16"])
    msg = str(err.value)
    assert "\n" not in msg and "pure bfloat16 training" in msg and "lr=1e-06" in msg
    assert "model.master_dtype=float32" in msg  # the fix
    with pytest.raises(ValueError, match="pure bfloat16"):
        Precision("bfloat16", "bfloat16")
    tok = build_char_tokenizer()
    model = build_tiny_model(SPEC, tok, seed=0).to(torch.bfloat16)
    with pytest.raises(ValueError, match="pure bfloat16"):
        Precision("bfloat16").check_trainable(model)  # a bf16 module handed to the trainer
    for p in model.parameters():
        p.requires_grad_(False)
    Precision("bfloat16").check_trainable(model)  # frozen (teacher, judge): pure bf16 is fine


def test_cli_refuses_pure_bf16_before_anything_is_created(tmp_path, monkeypatch):
    from zppo_cli.app import app

    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["train", "--set", "model.dtype=bfloat16", "--set", "model.master_dtype=bfloat16"])
    assert r.exit_code == 2 and "pure bfloat16 training" in " ".join(r.output.split())
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()


def test_models_load_and_engines_sample_in_the_right_dtypes(tmp_path):
    from zppo_core.models.load import load_pair
    from zppo_core.models.logprobs import completion_logprobs
    from zppo_core.rollout import make_engine
    from zppo_core.rollout.base import SamplingParams

    tok = build_char_tokenizer()
    save_model(build_tiny_model(SPEC, tok, seed=0), tok, tmp_path / "m")
    cfg = load_config("tiny", overrides=["model.dtype=bfloat16"])
    student, teacher = load_pair(cfg, str(tmp_path / "m"), str(tmp_path / "m"))
    assert {p.dtype for p in student.model.parameters()} == {torch.float32}  # trained: fp32 masters
    assert {p.dtype for p in teacher.model.parameters()} == {torch.bfloat16}  # frozen: the compute dtype
    s_engine = make_engine(cfg, student.model, student.tokenizer)
    t_engine = make_engine(cfg, teacher.model, teacher.tokenizer)
    assert s_engine.autocast_dtype == torch.bfloat16 and t_engine.autocast_dtype is None
    assert make_engine(load_config("tiny"), student.model, student.tokenizer).autocast_dtype is None  # fp32 run
    prompt = tok("<|user|>1+2<|assistant|>", add_special_tokens=False)["input_ids"]
    seen = []
    hook = student.model.lm_head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    torch.manual_seed(0)
    comp = s_engine.generate([prompt], SamplingParams(n=2, max_new_tokens=12))[0]
    hook.remove()
    assert seen and set(seen) == {torch.bfloat16}  # the fp32 masters sampled with bf16 compute
    # so the engine's log-probs are the training forward's under the same autocast, up to batch-shape effects
    # (tolerance 0.05 nats)
    with torch.no_grad(), Precision("bfloat16").autocast("cpu"):
        lp, mask, _ = completion_logprobs(student.model, [prompt] * 2, [c.token_ids for c in comp], tok.pad_token_id)
    eng = torch.zeros_like(lp)
    for j, c in enumerate(comp):
        eng[j, : len(c.logprobs)] = torch.tensor(c.logprobs)
    assert ((lp - eng).abs() * mask).max() < 0.05


def test_fsdp2_policy_reuses_the_same_precision():
    pol = Precision("bfloat16").fsdp_mp_policy()
    assert pol.param_dtype == torch.bfloat16 and pol.reduce_dtype == torch.float32
    p32 = Precision.from_config(load_config("tiny"))
    assert not p32.mixed and p32.load_dtype(True) == p32.load_dtype(False) == torch.float32
    p = Precision.from_config(load_config("2b"))
    assert p.mixed and p.load_dtype(True) == torch.float32 and p.load_dtype(False) == torch.bfloat16
