"""SIGTERM / SIGINT during a local `zppo train` (a real process): the current step finishes and is checkpointed,
the process exits 130 printing the resume command, and `zppo train --resume` finishes the run from there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ZPPO = str(Path(sys.executable).with_name("zppo"))
STEPS = 8


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1",
            "PYTHONPATH": os.getcwd() + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _steps(run_dir: Path) -> list[int]:
    try:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    return [json.loads(ln)["step"] for ln in lines if ln.endswith("}")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_checkpoints_at_the_step_boundary_and_resume_finishes(sig, prepared, test_overrides, tmp_path):
    run_dir = tmp_path / "run"
    sets = [a for o in test_overrides + ["run.checkpoint_every=100", "run.final_eval_per_level=0"]
            for a in ("--set", o)]
    proc = subprocess.Popen([ZPPO, "train", "--scale", "tiny", "--steps", str(STEPS), "--run-dir", str(run_dir),
                             *sets], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    deadline = time.monotonic() + 600
    while not _steps(run_dir):  # wait for the first completed step (polling the run's file, not timing)
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 130, err
    done = _steps(run_dir)
    stop = done[-1]
    assert done == list(range(1, stop + 1)) and stop < STEPS, (done, err)
    assert f"interrupted after step {stop} of {STEPS}, checkpointed" in err and \
        f"zppo train --resume {run_dir}" in " ".join(err.split()), err
    assert "Traceback" not in err
    # checkpoint_every=100: the only checkpoint is the one the signal asked for
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == f"step_{stop:06d}"

    res = subprocess.run([ZPPO, "train", "--resume", str(run_dir)], capture_output=True, text=True, env=_env(),
                         timeout=600)
    assert res.returncode == 0, res.stderr
    assert f"at step {stop}" in " ".join(res.stderr.split()), res.stderr  # "resumed RUN_DIR at step N"
    assert _steps(run_dir) == list(range(1, STEPS + 1))


def test_a_second_signal_stops_at_once_and_handlers_are_restored():
    """The first SIGTERM only asks (the step boundary checks it); the second raises KeyboardInterrupt at once (the
    usual Ctrl-C path: the last checkpoint intact, exit 130); afterwards the previous handlers are back."""
    from zppo_cli.train_cmd import _stop_on_signal

    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    said: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        with _stop_on_signal(said.append) as stop_requested:
            assert stop_requested() is False
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop_requested() is True and len(said) == 1 and said[0].startswith("SIGTERM: stopping after")
            os.kill(os.getpid(), signal.SIGINT)
            pytest.fail("the second signal did not interrupt")
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
