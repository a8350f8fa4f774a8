"""Against the real local Slurm cluster (slurm/local-cluster.sh, real accounting): `zppo train --executor slurm`
matches a local run of the same seed, a job past its time limit is requeued and ends in the uninterrupted run's
state, a failing job surfaces its remote traceback, a cancelled job is reported with the resume command,
`zppo jobs` shows sacct's states, and a job array runs.

Each test runs a local reference in this process while its Slurm job runs (both on one torch thread), so the
wall time is about the longer of the two, not their sum.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from tests.orchestration.conftest import poll
from zppo_cli.app import app
from zppo_cli.orchestration import JobSpec, registry, submit
from zppo_cli.orchestration.follow import wait_states

runner = CliRunner()
# one torch thread on both sides: the job and the local reference then compute bit-identical results
COMMON = ["run.threads=1", "eval.every=0"]


def _sets(overrides):
    out = []
    for o in overrides:
        out += ["--set", o]
    return out


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    ptr = (run_dir / "checkpoints" / "latest").read_text().strip()
    return load_file(str(run_dir / "checkpoints" / ptr / "model" / "model.safetensors"))


def _stable(rows):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def _metrics(run_dir: Path):
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _job_id(output: str) -> str:
    m = re.search(r"submitted Slurm job (\d+)", output)
    assert m, output
    return m.group(1)


def _local_reference(test_overrides, tmp_path, steps: int, seed: int, extra=()):
    from zppo_core.config import load_config
    from zppo_core.train.run import train

    cfg = load_config("tiny", overrides=test_overrides + COMMON + list(extra) + [f"run.steps={steps}",
                                                                              f"run.seed={seed}"])
    return train(cfg, run_dir=tmp_path / "local")


def _assert_same_final_state(slurm_dir: Path, local_dir: Path) -> None:
    w_s, w_l = _weights(slurm_dir), _weights(local_dir)
    assert set(w_s) == set(w_l)
    for k in w_l:
        assert torch.equal(w_s[k], w_l[k]), k
    assert _stable(_metrics(slurm_dir)) == _stable(_metrics(local_dir))


def _listed(job_id: str) -> dict:
    """`zppo jobs --json`'s entry for this job."""
    ls = runner.invoke(app, ["jobs", "--json", "--all"])
    assert ls.exit_code == 0, ls.output
    rows = [json.loads(line) for line in ls.output.splitlines() if line.strip()]
    return next(r for r in rows if r["id"] == job_id)


def _sacct_records(job_id: str) -> list[tuple[str, str]]:
    out = subprocess.run(["sacct", "-D", "-X", "-n", "-P", "-j", job_id, "-o", "JobID,State"], capture_output=True,
                         text=True, check=True).stdout
    return [tuple(line.split("|")[:2]) for line in out.splitlines() if line.strip()]


