"""Sharded checkpoints of a multi-rank run with torch.distributed.checkpoint (DCP), and their HF export.

Layout of one checkpoint of an N-rank run (`RunDir.checkpoint(step)`):

    step_000025/dcp/                  DCP: the model and AdamW state, each rank writing its own shards; .metadata last
    step_000025/rng/rank_00003.pt     each rank's torch RNG state, one file per rank (DCP would keep one rank's
                                      value of a key every rank saves under the same name: scale-out pitfalls §2)
    step_000025/hf/                   the model's config, generation config and tokenizer (what an export needs)
    step_000025/model/                a Hugging Face model directory (the last checkpoint of a run, or `zppo export`)
    step_000025/state.pt              the replicated trainer state (step, data cursor, method/buffer state, the
                                      run's Python RNG, group ids, world size), written by rank 0 last

Atomicity: every rank writes into `checkpoints/.tmp-step_000025`; after a barrier rank 0 writes state.pt, renames
the directory into place and moves the `latest` pointer; a rank killed at any point leaves the previous checkpoint
and pointer as they were (the next save removes the stale temporary directory).

Resume: at the same world size the model, optimizer, RNG and replicated state are restored exactly, so the
resumed run equals an uninterrupted one. At another world size DCP reshards the model and optimizer state on load;
ranks without an RNG file of their own are seeded from (seed, rank, step): the run continues correctly but its
sampling differs from the uninterrupted run (not bit-exact). A single-process checkpoint (`train/checkpoint.py`'s
format: model/ + optimizer.pt) loads at any world size too (`load_full`).
"""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Any

from zppo_core.dist import Dist, rank_seed
from zppo_core.dist.fsdp import FullWeights
from zppo_core.run_dir import STATE_FILE, RunDir, checkpoint_name, fsync_dir, replace_dir

DCP_DIR = "dcp"
RNG_DIR = "rng"
HF_DIR = "hf"
MODEL_DIR = "model"


def is_sharded_checkpoint(ckpt: Path) -> bool:
    return (Path(ckpt) / DCP_DIR / ".metadata").is_file()


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=".*torch.distributed is disabled.*")
    warnings.filterwarnings("ignore", message=".*assuming the intent is to.*")


def rng_state() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state()
    return out


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_sharded(run_dir: Path, step: int, model, tokenizer, optimizer, state: dict[str, Any], dist: Dist,
                 keep: int = 2, export: bool = False) -> Path:
    """Collective: every rank calls it at the same point. Returns the checkpoint directory (see module docstring).
    `export`: also write the HF model directory `model/` (gathers the full weights: every rank takes part)."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    _quiet()
    rd = RunDir(run_dir)
    name = checkpoint_name(step)
    tmp = rd.checkpoints / f".tmp-{name}"

    def start() -> None:
        rd.checkpoints.mkdir(parents=True, exist_ok=True)
        for stale in rd.checkpoints.glob(".tmp-*"):  # left by a killed save (this run's only writer is this job)
            shutil.rmtree(stale, ignore_errors=True)
        (tmp / RNG_DIR).mkdir(parents=True)

    dist.on_main(start)
    optimizer.zero_grad(set_to_none=True)  # grads still set can empty the saved optimizer state (pytorch #140898)
    msd, osd = get_state_dict(model, optimizer)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(tmp / DCP_DIR))
    torch.save(rng_state(), tmp / RNG_DIR / f"rank_{dist.rank:05d}.pt")
    full = FullWeights(model).state_dict() if export else None  # collective
    dist.barrier()  # every rank's shards and RNG file are on disk

    def commit() -> Path:
        model.config.save_pretrained(tmp / HF_DIR)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(tmp / HF_DIR)
        tokenizer.save_pretrained(tmp / HF_DIR)
        if full is not None:
            model.save_pretrained(tmp / MODEL_DIR, state_dict=full)
            tokenizer.save_pretrained(tmp / MODEL_DIR)
        torch.save({**state, "world_size": dist.world, "format": "dcp"}, tmp / STATE_FILE)
        fsync_dir(tmp)
        final = rd.checkpoints / name
        replace_dir(tmp, final)
        rd.point_latest(final)
        fsync_dir(rd.checkpoints)
        for p in rd.checkpoint_dirs()[:-keep]:
            shutil.rmtree(p, ignore_errors=True)
        return final

    return dist.on_main(commit)


def load_sharded(ckpt: Path, model, optimizer, dist: Dist, seed: int) -> dict[str, Any]:
    """Collective. Restores model and optimizer state from `ckpt/dcp` (resharded to this world size) and this
    rank's RNG state; returns the replicated trainer state (state.pt)."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    _quiet()
    ckpt = Path(ckpt)
    state = torch.load(ckpt / STATE_FILE, weights_only=False)
    msd, osd = get_state_dict(model, optimizer)  # templates at this world size (initialises the AdamW state)
    dcp.load({"model": msd, "optim": osd}, checkpoint_id=str(ckpt / DCP_DIR))
    set_state_dict(model, optimizer, model_state_dict=msd, optim_state_dict=osd)
    own = ckpt / RNG_DIR / f"rank_{dist.rank:05d}.pt"
    if int(state.get("world_size", 1)) == dist.world and own.is_file():
        set_rng_state(torch.load(own, weights_only=False))
    else:  # another world size: a fresh stream per rank (documented: not bit-exact)
        torch.manual_seed(rank_seed(seed * 1_000_003 + int(state["step"]), dist.rank))
    return state


