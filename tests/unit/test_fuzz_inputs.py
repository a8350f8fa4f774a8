"""Fuzzing user input (hypothesis): any `--set key=value` and any JSONL content yields a result or one clear error
(exit code 2 / DataError), never a traceback."""

from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from zppo_cli.app import app
from zppo_core.config import ConfigError, flat_params, load_config
from zppo_core.tasks.jsonl_data import DataError, read_jsonl_questions

runner = CliRunner()
KEYS = sorted(flat_params(load_config("tiny")))
SNIPPETS = ["null", "true", "-1", "0", "1e-5", "1e999", "nan", "[]", "[1, 2]", "{}", "{1: 0.5}", "{a: b}", "'x'",
            "[[[", "{{ x }}", "!!python/object:os.system ls", "~", "- a", ": b", "&a [*a]", "\x00", "é", "1_000"]

keys = st.one_of(st.sampled_from(KEYS),
                 st.sampled_from(KEYS).map(lambda k: k + ".x"),
                 st.text(string.ascii_letters + "._-", min_size=0, max_size=12))
values = st.one_of(st.sampled_from(SNIPPETS), st.text(max_size=20),
                   st.integers(-10**12, 10**12).map(str), st.floats(allow_nan=True).map(repr))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(keys, values), min_size=1, max_size=3))
def test_any_set_value_is_a_config_or_one_line_exit_2(items):
    args = [a for k, v in items for a in ("--set", f"{k}={v}")]
    r = runner.invoke(app, ["train", "--scale", "tiny", "--dry-run", *args], terminal_width=200)
    assert r.exit_code in (0, 2), (items, r.output, r.exception)
    assert r.exception is None or isinstance(r.exception, SystemExit), (items, r.exception)
    if r.exit_code == 2:
        assert "Traceback" not in r.output and r.output.strip().startswith("error"), (items, r.output)
        if not any(c in v for _, v in items for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"):
            assert len(r.output.strip().splitlines()) == 1, (items, r.output)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=6)
lines = st.one_of(json_values.map(json.dumps),
                  st.dictionaries(st.sampled_from(["question", "prompt", "answer", "id", "x"]), json_values,
                                  max_size=4).map(json.dumps),
                  st.text(max_size=30).filter(lambda s: "\n" not in s and "\r" not in s))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(lines, max_size=5))
def test_any_jsonl_file_reads_or_is_one_data_error(tmp_path, rows):
    p = tmp_path / "data.jsonl"
    p.write_text("\n".join(rows) + "\n", encoding="utf-8")
    try:
        qs = read_jsonl_questions(p)
    except DataError as err:
        msg = str(err)
        assert "\n" not in msg and str(p) in msg
    else:
        assert qs and all(isinstance(q.prompt, str) and isinstance(q.answer, str) for q in qs)


def test_config_error_is_what_bad_values_raise():
    try:
        load_config("tiny", overrides=["optim.lr=abc"])
    except ConfigError as err:
        assert "optim.lr" in str(err)
    else:
        raise AssertionError("optim.lr=abc was accepted")
