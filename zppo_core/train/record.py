"""What a run's MLflow record says about it, beyond metrics: its name, params, provenance and data.

    run_name(cfg, dir)   <method>-<scale>-s<seed>-<yyyymmdd-hhmmss> (or tracking.run_name; sweep trials set it)
    run_params(cfg)      params for the config that applies to the method (a grpo run has no zppo.*; memory
                         knobs, paths and tracking settings are not params); the full resolved config is the
                         run's config.yaml artifact
    provenance_tags(cfg) description (the command line), user, source, git commit of the zppo code, version
    training_dataset(cfg) the training data as an MLflow dataset input (synthetic families or a JSONL file)

`record_run(tracker, cfg)` logs the params and the dataset of a new run; the tags go in at creation.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from zppo_core.config import flat_params
from zppo_core.config.schema import ZPPOConfig

# never params: where and how a run executes, not what it computes (the config.yaml artifact still has them)
NOT_PARAMS = ("run.run_dir", "run.threads", "run.keep_checkpoints", "run.checkpoint_every", "run.checkpoint_minutes",
              "model.device", "model.requires_cuda", "rollout.batch_size", "algo.micro_batch_size",
              "algo.micro_batch_tokens", "prepare.cache_dir", "eval.data_dir", "zppo.samples_to_log")
BUFFER_KEYS = ("zppo.tau", "zppo.rho_replay", "zppo.capacity")
CANDIDATE_KEYS = ("zppo.tau", "zppo.rho_aug", "zppo.teacher_group_size", "zppo.compression", "zppo.template")


def default_name(cfg: ZPPOConfig, when: float | None = None) -> str:
    """<method>-<scale>-s<seed>-<yyyymmdd-hhmmss>: the default run dir name and MLflow run name."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return f"{cfg.method}-{cfg.scale}-s{cfg.run.seed}-{stamp}"


def run_name(cfg: ZPPOConfig, run_dir: Path | None = None) -> str:
    """The MLflow run name: tracking.run_name, else the run dir's name when it is a default one (same time
    stamp), else a default name stamped now (a run dir named by hand does not name the MLflow run)."""
    if cfg.tracking.run_name:
        return cfg.tracking.run_name
    prefix = f"{cfg.method}-{cfg.scale}-s{cfg.run.seed}-"
    if run_dir is not None and re.fullmatch(re.escape(prefix) + r"\d{8}-\d{6}", run_dir.name):
        return run_dir.name
    return default_name(cfg)


def _uses(cfg: ZPPOConfig) -> tuple[bool, bool, bool]:
    """(replay buffer, BCQ/NCQ candidates, teacher) for the config's method; the teacher counts as used also when
    it judges the training reward (reward.judge=teacher), whatever the method."""
    from zppo_core.config.methods import SPECS

    spec = SPECS[cfg.method]
    candidates = spec.bcq or spec.ncq
    teacher = (spec.needs_teacher or (spec.ncq and cfg.zppo.compression == "teacher")
               or cfg.reward.judge == "teacher")
    return spec.buffer, candidates, teacher


def applies(key: str, cfg: ZPPOConfig) -> bool:
    """Whether the dotted config field `key` can change what this run computes."""
    if key in NOT_PARAMS or key.startswith("tracking."):
        return False
    buffer, candidates, teacher = _uses(cfg)
    tiny = cfg.model.student == "tiny"
    section = key.split(".")[0]
    if section in ("zppo", "baselines"):
        from zppo_core.config.methods import SPECS

        spec = SPECS[cfg.method]
        if section == "baselines":  # each knob for the baselines that read it (hint_*: the hint baseline)
            if key == "baselines.prefix_fraction":
                return spec.guide == "prefix"
            return spec.distill is not None if key == "baselines.jsd_beta" else spec.guide == "hint"
        if spec.guide or spec.distill:  # the baselines read several zppo.* knobs (τ, ρ_aug, G_T, compression)
            return True
    if section == "zppo":
        if key == "zppo.candidate_max_chars":
            return candidates and cfg.zppo.compression == "none"
        if key == "zppo.compression_max_tokens":
            return candidates and cfg.zppo.compression == "teacher"
        return (buffer and key in BUFFER_KEYS) or (candidates and key in CANDIDATE_KEYS)
    if ".teacher_endpoint." in key or ".judge_endpoint." in key:
        # a served model: where it is (url), which (model) and its chat-template keywords when one is set;
        # timeouts, retries, concurrency and the key's variable only change how the requests go
        ep = cfg.model.teacher_endpoint if section == "model" else cfg.eval.judge_endpoint
        used = teacher if section == "model" else bool(cfg.eval.every and cfg.eval.suites)
        what = key.rsplit(".", 1)[1] in ("url", "model") or ".chat_template_kwargs." in key
        return used and ep.url is not None and what
    if key.startswith(("model.chat_template_kwargs.teacher.", "model.chat_template_kwargs.compression.")):
        return teacher
    if key == "reward.judge_max_new_tokens":
        return cfg.reward.judge != "none"
    if key == "model.teacher" or key.startswith("model.tiny_teacher."):
        return teacher and (tiny or key == "model.teacher")
    if key.startswith("model.tiny_student."):
        return tiny
    if section == "prepare":
        return tiny and (teacher or not key.startswith("prepare.teacher"))
    if section == "data":
        synthetic = cfg.data.path is None
        return key == "data.closer" or (key == "data.path") != synthetic
    if section == "eval":
        if not (cfg.eval.every and cfg.eval.suites):
            return False
        tiny_suites = any(s.strip().lower() in ("tiny", "tiny-ood") for x in cfg.eval.suites for s in x.split(","))
        if key == "eval.per_level":
            return tiny_suites
        if key == "eval.limit":
            return not all(s.strip().lower() in ("tiny", "tiny-ood") for x in cfg.eval.suites for s in x.split(","))
        return True
    if key == "run.final_eval_per_level":
        return cfg.run.final_eval_per_level > 0 and cfg.data.path is None
    return True


