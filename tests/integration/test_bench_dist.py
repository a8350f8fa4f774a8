"""bench/gpu_fsdp.py runs: its smoke mode (a tiny Qwen3.5-shaped model, hybrid linear + full attention, on the
CPU with gloo) at 1 and 2 ranks does the same work at both world sizes and prints one table. No timing asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_fsdp_bench_smoke_runs_at_one_and_two_ranks(tmp_path):
    out = tmp_path / "gpu_fsdp.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_fsdp.py"), "--smoke",
                        "--gpus", "1,2", "--rounds", "1", "--out", str(out)], capture_output=True, text=True, env=env,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    lines = p.stdout.splitlines()
    head = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("GPUs"))
    assert [ln.split()[0] for ln in lines[head + 1 : head + 3]] == ["1", "2"]
    rows = json.loads(out.read_text())["rows"]
    assert [r["world"] for r in rows] == [1, 2]
    assert all(r["update_tok_s"] > 0 and r["rollout_tok_s"] > 0 for r in rows)
    assert rows[0]["rounds"][0]["train_tokens"] == rows[1]["rounds"][0]["train_tokens"] == 4 * 2 * 8  # same work
