"""Kill-anywhere checkpoints: a training process SIGKILLed at seeded random points of its checkpoint writes (model,
tokenizer, optimizer, state, manifest, rename, `latest` pointer, pruning) is resumed each time, and the run ends
with the same metrics and weights as an uninterrupted one.

Each attempt is a real process (forked from the test, which has torch imported and the tiny pair prepared, so an
attempt starts in about a second) that kills itself with SIGKILL at the chosen point (`run_dir.fault_point`,
`$ZPPO_FAULT_INJECT`). A kill inside a file write is equivalent to one at the point before it: nothing outside the
hidden temporary directory changes until its manifest is written. Resuming is what a requeued Slurm job does:
`RunDir.resume_or_start`, then `train(resume=True)`.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import sys
import traceback

import torch
from safetensors.torch import load_file

from zppo_core.config import load_config
from zppo_core.run_dir import FAULT_ENV, RunDir
from zppo_core.train.run import train

POINTS = ["ckpt.model", "ckpt.tokenizer", "ckpt.optimizer", "ckpt.state", "ckpt.files", "ckpt.manifest",
          "ckpt.rename", "ckpt.pointer", "ckpt.prune"]
SEED = 18


def _attempt(cfg, run_dir: str, fault: str | None) -> None:
    """One attempt in a forked process: start or resume the run; killed by the fault point, or exits 0 when done."""
    try:
        if fault:
            os.environ[FAULT_ENV] = fault
        else:
            os.environ.pop(FAULT_ENV, None)
        rd = RunDir(run_dir)
        if rd.resume_or_start():
            train(None, run_dir=rd.path, resume=True)
        else:
            train(cfg, run_dir=rd.path)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


def _run_attempt(cfg, run_dir, fault) -> int:
    p = mp.get_context("fork").Process(target=_attempt, args=(cfg, str(run_dir), fault))
    p.start()
    p.join(timeout=300)
    assert p.exitcode is not None, "attempt hung"
    return p.exitcode


def _weights(run_dir):
    ptr = (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run_dir / "checkpoints" / ptr / "model" / "model.safetensors"))


def _stable(rows):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def test_sigkill_at_random_checkpoint_points_then_resume_equals_uninterrupted(prepared, test_overrides, tmp_path):
    cfg = load_config("tiny", overrides=test_overrides + [
        "run.steps=14", "run.seed=3", "run.checkpoint_every=1", "run.keep_checkpoints=1", "tracking.enabled=false",
        "run.final_eval_per_level=2"])
    ref = tmp_path / "uninterrupted"
    assert _run_attempt(cfg, ref, None) == 0

    rng = random.Random(SEED)
    plan = [(point, rng.randint(1, 2)) for point in rng.sample(POINTS, len(POINTS))]
    run = tmp_path / "killed"
    killed, resumed_from = [], []
    for point, nth in plan:
        before = RunDir(run).latest_checkpoint()
        code = _run_attempt(cfg, run, f"{point}@{nth}")
        assert code == -signal.SIGKILL, f"{point}@{nth}: exit code {code}"
        killed.append(f"{point}@{nth}")
        after = RunDir(run).latest_checkpoint()
        # every kill leaves a run that resumes: from this attempt's checkpoint or from the one before
        assert after is not None or before is None, f"{point}@{nth} left no checkpoint"
        resumed_from.append(after.name if after is not None else None)
    assert _run_attempt(cfg, run, None) == 0
    assert len(killed) == len(POINTS)

    rows_ref, rows = RunDir(ref).metrics(), RunDir(run).metrics()
    assert [r["step"] for r in rows] == list(range(1, 15))
    assert _stable(rows) == _stable(rows_ref)
    w_ref, w = _weights(ref), _weights(run)
    assert set(w) == set(w_ref) and all(torch.equal(w[k], w_ref[k]) for k in w)
    left = sorted(p.name for p in RunDir(run).checkpoints.iterdir())
    assert left == ["latest", "step_000014"], left  # no temporary or half-pruned directory left behind
    print(json.dumps({"kills": killed, "resumed_from": resumed_from}))
