"""Where a config's values come from: presets (built-in, user and cluster), config files, `--set`, flags.

A resolved config is a stack of `Layer`s merged in order, later wins:

    built-in preset  <  user/cluster presets it is based on  <  --config files in order  <  --method  <  --set  <  flags

Every layer keeps its source (file and line per key), so an error names `file:line` and `zppo config show`
prints, per key, where its value came from.

Files are YAML with the presets' sections. `scale: NAME` names the preset a file builds on; a user or cluster
preset (a YAML file in `$ZPPO_PRESETS` — one directory or several separated by `:` — or in
`~/.config/zppo/presets/`) must name one, so every config has a built-in scale at its root (the scale decides the
Slurm defaults and which paper numbers a run is compared with). A user preset may not take a built-in name.

`${VAR}` (or `${VAR:-default}`) in a string value expands from the environment when the file is read (`$${`
writes a literal `${`); an unset variable is a one-line error naming it and `file:line`. Secrets never enter a
config: a field whose name ends in `_env` stores the *name* of a variable (`api_key_env: ${TEACHER_API_KEY}` is
stored as `TEACHER_API_KEY` and read when the key is needed), and a variable whose name says it holds a secret
(`*_KEY`, `*TOKEN*`, `*SECRET*`, `*PASSWORD*` ...) is refused anywhere else, since the resolved config is saved
in the run directory and logged to MLflow.

No pydantic validation here (that is `zppo_core.config.resolve_config`); errors are ConfigError; PyYAML's
composed nodes give the lines.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from zppo_core.config.errors import ConfigError
from zppo_core.config.overrides import flat_keys

BUILTIN = ("tiny", "tiny-hard", "tiny-vl", "0.8b", "2b", "4b", "9b")
PRESETS_ENV = "ZPPO_PRESETS"


@dataclass
class Layer:
    """One source of config values: a nested tree of raw values and where each key was written."""

    label: str                                     # "preset 2b", "configs/x.yaml", "--set", "--steps"
    tree: dict[str, Any]
    path: str | None = None                        # the YAML file it was read from
    lines: dict[str, int] = field(default_factory=dict)    # dotted key -> line in `path`
    items: dict[str, str] = field(default_factory=dict)    # dotted key -> the `--set` item that set it
    base: str | None = None                        # the preset the file names (`scale:`)
    description: str = ""
    kind: str = "file"                             # builtin | preset | file | set | flag | run

    def __post_init__(self) -> None:
        self.keys = flat_keys(self.tree)

    def where(self, dotted: str) -> str:
        """`file:line`, `--set a.b=v` or the label: where this layer wrote `dotted` (or its nearest parent)."""
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            key = ".".join(parts[:n])
            if key in self.items:
                return self.items[key]
            if key in self.lines and self.path and self.kind != "builtin":
                return (f"{self.label} ({self.path}:{self.lines[key]})" if self.kind == "preset"
                        else f"{self.path}:{self.lines[key]}")
        return self.label

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy (a Slurm job resolves the same layers without reading the files again)."""
        return {"label": self.label, "tree": self.tree, "path": self.path, "lines": self.lines,
                "items": self.items, "base": self.base, "kind": self.kind}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Layer":
        return cls(d["label"], d["tree"], d.get("path"), dict(d.get("lines") or {}), dict(d.get("items") or {}),
                   d.get("base"), kind=d.get("kind", "file"))


# ---------------------------------------------------------------------------------------------- YAML files
def read_layer(path: str | Path, label: str | None = None, kind: str = "file", expand_env: bool = True,
               missing: str | None = None) -> Layer:
    """A YAML file as a Layer: values, the line of every key, its `scale`/`description`, `${VAR}` expanded.
    Raises ConfigError (one line naming `file:line`) for a missing file, broken YAML, a duplicate key, a
    top level that is not a mapping and an unset or secret variable."""
    p = Path(path).expanduser()
    shown = str(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ConfigError(missing or f"config file {shown} does not exist; check the path") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {shown} is a directory; pass a YAML file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"config file {shown} cannot be read ({err}); check the file") from None
    lines: dict[str, int] = {}
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        tree = {} if node is None else _construct(loader, node, "", lines, shown)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{shown}:{mark.line + 1}" if mark is not None else shown
        what = err.problem or err.context
        if err.context and err.context_mark is not None and err.problem:
            what = f"{err.context} started on line {err.context_mark.line + 1}: {err.problem}"
        raise ConfigError(f"{where}: invalid YAML ({what}); fix the file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{shown}: invalid YAML ({err}); fix the file") from None
    finally:
        loader.dispose()
    if not isinstance(tree, dict):
        line = node.start_mark.line + 1 if node is not None else 1
        raise ConfigError(f"{shown}:{line}: a config file is a mapping of sections (run:, model:, algo: ...), "
                          f"not a {type(tree).__name__}; fix the file")
    if expand_env:
        tree = _expand_tree(tree, "", lines, shown)
    meta = kind in ("builtin", "preset", "file")  # `scale:` (the base preset) and `description:` are no fields
    base = tree.pop("scale", None) if meta else None
    if kind == "builtin":  # a built-in preset may start from another one (`extends: tiny`)
        base = tree.pop("extends", None)
    if base is not None and not isinstance(base, str):
        base = str(base)  # `scale: 2b` is a string already; a bare number such as 0.8 is not a preset name
    description = tree.pop("description", "") if meta else ""
    return Layer(label or shown, tree, shown, lines, base=base, description=str(description or ""), kind=kind)


