"""Sweep definitions (`sweeps/*.yaml`): search space, objective, budget, sampler, pruner, per-scale settings.

A definition is plain YAML (see `sweeps/buffer.yaml`, which documents every key). `load_sweep(name, scale)` reads
it, merges the scale's section over the top level and checks it against the config schema without running
anything; every problem is a `ConfigError` whose one line names the key and the fix (the CLI turns it into exit
code 2 before anything is created). Nothing here imports optuna at import time.

Parameters map an Optuna parameter to one config field. `per: algo.n_new` makes the sampled value a multiple
of another field (capacity relative to the questions per step): the config gets `round(value × algo.n_new)`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zppo_core.config import ConfigError, check_field
from zppo_core.config.overrides import deep_merge, flat_keys, nest

REPO_SWEEPS_DIR = Path(__file__).resolve().parents[2] / "sweeps"
SAMPLERS = ("tpe", "grid", "random")
PRUNERS = ("median", "threshold", "none")
DIRECTIONS = ("maximize", "minimize")
TOP_KEYS = {"description", "method", "trials", "parallel", "objective", "sampler", "pruner", "space", "grid", "set",
            "scales"}
SCALE_KEYS = TOP_KEYS - {"description", "method", "scales"}
PARAM_KEYS = {"field", "type", "low", "high", "step", "log", "choices", "per", "help"}


def sweeps_dir() -> Path:
    """Where named sweeps live: $ZPPO_SWEEPS_DIR, else the repository's sweeps/ folder."""
    env = os.environ.get("ZPPO_SWEEPS_DIR")
    return Path(env).expanduser() if env else REPO_SWEEPS_DIR


def list_sweeps() -> dict[str, str]:
    """name -> description line of every sweeps/*.yaml."""
    out: dict[str, str] = {}
    d = sweeps_dir()
    for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
        try:
            raw = yaml.safe_load(p.read_text()) or {}
            out[p.stem] = str(raw.get("description", "")) if isinstance(raw, dict) else "(not a mapping)"
        except yaml.YAMLError:
            out[p.stem] = "(invalid YAML)"
    return out


@dataclass
class ParamSpec:
    """One searched parameter: an Optuna distribution and the config field it sets."""

    name: str
    field: str
    type: str = "float"                     # float | int | categorical
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: list[Any] | None = None
    per: str | None = None                  # the sampled value is a multiple of this config field
    help: str = ""

    def distribution(self):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.type == "categorical":
            return CategoricalDistribution(list(self.choices or []))
        if self.type == "int":
            return IntDistribution(int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return FloatDistribution(float(self.low), float(self.high), step=self.step, log=self.log)

    def config_value(self, value: Any, base: dict[str, Any]) -> Any:
        """The value written into `field` for a sampled `value` (`base`: the resolved config as a dict)."""
        if self.per is None:
            return value
        unit = get_path(base, self.per)
        scaled = float(value) * float(unit)
        return max(1, int(round(scaled))) if isinstance(get_path(base, self.field), int) else scaled

    def describe(self) -> str:
        if self.type == "categorical":
            rng = "{" + ", ".join(map(str, self.choices or [])) + "}"
        else:
            rng = f"[{self.low:g}, {self.high:g}]" + (f" step {self.step:g}" if self.step else "") + \
                (" log" if self.log else "")
        unit = f" × {self.per}" if self.per else ""
        return f"{self.name} -> {self.field} = {rng}{unit}"


@dataclass
class SweepSpec:
    """A definition resolved for one scale (the scale's section merged over the top level)."""

    name: str
    path: Path
    scale: str
    description: str
    method: str
    trials: int
    parallel: int
    metric: str
    direction: str
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    params: list[ParamSpec]
    grid: dict[str, list[Any]]
    set: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)   # the file's own content (stored with the sweep)

    def distributions(self) -> dict[str, Any]:
        return {p.name: p.distribution() for p in self.params}

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid.values()) if self.grid else 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "scale": self.scale, "description": self.description,
                "method": self.method, "trials": self.trials, "parallel": self.parallel, "metric": self.metric,
                "direction": self.direction, "sampler": self.sampler, "pruner": self.pruner,
                "params": [p.__dict__ for p in self.params], "grid": self.grid, "set": self.set, "raw": self.raw}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SweepSpec":
        d = dict(d)
        d["path"] = Path(d["path"])
        d["params"] = [ParamSpec(**p) for p in d["params"]]
        return cls(**d)


