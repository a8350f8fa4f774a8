"""A run directory and its one owner, `RunDir`: every file of a run is named here and nowhere else.

    <run_dir>/
      config.yaml                  the resolved config (written once, when the run starts)
      run.json                     MLflow run id and tracking URI, method, scale, seed, creation time
      metrics.jsonl                one JSON line per completed step: {"step": n, "<metric>": value, ...}
      checkpoints/step_000025/     full training state (written by `train/checkpoint.py` or, sharded, by DCP)
      checkpoints/step_000025/manifest.json   every file of the checkpoint with its size and sha256, written last
      checkpoints/latest           one line: the directory name of the newest complete checkpoint
      tracking/                    the tracker's local records: outbox.jsonl (params, tags, artifacts, status,
                                   metrics logged outside a step line), files/ (their content), sent.json
      reports/                     the method's reports (graduation table, plots, sample prompts)
      eval/step_000025-<suite>/    `zppo eval --run` outputs (results.json, samples.jsonl)

Small files are replaced atomically (`write_atomic`); readers see the old or the new content, never a partial
one.

Checkpoints, whatever their format (today's model/ + optimizer.pt + state.pt, or a DCP directory), are written into
a hidden directory from `begin_checkpoint` and made visible by `commit_checkpoint`: the manifest (each file's size
and sha256) is written last into the hidden directory, which is then renamed into place, and only then does
`latest` move. A process killed at any point leaves the previous checkpoint and pointer as they were.
`latest_checkpoint` checks the pointer's target against its manifest (sizes; with `verify=True` also the sha256
of every byte) and, when it is damaged (truncated, a file missing or changed), falls back to the newest older
checkpoint that passes, with a warning. A checkpoint without a manifest (written before manifests existed) counts
as complete when its state file is there, as it always did. `resume_or_start` is the decision every resumable launcher makes (a requeued Slurm job, a relaunched sweep
trial): resume from the latest checkpoint, or — when an earlier attempt stopped before its first checkpoint —
discard that partial run (and its MLflow run) and start afresh.

A line appended to a JSONL file (metrics.jsonl, the tracking outbox) after a crash cut the previous one short starts
on its own line (`append_line`), and readers skip lines that do not parse.

Why this file is long: every path and every write protocol of a run directory lives here (one owner of the
layout), checkpoints' manifest and fallback included.

Imports: the config schema only (and the tracking module, lazily, to delete a discarded run's MLflow run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS = "checkpoints"
LATEST = "latest"
REPORTS = "reports"
EVAL = "eval"
STATE_FILE = "state.pt"  # a checkpoint without a manifest (older runs) is complete when its state file is there
MANIFEST = "manifest.json"  # a checkpoint's files with sizes and sha256; written last
TRACKING = "tracking"
FAULT_ENV = "ZPPO_FAULT_INJECT"  # tests only: "<point>@<n>" SIGKILLs this process the n-th time <point> is reached

_logger = logging.getLogger("zppo.run_dir")


def write_atomic(path: Path, text: str, fsync: bool = False) -> None:
    """Write a small file so readers see the old or the new content, never a partial one (`fsync`: durable before
    it replaces the old one, also across a power loss)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        fh.write(text)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def replace_dir(tmp: Path, final: Path) -> None:
    """Rename the directory `tmp` to `final`; an existing `final` (a step re-written after a resume from an earlier
    checkpoint) is moved aside first and removed after, so `final` is never half old, half new."""
    if final.exists():
        old = final.parent / f".old-{final.name}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_fault_counts: dict[str, int] = {}