def _construct(loader: yaml.SafeLoader, node: yaml.Node, prefix: str, lines: dict[str, int], shown: str) -> Any:
    """Mappings node by node (recording each key's line and refusing duplicate keys); anything else as PyYAML
    constructs it."""
    if not isinstance(node, yaml.MappingNode):
        return loader.construct_object(node, deep=True)
    explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)  # YAML merge keys (<<: *base) first, the mapping's own keys after them
    merged = len(node.value) - explicit
    out: dict[Any, Any] = {}
    own: set[Any] = set()
    for i, (key_node, value_node) in enumerate(node.value):
        key = loader.construct_object(key_node, deep=True)
        dotted = f"{prefix}.{key}" if prefix else str(key)
        line = key_node.start_mark.line + 1
        if i >= merged:
            if key in own:
                raise ConfigError(f"{shown}:{line}: key '{dotted}' appears twice (first on line {lines[dotted]}); "
                                  "keep one")
            own.add(key)
        lines[dotted] = line
        out[key] = _construct(loader, value_node, dotted, lines, shown)
    return out


# ---------------------------------------------------------------------------------------------- ${VAR}
_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET_WORDS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "APIKEY")
_SECRET_PARTS = {"KEY", "PASS", "PW", "PWD", "AUTH"}
_NOT_SECRET_TAIL = {"PATH", "DIR", "FILE", "NAME", "ENV", "URL", "HOST", "PORT", "ID"}


def looks_secret(name: str) -> bool:
    """A variable whose name says it holds a secret (OPENAI_API_KEY, HF_TOKEN, PGPASSWORD, ...), unless its
    name says it is only a path or a name (SSH_KEY_PATH, TOKEN_FILE)."""
    parts = [p for p in name.upper().split("_") if p]
    if parts and parts[-1] in _NOT_SECRET_TAIL:
        return False
    return any(w in name.upper() for w in _SECRET_WORDS) or any(p in _SECRET_PARTS for p in parts)


def _expand_tree(value: Any, dotted: str, lines: dict[str, int], shown: str) -> Any:
    if isinstance(value, dict):
        return {k: _expand_tree(v, f"{dotted}.{k}" if dotted else str(k), lines, shown) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_tree(v, dotted, lines, shown) for v in value]
    if isinstance(value, str) and "${" in value:
        return expand(value, dotted, _where(dotted, lines, shown))
    return value


def _where(dotted: str, lines: dict[str, int], shown: str) -> str:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in lines:
            return f"{shown}:{lines['.'.join(parts[:n])]}"
    return shown


def expand(text: str, dotted: str, where: str, env: dict[str, str] | None = None) -> str:
    """`${VAR}` / `${VAR:-default}` from the environment; in a `*_env` field, `${VAR}` alone means the name."""
    env = os.environ if env is None else env
    leaf = dotted.rsplit(".", 1)[-1]
    whole = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)
    if leaf.endswith("_env") and whole:
        return whole.group(1)  # the variable's name: the secret itself is read when it is needed, never stored

    def sub(m: re.Match) -> str:
        if m.group(0) == "$${":
            return "${"
        name, sep, default = m.group(1).partition(":-")
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{where}: '${{{m.group(1)}}}' in {dotted} is not a variable reference; write "
                              "${NAME} or ${NAME:-default} (or $${ for a literal ${)")
        if looks_secret(name):
            raise ConfigError(
                f"{where}: ${{{name}}} in {dotted} looks like a secret, and the resolved config is saved in the run "
                "directory and logged to MLflow; name the variable in a field ending in _env (e.g. "
                f"model.teacher_endpoint.api_key_env: {name}) or let the library read it from the environment")
        if name in env:
            return env[name]
        if sep:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set (used by {dotted}); export {name}=... "
                          f"or write ${{{name}:-default}}")

    return _VAR.sub(sub, text)


# ---------------------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    name: str
    path: Path
    builtin: bool


def builtin_path(name: str) -> Path:
    return Path(str(resources.files("zppo_core.config.presets").joinpath(f"{name}.yaml")))


