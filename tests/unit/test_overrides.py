"""The one `key=value` parser, deep merge and schema walker (config `--set`, Slurm `--slurm`, sweep definitions)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zppo_core.config import ConfigError, check_field, parse_overrides
from zppo_core.config.overrides import (
    OverrideError,
    deep_merge,
    flat_keys,
    nest,
    parse_overrides as parse,
    parse_value,
    walk_schema,
)
from zppo_core.config.schema import AlgoConfig, ZPPOConfig


def test_values_parse_as_yaml_with_number_like_strings_as_numbers():
    assert parse_value("1e-5") == 1e-5 and parse_value("3") == 3 and parse_value("null") is None
    assert parse_value("[1, 2]") == [1, 2] and parse_value("{1: 0.5}") == {1: 0.5} and parse_value("") == ""
    assert parse_value("1e-5", numeric=False) == "1e-5" and parse_value("abc") == "abc"
    assert parse_value("[unclosed") == "[unclosed"  # not YAML: kept as the text


def test_dotted_and_flat_keys():
    assert parse(["a.b=1", "a.c=x", "d=2"]) == {"a": {"b": 1, "c": "x"}, "d": 2}
    assert parse(["a.b=1"], dotted=False) == {"a.b": 1}
    assert parse(["t=1e3", "s=1e3"], numeric=lambda k: k == "t") == {"t": 1000.0, "s": "1e3"}


@pytest.mark.parametrize("items, fragment", [
    (["novalue"], "'novalue' is not key=value; write e.g. --set optim.lr=1e-5"),
    (["=3"], "'=3' is not key=value"),
    (["a=1", "a.b=2"], "'a.b=2' conflicts with an earlier override of 'a'"),
])
def test_malformed_items(items, fragment):
    with pytest.raises(OverrideError, match=fragment.replace(".", r"\.").replace("'", "'")):
        parse(items)


def test_config_and_slurm_wrap_the_error_in_their_own_words():
    with pytest.raises(ConfigError, match=r"^override 'x' is not key=value; write e\.g\. --set optim\.lr=1e-5$"):
        parse_overrides(["x"])
    from zppo_cli.orchestration.profiles import parse_overrides as slurm

    with pytest.raises(ConfigError, match=r"^--slurm 'x' is not key=value; write e\.g\. --slurm time_min=60$"):
        slurm(["x"])
    assert slurm(["mem_gb=1e2", "partition=1e2"]) == {"mem_gb": 100.0, "partition": "1e2"}


def test_deep_merge_replaces_named_keys_whole_and_copies():
    base = {"data": {"levels": {1: 0.5, 2: 0.5}, "families": ["modsum"]}, "run": {"steps": 3}}
    extra = {"data": {"levels": {3: 1.0}}, "run": {"seed": 1}}
    out = deep_merge(base, extra)
    assert out == {"data": {"levels": {3: 1.0}, "families": ["modsum"]}, "run": {"steps": 3, "seed": 1}}
    out["data"]["families"].append("x")
    assert base["data"]["families"] == ["modsum"]  # inputs are never modified or shared
    assert deep_merge({"grid": {"a": [1]}}, {"grid": {"b": [2]}}, replace=frozenset({"grid"})) == {"grid": {"b": [2]}}


trees = st.recursive(st.integers() | st.text(max_size=3),
                     lambda kids: st.dictionaries(st.sampled_from("abcd"), kids, max_size=3), max_leaves=8)
dicts = st.dictionaries(st.sampled_from("abcd"), trees, max_size=4)


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dicts, dicts)
def test_merge_properties(a, b):
    assert deep_merge(a, {}) == a and deep_merge({}, a) == a and deep_merge(a, a) == a
    m = deep_merge(a, b)
    assert flat_keys(m) >= flat_keys(b) and set(m) == set(a) | set(b)
    for k, v in b.items():
        if not (isinstance(v, dict) and isinstance(a.get(k), dict)):
            assert m[k] == v  # a non-dict (or new) value of the override wins as it is


@settings(deadline=None)
@given(st.lists(st.sampled_from("abc"), min_size=1, max_size=4), st.integers())
def test_nest_and_flat_keys_round_trip(parts, value):
    dotted = ".".join(parts)
    assert parse([f"{dotted}={value}"]) == nest(dotted, value)
    assert dotted in flat_keys(nest(dotted, value))


def test_schema_walker_and_check_field():
    assert walk_schema("algo", ZPPOConfig) == (AlgoConfig, [])
    node, rest = walk_schema("algo.n_new.x", ZPPOConfig)
    assert rest == ["x"]
    assert walk_schema("algo.nope", ZPPOConfig) == (AlgoConfig, ["nope"])
    check_field("zppo.tau", "sweep s")
    with pytest.raises(ConfigError, match=r"sweep s: 'algo.nope' is not a config field; valid keys in algo: "):
        check_field("algo.nope", "sweep s")
    with pytest.raises(ConfigError, match="is a config section, not a field"):
        check_field("zppo", "sweep s")
