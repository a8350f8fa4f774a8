"""Per-step performance metrics (`perf/*`): wall time per phase of a rollout step, and peak memory.

`PhaseTimer` adds up the wall seconds spent in named phases of one step (a phase may be entered several times,
e.g. the teacher called twice); the trainer turns them into `perf/<phase>_time_s`. `memory_metrics` reads the
process's peak resident set size (since the process started: the OS keeps no per-step peak) and, when the model
is on a CUDA device, the peak GPU memory allocated by torch since the last `reset_gpu_peak` (per step).
"""

from __future__ import annotations

import resource
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Iterator

import torch


class PhaseTimer:
    """Wall seconds per named phase, summed over the phase's entries since the last `reset`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def reset(self) -> None:
        self.seconds.clear()

    @contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - t0


def peak_rss_mb() -> float:
    """The process's peak resident set size in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def reset_gpu_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def memory_metrics(device: torch.device) -> dict[str, float]:
    """perf/peak_rss_mb always; perf/gpu_peak_mem_mb (torch's allocations since `reset_gpu_peak`) on CUDA."""
    out = {"perf/peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        out["perf/gpu_peak_mem_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out