def load_full(model, optimizer, weights: dict[str, Any], optim_state: dict[str, Any]) -> None:
    """Load a single-process checkpoint's full weights and AdamW state (keyed by parameter index, in
    `model.parameters()` order) into a sharded or plain model and its optimizer; each rank keeps its shards."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

    names = [n for n, _ in model.named_parameters()]
    fqn_state = {
        "state": {names[int(i)]: s for i, s in optim_state["state"].items()},
        "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in optim_state["param_groups"]],
    }
    set_state_dict(model, optimizer, model_state_dict=weights, optim_state_dict=fqn_state,
                   options=StateDictOptions(full_state_dict=True, strict=False))
    if hasattr(model, "tie_weights"):
        model.tie_weights()


def export_hf(ckpt: Path, out: Path | None = None) -> Path:
    """A Hugging Face model directory of a checkpoint's student (for `zppo eval`, vLLM, sharing). One process, no
    process group: DCP reads every rank's shards. Default `out`: `<ckpt>/model`, written atomically. A
    single-process checkpoint already has one; it is returned as is (or copied to `out`)."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, set_model_state_dict
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

    ckpt = Path(ckpt)
    dest = Path(out) if out is not None else ckpt / MODEL_DIR
    if not is_sharded_checkpoint(ckpt):
        src = ckpt / MODEL_DIR
        if not src.is_dir():
            raise FileNotFoundError(f"{ckpt} is neither a sharded (dcp/) nor a single-process (model/) checkpoint")
        if dest.resolve() != src.resolve():
            shutil.copytree(src, dest, dirs_exist_ok=True)
        return dest
    if (dest / "config.json").is_file():
        return dest
    _quiet()
    config = AutoConfig.from_pretrained(ckpt / HF_DIR)
    cls = AutoModelForImageTextToText if getattr(config, "vision_config", None) is not None else AutoModelForCausalLM
    with torch.device("meta"):
        model = cls.from_config(config, dtype=torch.float32)
    model.to_empty(device="cpu")  # unties tied weights: tie them again (verl #7834)
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    msd = get_model_state_dict(model)
    dcp.load({"model": msd}, checkpoint_id=str(ckpt / DCP_DIR))
    set_model_state_dict(model, msd)
    if (ckpt / HF_DIR / "generation_config.json").is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(ckpt / HF_DIR)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(ckpt / HF_DIR).save_pretrained(tmp)
        fsync_dir(tmp)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
