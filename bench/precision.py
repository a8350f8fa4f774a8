"""Update loss of pure bf16 training vs bf16 compute over fp32 master weights (zppo_core.models.precision).

Three copies of one randomly initialised Qwen3 model (initializer_range 0.02, so the matrices have σ = 0.02) take
the same 10 AdamW steps at the paper's settings (lr 1e-6, betas 0.9/0.999, eps 1e-8, weight decay 0.1, grad-norm
clip 1.0) on the same next-token loss over a fixed batch of random token sequences:

  fp32     fp32 weights, fp32 forward: the reference
  mixed    fp32 master weights, forward under bf16 autocast (what `model.dtype=bfloat16` trains with)
  bf16     weights, gradients and AdamW state in bf16 (what the GPU presets did before: refused now)

Reported per copy, over every weight element: the share that changed at all, and the relative distance of its
update (w10 - w0) from the reference update; for `mixed` also how often its bf16 copy (what autocast and the
rollout engine compute with) equals the bf16 rounding of the reference weights. Writes JSON to --out.

    .venv/bin/python bench/precision.py [--layers 4 --hidden 256 --steps 10 --lr 1e-6 --out bench/results/precision.json]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

from zppo_core.config.schema import TinyModelSpec
from zppo_core.models.precision import Precision
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model


def run(variant: str, spec: TinyModelSpec, tok, batch: torch.Tensor, steps: int, lr: float, seed: int):
    model = build_tiny_model(spec, tok, seed)
    if variant == "bf16":
        model = model.to(torch.bfloat16)
    model.train()
    w0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    prec = Precision("bfloat16" if variant == "mixed" else "float32", "float32")
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        with prec.autocast("cpu"):
            out = model(input_ids=batch, labels=batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(out.loss.detach()))
    w = {k: v.detach().clone() for k, v in model.named_parameters()}
    return w0, w, losses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-6)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="bench/results/precision.json")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    spec = TinyModelSpec(hidden_size=a.hidden, intermediate_size=4 * a.hidden, num_hidden_layers=a.layers,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=a.hidden // 4)
    tok = build_char_tokenizer()
    g = torch.Generator().manual_seed(a.seed + 1)
    batch = torch.randint(10, len(tok), (a.batch, a.seq), generator=g)  # [B, S]
    runs = {v: run(v, spec, tok, batch, a.steps, a.lr, a.seed) for v in ("fp32", "mixed", "bf16")}
    ref0, ref, _ = runs["fp32"]
    d_ref = torch.cat([(ref[k] - ref0[k]).flatten() for k in ref])  # [P] reference update
    n = d_ref.numel()
    result = {"params": n, "steps": a.steps, "lr": a.lr, "layers": a.layers, "hidden": a.hidden,
              "torch": torch.__version__, "machine": platform.machine(), "variants": {}}
    for v, (w0, w, losses) in runs.items():
        d = torch.cat([(w[k].float() - w0[k].float()).flatten() for k in w])  # [P] this copy's update
        changed = torch.cat([(w[k] != w0[k]).flatten() for k in w]).float().mean().item()
        row = {
            "changed_frac": changed,
            "update_rel_dist": ((d - d_ref).norm() / d_ref.norm()).item(),
            "update_cosine": torch.nn.functional.cosine_similarity(d, d_ref, dim=0).item(),
            "update_norm_ratio": (d.norm() / d_ref.norm()).item(),
            "final_loss": losses[-1],
        }
        if v == "mixed":
            bf_w = torch.cat([w[k].to(torch.bfloat16).flatten() for k in w])
            bf_ref = torch.cat([ref[k].to(torch.bfloat16).flatten() for k in ref])
            bf_w0 = torch.cat([w0[k].to(torch.bfloat16).flatten() for k in w0])
            row["bf16_copy_equals_ref_rounding"] = (bf_w == bf_ref).float().mean().item()
            row["bf16_copy_changed_frac"] = (bf_w != bf_w0).float().mean().item()
        result["variants"][v] = row
    print(f"{n:,} weights, {a.steps} AdamW steps at lr {a.lr:g}")
    print(f"{'variant':8} {'changed':>9} {'rel.dist':>9} {'cosine':>8} {'|d|/|d_ref|':>12}")
    for v, r in result["variants"].items():
        print(f"{v:8} {r['changed_frac']:9.4f} {r['update_rel_dist']:9.4f} {r['update_cosine']:8.4f} "
              f"{r['update_norm_ratio']:12.4f}")
    m = result["variants"]["mixed"]
    print(f"mixed: bf16 copy == bf16(reference) for {m['bf16_copy_equals_ref_rounding']:.4%} of weights; "
          f"bf16 copy moved for {m['bf16_copy_changed_frac']:.4%}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
