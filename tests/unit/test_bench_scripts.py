"""bench/rollout_paths.py and bench/method_step.py run end to end at small sizes (so CI proves they are not
broken); rollout_paths also checks that every decode path samples the same tokens on the same seed;
prepare_time's --set reaches the new recipe only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rollout_paths_runs_and_all_paths_sample_the_same_tokens(tmp_path):
    out = tmp_path / "paths.json"
    sets = ["algo.n_new=2", "rollout.group_size=2", "rollout.max_new_tokens=6"]
    assert _bench("rollout_paths").main(["--rounds", "3", "--out", str(out), *sum((["--set", s] for s in sets), [])]) == 0
    r = json.loads(out.read_text())  # written only after the same-token check passed in every round
    assert set(r["paths"]) == {"generate", "model-cache", "slots"} and r["batch"] == "2 prompts x 2 x 6 tokens"
    assert r["paths"]["generate"]["cpu_ratio_vs_generate"] == 1.0
    assert all(v["median_cpu_s"] > 0 for v in r["paths"].values())


def test_method_step_pairs_grpo_and_zppo_steps(prepared, test_overrides, tmp_path):
    out = tmp_path / "method.json"
    sets = sum((["--set", s] for s in test_overrides + ["zppo.capacity=6"]), [])
    assert _bench("method_step").main(["--steps", "2", "--warmup", "0", "--out", str(out), *sets]) == 0
    r = json.loads(out.read_text())
    for side in ("grpo", "zppo"):
        recs = r["records"][side]
        assert len(recs) == 2 and all(x["timed"] for x in recs)
        for x in recs:  # the phases the table shows add up to the step the trainer timed
            assert sum(x[f"perf/{p}_time_s"] for p in _bench("method_step").PHASES) == pytest.approx(
                x["perf/step_time_s"], rel=1e-6)
    assert all(x["perf/teacher_rollout_time_s"] == 0 for x in r["records"]["grpo"])
    assert all(x["rollouts"] == 4 * 4 for x in r["records"]["grpo"])  # n_new x G, no extras
    assert all(z["rollouts"] >= g["rollouts"] for z, g in zip(r["records"]["zppo"], r["records"]["grpo"]))
    assert r["paired_wall_ratio_median"] > 0 and r["paired_cpu_ratio_median"] > 0


def test_prepare_time_set_overrides_the_new_recipe_only(tmp_path):
    pt = _bench("prepare_time")
    args = pt.parse_args(["--set", "prepare.teacher_steps=7", "--set", "prepare.sft_attention=sdpa"])
    new = pt.config("tiny", tmp_path, legacy=False, overrides=args.overrides)
    old = pt.config("tiny", tmp_path, legacy=True, overrides=args.overrides)
    assert (new.prepare.teacher_steps, new.prepare.sft_attention) == (7, "sdpa")
    assert old.prepare.teacher_steps == 250 and new.prepare.cache_dir == old.prepare.cache_dir == str(tmp_path)
