"""The callables that run on the nodes: tiny, picklable, resumable.

`ZppoJob(target, kwargs)` is what submitit pickles: a `module:function` name and JSON-able keyword arguments,
nothing else (no config object, no model). On a timeout or preemption submitit calls `checkpoint()`, which
returns a fresh `ZppoJob` with the same arguments; the requeued job calls the function again and the function
resumes from what it wrote to disk. So a target must be idempotent on its outputs: `train_run` resumes from the
run's latest checkpoint (the MLflow run id lives in the run dir's run.json, so the requeued run continues the
same MLflow run).

A multi-task job (one task per GPU, or per CPU here) runs `ZppoJob` in every task: `distributed_env` exports the
torch.distributed variables from Slurm's (submitit's `TorchDistributedEnvironment`), `train_run` starts the process
group and trains as one rank of the run. Time limits and preemption go through `preempt.py`: the signal only sets
a flag, the ranks checkpoint together at the next step boundary, then rank 0 requeues the job.
"""

from __future__ import annotations

import importlib
import json
import os
from typing import Any, Callable

from submitit.helpers import Checkpointable, DelayedSubmission


def resolve_target(target: str) -> Callable[..., Any]:
    module, sep, attr = target.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"job target '{target}' must be 'package.module:function'")
    fn = importlib.import_module(module)
    for part in attr.split("."):
        fn = getattr(fn, part)
    if not callable(fn):
        raise ValueError(f"job target '{target}' is not callable")
    return fn


DIST_VARS = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


def distributed_env() -> dict[str, str]:
    """The torch.distributed variables of this task of a multi-task Slurm job, exported (submitit's
    `TorchDistributedEnvironment`: MASTER_ADDR = the first node, MASTER_PORT from the sbatch script (else derived
    from the job id), RANK / WORLD_SIZE / LOCAL_RANK from SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID). A one-node
    job meets on 127.0.0.1 (node names need not resolve). {} for a one-task job or outside Slurm."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or int(os.environ.get("SLURM_NTASKS", "1")) <= 1:
        return {}
    from submitit.helpers import TorchDistributedEnvironment

    env = TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    if env.world_size == env.local_world_size:  # one node
        os.environ["MASTER_ADDR"] = "127.0.0.1"
    return {k: os.environ[k] for k in DIST_VARS}


class ZppoJob(Checkpointable):
    """A submitted unit of work: `target(**kwargs)` run in `cwd`; requeued as a fresh copy of itself."""

    def __init__(self, target: str, kwargs: dict[str, Any] | None = None, cwd: str | None = None):
        self.target = target
        self.kwargs = dict(kwargs or {})
        self.cwd = cwd

    def __call__(self) -> Any:
        from zppo_cli.orchestration import preempt

        if self.cwd:
            os.chdir(self.cwd)
        distributed_env()
        preempt.install()  # under submitit's Slurm handler: checkpoint at a step boundary, then requeue
        return resolve_target(self.target)(**self.kwargs)

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        # the work is on disk (checkpoints, run.json): resubmit the same small description, nothing else
        print(f"zppo: checkpoint requested for {self.target}; requeueing (resumes from the latest checkpoint)",
              flush=True)
        return DelayedSubmission(ZppoJob(self.target, self.kwargs, self.cwd))

    def __repr__(self) -> str:
        return f"ZppoJob({self.target}, {json.dumps(self.kwargs)})"


# ----------------------------------------------------------------------------------------- targets
def train_run(config: str, run_dir: str) -> dict[str, Any]:
    """Train (or resume) the run in `run_dir` from the resolved config file `config`.

    First attempt: a new run from `config`. A requeued attempt: `train --resume` from the latest checkpoint. An
    attempt that was stopped before its first checkpoint left a partial run dir (config, run.json, metrics):
    it is discarded (with its MLflow run) and the run starts again, since nothing was saved to resume from
    (`RunDir.resume_or_start`).

    A multi-task job runs this in every task: rank 0 decides between resuming and starting (and discards a partial
    run), every rank then trains as one rank of the run, and only rank 0 prints. A run stopped by Slurm's signal
    has checkpointed at a step boundary; rank 0 then requeues the job (`preempt.requeue_now`, which exits).
    """
    from zppo_core.config import config_from_file
    from zppo_core.dist import init_from_env
    from zppo_core.run_dir import RunDir
    from zppo_core.train.run import train
    from zppo_cli.orchestration import preempt

    rd = RunDir(run_dir)
    total: list[int] = [0]
    d = init_from_env()

    def log(msg: str) -> None:
        if d.is_main:
            print(f"zppo: {msg}", flush=True)

    def on_step(step: int, m: dict[str, float]) -> None:
        print(f"zppo: step {step}/{total[0]} accuracy {m.get('train/accuracy', float('nan')):.1f}% "
              f"reward {m.get('train/reward_mean', float('nan')):.3f} {m.get('perf/step_time_s', 0.0):.2f}s/step",
              flush=True)

    if d.on_main(lambda: rd.resume_or_start(log)):
        cfg = rd.read_config()
        total[0] = cfg.run.steps
        log(f"resuming {rd.path} from {rd.latest_checkpoint().name}")
        res = train(None, run_dir=rd.path, resume=True, on_step=on_step, log=log)
    else:
        cfg = config_from_file(config)
        total[0] = cfg.run.steps
        log(f"starting {rd.path} ({cfg.method}, scale {cfg.scale}, {cfg.run.steps} steps, seed {cfg.run.seed})")
        res = train(cfg, run_dir=rd.path, resume=False, on_step=on_step, log=log)
    if res.preempted:
        log(f"checkpointed {rd.path} at step {res.history[-1]['step'] if res.history else 0}; requeueing")
        if d.is_main:
            preempt.requeue_now()  # exits this attempt; the requeued job resumes from that checkpoint
        return {"run_dir": str(res.run_dir), "mlflow_run_id": res.mlflow_run_id, "preempted": True}
    last = res.history[-1] if res.history else {}
    log(f"done: {rd.path} ({cfg.run.steps} steps); MLflow run {res.mlflow_run_id}")
    return {"run_dir": str(res.run_dir), "mlflow_run_id": res.mlflow_run_id, "steps": cfg.run.steps,
            "final": {k: float(v) for k, v in last.items()}}


def echo(**kwargs: Any) -> dict[str, Any]:
    """A trivial target (tests, smoke checks): returns its arguments and where it ran."""
    import socket

    if kwargs.get("fail"):
        raise RuntimeError(str(kwargs["fail"]))
    return {"kwargs": kwargs, "host": socket.gethostname(), "cwd": os.getcwd(),
            "array_task": os.environ.get("SLURM_ARRAY_TASK_ID"), "job_id": os.environ.get("SLURM_JOB_ID"),
            "rank": os.environ.get("RANK")}