def get_path(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


def resolve_path(name: str) -> Path:
    """A sweep name (sweeps/NAME.yaml) or a path to a YAML file."""
    p = Path(name).expanduser()
    if name.endswith((".yaml", ".yml")) or os.sep in name:
        if not p.is_file():
            raise ConfigError(f"sweep file {name} does not exist; pass a sweep name ({_valid()}) or a YAML file")
        return p
    cand = sweeps_dir() / f"{name}.yaml"
    if not cand.is_file():
        raise ConfigError(f"unknown sweep '{name}'; valid sweeps: {_valid()} (or a path to a sweep YAML file)")
    return cand


def _valid() -> str:
    names = list(list_sweeps())
    return ", ".join(names) if names else f"none in {sweeps_dir()}"


def load_sweep(name: str, scale: str) -> SweepSpec:
    """Read and check a definition for one scale (schema-level checks; `check_against_config` does the rest)."""
    path = resolve_path(name)
    sname = path.stem
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ConfigError(f"{where}: invalid YAML ({getattr(err, 'problem', err)}); fix the sweep file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep file {path} must be a mapping (keys: {', '.join(sorted(TOP_KEYS))})")
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise ConfigError(f"sweep {sname}: unknown key '{unknown[0]}'; valid keys: {', '.join(sorted(TOP_KEYS))}")
    scales = raw.get("scales") or {}
    if not isinstance(scales, dict):
        raise ConfigError(f"sweep {sname}: 'scales' must map a scale name to its settings")
    scales = {str(k): v for k, v in scales.items()}
    if scales and scale not in scales:
        raise ConfigError(f"sweep {sname} has no settings for scale '{scale}'; defined: {', '.join(scales)} "
                          f"(add a scales.{scale} section to {path})")
    sec = scales.get(scale) or {}
    if not isinstance(sec, dict):
        raise ConfigError(f"sweep {sname}: scales.{scale} must be a mapping")
    bad = sorted(set(sec) - SCALE_KEYS)
    if bad:
        raise ConfigError(f"sweep {sname}: unknown key 'scales.{scale}.{bad[0]}'; valid: {', '.join(sorted(SCALE_KEYS))}")
    top = {k: v for k, v in raw.items() if k != "scales"}
    merged = deep_merge(top, sec, replace=frozenset({"grid"}))

    obj = merged.get("objective") or {}
    metric, direction = obj.get("metric"), obj.get("direction", "maximize")
    if not metric or not isinstance(metric, str):
        raise ConfigError(f"sweep {sname}: objective.metric is missing; e.g. objective: {{metric: eval/tiny-ood/avg}}")
    if direction not in DIRECTIONS:
        raise ConfigError(f"sweep {sname}: objective.direction '{direction}'; valid: {', '.join(DIRECTIONS)}")

    sampler = dict(merged.get("sampler") or {"name": "tpe"})
    sampler.setdefault("name", "tpe")
    if sampler["name"] not in SAMPLERS:
        raise ConfigError(f"sweep {sname}: sampler '{sampler['name']}'; valid: {', '.join(SAMPLERS)}")
    pruner = dict(merged.get("pruner") or {"name": "none"})
    pruner.setdefault("name", "median")
    if pruner["name"] not in PRUNERS:
        raise ConfigError(f"sweep {sname}: pruner '{pruner['name']}'; valid: {', '.join(PRUNERS)}")

    space = merged.get("space") or {}
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"sweep {sname}: 'space' must map parameter names to ranges (none given)")
    params = [_param(sname, pname, p) for pname, p in space.items()]

    grid = merged.get("grid") or {}
    if sampler["name"] == "grid":
        missing = [p.name for p in params if p.name not in grid]
        if missing:
            raise ConfigError(f"sweep {sname}: sampler grid needs grid values for every parameter; missing: "
                              f"{', '.join(missing)} (add grid.{missing[0]}: [...])")
    for gname, values in grid.items():
        if gname not in space:
            raise ConfigError(f"sweep {sname}: grid.{gname} is not a parameter of space ({', '.join(space)})")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"sweep {sname}: grid.{gname} is empty; list at least one value")
        p = next(x for x in params if x.name == gname)
        for v in values:
            if p.type == "categorical":
                if v not in (p.choices or []):
                    raise ConfigError(f"sweep {sname}: grid.{gname} value {v!r} is not one of its choices")
            elif not (isinstance(v, (int, float)) and p.low <= v <= p.high):
                raise ConfigError(f"sweep {sname}: grid.{gname} value {v!r} is outside its range "
                                  f"[{p.low:g}, {p.high:g}]")

    trials = merged.get("trials", 10)
    parallel = merged.get("parallel", 1)
    for key, v in (("trials", trials), ("parallel", parallel)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"sweep {sname}: {key} must be a positive integer (got {v!r})")
    sets = merged.get("set") or []
    if not isinstance(sets, list) or not all(isinstance(s, str) and "=" in s for s in sets):
        raise ConfigError(f"sweep {sname}: 'set' must be a list of key=value config overrides")
    method = merged.get("method")
    if method is not None and not isinstance(method, str):
        raise ConfigError(f"sweep {sname}: method must be a method name (see `zppo ls methods`)")
    return SweepSpec(name=sname, path=path.resolve(), scale=scale, description=str(merged.get("description", "")),
                     method=method, trials=trials, parallel=parallel, metric=metric, direction=direction,
                     sampler=sampler, pruner=pruner, params=params, grid=grid, set=list(sets), raw=raw)


