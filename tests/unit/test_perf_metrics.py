"""perf/* bookkeeping: the phase timer on a fake clock, and the peak-RSS reading's unit."""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from zppo_core.train import perf


def test_phase_timer_sums_entries_per_phase_and_resets(monkeypatch):
    ticks = iter([0.0, 1.5, 10.0, 10.25, 20.0, 23.0, 30.0, 34.0])
    monkeypatch.setattr(perf.time, "perf_counter", lambda: next(ticks))
    t = perf.PhaseTimer()
    with t("teacher_rollout"):
        pass
    with t("compression"):
        pass
    with t("teacher_rollout"):  # a second entry adds up
        pass
    assert dict(t.seconds) == {"teacher_rollout": 4.5, "compression": 0.25}
    with pytest.raises(ValueError):  # a phase that raises still counts its time
        with t("compression"):
            raise ValueError
    assert t.seconds["compression"] == 4.25
    t.reset()
    assert dict(t.seconds) == {}


def test_peak_rss_is_in_mib_and_grows_with_a_touched_buffer():
    """In a fresh process (the peak is the process's lifetime maximum, so earlier tests could hide the growth)."""
    code = (
        "import torch\n"
        "from zppo_core.train import perf\n"
        "before = perf.peak_rss_mb()\n"
        "x = torch.ones(64 * 2**20, dtype=torch.float32)  # 256 MiB, every page written\n"
        "print(before, perf.peak_rss_mb(), perf.memory_metrics(torch.device('cpu')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout.split(maxsplit=2)
    before, after, metrics = float(out[0]), float(out[1]), ast.literal_eval(out[2])
    assert before > 10  # a python process with torch imported holds well over 10 MiB
    assert 200 <= after - before < 256 + 100, (before, after)  # MiB, not KiB or bytes
    assert set(metrics) == {"perf/peak_rss_mb"} and metrics["perf/peak_rss_mb"] >= after
