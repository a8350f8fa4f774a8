"""The `--config` files and user presets of a study, read once: `zppo sweep` and `zppo reproduce` keep the JSON
layers in their plan file (sweep.json, reproduce.json), so every run, a requeued Slurm job and `--resume` get the
values read at the start, whatever happens to the files later. No heavy imports (a dry run stays light)."""

from __future__ import annotations

from typing import Any

from zppo_core.config import ConfigError


def config_base(scale: str | None, files: list[Any]) -> tuple[str, list[dict[str, Any]]]:
    """(the built-in scale, the --config files and user presets as JSON layers), read now."""
    from zppo_core.config import PRESETS, resolve_config

    if not files and (scale is None or scale in PRESETS):
        return scale or "tiny", []
    portable = resolve_config(scale, files=files).portable()
    return portable["scale"], portable["files"]


def root_scale(scale: str | None) -> str:
    """The built-in preset a scale builds on (a study's default name uses it, so `--scale 2b-mycluster` finds the
    study it started); tiny when none is given."""
    from zppo_core.config import PRESETS
    from zppo_core.config.sources import preset_chain

    if scale is None or scale in PRESETS:
        return scale or "tiny"
    try:
        return preset_chain(scale)[0]
    except ConfigError:
        return scale  # the preset is gone: the name as given


def shown_files(files: list[dict[str, Any]]) -> list[str]:
    """How a dry run names the layers: a user preset by its name, a file by its path."""
    return [str(f["label"] if f.get("kind") == "preset" else f["path"]) for f in files]