def _param(sname: str, pname: str, p: Any) -> ParamSpec:
    where = f"sweep {sname}: space.{pname}"
    if not isinstance(p, dict):
        raise ConfigError(f"{where} must be a mapping with field and low/high (or choices)")
    bad = sorted(set(p) - PARAM_KEYS)
    if bad:
        raise ConfigError(f"{where}: unknown key '{bad[0]}'; valid: {', '.join(sorted(PARAM_KEYS))}")
    if "field" not in p:
        raise ConfigError(f"{where}: 'field' is missing (the config field it sets, e.g. zppo.tau)")
    check_field(str(p["field"]), where)
    if p.get("per") is not None:
        check_field(str(p["per"]), f"{where}.per")
    kind = p.get("type", "categorical" if "choices" in p else "float")
    if kind not in ("float", "int", "categorical"):
        raise ConfigError(f"{where}: type '{kind}'; valid: float, int, categorical")
    spec = ParamSpec(name=pname, field=str(p["field"]), type=kind, low=p.get("low"), high=p.get("high"),
                     step=p.get("step"), log=bool(p.get("log", False)), choices=p.get("choices"),
                     per=p.get("per"), help=str(p.get("help", "")))
    if kind == "categorical":
        if not isinstance(spec.choices, list) or not spec.choices:
            raise ConfigError(f"{where}: choices are empty; list at least one value")
        return spec
    for key in ("low", "high"):
        v = getattr(spec, key)
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise ConfigError(f"{where}: {key} must be a number (got {v!r})")
    if spec.low >= spec.high:
        raise ConfigError(f"{where}: empty range [{spec.low:g}, {spec.high:g}]; low must be below high")
    if spec.log and spec.low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0 (got {spec.low:g})")
    if spec.step is not None:
        if spec.log:
            raise ConfigError(f"{where}: step and log cannot be combined; drop one")
        if not isinstance(spec.step, (int, float)) or spec.step <= 0 or spec.step > spec.high - spec.low:
            raise ConfigError(f"{where}: step {spec.step!r} must be > 0 and fit in [{spec.low:g}, {spec.high:g}]")
    if kind == "int" and not all(float(v).is_integer() for v in (spec.low, spec.high)):
        raise ConfigError(f"{where}: an int range needs integer low/high")
    return spec


def check_against_config(spec: SweepSpec, base_cfg, user_sets: list[str], files: list | tuple = ()) -> None:
    """Checks that need the resolved base config: swept fields not pinned by --set, every range end, choice and
    grid value valid (schema and method rules, as a trial would load it), and an objective some step reports."""
    from zppo_core.config import load_config, parse_overrides

    pinned = flat_keys(parse_overrides(user_sets))
    for p in spec.params:
        if p.field in pinned:
            raise ConfigError(f"--set {p.field} conflicts with the swept parameter '{p.name}' of sweep {spec.name}; "
                              "drop the --set (or fix the value by editing the sweep's range)")
    base = base_cfg.model_dump()
    for p in spec.params:
        if p.type == "categorical":
            values = list(p.choices or [])
        else:
            values = [p.low, p.high] + [v for v in spec.grid.get(p.name, [])]
        for v in values:
            try:
                load_config(spec.scale, method=spec.method, overrides=spec.set + user_sets,
                            extra=nest(p.field, p.config_value(v, base)), files=files)
            except ConfigError as err:
                raise ConfigError(f"sweep {spec.name}: space.{p.name} value {v!r} is not valid for {p.field} "
                                  f"({err}); fix the range or choices") from None
    m = spec.metric
    if m.startswith("eval/") and m.split("/")[1] not in ("heldout",):
        suite = m.split("/")[1]
        ev = base_cfg.eval
        if not ev.every or suite not in ev.suites:
            raise ConfigError(f"sweep {spec.name}: objective {m} needs periodic eval of suite '{suite}' (eval.every "
                              f"{ev.every}, suites {ev.suites}); set eval.every/eval.suites in the sweep's scale "
                              "section or with --set")
        if ev.every > base_cfg.run.steps:
            raise ConfigError(f"sweep {spec.name}: eval.every={ev.every} > run.steps={base_cfg.run.steps}: no step "
                              "reports the objective; lower eval.every or raise run.steps")
