"""Training precision: bf16 compute over fp32 master weights, one small piece reused by every trainer.

`model.dtype` is the **compute** dtype (forward and backward matmuls, rollouts, the frozen teacher and judge);
`model.master_dtype` is the dtype of the trained weights, their gradients and the AdamW state, and must be
float32: pure bf16 training is refused (`config.schema.pure_bf16_reason`, checked by the config schema and
again by `Precision` and `Precision.check_trainable`). An AdamW step is about lr = 1e-6 per weight, far below
half the bf16 spacing of any weight with |w| ≳ 2.6e-4 (bf16 keeps 8 significant bits), so on bf16 weights
nearly every update rounds away: measured by `bench/precision.py` (see the README's numerics notes), 2 % of
σ = 0.02 weights move at all in 10 steps at lr 1e-6, against every weight with fp32 masters.

How bf16 compute over fp32 masters is done here: the trainable module keeps its parameters in fp32 (they *are*
the master weights) and its forward runs under `torch.autocast(device, dtype=bfloat16)`, which casts each
matmul's operands to bf16 (the cast of a weight is cached for the duration of one autocast region) and keeps
softmax, norms, log-softmax and losses in fp32. Gradients land on the fp32 parameters in fp32, so grad-norm
clipping and the AdamW step (with fp32 moments) are fp32 without any extra copy. Why autocast rather than an
explicit fp32 copy beside bf16 parameters: (1) one set of parameters — checkpoints, resume, the optimizer and
`state_dict()` all see the fp32 masters, nothing to copy back and forth or keep in sync; (2) the precision-
sensitive ops stay fp32 without hand-written upcasts; (3) FSDP2 works the same way (it keeps sharded fp32
parameters and casts for compute), so the distributed trainer reuses this object unchanged. The cost is a
per-forward cast of each weight to bf16, small next to the matmuls it feeds.

API (for the single-process loop, the engines and the distributed trainer):

    p = Precision.from_config(cfg)        # or Precision("bfloat16", "float32")
    p.compute_dtype, p.master_dtype       # torch dtypes
    p.mixed                               # True when compute != master (bf16 compute, fp32 masters)
    p.load_dtype(trainable=True)          # the dtype to load a model in: master for trained, compute for frozen
    p.check_trainable(model)              # ValueError when a trainable parameter is not in the master dtype
    with p.autocast(device):              # the training forward (and the rollouts of an engine sharing the
        ...                               # trained module); a no-op context when not mixed
    p.fsdp_mp_policy()                    # FSDP2 MixedPrecisionPolicy(param_dtype=compute, reduce_dtype=master)
    p.compute_state_dict(model)           # the weights cast to the compute dtype (an engine's own copy, a bf16
                                          # export); rounding to nearest, so the copy tracks the masters

Distributed (FSDP2): `fully_shard(module, mp_policy=p.fsdp_mp_policy())` gathers bf16 parameters for compute
(half the all-gather bytes) and reduce-scatters gradients in fp32 into the fp32 sharded masters; keep
`p.autocast(device)` around the forward so the fp32-listed ops stay fp32 as in the single-process path. The
difference from single-process autocast is only that FSDP2 also hands bf16 norm weights to the module.

Checkpoints save the fp32 masters (`save_pretrained` of the module); a model directory loaded for evaluation or
as a frozen teacher is cast to the compute dtype on load (`load_dtype(trainable=False)`).

No torch import at module level (the dtypes are resolved on first use).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from zppo_core.config.schema import pure_bf16_reason

DTYPES = ("float32", "bfloat16")


PURE_BF16_REASON = pure_bf16_reason(1e-6)


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


@dataclass(frozen=True)
class Precision:
    """Compute dtype over master dtype (names: "float32" | "bfloat16"); see the module docstring."""

    compute: str = "float32"
    master: str = "float32"

    def __post_init__(self) -> None:
        for name, value in (("compute", self.compute), ("master", self.master)):
            if value not in DTYPES:
                raise ValueError(f"Precision.{name}={value!r}: use one of {', '.join(DTYPES)}")
        if self.master == "bfloat16":
            raise ValueError(PURE_BF16_REASON)

    @classmethod
    def from_config(cls, cfg: Any) -> "Precision":
        return cls(cfg.model.dtype, cfg.model.master_dtype)

    @property
    def mixed(self) -> bool:
        return self.compute != self.master

    @property
    def compute_dtype(self):
        return _torch_dtype(self.compute)

    @property
    def master_dtype(self):
        return _torch_dtype(self.master)

    def load_dtype(self, trainable: bool):
        """The dtype to load a model in: the master dtype for the trained student, the compute dtype for frozen
        models (teacher, judge, a checkpoint under evaluation): pure bf16 is fine where nothing is updated."""
        return self.master_dtype if trainable else self.compute_dtype

    def check_trainable(self, model) -> None:
        """ValueError (one line) when a parameter that requires grad is not in the master dtype."""
        for name, p in model.named_parameters():
            if p.requires_grad and p.dtype != self.master_dtype:
                reason = PURE_BF16_REASON if p.dtype != _torch_dtype("float32") else ""
                raise ValueError(
                    f"trainable parameter {name} is {str(p.dtype).removeprefix('torch.')}, expected the master "
                    f"dtype {self.master}; load the student with Precision.load_dtype(trainable=True)"
                    + (f" ({reason})" if reason else "")
                )

    def autocast(self, device: Any):
        """The compute context: bf16 autocast on `device` (a torch.device or "cpu"/"cuda") when mixed, else a no-op
        context. Use it around the training forward and around sampling from the trained module."""
        if not self.mixed:
            return contextlib.nullcontext()
        import torch

        device_type = getattr(device, "type", None) or str(device).split(":")[0]
        return torch.autocast(device_type=device_type, dtype=self.compute_dtype)

    def fsdp_mp_policy(self):
        """FSDP2's MixedPrecisionPolicy for this precision: gather parameters in the compute dtype, reduce
        gradients in the master dtype (fp32)."""
        from torch.distributed.fsdp import MixedPrecisionPolicy

        return MixedPrecisionPolicy(param_dtype=self.compute_dtype, reduce_dtype=self.master_dtype)

    def compute_state_dict(self, model) -> dict[str, Any]:
        """The module's weights in the compute dtype (round to nearest): what an engine holding its own copy, or a
        bf16 export, gets. Floating tensors only are cast; buffers of other dtypes pass through."""
        dt = self.compute_dtype
        return {k: (v.detach().to(dt) if v.is_floating_point() else v) for k, v in model.state_dict().items()}
