"""Submit work through submitit: one API for `train`, `eval`, sweeps and anything else.

    from zppo_cli.orchestration import JobSpec, submit

    spec = JobSpec("zppo_cli.orchestration.jobs:train_run", {"config": cfg_path, "run_dir": run_dir},
                   name="zppo-train-x", kind="train", run_dir=run_dir, total_steps=120)
    [sub] = submit([spec], executor="slurm", profile="local", scale="tiny", overrides=["time_min=10"],
                   folder=run_dir + ".job")
    sub.job_id, sub.stdout, sub.stderr, sub.job          # submitit Job: .result(), .done(), .cancel()

Several specs are submitted as one Slurm job array (same resources; task i runs spec i). Executors:
`slurm` (sbatch through submitit), `local` (submitit's LocalExecutor: a background process here) and `debug`
(the same callable, run in this process before `submit` returns). Every submitted job is recorded in the
registry that `zppo jobs` reads.
"""

from __future__ import annotations

import shlex
import shutil
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from zppo_core.config import ConfigError
from zppo_cli.orchestration import registry
from zppo_cli.orchestration.profiles import SlurmParams, resolve

EXECUTORS = ("local", "slurm", "debug")
LOCAL_TIME_LIMIT_MIN = 7 * 24 * 60  # a local job's time limit when no profile sets one: a week


class SubmissionError(ConfigError):
    """The scheduler refused the job (one line, names the fix)."""


@dataclass
class JobSpec:
    """What to run: `target(**kwargs)`, with `target` a 'package.module:function' name and JSON-able kwargs."""

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = "zppo"
    kind: str = "job"                 # train | eval | trial | job: shown by `zppo jobs`
    run_dir: str | None = None        # shown by `zppo jobs`; progress is read from its metrics.jsonl
    total_steps: int | None = None    # progress bar length for `--wait`
    resume_hint: str | None = None    # the command that continues the work after a cancel

    def callable(self, cwd: str | None = None):
        from zppo_cli.orchestration.jobs import ZppoJob

        return ZppoJob(self.target, self.kwargs, cwd or str(Path.cwd()))


@dataclass
class Submitted:
    """A submitted job (an array task counts as one): its registry record and submitit handle."""

    record: registry.JobRecord
    job: Any = None                   # submitit Job (slurm/local); None for debug
    value: Any = None                 # debug: the target's return value

    @property
    def job_id(self) -> str:
        return self.record.job_id

    @property
    def stdout(self) -> Path:
        return self.record.paths().stdout

    @property
    def stderr(self) -> Path:
        return self.record.paths().stderr


def require_slurm() -> None:
    if shutil.which("sbatch") is None or shutil.which("sacct") is None:
        raise ConfigError(
            "--executor slurm: Slurm is not installed here (no sbatch/sacct on PATH); run from the cluster's login "
            "node, start a local cluster with `sudo slurm/local-cluster.sh up`, or use --executor local"
        )


def default_folder(name: str) -> Path:
    return registry.state_dir() / "jobs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def slurm_params(profile: str | None, scale: str | None, overrides: Iterable[str] | dict, name: str,
                 teacher_serve: str | None = None) -> SlurmParams:
    return resolve(profile, scale, overrides, name=name, teacher_serve=teacher_serve)


def sbatch_text(params: SlurmParams, folder: str | Path, array_size: int | None = None) -> str:
    """The sbatch script submitit would submit for these parameters (no Slurm needed to render it)."""
    from submitit.slurm.slurm import _make_sbatch_string

    python = params.python or shlex.quote(sys.executable)
    folder = Path(folder).expanduser().absolute()
    command = " ".join([python, "-u -m submitit.core._submit", shlex.quote(str(folder))])
    extra = {"map_count": array_size} if array_size and array_size > 1 else {}
    try:
        return _make_sbatch_string(command=command, folder=folder, **params.sbatch, **extra)
    except TypeError as err:  # a key submitit's sbatch writer does not take (checked earlier; belt and braces)
        raise ConfigError(f"Slurm parameters rejected by submitit: {err}") from None


def _slurm_executor(params: SlurmParams, folder: Path):
    import submitit

    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=params.max_num_timeout, python=params.python)
    try:
        ex.update_parameters(**params.sbatch)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"Slurm parameters rejected by submitit: {str(err).splitlines()[0]}") from None
    return ex


def _sbatch_error(err: BaseException) -> SubmissionError:
    text = str(err)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = next((ln for ln in lines if "error" in ln.lower()), lines[-1] if lines else repr(err))
    return SubmissionError(
        f"sbatch refused the job: {msg[:300]}; check the profile/--slurm values (add --dry-run to see the script) "
        "and the cluster (sinfo)"
    )


def submit(
    specs: JobSpec | Sequence[JobSpec],
    *,
    executor: str = "slurm",
    profile: str | None = None,
    scale: str | None = None,
    overrides: Iterable[str] | dict = (),
    folder: str | Path | None = None,
    name: str | None = None,
    params: SlurmParams | None = None,
) -> list[Submitted]:
    """Submit one job, or a job array when several specs are given. Returns at once (debug: after running)."""
    spec_list = [specs] if isinstance(specs, JobSpec) else list(specs)
    if not spec_list:
        raise ValueError("submit() needs at least one JobSpec")
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor '{executor}'; valid: {', '.join(EXECUTORS)}")
    job_name = name or spec_list[0].name
    folder = Path(folder) if folder is not None else default_folder(job_name)
    folder = folder.expanduser().absolute()
    cwd = str(Path.cwd())
    calls = [s.callable(cwd) for s in spec_list]

    if executor == "debug":
        out = []
        for i, (s, c) in enumerate(zip(spec_list, calls)):
            rec = registry.JobRecord(job_id=f"debug-{uuid.uuid4().hex[:8]}", name=s.name, executor="debug",
                                     folder=str(folder), kind=s.kind, run_dir=s.run_dir, total_steps=s.total_steps,
                                     resume_hint=s.resume_hint)
            out.append(Submitted(rec, None, c()))
        return out

    if executor == "slurm":
        require_slurm()
        params = params or slurm_params(profile, scale, overrides, job_name)
        params.sbatch["job_name"] = job_name
        ex = _slurm_executor(params, folder)
    else:
        import submitit

        params = params or None
        ex = submitit.LocalExecutor(folder=folder, max_num_timeout=params.max_num_timeout if params else 3)
        # submitit's local default is a 2-minute limit: USR2 (checkpoint, requeue, progress since the last
        # checkpoint lost) at ~2 min, killed after max_num_timeout requeues. A local job has no limit unless its
        # profile sets one.
        limit = params.sbatch["time"] if params is not None and "time" in params.sbatch else LOCAL_TIME_LIMIT_MIN
        ex.update_parameters(timeout_min=limit)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        jobs = [ex.submit(calls[0])] if len(calls) == 1 else ex.submit_array(calls)
    except Exception as err:
        if created:
            shutil.rmtree(folder, ignore_errors=True)
        if executor == "slurm":
            raise _sbatch_error(err) from None
        raise
    records = [
        registry.JobRecord(job_id=str(j.job_id), name=s.name, executor=executor, folder=str(folder), kind=s.kind,
                           run_dir=s.run_dir, total_steps=s.total_steps, cwd=cwd, resume_hint=s.resume_hint)
        for j, s in zip(jobs, spec_list)
    ]
    registry.append(records)
    return [Submitted(r, j) for r, j in zip(records, jobs)]
