"""A run directory and its one owner, `RunDir`: every file of a run is named here and nowhere else.

    <run_dir>/
      config.yaml                  the resolved config (written once, when the run starts)
      run.json                     MLflow run id and tracking URI, method, scale, seed, creation time
      metrics.jsonl                one JSON line per completed step: {"step": n, "<metric>": value, ...}
      checkpoints/step_000025/     full training state (written by `train/checkpoint.py`)
      checkpoints/latest           one line: the directory name of the newest complete checkpoint
      reports/                     the method's reports (graduation table, plots, sample prompts)
      eval/step_000025-<suite>/    `zppo eval --run` outputs (results.json, samples.jsonl)

Small files are replaced atomically (`write_atomic`); readers see the old or the new content, never a partial
one. `resume_or_start` is the decision every resumable launcher makes (a requeued Slurm job, a relaunched sweep
trial): resume from the latest checkpoint, or — when an earlier attempt stopped before its first checkpoint —
discard that partial run (and its MLflow run) and start afresh.

Imports: the config schema only (and the tracking module, lazily, to delete a discarded run's MLflow run).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
REPORTS = "reports"
EVAL = "eval"
STATE_FILE = "state.pt"  # a checkpoint is complete when its state file is in place


def write_atomic(path: Path, text: str) -> None:
    """Write a small file so readers see the old or the new content, never a partial one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}"


class RunDir:
    """The files of one run. Paths are properties; nothing is created until something is written."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return str(self.path)

    # ------------------------------------------------------------------ layout
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def meta_path(self) -> Path:
        return self.path / RUN_FILE

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def reports(self) -> Path:
        return self.path / REPORTS

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / checkpoint_name(step)

    def eval_dir(self, step: int, suite_slug: str) -> Path:
        """Where `zppo eval --run` writes its outputs for the checkpoint of `step` and one suite."""
        return self.path / EVAL / f"{checkpoint_name(step)}-{suite_slug}"

    # ------------------------------------------------------------------ state
    def exists(self) -> bool:
        return self.path.exists()

    def is_empty(self) -> bool:
        """True when the directory is missing or has no entries."""
        return not self.path.exists() or not any(self.path.iterdir())

    def is_run(self) -> bool:
        """A zppo run directory: it has its config."""
        return self.config_path.is_file()

    # ------------------------------------------------------------------ config and run.json
    def read_config(self):
        from zppo_core.config import config_from_file

        return config_from_file(self.config_path)

    def write_config(self, cfg) -> None:
        from zppo_core.config import dump_config

        write_atomic(self.config_path, dump_config(cfg))

    def meta(self) -> dict[str, Any]:
        """run.json ({} when missing or unreadable)."""
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return {}

    def write_meta(self, meta: dict[str, Any]) -> None:
        write_atomic(self.meta_path, json.dumps(meta, indent=2))

    @property
    def mlflow_run_id(self) -> str | None:
        return self.meta().get("mlflow_run_id")

    @property
    def tracking_uri(self) -> str | None:
        return self.meta().get("tracking_uri")

    # ------------------------------------------------------------------ metrics.jsonl
    def append_metrics(self, step: int, metrics: dict[str, float]) -> None:
        with open(self.metrics_path, "a") as fh:
            fh.write(json.dumps({"step": step, **metrics}) + "\n")

    def _metric_lines(self) -> Iterator[str]:
        try:
            text = self.metrics_path.read_text()
        except OSError:
            return iter(())
        return (ln for ln in text.splitlines() if ln.strip())

    def metrics(self) -> list[dict[str, Any]]:
        """Every metrics line, in order."""
        return [json.loads(ln) for ln in self._metric_lines()]

    def last_step(self) -> int:
        """The last step in metrics.jsonl (0 when there is none yet or the file cannot be read)."""
        lines = list(self._metric_lines())
        try:
            return int(json.loads(lines[-1])["step"]) if lines else 0
        except (ValueError, KeyError, TypeError):
            return 0

    def truncate_metrics(self, step: int) -> None:
        """Drop metric lines after `step` (a resumed run recomputes those steps)."""
        if not self.metrics_path.is_file():
            return
        keep = [ln for ln in self._metric_lines() if json.loads(ln)["step"] <= step]
        write_atomic(self.metrics_path, "".join(ln + "\n" for ln in keep))

    # ------------------------------------------------------------------ checkpoints
    def latest_checkpoint(self) -> Path | None:
        """The newest complete checkpoint (the `latest` pointer's target), or None."""
        pointer = self.checkpoints / LATEST
        if not pointer.is_file():
            return None
        path = self.checkpoints / pointer.read_text().strip()
        return path if (path / STATE_FILE).is_file() else None

    def point_latest(self, checkpoint: Path) -> None:
        write_atomic(self.checkpoints / LATEST, Path(checkpoint).name + "\n")

    def checkpoint_dirs(self) -> list[Path]:
        """Complete or not, every step_* directory, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir() if p.is_dir() and p.name.startswith("step_"))

    @staticmethod
    def step_of(checkpoint: Path) -> int:
        return int(Path(checkpoint).name.split("_")[-1])

    # ------------------------------------------------------------------ resume or start
    def resume_or_start(self, log: Callable[[str], None] = lambda s: None) -> bool:
        """True: resume from the latest checkpoint. False: start; a partial run left by an attempt that stopped
        before its first checkpoint is discarded first (see `discard_partial`)."""
        if self.latest_checkpoint() is not None:
            return True
        if not self.is_empty():
            self.discard_partial(log)
        return False

    def discard_partial(self, log: Callable[[str], None] = lambda s: None) -> None:
        """Remove a run dir that has no checkpoint, and delete its MLflow run. Refuses anything else."""
        if self.latest_checkpoint() is not None or not self.is_run():
            raise RuntimeError(f"refusing to discard {self.path}: it has a checkpoint or is not a zppo run directory")
        meta = self.meta()
        if meta.get("mlflow_run_id"):
            try:
                from zppo_core.tracking import delete_run

                delete_run(meta["mlflow_run_id"], meta.get("tracking_uri"))
            except Exception as err:  # the run dir still goes; a stray MLflow run is only clutter
                log(f"could not delete the earlier MLflow run ({err})")
        log(f"discarding {self.path}: an earlier attempt stopped before its first checkpoint")
        shutil.rmtree(self.path)
