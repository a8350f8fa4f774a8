"""Running zppo work elsewhere: submitit executors (Slurm, local, debug), cluster profiles, the job registry.

Public API (see submit.py):

    submit(specs, executor="slurm", profile=None, scale=None, overrides=(), folder=None, name=None)
        -> list[Submitted]
    JobSpec(target="pkg.module:function", kwargs={...}, name=..., kind=..., run_dir=..., total_steps=...)
    sbatch_text(slurm_params(profile, scale, overrides, name), folder)  -> the script, nothing submitted
    follow(records, console, err_console) -> exit code;  wait_states(records, timeout_s=...) -> states

Nothing here imports torch at import time (the CLI's --help path imports this package lazily anyway).
"""

from zppo_cli.orchestration.submit import EXECUTORS, JobSpec, SubmissionError, Submitted, require_slurm, sbatch_text, \
    slurm_params, submit

__all__ = ["EXECUTORS", "JobSpec", "SubmissionError", "Submitted", "require_slurm", "sbatch_text", "slurm_params",
           "submit"]
