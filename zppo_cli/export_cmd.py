"""`zppo export RUN [--step N] [--out DIR]`: a Hugging Face model directory of a run's student.

A multi-rank run's checkpoints are sharded (torch.distributed.checkpoint); its last checkpoint already carries an
HF export (`model/`), earlier ones get it here: one process reads every rank's shards (no GPU, no process group).
A single-process run's checkpoints already are HF directories; `--out` copies one elsewhere. The directory loads
with `from_pretrained`, `zppo eval --model`, and vLLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from zppo_cli.options import console, rel, user_errors


def export(
    run: Path = typer.Argument(..., help="A zppo run directory."),
    step: Optional[int] = typer.Option(None, "--step", help="The checkpoint's step (default: the latest)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the model here (default: <checkpoint>/model)."),
) -> None:
    """Export a run's student as a Hugging Face model directory (for zppo eval, vLLM, sharing)."""
    with user_errors():
        from zppo_core.config import ConfigError
        from zppo_core.run_dir import RunDir

        rd = RunDir(run)
        if not rd.is_run():
            raise ConfigError(f"{run}: no config.yaml there (not a zppo run directory); pass a directory created by "
                              "`zppo train`")
        have = [p.name for p in rd.checkpoint_dirs() if (p / "state.pt").is_file()]
        ckpt = rd.latest_checkpoint() if step is None else rd.checkpoint(step)
        if ckpt is None or not (ckpt / "state.pt").is_file():
            what = "no checkpoint yet" if step is None else f"no complete checkpoint for step {step}"
            raise ConfigError(f"{run}: {what}; available: {', '.join(have) or 'none'}")
        if out is not None and out.exists() and any(out.iterdir()):
            raise ConfigError(f"--out {out} exists and is not empty; choose a new directory")
        from zppo_core.dist.checkpoint import export_hf

        dest = export_hf(ckpt, out)
        console.print(f"exported {rd.name} step {RunDir.step_of(ckpt)} -> {rel(dest)}", highlight=False)