def run_params(cfg: ZPPOConfig) -> dict[str, str]:
    return {k: v for k, v in flat_params(cfg).items() if applies(k, cfg)}


def command_line(argv: list[str] | None = None) -> str:
    """The command that started this process, as a person would type it (`zppo train …` for the console script)."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return "python"
    head = [Path(argv[0]).name]
    if head[0] == "zppo" or argv[0].endswith("zppo_cli/app.py"):
        head = ["zppo"]
    elif head[0] == "__main__.py":  # python -m package
        head = ["python", "-m", Path(argv[0]).parent.name]
    return shlex.join(head + argv[1:])


def git_state(path: Path | None = None) -> tuple[str | None, bool]:
    """(commit, dirty) of the git checkout holding the zppo code, or (None, False) when it is not one."""
    root = path or Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10)
        if commit.returncode != 0:
            return None, False
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return commit.stdout.strip(), bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def provenance_tags(cfg: ZPPOConfig) -> dict[str, str]:
    """MLflow's system tags a run made through MlflowClient does not get by itself, plus zppo's own."""
    from importlib.metadata import PackageNotFoundError, version

    description = cfg.tracking.description or command_line()
    words = description.split()
    source = " ".join(words[:2]) if words[:1] == ["zppo"] else (words[0] if words else "zppo")
    tags = {"mlflow.note.content": description, "mlflow.source.name": source,
            "mlflow.source.type": "JOB" if os.environ.get("SLURM_JOB_ID") else "LOCAL"}
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):
        pass
    commit, dirty = git_state()
    if commit:
        tags["mlflow.source.git.commit"] = commit
        tags["zppo.git_dirty"] = "true" if dirty else "false"
    try:
        tags["zppo.version"] = version("zppo")
    except PackageNotFoundError:
        pass
    if os.environ.get("SLURM_JOB_ID"):
        tags["zppo.slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return tags


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def training_dataset(cfg: ZPPOConfig) -> dict[str, Any]:
    """Keyword arguments of `Tracker.log_dataset` for the run's training data. Synthetic families are identified
    by what generates them (families, level weights); a JSONL file by its content."""
    if cfg.data.path:
        p = Path(cfg.data.path).expanduser().resolve()
        h, rows = hashlib.sha256(), 0
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
                rows += chunk.count(b"\n")
        return {"name": p.stem, "digest": h.hexdigest()[:12], "source_type": "local",
                "source": {"uri": p.as_uri()}, "profile": {"num_rows": rows, "bytes": p.stat().st_size}}
    levels = {str(k): v for k, v in sorted((cfg.data.levels or {}).items())}
    spec = {"families": list(cfg.data.families), "levels": levels or "uniform"}
    return {"name": "+".join(cfg.data.families), "digest": _digest(json.dumps(spec, sort_keys=True).encode()),
            "source_type": "code", "source": {"generator": "zppo_core.tasks", **spec},
            "profile": {"stream": "procedural, seeded by run.seed; the eval split is never drawn"}}


def record_run(tracker, cfg: ZPPOConfig) -> None:
    """Params and dataset input of a new run (the tags were set when it was created)."""
    tracker.log_params(run_params(cfg))
    tracker.log_dataset(**training_dataset(cfg))
