"""Config files and presets as layers: order, sources (file:line), user/cluster presets, ${VAR}, bad files."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zppo_core.config import ConfigError, apply_overrides, dump_config, flat_params, load_config, resolve_config
from zppo_core.config.sources import expand, find_presets, looks_secret, read_layer


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def presets_env(tmp_path, monkeypatch):
    """Empty user-preset locations: $ZPPO_PRESETS unset, a private XDG config home."""
    monkeypatch.delenv("ZPPO_PRESETS", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


# ---------------------------------------------------------------------------------------------- layering
FILE1 = """\
method: grpo_buffer
optim:
  lr: 1.0e-4
run:
  steps: 50
  seed: 4
algo:
  n_new: 8
"""
FILE2 = """\
run:
  steps: 30
algo:
  eps_high: 0.3
"""


def test_layering_preset_then_files_in_order_then_set(tmp_path, presets_env):
    f1, f2 = write(tmp_path / "f1.yaml", FILE1), write(tmp_path / "f2.yaml", FILE2)
    res = resolve_config("tiny", files=[f1, f2], overrides=["run.seed=9"])
    cfg = res.cfg
    # hand-worked: preset tiny (steps 120, lr 2e-5, max_new_tokens 40) < f1 < f2 < --set
    assert cfg.method == "grpo_buffer" and cfg.optim.lr == 1e-4 and cfg.algo.n_new == 8   # f1 only
    assert cfg.run.steps == 30 and cfg.algo.eps_high == 0.3                                # f2 over f1
    assert cfg.run.seed == 9                                                                # --set over f1
    assert cfg.rollout.max_new_tokens == 40 and cfg.run.checkpoint_every == 25              # preset tiny
    assert cfg.algo.adv_eps == 1e-6                                                         # schema default
    src = res.sources()
    assert src["optim.lr"] == f"{f1}:3" and src["algo.n_new"] == f"{f1}:8" and src["method"] == f"{f1}:1"
    assert src["run.steps"] == f"{f2}:2" and src["algo.eps_high"] == f"{f2}:4"
    assert src["run.seed"] == "--set run.seed=9"
    assert src["rollout.max_new_tokens"] == "preset tiny" and src["algo.adv_eps"] == "default"
    assert src["scale"] == "--scale tiny"
    assert res.summary() == f"preset tiny < {f1} < {f2} < --set"
    # the other order: f1 wins where both set a value
    swapped = load_config("tiny", files=[f2, f1])
    assert swapped.run.steps == 50 and swapped.algo.eps_high == 0.3


def test_a_file_names_its_preset_and_the_command_line_wins(tmp_path, presets_env):
    f = write(tmp_path / "x.yaml", "description: paper scale\nscale: 2b\nrun:\n  steps: 3\n")
    res = resolve_config(files=[f])
    assert res.cfg.scale == "2b" and res.cfg.model.student == "Qwen/Qwen3.5-2B" and res.cfg.run.steps == 3
    assert res.sources()["scale"] == f"{f}:2"
    tiny = resolve_config("tiny", files=[f])  # --scale over the file's scale:
    assert tiny.cfg.scale == "tiny" and tiny.cfg.model.student == "tiny" and tiny.cfg.run.steps == 3
    later = write(tmp_path / "y.yaml", "scale: 4b\n")
    assert load_config(files=[f, later]).model.student == "Qwen/Qwen3.5-4B"  # the last file naming one
    assert load_config(files=[write(tmp_path / "z.yaml", "run: {seed: 1}\n")]).scale == "tiny"  # default
    assert load_config(method="zppo", files=[write(tmp_path / "m.yaml", "method: grpo\n")]).method == "zppo"


def test_flags_win_over_set_and_are_named(tmp_path, presets_env):
    res = resolve_config("tiny", overrides=["run.steps=5"], extra=[("--steps", {"run": {"steps": 7}})])
    assert res.cfg.run.steps == 7 and res.sources()["run.steps"] == "--steps"


def test_empty_sections_and_yaml_merge_keys(tmp_path, presets_env):
    g = write(tmp_path / "g.yaml", "algo:\nrun:\n  steps: 4\n")  # `algo:` with nothing under it: no override
    cfg = load_config("tiny", files=[g])
    assert cfg.algo.n_new == 16 and cfg.run.steps == 4
    m = write(tmp_path / "m.yaml", "run:\n  <<: {steps: 4, seed: 2}\n  seed: 3\n")
    cfg = load_config("tiny", files=[m])
    assert (cfg.run.steps, cfg.run.seed) == (4, 3)


# ---------------------------------------------------------------------------------------------- property
FIELDS = {"run.seed": st.integers(0, 99), "run.steps": st.integers(1, 500), "optim.lr": st.sampled_from([1e-5, 3e-4]),
          "zppo.tau": st.sampled_from([0.25, 0.5, 0.75]), "eval.limit": st.integers(1, 9)}
layer_values = st.dictionaries(st.sampled_from(sorted(FIELDS)), st.just(None), max_size=len(FIELDS)).flatmap(
    lambda d: st.fixed_dictionaries({k: FIELDS[k] for k in d}))


@settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
@given(files=st.lists(layer_values, max_size=3), sets=layer_values)
def test_layering_property_last_layer_that_sets_a_field_wins(files, sets):
    """For any files and --set items over a few fields: each field has the value of the last layer that set it
    (else the preset's), and its source names that layer."""
    base = resolve_config("tiny")
    with tempfile.TemporaryDirectory() as d:
        paths = []
        for i, values in enumerate(files):
            tree: dict = {}
            for key, v in values.items():
                section, leaf = key.split(".")
                tree.setdefault(section, {})[leaf] = v
            paths.append(write(Path(d) / f"f{i}.yaml", yaml.safe_dump(tree)))
        res = resolve_config("tiny", files=paths, overrides=[f"{k}={v}" for k, v in sets.items()])
    for key in FIELDS:
        section, leaf = key.split(".")
        expected, source = getattr(getattr(base.cfg, section), leaf), base.sources()[key]
        for path, values in zip(paths, files):
            if key in values:
                expected, source = values[key], f"{path}:"
        if key in sets:
            expected, source = sets[key], f"--set {key}={sets[key]}"
        assert getattr(getattr(res.cfg, section), leaf) == expected
        assert res.sources()[key].startswith(source) and (source.endswith(":") or res.sources()[key] == source)


# ---------------------------------------------------------------------------------------------- user presets
def test_user_and_cluster_presets_are_found_and_chain_to_a_builtin(tmp_path, presets_env, monkeypatch):
    cluster, mine = tmp_path / "cluster", tmp_path / "xdg" / "zppo" / "presets"
    write(cluster / "2b-hpc.yaml", "description: 2b on our cluster\nscale: 2b\ndata:\n  path: /shared/train.jsonl\n")
    write(mine / "2b-hpc-short.yaml", "scale: 2b-hpc\nrun:\n  steps: 20\n")
    write(mine / "2b-hpc.yml", "scale: tiny\n")  # hidden by the cluster directory (first wins, like PATH)
    other = write(tmp_path / "more" / "quick.yaml", "scale: tiny\nrun: {steps: 2}\n")
    monkeypatch.setenv("ZPPO_PRESETS", f"{cluster}:{other.parent}")
    presets = find_presets()
    assert list(presets)[:7] == ["tiny", "tiny-hard", "tiny-vl", "0.8b", "2b", "4b", "9b"]
    assert {n: p.path for n, p in presets.items() if not p.builtin} == {
        "2b-hpc": cluster / "2b-hpc.yaml", "quick": other, "2b-hpc-short": mine / "2b-hpc-short.yaml"}
    res = resolve_config("2b-hpc-short")
    assert res.cfg.scale == "2b"  # the built-in root: Slurm defaults and paper numbers follow it
    assert res.cfg.data.path == "/shared/train.jsonl" and res.cfg.run.steps == 20 and res.cfg.algo.n_new == 384
    src = res.sources()
    assert src["data.path"] == f"preset 2b-hpc ({cluster / '2b-hpc.yaml'}:4)"
    assert src["run.steps"] == f"preset 2b-hpc-short ({mine / '2b-hpc-short.yaml'}:3)"
    assert src["algo.n_new"] == "preset 2b" and src["scale"] == "--scale 2b-hpc-short"
    # a config file may name a user preset as its base too
    f = write(tmp_path / "exp.yaml", "scale: quick\noptim: {lr: 3.0e-5}\n")
    assert load_config(files=[f]).run.steps == 2
    # a Slurm job gets scale + layers and resolves the same config without the preset directories
    portable = res.portable()
    monkeypatch.delenv("ZPPO_PRESETS")
    (mine / "2b-hpc-short.yaml").unlink()
    assert portable["scale"] == "2b" and load_config(portable["scale"], files=portable["files"]) == res.cfg


@pytest.mark.parametrize("files, env, fragments", [
    ({"user/tiny.yaml": "scale: tiny\n"}, "user", ["user/tiny.yaml has the name of the built-in preset 'tiny'",
                                                   "presets/tiny.yaml", "rename"]),
    ({"user/nobase.yaml": "run: {steps: 2}\n"}, "user", ["user/nobase.yaml names no base", "scale:"]),
    ({"user/a.yaml": "scale: b\n", "user/b.yaml": "scale: a\n"}, "user", ["presets a -> b -> a", "built-in"]),
    ({}, "missing-dir", ["$ZPPO_PRESETS names", "missing-dir, which is not a directory"]),
])
def test_bad_user_presets(tmp_path, presets_env, monkeypatch, files, env, fragments):
    for name, text in files.items():
        write(tmp_path / name, text)
    monkeypatch.setenv("ZPPO_PRESETS", str(tmp_path / env))
    with pytest.raises(ConfigError) as err:
        load_config(Path(next(iter(files), "x.yaml")).stem if files else "tiny")
    for f in fragments:
        assert f in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_scale_lists_user_presets_and_names_the_file(tmp_path, presets_env, monkeypatch):
    write(tmp_path / "p" / "mine.yaml", "scale: tiny\n")
    monkeypatch.setenv("ZPPO_PRESETS", str(tmp_path / "p"))
    valid = r"valid scales: tiny, tiny-hard, tiny-vl, 0\.8b, 2b, 4b, 9b; user presets: mine"
    with pytest.raises(ConfigError, match=rf"^unknown scale '3b'; {valid}"):
        load_config("3b")
    f = write(tmp_path / "x.yaml", "run: {steps: 2}\nscale: 3b\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(f))}:2: unknown scale '3b'"):
        load_config(files=[f])


# ---------------------------------------------------------------------------------------------- ${VAR}
def test_environment_variables_expand_in_strings(tmp_path, presets_env, monkeypatch):
    monkeypatch.setenv("ZPPO_TEST_DATA", "/data/x")
    monkeypatch.delenv("ZPPO_TEST_UNSET", raising=False)
    f = write(tmp_path / "x.yaml", "data:\n  path: ${ZPPO_TEST_DATA}/train.jsonl\n  closer: ' $${literal} '\n"
                                   "eval:\n  data_dir: ${ZPPO_TEST_UNSET:-/bench}\n  suites: ['${ZPPO_TEST_DATA}']\n")
    cfg = load_config("tiny", files=[f])
    assert cfg.data.path == "/data/x/train.jsonl" and cfg.data.closer == " ${literal} "
    assert cfg.eval.data_dir == "/bench" and cfg.eval.suites == ["/data/x"]
    bad = write(tmp_path / "bad.yaml", "run:\n  steps: 3\ndata:\n  path: ${ZPPO_TEST_UNSET}/train.jsonl\n")
    with pytest.raises(ConfigError) as err:
        load_config("tiny", files=[bad])
    assert str(err.value) == (f"{bad}:4: environment variable ZPPO_TEST_UNSET is not set (used by data.path); "
                              "export ZPPO_TEST_UNSET=... or write ${ZPPO_TEST_UNSET:-default}")
    odd = write(tmp_path / "odd.yaml", "data:\n  path: ${1X}\n")
    with pytest.raises(ConfigError, match=r"odd.yaml:2: '\$\{1X\}' in data.path is not a variable reference"):
        load_config("tiny", files=[odd])


def test_secrets_stay_out_of_the_config(tmp_path, presets_env, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    f = write(tmp_path / "x.yaml", "tracking:\n  uri: https://u:${HF_TOKEN}@mlflow.example\n")
    with pytest.raises(ConfigError) as err:
        load_config("tiny", files=[f])
    msg = str(err.value)
    assert msg.startswith(f"{f}:2: ${{HF_TOKEN}} in tracking.uri looks like a secret") and "_env" in msg
    assert "hf_secret" not in msg
    # a field whose name ends in _env stores the variable's name, never its value
    monkeypatch.setenv("TEACHER_API_KEY", "sk-secret-123")
    g = write(tmp_path / "served.yaml", "model:\n  teacher_endpoint:\n    url: http://teacher:8000/v1\n"
                                        "    api_key_env: ${TEACHER_API_KEY}\n")
    cfg = load_config("tiny", files=[g])
    assert cfg.model.teacher_endpoint.api_key_env == "TEACHER_API_KEY"
    assert "sk-secret" not in dump_config(cfg) and "sk-secret" not in str(flat_params(cfg))
    assert expand("${TEACHER_API_KEY}", "model.teacher_endpoint.api_key_env", "x.yaml:3",
                  {"TEACHER_API_KEY": "sk-123"}) == "TEACHER_API_KEY"
    assert expand("${DATA}/a", "data.path", "x.yaml:3", {"DATA": "/d"}) == "/d/a"


@pytest.mark.parametrize("name, secret", [("OPENAI_API_KEY", True), ("HF_TOKEN", True), ("PGPASSWORD", True),
                                          ("MY_SECRET", True), ("AWS_SECRET_ACCESS_KEY", True), ("DATA", False),
                                          ("SSH_KEY_PATH", False), ("HF_TOKEN_FILE", False), ("MONKEY", False),
                                          ("SCRATCH", False), ("KEYBOARD_LAYOUT", False)])
def test_secret_names(name, secret):
    assert looks_secret(name) is secret


# ---------------------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize("text, fragments", [
    ("run:\n  steps: 3\nalgo:\n  n_neww: 8\n", ["x.yaml:4: unknown config key 'algo.n_neww'", "valid keys in algo:",
                                                "n_new", "eps_high"]),
    ("runs:\n  steps: 3\n", ["x.yaml:1: unknown config key 'runs'", "valid keys:", "run, scale"]),
    ("run:\n  steps: many\n", ["x.yaml:2: config field 'run.steps'", "valid integer", "got 'many'"]),
    ("rollout:\n  engine: sglang\n", ["x.yaml:2: config field 'rollout.engine'", "'transformers' or 'vllm'"]),
    ("optim:\n  betas: [0.9, x]\n", ["x.yaml:2: config field 'optim.betas.1'", "valid number"]),
    ("run:\n  steps: [1\n", ["x.yaml:3: invalid YAML", "fix the file"]),
    ("run:\n  steps: 3\n  steps: 4\n", ["x.yaml:3: key 'run.steps' appears twice (first on line 2)"]),
    ("- run\n- algo\n", ["x.yaml:1: a config file is a mapping of sections", "not a list"]),
    ("algo:\n  dual_clip: 0.5\n", ["config section 'algo': dual_clip=0.5 must be > 1",
                                   "algo.dual_clip: ", "x.yaml:2"]),
    ("algo:\n  n_new: 3\nrollout:\n  group_size: 3\n", ["cannot be split", "algo.n_new: ", "x.yaml:2",
                                                        "rollout.group_size: ", "x.yaml:4"]),
])
def test_bad_files_name_file_and_line(tmp_path, presets_env, text, fragments):
    f = write(tmp_path / "x.yaml", text)
    with pytest.raises(ConfigError) as err:
        load_config("tiny", files=[f])
    msg = str(err.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, msg


def test_missing_file_is_one_line(tmp_path, presets_env):
    with pytest.raises(ConfigError, match=r"^config file .*nope.yaml does not exist; check the path$"):
        load_config("tiny", files=[tmp_path / "nope.yaml"])
    with pytest.raises(ConfigError, match="is a directory"):
        load_config("tiny", files=[tmp_path])


def test_set_errors_name_the_item(presets_env):
    with pytest.raises(ConfigError, match=r"^--set algo\.foo=1: unknown config key 'algo\.foo'; valid keys in algo"):
        load_config("tiny", overrides=["algo.foo=1"])
    with pytest.raises(ConfigError, match=r"^--set optim\.lr=fast: config field 'optim\.lr'.*fix: --set optim\.lr="):
        load_config("tiny", overrides=["optim.lr=fast"])
    with pytest.raises(ConfigError, match=r"unknown method 'ppo'.*\(method: --method ppo\)"):
        load_config("tiny", method="ppo")


# ---------------------------------------------------------------------------------------------- on a run
def test_files_apply_over_a_finished_runs_config(tmp_path, presets_env):
    run_cfg = load_config("tiny", overrides=["run.steps=7", "eval.limit=3"])
    f = write(tmp_path / "eval.yaml", "scale: 2b\neval:\n  limit: 5\n  samples: 2\n")
    cfg = apply_overrides(run_cfg, ["eval.samples=4"], files=[f])
    assert cfg.scale == "tiny" and cfg.run.steps == 7  # the run's config is the base; scale: does not apply
    assert cfg.eval.limit == 5 and cfg.eval.samples == 4
    assert apply_overrides(run_cfg, []) is run_cfg
