"""`zppo train --scale tiny --set rollout.engine=vllm --steps 10` runs to the end, and its statistics match the
transformers engine's on the same prepared tiny pair, seed and questions.

The test: both runs (GRPO, 16 questions x 8 rollouts per step, 10 steps) draw the same questions at each step (same
seed, same data stream), so per step d_s = stat_vllm(s) - stat_transformers(s) pairs like with like. For the
plain accuracy and the mean response length, |mean_s d_s| must stay below max(4.5 standard errors of that mean,
a small floor): a t-test with 9 degrees of freedom at a false-alarm rate of ~0.15 %, with a floor (3 accuracy
points, 1 token) for steps that happen to agree closely. A broken engine (ignored EOS: every response hits the
length cap; wrong prompts: accuracy 0; stale weights) moves these by many standard errors. Both runs' PPO ratios
stay near 1 (the engine's log-probs are the trainer's) and responses end on EOS before the length cap on average.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

import pytest

pytestmark = pytest.mark.vllm

STEPS = 10


def _train(engine: str, run_dir, overrides) -> list[dict]:
    args = [sys.executable, "-m", "zppo_cli.app", "train", "--scale", "tiny", "--steps", str(STEPS),
            "--run-dir", str(run_dir), "--set", f"rollout.engine={engine}"]
    for o in overrides:
        args += ["--set", o]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(args, capture_output=True, text=True, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert (run_dir / "checkpoints").is_dir()
    return rows


def _paired(a: list[float], b: list[float]) -> tuple[float, float]:
    d = [x - y for x, y in zip(a, b)]
    return statistics.mean(d), statistics.stdev(d) / len(d) ** 0.5


def test_vllm_training_run_matches_the_transformers_engine(prepared, test_overrides, tmp_path):
    overrides = test_overrides + ["algo.n_new=16", "rollout.group_size=8", "algo.updates_per_step=2",
                                  "tracking.enabled=false", "run.final_eval_per_level=0", "eval.every=0",
                                  "run.checkpoint_every=5"]
    v = _train("vllm", tmp_path / "vllm", overrides)
    t = _train("transformers", tmp_path / "hf", overrides)
    report = []
    for key, floor in (("train/accuracy", 3.0), ("train/response_len", 1.0)):
        mean_d, se = _paired([r[key] for r in v], [r[key] for r in t])
        report.append(f"{key}: vllm {statistics.mean(r[key] for r in v):.3f} vs transformers "
                      f"{statistics.mean(r[key] for r in t):.3f} (paired diff {mean_d:+.3f} +- {se:.3f})")
        assert abs(mean_d) <= max(4.5 * se, floor), report[-1]
    print("; ".join(report))
    for rows in (v, t):
        assert all(abs(r["train/ratio_mean"] - 1.0) < 0.05 for r in rows)
        assert all(0 < r["train/response_len"] < 24 for r in rows)  # EOS ends responses before the 24-token cap
    speed = statistics.median(r["perf/rollout_tokens_per_s"] for r in v[1:]) / statistics.median(
        r["perf/rollout_tokens_per_s"] for r in t[1:])
    print(f"rollout tokens/s, vllm / transformers (median over steps 2-{STEPS}): {speed:.2f}")


def test_a_tiny_head_dim_vllm_cannot_run_is_refused_up_front(tmp_path):
    from typer.testing import CliRunner

    from zppo_cli.app import app

    rd = tmp_path / "r"
    r = CliRunner().invoke(app, ["train", "--steps", "1", "--run-dir", str(rd), "--set", "rollout.engine=vllm",
                                 "--set", "model.tiny_student.head_dim=16"], terminal_width=400)
    assert r.exit_code == 2, r.output
    assert "model.tiny_student.head_dim=16: vLLM's CPU attention takes head_dim 32, 64" in r.output
    assert not rd.exists()
