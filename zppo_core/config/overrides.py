"""`key=value` overrides, the deep merge of config trees, and the schema walker: one of each for the whole tool.

Used by the config (`--set`, presets), the Slurm profiles (`--slurm`) and the sweep definitions (per-scale
sections over the top level, sampled values as config fields). No torch, no pydantic validation here.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Iterable

import yaml

LEVEL_MAPS = frozenset({"levels", "student_levels", "teacher_levels"})  # replaced whole by an override, not merged


class OverrideError(ValueError):
    """A malformed `key=value` item or a conflicting pair of them (callers re-raise as their own error type)."""


def parse_value(text: str, numeric: bool = True) -> Any:
    """A value as YAML (so 1e-5, true, null, [1, 2], {1: 0.5} work); with `numeric`, a string that reads as a
    number becomes one (YAML 1.1 reads "1e-5" as a string)."""
    try:
        parsed = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        parsed = text
    if numeric and isinstance(parsed, str):
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return parsed


def parse_overrides(
    items: Iterable[str],
    example: str = "--set optim.lr=1e-5",
    dotted: bool = True,
    numeric: Callable[[str], bool] = lambda key: True,
) -> dict[str, Any]:
    """['a.b=1', 'c=x'] -> {'a': {'b': 1}, 'c': 'x'} (values: `parse_value`). `dotted=False` keeps keys flat;
    `numeric(key)` says whether a number-like string value of `key` becomes a number. Raises OverrideError naming
    the item and `example`."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise OverrideError(f"'{item}' is not key=value; write e.g. {example}")
        parsed = parse_value(value, numeric(key))
        node = tree
        parts = key.split(".") if dotted else [key]
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise OverrideError(f"'{item}' conflicts with an earlier override of '{part}'")
            node = child
        node[parts[-1]] = parsed
    return tree


def nest(dotted: str, value: Any) -> dict[str, Any]:
    """'a.b.c', v -> {'a': {'b': {'c': v}}}."""
    out: Any = value
    for part in reversed(dotted.split(".")):
        out = {part: out}
    return out


def flat_keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    """Every dotted key of a nested dict, sections included: {'a': {'b': 1}} -> {'a', 'a.b'}."""
    out: set[str] = set()
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.add(key)
        if isinstance(v, dict):
            out |= flat_keys(v, key)
    return out


def deep_merge(base: dict[str, Any], extra: dict[str, Any], replace: frozenset[str] = LEVEL_MAPS) -> dict[str, Any]:
    """`extra` over `base`, recursively for dicts present in both; keys in `replace` are replaced whole. Neither
    input is modified."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k not in replace:
            out[k] = deep_merge(out[k], v, replace)
        else:
            out[k] = copy.deepcopy(v)
    return out


def walk_schema(dotted: str, root: Any) -> tuple[Any, list[str]]:
    """Follow a dotted path through pydantic sections from `root`. Returns (what the path reaches: a section
    model or a field's annotation, the parts that could not be followed — empty when the whole path exists)."""
    node: Any = root
    parts = [p for p in dotted.split(".") if p]
    for i, part in enumerate(parts):
        fields = getattr(node, "model_fields", None)
        if fields is None or part not in fields:
            return node, parts[i:]
        node = fields[part].annotation
    return node, []


def section_keys(node: Any) -> list[str]:
    """The field names of a section model (none for a leaf)."""
    return sorted(getattr(node, "model_fields", None) or [])


def is_section(node: Any) -> bool:
    return hasattr(node, "model_fields")
