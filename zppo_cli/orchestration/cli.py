"""CLI glue shared by every run-launching command (`train`, `eval`, sweeps): option checks, the dry run, the
submission message and `--wait`. Commands import this inside their bodies (it imports submitit lazily)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from zppo_core.config import ConfigError
from zppo_cli.orchestration.profiles import SlurmParams
from zppo_cli.orchestration.submit import EXECUTORS, Submitted, sbatch_text

EXIT_INTERRUPTED = 130


def check_executor_options(executor: str, profile: Optional[str], slurm: Optional[list[str]], wait: bool) -> None:
    """--executor must be known; --profile/--slurm/--wait only mean something with --executor slurm."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor}: unknown executor; valid: {', '.join(EXECUTORS)}")
    if executor != "slurm" and (profile or slurm or wait):
        given = [o for o, v in (("--profile", profile), ("--slurm", slurm), ("--wait", wait)) if v]
        raise ConfigError(f"{'/'.join(given)} only apply to --executor slurm; add --executor slurm or drop them")


def require_single_process(params: SlurmParams | None, what: str) -> None:
    """zppo's trainer and evaluator are one process: refuse (before submitting) a job that would start several
    tasks, each of which would write into the same run. The dry run still shows such scripts."""
    if params is not None and params.world_size > 1:
        raise ConfigError(
            f"--executor slurm: the profile asks for {params.world_size} tasks (nodes x tasks_per_node) but zppo "
            f"{what} runs as one process; add --slurm nodes=1 --slurm tasks_per_node=1 (multi-node training is "
            "not implemented yet)"
        )


def print_dry_run(params: SlurmParams, folder: str | Path, console, array_size: int | None = None) -> None:
    """The submitit parameters and the sbatch script that would be submitted (nothing is created)."""
    import yaml

    console.print(f"# submitit parameters (profile {params.profile})", style="dim")
    console.print(yaml.safe_dump(params.shown(), sort_keys=False, width=1000), highlight=False, markup=False,
                  soft_wrap=True)
    console.print(f"# sbatch script (job folder {folder}; nothing submitted)", style="dim")
    console.print(sbatch_text(params, folder, array_size), highlight=False, markup=False, soft_wrap=True)


def print_submitted(subs: list[Submitted], console) -> None:
    """Job id(s), where the logs and run dir are, and the commands that follow or cancel the job."""
    first = subs[0]
    ids = first.job_id if len(subs) == 1 else f"{first.record.base_id} (array of {len(subs)})"
    console.print(f"submitted Slurm job [bold]{ids}[/] ({first.record.name})", highlight=False, soft_wrap=True)
    if first.record.run_dir:
        console.print(f"  run dir: {first.record.run_dir}", highlight=False, soft_wrap=True)
    console.print(f"  logs:    {first.stdout}\n           {first.stderr}", highlight=False, soft_wrap=True)
    jid = first.job_id if len(subs) == 1 else first.record.base_id
    console.print(f"  follow:  zppo jobs wait {jid}  ·  zppo jobs logs {first.job_id}  ·  "
                  f"cancel: zppo jobs cancel {jid}", highlight=False, soft_wrap=True)


def follow_submitted(subs: list[Submitted], console, err_console) -> int:
    """`--wait`: progress until the job(s) end; the exit code follows the jobs (0 / 1 failed / 3 cancelled)."""
    from zppo_cli.orchestration.follow import follow

    try:
        return follow([s.record for s in subs], console, err_console)
    except KeyboardInterrupt:
        jid = subs[0].job_id if len(subs) == 1 else subs[0].record.base_id
        err_console.print(f"stopped following; job {jid} keeps running: zppo jobs wait {jid} · "
                          f"zppo jobs cancel {jid}", highlight=False, soft_wrap=True)
        return EXIT_INTERRUPTED
