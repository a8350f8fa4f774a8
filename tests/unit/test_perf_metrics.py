"""perf/* bookkeeping: the phase timer on a fake clock, and the peak-RSS reading's unit."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

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


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the current RSS from Linux's /proc")
def test_peak_rss_is_in_mib_and_grows_with_a_touched_buffer():
    """In a fresh process (the peak is the process's lifetime maximum, so earlier tests could hide the growth). The
    buffer is sized past the peak the imports left behind, so the peak must grow by 256 MiB at least."""
    code = (
        "import torch\n"
        "from zppo_core.train import perf\n"
        "current = int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS:')).split()[1]) / 1024\n"
        "before = perf.peak_rss_mb()\n"
        "mib = int(before - current) + 256\n"
        "x = torch.ones(mib * 2**18, dtype=torch.float32)  # mib MiB, every page written\n"
        "print(before, current, mib, perf.peak_rss_mb(), perf.memory_metrics(torch.device('cpu')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout.split(maxsplit=4)
    before, current, mib, after = float(out[0]), float(out[1]), int(out[2]), float(out[3])
    metrics = ast.literal_eval(out[4])
    assert current > 10 and before >= current  # a python process with torch imported holds well over 10 MiB
    assert 200 <= after - before and current + mib - 50 <= after < current + mib + 100, (before, current, mib, after)
    assert set(metrics) == {"perf/peak_rss_mb"} and metrics["perf/peak_rss_mb"] >= after
