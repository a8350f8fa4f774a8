"""Configuration: presets selected by `--scale`, config files (`--config`), `key=value` overrides, one-line errors.

    cfg = load_config("tiny", method="grpo", overrides=["algo.n_new=8", "run.steps=10"])
    res = resolve_config(files=["configs/2b-zppo.example.yaml"], overrides=["run.seed=1"])
    res.cfg, res.sources()["run.seed"]        # the validated config; '--set run.seed=1'

Layers, later wins: built-in preset < user/cluster presets < config files in order < --method < --set < flags
(`sources.py` reads them). `load_config` raises `ConfigError` (a ValueError with a one-line message naming the
field, the `file:line` or `--set` item it came from, and the fix) for unknown presets, unknown keys, wrong types
and impossible combinations.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from zppo_core.config import overrides as ov
from zppo_core.config import sources as src
from zppo_core.config.errors import ConfigError
from zppo_core.config.schema import ZPPOConfig
from zppo_core.config.sources import Layer

__all__ = ["ConfigError", "Layer", "Resolved", "ZPPOConfig", "apply_overrides", "check_field", "config_from_file",
           "dump_config", "flat_params", "list_presets", "load_config", "parse_overrides", "resolve_config"]

PRESETS = src.BUILTIN


def list_presets() -> dict[str, str]:
    """Preset name -> its one-line description (the YAML's `description` key); built-in first, then user and
    cluster presets ($ZPPO_PRESETS, ~/.config/zppo/presets)."""
    presets = src.find_presets()
    return {name: src.describe(name, presets) for name in presets}


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """['a.b=1', 'c=x'] -> nested dict; values parsed as YAML scalars/lists (so 1e-5, true, null, [1,2] work)."""
    try:
        return ov.parse_overrides(items)
    except ov.OverrideError as err:
        raise ConfigError(f"override {err}") from None


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


@dataclass
class Resolved:
    """A validated config and the layers it was merged from (for `config show`, errors and Slurm jobs)."""

    cfg: ZPPOConfig
    layers: list[Layer]
    scale_source: str       # where the preset came from: '--scale 2b', 'configs/x.yaml:1' or 'default'

    def sources(self, cfg: ZPPOConfig | None = None) -> dict[str, str]:
        """Dotted leaf key -> where its value came from (`file:line`, `--set a.b=v`, `preset 2b`, `default`)."""
        out = {key: _where(self.layers, key, exact=True) or "default" for key in _leaves(cfg or self.cfg)}
        out["scale"] = self.scale_source
        return out

    def annotated(self, cfg: ZPPOConfig | None = None, notes: dict[str, str] | None = None) -> str:
        """The resolved config as YAML with `# <source>` after every value, the layers in a header line."""
        cfg = cfg or self.cfg
        sources = {**self.sources(cfg), **(notes or {})}
        return f"# {self.summary()}\n" + src.annotate(_plain(cfg.model_dump()), _sections(cfg), sources)

    def summary(self) -> str:
        """The layers in merge order: 'preset 2b < configs/x.yaml < --set'."""
        names: list[str] = []
        for layer in self.layers:
            name = f"{layer.label} ({layer.path})" if layer.kind == "preset" else layer.label
            if name not in names:
                names.append(name)
        return " < ".join(names)

    def portable(self) -> dict[str, Any]:
        """JSON-able scale + file layers (user presets included) that resolve to this config anywhere, without
        the files or the presets directories: what a Slurm job gets (`load_config(**portable, overrides=...)`)."""
        return {"scale": self.cfg.scale,
                "files": [layer.to_json() for layer in self.layers if layer.kind in ("preset", "file")]}


def resolve_config(
    scale: str | None = None,
    method: str | None = None,
    overrides: Iterable[str] = (),
    extra: dict[str, Any] | Sequence[tuple[str, dict[str, Any]]] | None = None,
    files: Iterable[str | Path | Layer | dict] = (),
    base: ZPPOConfig | None = None,
    base_label: str = "the run's config",
) -> Resolved:
    """Preset (`scale`, else the last file's `scale:`, else tiny) < `files` < `method` < `overrides` < `extra`
    ((label, tree) pairs, or one tree labelled 'command line'), validated. With `base` (a resolved config, e.g.
    a finished run's) the files and overrides apply on top of it instead of a preset."""
    file_layers = [f if isinstance(f, Layer) else Layer.from_json(f) if isinstance(f, dict) else src.read_layer(f)
                   for f in files]
    if base is None:
        named = [layer for layer in file_layers if layer.base is not None]
        if scale is not None:
            name, scale_source = scale, f"--scale {scale}"
        elif named:
            name, scale_source = named[-1].base, named[-1].where("scale")
        else:
            name, scale_source = "tiny", "default"
        try:
            root, layers = src.preset_chain(name)
        except ConfigError as err:
            raise (ConfigError(f"{scale_source}: {err}") if scale is None and named else err) from None
    else:
        root, scale_source = base.scale, base_label
        layers = [Layer(base_label, json.loads(base.model_dump_json()), kind="run")]
    layers += file_layers
    if method is not None:
        layers.append(Layer(f"--method {method}", {"method": method}, items={"method": f"--method {method}"},
                            kind="flag"))
    override_list = list(overrides)
    if override_list:
        items = {item.partition("=")[0].strip(): f"--set {item}" for item in override_list}
        layers.append(Layer("--set", parse_overrides(override_list), items=items, kind="set"))
    if isinstance(extra, dict):
        extra = [("command line", extra)] if extra else []
    for label, tree in extra or []:
        layers.append(Layer(label, tree, kind="flag"))
    raw: dict[str, Any] = {}
    for i, layer in enumerate(layers):
        if layer.kind in ("set", "flag") and "scale" in layer.tree:
            raise ConfigError(f"{layer.where('scale')}: the preset is chosen with --scale NAME (or `scale: NAME` in "
                              "a config file); drop this override")
        if layer.kind != "run":  # unknown keys name their file:line; empty sections go (the caller's layer stays)
            layers[i] = layer = replace(layer, tree=_check_keys(layer, layer.tree, ZPPOConfig, ""))
        raw = ov.deep_merge(raw, layer.tree)
    raw["scale"] = root
    try:
        cfg = ZPPOConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_explain(err, layers)) from None
    _check_method(cfg, layers)
    return Resolved(cfg, layers, scale_source)


def load_config(
    scale: str | None = None,
    method: str | None = None,
    overrides: Iterable[str] = (),
    extra: dict[str, Any] | Sequence[tuple[str, dict[str, Any]]] | None = None,
    files: Iterable[str | Path | Layer | dict] = (),
) -> ZPPOConfig:
    """Resolve preset + config files + method + `--set` overrides (+ programmatic `extra`) into a validated
    config (see `resolve_config`)."""
    return resolve_config(scale, method, overrides, extra, files).cfg


def apply_overrides(cfg: ZPPOConfig, overrides: Iterable[str], files: Iterable[str | Path | Layer | dict] = ()
                    ) -> ZPPOConfig:
    """A resolved config with config files and `--set` overrides applied on top (e.g. eval settings for a
    finished run); a file's `scale:` does not apply here (the run's config is the base)."""
    override_list, file_list = list(overrides), list(files)
    if not override_list and not file_list:
        return cfg
    return resolve_config(overrides=override_list, files=file_list, base=cfg).cfg


def config_from_file(path: str | Path) -> ZPPOConfig:
    """Load a resolved config saved in a run directory (config.yaml); read as written (no `${VAR}` expansion)."""
    layer = src.read_layer(path, kind="run", expand_env=False,
                           missing=f"config file {path} does not exist; pass a run directory created by `zppo train`")
    try:
        cfg = ZPPOConfig.model_validate(layer.tree)
    except ValidationError as err:
        raise ConfigError(_explain(err, [layer])) from None
    _check_method(cfg, [layer])
    return cfg


def _check_method(cfg: ZPPOConfig, layers: list[Layer]) -> None:
    from zppo_core.config.methods import validate

    try:
        validate(cfg)
    except ValueError as err:
        raise ConfigError(f"{err}{_mentions(str(err), '', layers)}") from None


# ---------------------------------------------------------------------------------------------- errors
def _check_keys(layer: Layer, tree: dict[str, Any], section: type[BaseModel], prefix: str) -> dict[str, Any]:
    """Unknown keys name `file:line` and the valid keys; an empty section (`algo:` with nothing under it) is
    dropped. Returns the tree to merge."""
    out: dict[str, Any] = {}
    fields = section.model_fields
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if not isinstance(key, str) or key not in fields:
            raise ConfigError(f"{layer.where(dotted)}: unknown config key '{dotted}'; valid keys"
                              f"{' in ' + prefix if prefix else ''}: {', '.join(sorted(fields))}")
        node = fields[key].annotation
        if ov.is_section(node):
            if value is None:
                continue
            if isinstance(value, dict):
                value = _check_keys(layer, value, node, dotted)
        out[key] = value
    return out


def _where(layers: list[Layer], dotted: str, exact: bool = False) -> str | None:
    """Where the last layer that set `dotted` (else, unless `exact`, its nearest parent) wrote it."""
    parts = dotted.split(".")
    keys = [dotted] if exact else [".".join(parts[:n]) for n in range(len(parts), 0, -1)]
    for key in keys:
        for layer in reversed(layers):
            if key in layer.keys:
                return layer.where(dotted)
    return None


_DOTTED = re.compile(r"\b[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+\b")


def _mentions(msg: str, section: str, layers: list[Layer]) -> str:
    """' (algo.n_new: configs/x.yaml:7; rollout.group_size: --set rollout.group_size=3)' for the config fields a
    cross-field message names, when a layer (not a default) set them."""
    found: list[str] = []
    for m in _DOTTED.finditer(msg):
        node, rest = ov.walk_schema(m.group(0), ZPPOConfig)
        if not rest and m.group(0) not in found:
            found.append(m.group(0))
    names = ov.section_keys(ov.walk_schema(section, ZPPOConfig)[0]) if section else ["method", "scale"]
    for name in names:
        key = f"{section}.{name}" if section else name
        if re.search(rf"(?<![\w.]){re.escape(name)}\b", msg) and key not in found:
            found.append(key)
    parts = [f"{k}: {w}" for k in found if (w := _where(layers, k, exact=True)) is not None]
    return f" ({'; '.join(parts[:4])})" if parts else ""


def _explain(err: ValidationError, layers: list[Layer]) -> str:
    """pydantic's first error as one line: where the value was written, the field, what is wrong, the fix."""
    e = err.errors()[0]
    loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
    msg = e["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    node, rest = ov.walk_schema(loc, ZPPOConfig)
    if not loc or (not rest and ov.is_section(node)):  # a section's or the whole config's cross-field rule
        what = f"config section '{loc}'" if loc else "config"
        return f"{what}: {msg}{_mentions(msg, loc, layers)}"
    where = _where(layers, loc) or "default"
    if e["type"] == "extra_forbidden":
        parent = loc.rsplit(".", 1)[0] if "." in loc else ""
        valid = ov.section_keys(ov.walk_schema(parent, ZPPOConfig)[0])
        return f"{where}: unknown config key '{loc}'; valid keys{' in ' + parent if parent else ''}: {', '.join(valid)}"
    if e["type"] in ("value_error", "assertion_error"):
        return f"{where}: config field '{loc}': {msg}"
    field = loc.split(".")[: len(loc.split(".")) - len(rest)] if rest else loc.split(".")
    dotted = ".".join(field)
    fix = f"--set {dotted}=<valid value>"
    if not where.startswith("--set"):
        fix = f"correct the value in the file or {fix}"
    return f"{where}: config field '{loc}': {msg} (got {e.get('input')!r}); fix: {fix}"


def _plain(value: Any) -> Any:
    """model_dump() with tuples as lists (YAML's safe dumper writes lists; int keys of level maps stay ints)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _leaves(cfg: BaseModel, prefix: str = "") -> list[str]:
    out: list[str] = []
    for name in type(cfg).model_fields:
        dotted = f"{prefix}.{name}" if prefix else name
        value = getattr(cfg, name)
        out += _leaves(value, dotted) if isinstance(value, BaseModel) else [dotted]
    return out


def _sections(cfg: BaseModel, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name in type(cfg).model_fields:
        value = getattr(cfg, name)
        if isinstance(value, BaseModel):
            dotted = f"{prefix}.{name}" if prefix else name
            out |= {dotted} | _sections(value, dotted)
    return out


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
