"""Atomic full-state checkpoints with a `latest` pointer (paths from `zppo_core.run_dir.RunDir`).

Layout under `<run_dir>/checkpoints/`:

    step_000025/model/           weights + config (save_pretrained) and tokenizer
    step_000025/optimizer.pt     AdamW state
    step_000025/state.pt         step, data cursor, method state (buffer...), RNG states (python, torch)
    latest                       one line: the directory name of the newest complete checkpoint

A checkpoint is written into a hidden temporary directory (`RunDir.begin_checkpoint`); `RunDir.commit_checkpoint`
then writes its manifest (every file's size and sha256) last, renames it into place and moves `latest`. A process
killed at any point leaves the previous checkpoint and pointer intact; a checkpoint damaged later (truncated,
corrupted) is detected on resume by its manifest and the previous one is used, with a warning.

Loading is `torch.load(weights_only=True)`: a checkpoint holds tensors and plain data only (state.pt's Python RNG
state is a tuple of ints, the method's and the stream's state are JSON-like), so a crafted pickle cannot run code.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch

from zppo_core.config import ConfigError
from zppo_core.run_dir import STATE_FILE, RunDir, fault_point, fsync_dir, write_atomic

__all__ = ["CheckpointError", "latest_checkpoint", "load_optimizer", "load_state", "load_weights",
           "require_checkpoint", "safe_load", "save_checkpoint", "write_atomic"]


class CheckpointError(ConfigError):
    """A user-facing checkpoint problem (one line, names the fix; the CLI exits 2 like any bad input)."""


def _save(obj: Any, path: Path) -> None:
    """torch.save, synced to disk (the manifest written after it vouches for these bytes)."""
    with open(path, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())


def save_checkpoint(
    run_dir: Path, step: int, model, tokenizer, optimizer, state: dict[str, Any], keep: int = 2
) -> Path:
    rd = RunDir(run_dir)
    tmp = rd.begin_checkpoint(step)
    _quiet_transformers()
    try:
        model.save_pretrained(tmp / "model")
        fault_point("ckpt.model")
        tokenizer.save_pretrained(tmp / "model")
        _fsync_files(tmp / "model")
        fault_point("ckpt.tokenizer")
        _save(optimizer.state_dict(), tmp / "optimizer.pt")
        fault_point("ckpt.optimizer")
        _save(state, tmp / STATE_FILE)
        fault_point("ckpt.state")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return rd.commit_checkpoint(tmp, step, keep=keep)


def _fsync_files(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    fsync_dir(folder)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def latest_checkpoint(run_dir: Path) -> Path | None:
    """`RunDir(run_dir).latest_checkpoint()` for callers holding a path."""
    return RunDir(run_dir).latest_checkpoint()


def require_checkpoint(run_dir: Path, verify: bool = False, warn=None) -> Path:
    """The checkpoint to resume from (see `RunDir.latest_checkpoint`; `verify`: every file's sha256 checked)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"resume dir {run_dir} does not exist; pass a run directory created by `zppo train`")
    ckpt = RunDir(run_dir).latest_checkpoint(verify=verify, warn=warn)
    if ckpt is None:
        damaged = [p.name for p in RunDir(run_dir).checkpoint_dirs()]
        if damaged:
            raise CheckpointError(
                f"resume dir {run_dir}: no complete checkpoint ({', '.join(damaged)} damaged, see the warnings); "
                f"start a new run with `zppo train --run-dir NEW_DIR`"
            )
        raise CheckpointError(
            f"resume dir {run_dir} has no checkpoint (no checkpoints/latest); start a new run with "
            f"`zppo train --run-dir {run_dir}` or pick another run"
        )
    return ckpt


def safe_load(path: Path) -> Any:
    """`torch.load(weights_only=True)`: tensors and plain data only; anything else is refused (CheckpointError)."""
    import pickle

    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain data ({first}); refusing to load it (a "
            "checkpoint that can run code); resume from a checkpoint zppo wrote"
        ) from None


def load_state(ckpt: Path) -> dict[str, Any]:
    return safe_load(Path(ckpt) / STATE_FILE)


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
    optimizer.load_state_dict(safe_load(Path(ckpt) / "optimizer.pt"))
