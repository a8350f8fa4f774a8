"""FSDP2 sharding of the student and the gathering of its full weights (for the rollout engine and HF exports).

`shard_model(model, dist, mp_policy)`: `fully_shard` on every decoder layer (the classes a Hugging Face model lists
in `_no_split_modules`), then on the root. Tied input/output embeddings (the tiny models and the small Qwen models
tie them) are one parameter shared by two modules; torch >= 2.13 refuses a parameter managed by two FSDP groups,
so the embedding and the LM head are sharded together in one group (`fully_shard([embed, lm_head])`). The sharded
parameters stay in their loaded dtype (they are the AdamW master weights); `mp_policy` (a `MixedPrecisionPolicy`)
says what FSDP casts them to for compute and which dtype gradients are reduced in: `train/run.py` passes
`Precision.fsdp_mp_policy()` (`models/precision.py`: bf16 gathers over the fp32 masters, fp32 reduce-scatters)
when the compute dtype is bf16, and none in fp32; the loop keeps the precision's autocast around the forward.

Gradients: FSDP2's reduce-scatter *averages* over the ranks, so the loop scales each micro-batch's loss by the
world size and divides by the global token count of the mini-batch (`train/loop.py`; scale-out pitfalls §3).

`FullWeights(model)`: what a rollout engine syncs from. Its `state_dict()` walks the sharded state dict in the
same order on every rank and all-gathers each DTensor (`full_tensor()`, a collective: every rank must call it at
the same point), keeping the full tensors on the CPU; a second call returns the same tensors (an engine that
re-pushes weights after a sleep gathers nothing again). Engines only call `state_dict()`.
"""

from __future__ import annotations

from typing import Any

from zppo_core.dist import Dist


def decoder_layers(model) -> list[Any]:
    """The model's repeated blocks: modules whose class is in the model's `_no_split_modules` (Hugging Face's
    list of blocks never split across devices: the decoder layers, a VLM's vision blocks)."""
    names = set(getattr(model, "_no_split_modules", None) or [])
    if not names:
        raise ValueError(f"{type(model).__name__} lists no _no_split_modules; cannot tell its decoder layers")
    return [m for m in model.modules() if type(m).__name__ in names]


def _tied_embeddings(model) -> tuple[Any, Any] | None:
    get_in = getattr(model, "get_input_embeddings", None)
    get_out = getattr(model, "get_output_embeddings", None)
    if get_in is None or get_out is None:
        return None
    emb, head = get_in(), get_out()
    if emb is None or head is None:
        return None
    return (emb, head) if head.weight is emb.weight else None


def shard_model(model, dist: Dist, mp_policy=None):
    """Shard `model` in place with FSDP2 over all ranks (see the module docstring); returns it."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(dist.device_type, (dist.world,))
    mp = mp_policy if mp_policy is not None else MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    tied = _tied_embeddings(model)
    if tied is not None:
        fully_shard(list(tied), mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def is_sharded(model) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def full_tensor(t):
    """A DTensor's full value (all-gather: a collective), anything else as is."""
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def local_value(t) -> float:
    """A scalar tensor or DTensor (e.g. the clipped grad norm) as a float."""
    return float(full_tensor(t))


class FullWeights:
    """The full weights of a sharded module, gathered on the first `state_dict()` (see the module docstring)."""

    def __init__(self, model):
        self.model = model
        self._full: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        if self._full is None:
            import torch

            with torch.no_grad():
                self._full = {k: full_tensor(v).detach().cpu() for k, v in self.model.state_dict().items()}
        return self._full


def gradient_sync(model, enabled: bool) -> None:
    """Reduce-scatter gradients at the next backward (True) or keep accumulating them unsharded (False): the loop
    syncs on the last micro-batch of a mini-batch only. A no-op on an unsharded model."""
    if is_sharded(model):
        model.set_requires_gradient_sync(enabled)


def idle_backward(model, pad_id: int) -> None:
    """A forward and backward with zero loss on one pad token, for a rank with fewer micro-batches than another:
    FSDP2 all-gathers parameters in every forward and reduce-scatters in the backward, so all ranks run as many."""
    import torch

    device = next(model.parameters()).device
    out = model(input_ids=torch.tensor([[pad_id]], device=device), logits_to_keep=1)
    (out.logits.float().sum() * 0.0).backward()