def user_preset_dirs() -> list[Path]:
    """`$ZPPO_PRESETS` entries in order (each must be a directory), then `~/.config/zppo/presets` if it exists
    (`$XDG_CONFIG_HOME/zppo/presets` when that is set)."""
    out: list[Path] = []
    for entry in os.environ.get(PRESETS_ENV, "").split(os.pathsep):
        if not entry:
            continue
        d = Path(entry).expanduser()
        if not d.is_dir():
            raise ConfigError(f"${PRESETS_ENV} names {entry}, which is not a directory; fix ${PRESETS_ENV} "
                              "(directories of preset YAML files separated by ':') or unset it")
        out.append(d)
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    d = home / "zppo" / "presets"
    if d.is_dir() and all(d.resolve() != o.resolve() for o in out):
        out.append(d)
    return out


def find_presets() -> dict[str, Preset]:
    """Every preset by name: the built-in ones, then user/cluster presets (the first directory that has a name
    wins, like PATH). A user preset with a built-in preset's name is an error naming both files."""
    out = {name: Preset(name, builtin_path(name), True) for name in BUILTIN}
    for d in user_preset_dirs():
        for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            name = f.stem
            if name in out and out[name].builtin:
                raise ConfigError(f"user preset {f} has the name of the built-in preset '{name}' "
                                  f"({out[name].path}); rename the file (e.g. {name}-mine{f.suffix})")
            out.setdefault(name, Preset(name, f, False))
    return out


def shadowed_presets() -> dict[str, list[Path]]:
    """User preset files hidden by an earlier directory's file of the same name."""
    seen: dict[str, Path] = {}
    hidden: dict[str, list[Path]] = {}
    for d in user_preset_dirs():
        for f in sorted([*d.glob("*.yaml"), *d.glob("*.yml")]):
            if f.stem in seen:
                hidden.setdefault(f.stem, []).append(f)
            else:
                seen[f.stem] = f
    return hidden


def read_preset(preset: Preset) -> Layer:
    return read_layer(preset.path, label=f"preset {preset.name}", kind="builtin" if preset.builtin else "preset")


def preset_chain(name: str, presets: dict[str, Preset] | None = None) -> tuple[str, list[Layer]]:
    """(the built-in preset at the root, the layers of preset `name` root first: [built-in, user preset based
    on it, ...])."""
    presets = find_presets() if presets is None else presets
    chain: list[Layer] = []
    seen: list[str] = []
    root: str | None = None
    current = name
    while True:
        if current in seen:
            raise ConfigError(f"presets {' -> '.join(seen + [current])} name each other as their base (scale:); "
                              "one of them must build on a built-in preset")
        if current not in presets:
            user = [n for n, p in presets.items() if not p.builtin]
            hint = f"; user presets: {', '.join(user)}" if user else ""
            raise ConfigError(f"unknown scale '{current}'; valid scales: {', '.join(BUILTIN)}{hint} "
                              f"(user presets are YAML files in ${PRESETS_ENV} or ~/.config/zppo/presets/)")
        seen.append(current)
        preset = presets[current]
        layer = read_preset(preset)
        chain.insert(0, layer)
        if preset.builtin:
            root = root or current  # the first built-in one is the scale (tiny-hard, not the tiny it extends)
            if layer.base is None:
                return root, chain
        elif layer.base is None:
            raise ConfigError(f"user preset {preset.path} names no base; add a line `scale: <preset it builds on>` "
                              f"(one of {', '.join(BUILTIN)} or another user preset)")
        current = layer.base


def describe(name: str, presets: dict[str, Preset] | None = None) -> str:
    """A preset's one-line description (the YAML's `description`)."""
    presets = find_presets() if presets is None else presets
    return read_preset(presets[name]).description


# ---------------------------------------------------------------------------------------------- showing
def flow(value: Any) -> str:
    """One value as one line of YAML (flow style for lists and maps)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True, sort_keys=False)
    return text.strip().removesuffix("\n...")  # a lone scalar ends its document with "..."


def annotate(tree: dict[str, Any], sections: set[str], sources: dict[str, str], width: int = 52) -> str:
    """YAML of a resolved config tree with `# <source>` after every leaf. `sections` are the dotted keys that
    are config sections (printed as nested blocks); every other key is one line."""
    rows: list[tuple[str, str]] = []

    def walk(node: dict[str, Any], prefix: str, indent: str) -> None:
        for k, v in node.items():
            dotted = f"{prefix}.{k}" if prefix else str(k)
            if dotted in sections and isinstance(v, dict):
                rows.append((f"{indent}{k}:", ""))
                walk(v, dotted, indent + "  ")
            else:
                rows.append((f"{indent}{flow(k)}: {flow(v)}", sources.get(dotted, "default")))

    walk(tree, "", "")
    col = min(width, max((len(t) for t, s in rows if s), default=0))
    return "".join(f"{t.ljust(col)}  # {s}\n" if s else f"{t}\n" for t, s in rows)
