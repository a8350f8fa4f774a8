"""Atomic full-state checkpoints with a `latest` pointer (paths from `zppo_core.run_dir.RunDir`).

A single-process run writes the layout below (unchanged since the first release, so older runs resume and
`zppo eval --run` reads `model/` directly). A multi-rank run writes sharded checkpoints with
torch.distributed.checkpoint instead (`zppo_core/dist/checkpoint.py`: dcp/, per-rank RNG files, state.pt).
`load_checkpoint` reads either format at any world size (a sharded one resharded by DCP, a single-process one
sharded on load).

Layout of a single-process checkpoint under `<run_dir>/checkpoints/`:

    step_000025/model/           weights + config (save_pretrained) and tokenizer
    step_000025/optimizer.pt     AdamW state
    step_000025/state.pt         step, data cursor, method state (buffer...), RNG states (python, torch)
    latest                       one line: the directory name of the newest complete checkpoint

A checkpoint is written into a hidden temporary directory and renamed into place; `latest` is replaced
atomically after that. A crash at any point leaves the previous checkpoint and pointer intact.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from zppo_core.dist import LOCAL, Dist, rank_seed
from zppo_core.run_dir import STATE_FILE, RunDir, checkpoint_name, write_atomic

__all__ = ["CheckpointError", "latest_checkpoint", "load_checkpoint", "load_optimizer", "load_state", "load_weights",
           "require_checkpoint", "save_checkpoint", "write_atomic"]


class CheckpointError(ValueError):
    """A user-facing checkpoint problem (one line, names the fix)."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: Path, step: int, model, tokenizer, optimizer, state: dict[str, Any], keep: int = 2,
    dist: Dist = LOCAL, export: bool = False,
) -> Path:
    """Write the checkpoint of `step` and point `latest` at it. With several ranks this is collective (every rank
    calls it) and writes the sharded format; `export` then also writes its HF model directory (a single-process
    checkpoint always has one)."""
    if dist.enabled:
        from zppo_core.dist.checkpoint import save_sharded

        return save_sharded(run_dir, step, model, tokenizer, optimizer, state, dist, keep=keep, export=export)
    rd = RunDir(run_dir)
    root = rd.checkpoints
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(step)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    _quiet_transformers()
    try:
        model.save_pretrained(tmp / "model")
        tokenizer.save_pretrained(tmp / "model")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(state, tmp / STATE_FILE)
        _fsync_dir(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = root / name
    if final.exists():  # re-writing the same step (e.g. after a resume): move the old one aside first
        old = root / f".old-{name}-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    rd.point_latest(final)
    _fsync_dir(root)
    _prune(rd, keep)
    return final


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _prune(rd: RunDir, keep: int) -> None:
    for p in rd.checkpoint_dirs()[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def latest_checkpoint(run_dir: Path) -> Path | None:
    """`RunDir(run_dir).latest_checkpoint()` for callers holding a path."""
    return RunDir(run_dir).latest_checkpoint()


def require_checkpoint(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"resume dir {run_dir} does not exist; pass a run directory created by `zppo train`")
    ckpt = RunDir(run_dir).latest_checkpoint()
    if ckpt is None:
        raise CheckpointError(
            f"resume dir {run_dir} has no checkpoint (no checkpoints/latest); start a new run with "
            f"`zppo train --run-dir {run_dir}` or pick another run"
        )
    return ckpt


def load_state(ckpt: Path) -> dict[str, Any]:
    return torch.load(Path(ckpt) / STATE_FILE, weights_only=False)


def load_weights(model_dir: Path) -> dict[str, torch.Tensor]:
    """All tensors of a save_pretrained directory (single file or sharded with an index)."""
    import json

    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        out: dict[str, torch.Tensor] = {}
        for shard in shards:
            out.update(load_file(str(model_dir / shard)))
        return out
    return load_file(str(model_dir / "model.safetensors"))


def load_optimizer(ckpt: Path, optimizer) -> None:
    optimizer.load_state_dict(torch.load(Path(ckpt) / "optimizer.pt", weights_only=False))


def load_checkpoint(ckpt: Path, model, optimizer, dist: Dist = LOCAL, seed: int = 0) -> dict[str, Any]:
    """Restore the model, the optimizer and this rank's torch RNG from a checkpoint of either format, at any world
    size; returns the replicated trainer state (state.pt). Collective with several ranks."""
    from zppo_core.dist.checkpoint import is_sharded_checkpoint, load_full, load_sharded
    from zppo_core.dist.fsdp import is_sharded

    ckpt = Path(ckpt)
    if is_sharded_checkpoint(ckpt):
        return load_sharded(ckpt, model, optimizer, dist, seed)
    state = load_state(ckpt)
    weights = load_weights(ckpt / "model")
    if dist.enabled or is_sharded(model):
        load_full(model, optimizer, weights, torch.load(ckpt / "optimizer.pt", weights_only=False))
    else:
        missing, unexpected = model.load_state_dict(weights, strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:  # tied lm_head is not saved
            raise CheckpointError(f"checkpoint {ckpt} does not match the model ({missing[:3]} ...)")
        if hasattr(model, "tie_weights"):
            model.tie_weights()
        load_optimizer(ckpt, optimizer)
    if dist.rank == 0:
        torch.set_rng_state(state["torch_rng"])
    else:  # a single-process checkpoint resumed on several ranks: the other ranks start fresh streams
        torch.manual_seed(rank_seed(seed * 1_000_003 + int(state["step"]), dist.rank))
    return state
