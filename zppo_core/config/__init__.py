"""Configuration: presets selected by `--scale`, `key=value` overrides, one-line validation errors.

    cfg = load_config("tiny", method="grpo", overrides=["algo.n_new=8", "run.steps=10"])

`load_config` raises `ConfigError` (a ValueError with a one-line message naming the field and the fix) for
unknown presets, unknown keys, wrong types and impossible combinations.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from zppo_core.config import overrides as ov
from zppo_core.config.schema import ZPPOConfig

__all__ = ["ConfigError", "ZPPOConfig", "apply_overrides", "check_field", "config_from_file", "dump_config",
           "flat_params", "list_presets", "load_config", "parse_overrides"]

PRESETS = ("tiny", "tiny-hard", "tiny-vl", "0.8b", "2b", "4b", "9b")


class ConfigError(ValueError):
    """A user-facing configuration problem; str(err) is one line naming the field and the fix."""


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description (the YAML's `description` key)."""
    out = {}
    for name in PRESETS:
        raw = _read_preset(name)
        out[name] = str(raw.get("description", ""))
    return out


def _read_preset(name: str) -> dict[str, Any]:
    """A preset's YAML; `extends: other` starts from that preset and merges this one's keys on top."""
    if name not in PRESETS:
        raise ConfigError(f"unknown scale '{name}'; valid scales: {', '.join(PRESETS)}")
    text = resources.files("zppo_core.config.presets").joinpath(f"{name}.yaml").read_text()
    raw = yaml.safe_load(text) or {}
    base = raw.pop("extends", None)
    if base is None:
        return raw
    parent = _read_preset(base)
    parent.pop("description", None)
    return ov.deep_merge(parent, raw)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """['a.b=1', 'c=x'] -> nested dict; values parsed as YAML scalars/lists (so 1e-5, true, null, [1,2] work)."""
    try:
        return ov.parse_overrides(items)
    except ov.OverrideError as err:
        raise ConfigError(f"override {err}") from None


def _one_line(err: ValidationError, source: str) -> str:
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        parent = loc.rsplit(".", 1)[0] if "." in loc else ""
        valid = _valid_keys(parent)
        return f"unknown config key '{loc}' ({source}); valid keys here: {', '.join(valid)}"
    given = e.get("input")
    if loc and e["type"] not in ("value_error", "assertion_error"):
        return f"config field '{loc}': {msg} (got {given!r}, {source}); fix: --set {loc}=<valid value>"
    where = f"config field '{loc}': " if loc else "config: "
    return f"{where}{msg} ({source})"


def _valid_keys(dotted_parent: str) -> list[str]:
    node, rest = ov.walk_schema(dotted_parent, ZPPOConfig)
    return [] if rest else ov.section_keys(node)


def check_field(dotted: str, where: str) -> None:
    """A dotted config field must exist in the schema and be a leaf; else ConfigError naming the valid keys."""
    node, rest = ov.walk_schema(dotted, ZPPOConfig)
    if rest:
        parts = dotted.split(".")
        parent = ".".join(parts[: len(parts) - len(rest)])
        valid = ov.section_keys(node)
        hint = f"; valid keys{' in ' + parent if parent else ''}: {', '.join(valid)}" if valid else ""
        raise ConfigError(f"{where}: '{dotted}' is not a config field{hint}")
    if ov.is_section(node):
        raise ConfigError(f"{where}: '{dotted}' is a config section, not a field; name one of its fields")


def load_config(
    scale: str = "tiny",
    method: str | None = None,
    overrides: Iterable[str] = (),
    extra: dict[str, Any] | None = None,
) -> ZPPOConfig:
    """Resolve preset + method + `--set` overrides (+ programmatic `extra`) into a validated config."""
    raw = _read_preset(scale)
    raw.pop("description", None)
    raw["scale"] = scale
    if method is not None:
        raw["method"] = method
    override_list = list(overrides)
    raw = ov.deep_merge(raw, parse_overrides(override_list))
    if extra:
        raw = ov.deep_merge(raw, extra)
    source = f"preset '{scale}'" + (" with --set overrides" if override_list else "")
    try:
        cfg = ZPPOConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(err, source)) from None
    _check_method(cfg)
    return cfg


def apply_overrides(cfg: ZPPOConfig, overrides: Iterable[str]) -> ZPPOConfig:
    """A resolved config with `--set` overrides applied on top (e.g. eval settings for a finished run)."""
    override_list = list(overrides)
    if not override_list:
        return cfg
    raw = ov.deep_merge(cfg.model_dump(mode="json"), parse_overrides(override_list))
    try:
        new = ZPPOConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(err, "the run's config with --set overrides")) from None
    _check_method(new)
    return new


def _check_method(cfg: ZPPOConfig) -> None:
    from zppo_core.config.methods import validate

    try:
        validate(cfg)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def config_from_file(path: str | Path) -> ZPPOConfig:
    """Load a resolved config saved in a run directory (config.yaml)."""
    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist; pass a run directory created by `zppo train`") from None
    except yaml.YAMLError as err:
        line = getattr(getattr(err, "problem_mark", None), "line", None)
        where = f"{p}:{line + 1}" if line is not None else str(p)
        raise ConfigError(f"{where}: invalid YAML ({getattr(err, 'problem', err)}); fix the file") from None
    try:
        cfg = ZPPOConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(err, f"file {p}")) from None
    _check_method(cfg)
    return cfg


def dump_config(cfg: ZPPOConfig) -> str:
    """The resolved config as YAML (stable key order: the schema's)."""
    return yaml.safe_dump(json.loads(cfg.model_dump_json()), sort_keys=False)


def flat_params(cfg: ZPPOConfig) -> dict[str, str]:
    """Flattened `a.b.c -> value` view (MLflow params)."""
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and prefix.rsplit(".", 1)[-1] not in ov.LEVEL_MAPS:
            for k, v in node.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = json.dumps(node) if not isinstance(node, str) else node

    walk("", json.loads(cfg.model_dump_json()))
    return out