def append_line(path: Path, line: str) -> None:
    """Append one line to a JSONL file, on a line of its own even when the file ends in a line cut short by a
    crash (which readers skip)."""
    with open(path, "a+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end:
            fh.seek(end - 1)
            sep = b"" if fh.read(1) == b"\n" else b"\n"
        else:
            sep = b""
        fh.write(sep + line.encode("utf-8") + b"\n")


def _json_row(line: str) -> dict[str, Any] | None:
    """A JSONL line as a dict, or None (blank, cut short, not an object)."""
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except ValueError:
        return None
    return row if isinstance(row, dict) else None


def fault_point(name: str) -> None:
    """A named point of a write sequence where the fault-injection tests SIGKILL the process (`$ZPPO_FAULT_INJECT`
    = "<name>@<n>": the n-th time this process reaches <name>). Does nothing otherwise."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    want, _, nth = spec.partition("@")
    if want != name:
        return
    _fault_counts[name] = _fault_counts.get(name, 0) + 1
    if _fault_counts[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> list[str]:
    """Every regular file under `root` as a relative POSIX path, the manifest itself excluded, sorted."""
    out = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            rel = (Path(dirpath) / n).relative_to(root).as_posix()
            if rel != MANIFEST:
                out.append(rel)
    return sorted(out)


def _hash_all(root: Path, rels: list[str]) -> list[str]:
    """sha256 of many files, several at a time (hashlib releases the GIL on large blocks)."""
    if len(rels) <= 1:
        return [_sha256(root / r) for r in rels]
    with ThreadPoolExecutor(max_workers=min(8, len(rels), os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda r: _sha256(root / r), rels))


def write_manifest(ckpt: Path, step: int) -> dict[str, Any]:
    """Hash every file of a checkpoint directory and write its manifest (atomically, fsynced). Call it when every
    other file is written and synced: the manifest is what makes the directory a complete checkpoint."""
    ckpt = Path(ckpt)
    rels = _files(ckpt)
    digests = _hash_all(ckpt, rels)
    manifest = {"version": 1, "step": step,
                "files": {r: {"size": (ckpt / r).stat().st_size, "sha256": d} for r, d in zip(rels, digests)}}
    write_atomic(ckpt / MANIFEST, json.dumps(manifest, indent=1), fsync=True)
    return manifest


def check_checkpoint(ckpt: Path, verify: bool = False) -> str | None:
    """None when `ckpt` is a complete checkpoint, else why not (one phrase). Checks every file its manifest lists
    (present, same size; with `verify`, same sha256); files added later (an exported model/) are not its concern.
    Without a manifest (a checkpoint from before manifests): complete when its state file is there."""
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        return "missing"
    mpath = ckpt / MANIFEST
    if not mpath.exists():
        return None if (ckpt / STATE_FILE).is_file() else "incomplete (no manifest.json, no state.pt)"
    try:
        files = json.loads(mpath.read_text())["files"]
        entries = [(str(r), int(e["size"]), str(e["sha256"])) for r, e in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return "its manifest.json is unreadable"
    for rel, size, _ in entries:
        p = ckpt / rel
        try:
            actual = p.stat().st_size
        except OSError:
            return f"{rel} is missing"
        if actual != size:
            return f"{rel} has {actual} bytes, its manifest says {size} (truncated or overwritten)"
    if verify:
        digests = _hash_all(ckpt, [r for r, _, _ in entries])
        for (rel, _, want), got in zip(entries, digests):
            if got != want:
                return f"{rel} does not match its sha256 in manifest.json (corrupted)"
    return None


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

    @property
    def tracking(self) -> Path:
        """The tracker's local records (see `zppo_core.tracking.durable`)."""
        return self.path / TRACKING

    @property
    def outbox_path(self) -> Path:
        return self.tracking / "outbox.jsonl"

    @property
    def outbox_files(self) -> Path:
        return self.tracking / "files"

    @property
    def sent_path(self) -> Path:
        return self.tracking / "sent.json"

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
        append_line(self.metrics_path, json.dumps({"step": step, **metrics}))

    def _metric_lines(self) -> Iterator[str]:
        """The complete lines (a line cut short by a crash, which does not parse, is skipped)."""
        try:
            text = self.metrics_path.read_text()
        except OSError:
            return iter(())
        return (ln for ln in text.splitlines() if _json_row(ln) is not None)

    def metrics(self) -> list[dict[str, Any]]:
        """Every complete metrics line, in order."""
        return [json.loads(ln) for ln in self._metric_lines()]

    def last_step(self) -> int:
        """The last step in metrics.jsonl (0 when there is none yet or the file cannot be read). Reads the file's
        end only (it is read every step)."""
        try:
            with open(self.metrics_path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                fh.seek(max(0, size - (1 << 18)))
                tail = fh.read().decode("utf-8", errors="replace")
        except OSError:
            return 0
        for ln in reversed(tail.splitlines()):
            row = _json_row(ln)
            if row is not None:
                try:
                    return int(row["step"])
                except (KeyError, TypeError, ValueError):
                    return 0
        return 0

    def truncate_metrics(self, step: int) -> None:
        """Drop metric lines after `step` (a resumed run recomputes those steps)."""
        if not self.metrics_path.is_file():
            return
        keep = [ln for ln in self._metric_lines() if json.loads(ln).get("step", 0) <= step]
        write_atomic(self.metrics_path, "".join(ln + "\n" for ln in keep))

    # ------------------------------------------------------------------ checkpoints
    def latest_checkpoint(self, verify: bool = False, warn: Callable[[str], None] | None = None) -> Path | None:
        """The newest complete checkpoint, or None: the `latest` pointer's target when it passes `check_checkpoint`
        (`verify`: every sha256 too), else the newest older step_* directory that does (with a warning through
        `warn`, default the `zppo.run_dir` logger). Without a pointer (a save killed before its first pointer
        write), the newest complete directory."""
        pointer = self.checkpoints / LATEST
        target: Path | None = None
        try:
            name = pointer.read_text().strip()
            if name.startswith("step_"):
                target = self.checkpoints / name
        except OSError:
            pass
        bound = self._step_or_none(target) if target is not None else None
        candidates = [p for p in reversed(self.checkpoint_dirs()) if bound is None or self.step_of(p) < bound]
        if target is not None:
            candidates.insert(0, target)
        damaged: list[str] = []
        for ckpt in candidates:
            why = check_checkpoint(ckpt, verify)
            if why is None:
                if damaged:
                    (warn or _logger.warning)(f"{'; '.join(damaged)}: using {ckpt.name} instead")
                return ckpt
            if ckpt.exists():
                damaged.append(f"checkpoint {ckpt.name} is damaged ({why})")
        return None

    @staticmethod
    def _step_or_none(p: Path) -> int | None:
        try:
            return RunDir.step_of(p)
        except ValueError:
            return None

    def point_latest(self, checkpoint: Path) -> None:
        write_atomic(self.checkpoints / LATEST, Path(checkpoint).name + "\n", fsync=True)

    def checkpoint_dirs(self) -> list[Path]:
        """Complete or not, every step_* directory, oldest first."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir()
                      if p.is_dir() and p.name.startswith("step_") and self._step_or_none(p) is not None)

    @staticmethod
    def step_of(checkpoint: Path) -> int:
        return int(Path(checkpoint).name.split("_")[-1])

    def begin_checkpoint(self, step: int) -> Path:
        """A fresh hidden directory to write the checkpoint of `step` into (any format). Directories left by an
        earlier save that was killed are removed first: a run has one writer."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        for stale in self.checkpoints.iterdir():
            if stale.name.startswith((".tmp-", ".old-")) and stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)
        tmp = self.checkpoints / f".tmp-{checkpoint_name(step)}"
        tmp.mkdir()
        return tmp

    def commit_checkpoint(self, tmp: Path, step: int, keep: int = 2) -> Path:
        """Make the checkpoint written into `tmp` (from `begin_checkpoint`) the latest: its manifest last, the
        directory renamed into place, `latest` moved, then older checkpoints pruned to `keep` (and any newer than
        `step`, left by an attempt this run was resumed before). Each step is atomic; a kill between two leaves a
        run that resumes from this checkpoint or from the previous one."""
        tmp = Path(tmp)
        fault_point("ckpt.files")
        write_manifest(tmp, step)
        fsync_dir(tmp)
        fault_point("ckpt.manifest")
        final = self.checkpoint(step)
        replace_dir(tmp, final)
        fsync_dir(self.checkpoints)
        fault_point("ckpt.rename")
        self.point_latest(final)
        fsync_dir(self.checkpoints)
        fault_point("ckpt.pointer")
        dirs = self.checkpoint_dirs()
        drop = [p for p in dirs if self.step_of(p) > step] + [p for p in dirs if self.step_of(p) <= step][:-keep]
        for p in drop:  # renamed first, so a kill mid-delete leaves a hidden directory the next save removes
            trash = self.checkpoints / f".old-{p.name}"
            os.replace(p, trash)
            fault_point("ckpt.prune")
            shutil.rmtree(trash, ignore_errors=True)
        return final

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