def test_train_on_slurm_matches_local_run_and_jobs_lists_it(slurm_cluster, prepared, test_overrides, tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "slurm"
    r = runner.invoke(app, ["train", "--executor", "slurm", "--steps", "3", "--seed", "4", "--run-dir", str(run_dir),
                            *_sets(test_overrides + COMMON)], terminal_width=200)
    assert r.exit_code == 0, r.output
    job_id = _job_id(r.output)
    assert f"run dir: {run_dir}" in r.output and f"{job_id}_0_log.out" in r.output
    local = _local_reference(test_overrides, tmp_path, steps=3, seed=4)  # runs while the job does

    w = runner.invoke(app, ["jobs", "wait", job_id], terminal_width=200)
    assert w.exit_code == 0, w.output
    assert f"job {job_id}" in w.output and "completed" in w.output

    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step_000003"
    _assert_same_final_state(run_dir, local.run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    run = MlflowClient().get_run(meta["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["zppo.run_dir"] == str(run_dir)
    assert [m.step for m in MlflowClient().get_metric_history(run.info.run_id, "train/accuracy")] == [1, 2, 3]
    # the submitted, resolved config sits beside the run dir with submitit's logs
    assert (tmp_path / "slurm.job" / "config.yaml").is_file()

    row = _listed(job_id)
    assert row["state"] == "COMPLETED" and row["result"] == "success" and row["mlflow_run_id"] == meta["mlflow_run_id"]
    assert (row["step"], row["steps"], row["run_dir"]) == (3, 3, str(run_dir))
    table = runner.invoke(app, ["jobs"])
    assert table.exit_code == 0 and job_id in table.output and "zppo jobs" in table.output
    assert dict(_sacct_records(job_id))[job_id] == "COMPLETED"
    logs = runner.invoke(app, ["jobs", "logs", job_id, "--stream", "out"], terminal_width=200)
    assert logs.exit_code == 0 and "zppo: step 3/3" in logs.output


def test_time_limit_requeues_and_finishes_like_an_uninterrupted_run(slurm_cluster, prepared, test_overrides,
                                                                    tmp_path):
    """A one-minute time limit with the timeout signal 10 s before it: Slurm signals the job while it trains,
    submitit calls checkpoint() and requeues; the requeued job resumes from the latest checkpoint and ends with the
    same weights and metrics as an uninterrupted run, in the same MLflow run.

    slurmctld checks time limits every 30 s and sends the signal at the first check at most `signal_delay_s + 30`
    before the limit, i.e. 20-50 s into each attempt here. The step count is set from this machine's speed, measured
    by a short local run now (`_steps_lasting`), so that training lasts TRAIN_S_FOR_TIMEOUT s and the first attempt
    is always signalled on a quiet machine and a loaded one alike (a fixed 400 steps finished unsignalled on a quiet
    CI machine). Later attempts may be signalled too; each resumes from the checkpoint written every step
    (max_requeues=20 leaves room for a machine slower during the test than during the calibration)."""
    from mlflow.tracking import MlflowClient

    seed = 6
    steps = _steps_lasting(TRAIN_S_FOR_TIMEOUT, test_overrides, tmp_path)
    run_dir = tmp_path / "slurm"
    r = runner.invoke(app, ["train", "--executor", "slurm", "--steps", str(steps), "--seed", str(seed),
                            "--run-dir", str(run_dir), "--slurm", "time_min=1", "--slurm", "signal_delay_s=10",
                            "--slurm", "max_requeues=20", *_sets(test_overrides + COMMON + ["run.checkpoint_every=1"])],
                       terminal_width=200)
    assert r.exit_code == 0, r.output
    job_id = _job_id(r.output)
    local = _local_reference(test_overrides, tmp_path, steps=steps, seed=seed, extra=["run.checkpoint_every=1"])

    w = runner.invoke(app, ["jobs", "wait", job_id], terminal_width=200)
    assert w.exit_code == 0, w.output
    records = _sacct_records(job_id)
    assert [s for _, s in records].count("REQUEUED") >= 1, records  # real accounting shows the requeue
    # the last attempt's work succeeded (Slurm itself may record FAILED if a timeout signal reaches srun as it
    # exits; submitit's result file, which --wait and `zppo jobs` read, is the truth about the work)
    assert registry.main_state(records[-1][1]) in registry.TERMINAL and _listed(job_id)["result"] == "success"
    out = (tmp_path / "slurm.job" / f"{job_id}_0_log.out").read_text()
    assert "checkpoint requested" in out and "resuming" in out
    # the signal only set a flag; the job checkpointed at the next step boundary, then requeued
    assert "USR2 received" in out and re.search(r"zppo: checkpointed \S+ at step \d+; requeueing", out)

    _assert_same_final_state(run_dir, local.run_dir)
    assert sorted({m["step"] for m in _metrics(run_dir)}) == list(range(1, steps + 1))
    meta = json.loads((run_dir / "run.json").read_text())
    run = MlflowClient().get_run(meta["mlflow_run_id"])  # one MLflow run across the requeue
    assert run.info.status == "FINISHED"
    exp = MlflowClient().get_experiment(run.info.experiment_id)
    same_dir = MlflowClient().search_runs([exp.experiment_id], filter_string=f"tags.`zppo.run_dir` = '{run_dir}'")
    assert [x.info.run_id for x in same_dir] == [meta["mlflow_run_id"]]


def test_failing_job_surfaces_the_remote_traceback(slurm_cluster, prepared, test_overrides, tmp_path):
    """A run whose checkpoint is corrupt fails on the node: --wait exits 1 and prints the node's traceback."""
    from zppo_core.config import dump_config, load_config

    run_dir = tmp_path / "broken"
    ckpt = run_dir / "checkpoints" / "step_000002"
    ckpt.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(dump_config(load_config("tiny", overrides=test_overrides + COMMON)))
    (ckpt / "state.pt").write_bytes(b"not a torch checkpoint")
    (run_dir / "checkpoints" / "latest").write_text("step_000002\n")
    r = runner.invoke(app, ["train", "--resume", str(run_dir), "--executor", "slurm", "--wait"], terminal_width=200)
    assert r.exit_code == 1, r.output
    text = r.output
    job_id = _job_id(text)
    assert "remote traceback of job" in text and "Traceback (most recent call last)" in text
    assert "state.pt" in text or "UnpicklingError" in text or "invalid load key" in text
    assert f"job {job_id}" in text and "failed on the node" in " ".join(text.split())
    assert f"zppo jobs logs {job_id}" in text and f"zppo train --resume {run_dir} --executor slurm" in text
    assert _listed(job_id)["state"] == "FAILED" and _listed(job_id)["result"] == "error"


def test_cancelled_job_is_reported_with_the_resume_command(slurm_cluster, prepared, test_overrides, tmp_path):
    run_dir = tmp_path / "cancel-me"
    r = runner.invoke(app, ["train", "--executor", "slurm", "--steps", "500", "--run-dir", str(run_dir),
                            *_sets(test_overrides + COMMON)], terminal_width=200)
    assert r.exit_code == 0, r.output
    job_id = _job_id(r.output)
    [rec] = registry.find_all(job_id)
    poll(lambda: registry.states([rec])[job_id]["state"] == "RUNNING", 60, f"job {job_id} to start")
    # a second job for the same run dir is refused while this one runs
    again = runner.invoke(app, ["train", "--executor", "slurm", "--steps", "5", "--run-dir", str(run_dir),
                                *_sets(test_overrides + COMMON)])
    assert again.exit_code == 2, again.output
    assert f"belongs to Slurm job {job_id}" in " ".join(again.output.split())
    c = runner.invoke(app, ["jobs", "cancel", job_id], terminal_width=200)
    assert c.exit_code == 0, c.output
    assert f"cancelled job {job_id}" in c.output and f"zppo train --resume {run_dir}" in c.output
    w = runner.invoke(app, ["jobs", "wait", job_id], terminal_width=200)
    assert w.exit_code == 3, w.output
    text = " ".join(w.output.split())
    assert "was cancelled" in text and f"continue with: zppo train --resume {run_dir} --executor slurm" in text
    assert _listed(job_id)["state"].startswith("CANCELLED")


def test_job_array_runs_every_task(slurm_cluster, tmp_path):
    specs = [JobSpec("zppo_cli.orchestration.jobs:echo", {"trial": i}, name="zppo-array", kind="trial")
             for i in range(3)]
    subs = submit(specs, executor="slurm", profile=slurm_cluster, overrides=["time_min=5"], folder=tmp_path / "arr")
    base = subs[0].job_id.split("_")[0]
    assert [s.job_id for s in subs] == [f"{base}_{i}" for i in range(3)]
    final = wait_states([s.record for s in subs], timeout_s=120)
    assert {registry.main_state(v["state"]) for v in final.values()} == {"COMPLETED"}
    results = [s.job.result() for s in subs]
    assert [x["kwargs"]["trial"] for x in results] == [0, 1, 2]
    assert [x["array_task"] for x in results] == ["0", "1", "2"]
    assert all(x["cwd"] == str(Path.cwd()) for x in results)
    w = runner.invoke(app, ["jobs", "wait", base], terminal_width=200)  # the base id follows the whole array
    assert w.exit_code == 0 and w.output.count("completed") == 3, w.output
    # a failing task in an array is reported with its traceback
    [bad] = submit(JobSpec("zppo_cli.orchestration.jobs:echo", {"fail": "trial exploded"}, name="zppo-bad"),
                   executor="slurm", profile=slurm_cluster, folder=tmp_path / "bad")
    w = runner.invoke(app, ["jobs", "wait", bad.job_id], terminal_width=200)
    assert w.exit_code == 1 and "RuntimeError: trial exploded" in w.output


def test_debug_executor_restarts_a_run_stopped_before_its_first_checkpoint(prepared, test_overrides, tmp_path):
    """The job's own logic, in this process: a partial run dir without checkpoint is discarded (with its MLflow
    run) and the run starts again; the result equals a clean run."""
    import shutil

    from mlflow.tracking import MlflowClient

    from zppo_core.config import dump_config, load_config
    from zppo_core.train.run import train
    from zppo_cli.orchestration.jobs import train_run

    cfg = load_config("tiny", overrides=test_overrides + COMMON + ["run.steps=2", "run.seed=8"])
    partial = tmp_path / "run"
    first = train(cfg, run_dir=partial, stop_after=1)
    shutil.rmtree(partial / "checkpoints")  # as if stopped before any checkpoint was written
    cfg_file = tmp_path / "config.yaml"
    cfg_file.write_text(dump_config(cfg))
    out = train_run(str(cfg_file), str(partial))
    assert out["mlflow_run_id"] != first.mlflow_run_id
    assert MlflowClient().get_run(first.mlflow_run_id).info.lifecycle_stage == "deleted"
    clean = train(cfg, run_dir=tmp_path / "clean")
    _assert_same_final_state(partial, clean.run_dir)

    r = runner.invoke(app, ["train", "--executor", "debug", "--steps", "2", "--seed", "8",
                            "--run-dir", str(tmp_path / "dbg"), *_sets(test_overrides + COMMON)], terminal_width=200)
    assert r.exit_code == 0, r.output
    assert "MLflow run:" in r.output
    _assert_same_final_state(tmp_path / "dbg", clean.run_dir)


TRAIN_S_FOR_TIMEOUT = 80.0  # > the 50 s by which the first time-limit signal has surely come, with margin


def _steps_lasting(seconds: float, test_overrides, tmp_path) -> int:
    """How many steps of the one-thread tiny recipe train for about `seconds` on this machine now, checkpoints
    included: the wall-time difference of a 40-step and a 10-step local run (checkpoints every step, as in the test)
    over 30, so that start-up cancels (perf/step_time_s leaves the checkpoint out, which made the job ~3x longer than
    planned and requeue it 6+ times). At least 100 steps, at most 4000."""
    import math

    from zppo_core.config import load_config
    from zppo_core.train.run import train

    wall = {}
    for n in (10, 40):
        cfg = load_config("tiny", overrides=test_overrides + COMMON + ["run.checkpoint_every=1", f"run.steps={n}",
                                                                       "run.seed=99"])
        wall[n] = train(cfg, run_dir=tmp_path / f"calibrate-{n}").seconds
    per_step = max((wall[40] - wall[10]) / 30, 1e-3)
    return max(100, min(4000, math.ceil(seconds / per_step)))


def test_two_task_job_checkpoints_at_a_step_boundary_on_slurms_signal_and_resumes_exactly(
        slurm_cluster, prepared, test_overrides, tmp_path):
    """A 2-task job (2 ranks, gloo, FSDP2) trains the tiny zppo recipe; while it trains, Slurm delivers USR2 to
    every task (`scancel --signal=USR2`, the signal a time limit or a preemption sends; the time-limit path itself is
    the one-task test above, through the same code): the ranks agree on it at the next step boundary, checkpoint
    together (DCP), rank 0 requeues, and the requeued job resumes from that checkpoint into the same MLflow run and
    ends with the same weights and metrics as an uninterrupted 2-rank run here. The signal is sent by the test
    because the time-limit signal arrives 20-50 s into an attempt (slurmctld checks every 30 s), which a short
    2-rank run cannot straddle at every machine speed. Checkpoints are otherwise only at the end."""
    from mlflow.tracking import MlflowClient

    from zppo_cli.launch import launch

    steps, sets = 8, test_overrides + COMMON + ["run.checkpoint_every=100", "run.steps=8", "run.seed=5"]
    run_dir = tmp_path / "two"
    r = runner.invoke(app, ["train", "--method", "zppo", "--executor", "slurm", "--run-dir", str(run_dir),
                            "--slurm", "tasks_per_node=2", "--slurm", "max_requeues=3", *_sets(sets)],
                      terminal_width=200)
    assert r.exit_code == 0, r.output
    job_id = _job_id(r.output)
    poll(lambda: run_dir.joinpath("metrics.jsonl").is_file() and len(_metrics(run_dir)) >= 2, 600,
         f"job {job_id} to train two steps", every_s=0.2)
    subprocess.run(["scancel", "--signal=USR2", job_id], check=True)
    from zppo_core.config import load_config
    from zppo_core.train.run import train  # noqa: F401  (the ranks import it by name)

    cfg = load_config("tiny", method="zppo", overrides=sets)
    local = launch(2, "zppo_cli.train_cmd:rank_main", {"cfg": cfg, "run_dir": str(tmp_path / "local"),
                                                        "resume": False})  # the uninterrupted run, meanwhile

    w = runner.invoke(app, ["jobs", "wait", job_id], terminal_width=200)
    assert w.exit_code == 0, w.output
    records = _sacct_records(job_id)
    assert [s for _, s in records].count("REQUEUED") >= 1, records
    assert _listed(job_id)["result"] == "success"
    out = (tmp_path / "two.job" / f"{job_id}_0_log.out").read_text()
    assert "USR2 received" in out and "checkpoint requested" in out
    saved = re.findall(r"zppo: checkpointed \S+ at step (\d+); requeueing", out)
    resumed = re.findall(r"zppo: resuming \S+ from step_(\d+)", out)
    assert saved and [int(x) for x in saved] == [int(x) for x in resumed], (saved, resumed)
    assert 2 <= int(saved[0]) < steps
    assert "USR2 received" in (tmp_path / "two.job" / f"{job_id}_1_log.out").read_text()  # rank 1 got it too
    assert [m["step"] for m in _metrics(run_dir)] == list(range(1, steps + 1))
    last = run_dir / "checkpoints" / f"step_{steps:06d}"
    assert (last / "dcp" / ".metadata").is_file() and (last / "model" / "config.json").is_file()
    assert sorted(p.name for p in (last / "rng").iterdir()) == ["rank_00000.pt", "rank_00001.pt"]
    _assert_same_final_state(run_dir, local.run_dir)
    meta = json.loads((run_dir / "run.json").read_text())
    run = MlflowClient().get_run(meta["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    exp = MlflowClient().get_experiment(run.info.experiment_id)
    same_dir = MlflowClient().search_runs([exp.experiment_id], filter_string=f"tags.`zppo.run_dir` = '{run_dir}'")
    assert [x.info.run_id for x in same_dir] == [meta["mlflow_run_id"]]
    assert max(m.step for m in MlflowClient().get_metric_history(run.info.run_id, "train/accuracy")) == steps
