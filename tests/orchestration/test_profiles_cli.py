"""Profiles, dry run and bad input for `--executor slurm` (no cluster needed): the golden sbatch of a GPU profile,
one-line errors with exit 2 for unknown profiles/keys, wrong types, a missing Slurm installation; nothing created."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zppo_cli.app import app
from zppo_cli.orchestration import sbatch_text, slurm_params
from zppo_cli.orchestration.profiles import valid_keys

runner = CliRunner()
GOLDEN = Path(__file__).parent / "golden" / "gpu-8x8-2b.sbatch"


def _normalise(text: str, run_dir: Path) -> str:
    text = text.replace(str(run_dir.absolute()), "<JOB_DIR>")
    return text.replace(sys.executable, "<PYTHON>")


def _bad(args, *fragments):
    r = runner.invoke(app, args)
    assert r.exit_code == 2, r.output
    err = (r.stderr or r.output).strip()
    assert len(err.splitlines()) == 1 or "error:" in err.splitlines()[0], err
    text = " ".join(err.split())
    for f in fragments:
        assert f in text, text
    return text


def test_gpu_profile_sbatch_matches_the_reviewed_golden_file(tmp_path, monkeypatch):
    monkeypatch.delenv("ZPPO_SLURM_PROFILES", raising=False)
    run_dir = tmp_path / "runs" / "zppo-2b"
    r = runner.invoke(app, ["train", "--scale", "2b", "--method", "zppo", "--executor", "slurm", "--profile",
                            "gpu-8x8", "--run-dir", str(run_dir), "--dry-run"], terminal_width=400)
    assert r.exit_code == 0, r.output
    script = r.output[r.output.index("#!/bin/bash"):]
    got = _normalise(script, Path(str(run_dir) + ".job")).rstrip() + "\n"
    # the API renders the same script (zppo uses a teacher: the profile's teacher-server layout is on)
    job = Path(str(run_dir) + ".job")
    params = slurm_params("gpu-8x8", "2b", [], "zppo-zppo-2b",
                          teacher_serve=f"zppo serve teacher --config {job.absolute() / 'config.yaml'}")
    api = _normalise(sbatch_text(params, str(job)), job).rstrip() + "\n"
    assert api == got
    if os.environ.get("ZPPO_UPDATE_GOLDEN"):
        GOLDEN.write_text(got)
    assert got == GOLDEN.read_text(), "sbatch changed; review it and rerun with ZPPO_UPDATE_GOLDEN=1"
    # the multi-node essentials, spelled out: 6 student tasks per node, a teacher server on GPUs 6-7 of each node
    for line in ["#SBATCH --nodes=8", "#SBATCH --ntasks-per-node=6", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --signal=USR2@300", "export WORLD_SIZE=48", "export MASTER_PORT=",
                 "CUDA_VISIBLE_DEVICES=6,7 exec zppo serve teacher --config <JOB_DIR>/config.yaml --host 127.0.0.1 "
                 "--port 8000 --tensor-parallel-size 2", "curl -sf http://127.0.0.1:8000/v1/models"]:
        assert line in got
    assert got.index("zppo serve teacher") < got.index("srun --unbuffered")  # servers start before the students
    # the students' config points at their node's server
    assert re.search(r"url: http://127\.0\.0\.1:8000/v1 +# the node's teacher server", r.output), r.output
    assert "submitit parameters" in r.output and "max_num_timeout: 10" in r.output
    # the dry run shows where the ranks and the teacher run
    layout = " ".join(r.output[r.output.index("# layout:"):r.output.index("#!/bin/bash")].split())
    assert "8 node(s) x 6 task(s) = 48 rank(s)" in layout and "FSDP2-sharded" in layout
    assert "teacher served at http://127.0.0.1:8000/v1 (one server per node" in layout
    assert not run_dir.exists() and not job.exists()


def test_teacher_layout_only_for_runs_that_use_a_teacher(tmp_path):
    grpo = runner.invoke(app, ["train", "--scale", "2b", "--method", "grpo", "--executor", "slurm", "--profile",
                               "gpu-8x8", "--run-dir", str(tmp_path / "g"), "--dry-run"], terminal_width=400).output
    assert "#SBATCH --ntasks-per-node=8" in grpo and "zppo serve" not in grpo and "export WORLD_SIZE=64" in grpo
    assert "8 node(s) x 8 task(s) = 64 rank(s)" in grpo and "no teacher" in grpo
    remote = runner.invoke(app, ["train", "--scale", "2b", "--method", "zppo", "--executor", "slurm", "--profile",
                                 "gpu-8x8", "--run-dir", str(tmp_path / "z"), "--dry-run", "--set",
                                 "model.teacher_endpoint.url=http://teacher-node:8000/v1"], terminal_width=400).output
    assert "zppo serve" not in remote
    assert re.search(r"url: http://teacher-node:8000/v1 +# --set model\.teacher_endpoint\.url=", remote), remote
    assert "teacher served at http://teacher-node:8000/v1 (shared by the ranks)" in " ".join(remote.split())
    with pytest.raises(Exception, match="teacher_gpus_per_node"):
        slurm_params("gpu-8x8", "2b", ["teacher_gpus_per_node=8"], "n", teacher_serve="zppo serve teacher")
    with pytest.raises(Exception, match="fix: --slurm tasks_per_node=6"):
        slurm_params("gpu-8x8", "2b", ["tasks_per_node=8"], "n", teacher_serve="zppo serve teacher")


def test_layers_scale_then_profile_then_overrides():
    p = slurm_params("local", "2b", ["time_min=7", "mem_gb=1.5", "setup=[echo hi]"], "n")
    # scale 2b asks for 8 nodes x 8 GPUs; the local profile (one CPU node) wins; --slurm wins over both
    assert p.sbatch["nodes"] == 1 and "gpus_per_node" not in p.sbatch and p.sbatch["partition"] == "debug"
    assert p.sbatch["time"] == 7 and p.sbatch["mem"] == "1536MB" and p.sbatch["setup"] == ["echo hi"]
    assert p.world_size == 1 and p.max_num_timeout == 3
    gpu = slurm_params("gpu-8x8", "0.8b", ["nodes=2"], "n")
    assert gpu.world_size == 16 and gpu.sbatch["ntasks_per_node"] == 8 and "export WORLD_SIZE=16" in gpu.sbatch["setup"]


def test_job_tasks_get_torch_distributed_variables_from_slurm(monkeypatch):
    """What each task of a multi-task job exports (submitit's TorchDistributedEnvironment over Slurm's variables):
    2 nodes x 8 tasks, task 9 = node 1, local rank 1; one-node jobs meet on 127.0.0.1; one-task jobs export none."""
    from zppo_cli.orchestration.jobs import DIST_VARS, distributed_env

    for name in DIST_VARS:  # registered with monkeypatch so they are removed again afterwards
        monkeypatch.setenv(name, "unset")
    slurm = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "16", "SLURM_JOB_NUM_NODES": "2",
             "SLURM_NODEID": "1", "SLURM_PROCID": "9", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[017-018]",
             "MASTER_PORT": "24242"}
    for k, v in slurm.items():
        monkeypatch.setenv(k, v)
    env = distributed_env()
    assert env == {"MASTER_ADDR": "gpu017", "MASTER_PORT": "24242", "RANK": "9", "WORLD_SIZE": "16",
                   "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "8"}
    assert os.environ["RANK"] == "9"
    monkeypatch.setenv("SLURM_NTASKS", "2")
    monkeypatch.setenv("SLURM_JOB_NUM_NODES", "1")
    monkeypatch.setenv("SLURM_JOB_NODELIST", "zppo-node")
    monkeypatch.setenv("SLURM_PROCID", "1")
    assert distributed_env()["MASTER_ADDR"] == "127.0.0.1"
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert distributed_env() == {}


def test_multi_task_train_is_accepted_eval_and_sweeps_stay_single_process(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["train", "--method", "zppo", "--executor", "slurm", "--slurm", "tasks_per_node=2",
                            "--run-dir", str(tmp_path / "r"), "--dry-run"], terminal_width=300)
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "#SBATCH --ntasks-per-node=2" in text and "export WORLD_SIZE=2" in text
    assert "1 node(s) x 2 task(s) = 2 rank(s)" in text and "teacher in-process on every rank" in text
    r = runner.invoke(app, ["train", "--method", "grpo", "--nproc", "2", "--dry-run"], terminal_width=300)
    assert r.exit_code == 0 and "2 ranks on this machine" in r.output and "no teacher" in " ".join(r.output.split())
    _bad(["train", "--nproc", "2", "--executor", "slurm"], "--nproc 2 starts ranks on this machine",
         "--slurm tasks_per_node=N")
    _bad(["eval", "--suite", "tiny", "--executor", "slurm", "--slurm", "nodes=2"], "asks for 2 tasks", "zppo eval")
    assert not (tmp_path / "r").exists() and not (tmp_path / "runs").exists()


def test_bad_slurm_input_is_one_line_exit_2_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = ["train", "--executor", "slurm", "--run-dir", str(tmp_path / "r")]
    _bad(base + ["--profile", "nope"], "unknown Slurm profile 'nope'", "gpu-8x8", "local")
    text = _bad(base + ["--slurm", "gpus=4"], "unknown Slurm key 'gpus'", "valid keys:", "gpus_per_node")
    assert all(k in text for k in valid_keys())
    _bad(base + ["--slurm", "time=5"], "Slurm key 'time'", "time_min")
    _bad(base + ["--slurm", "nodes=many"], "Slurm key 'nodes'", "must be a int", "--slurm nodes=")
    _bad(base + ["--slurm", "nodes"], "--slurm 'nodes' is not key=value")
    prof = tmp_path / "mine.yaml"
    prof.write_text("partition: debug\ngpu_count: 2\n")
    _bad(base + ["--profile", str(prof)], "unknown Slurm key 'gpu_count'", "mine.yaml", "valid keys:")
    prof.write_text("partition: [debug\n")
    _bad(base + ["--profile", str(prof)], "mine.yaml", "not valid YAML")
    _bad(["train", "--profile", "local"], "--profile only apply to --executor slurm")
    _bad(["train", "--executor", "cloud"], "unknown executor", "local, slurm, debug")
    _bad(["jobs", "logs", "999999"], "unknown job id '999999'", "zppo jobs")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.job").exists() and not (tmp_path / "runs").exists()


def test_missing_slurm_installation_is_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    _bad(["train", "--executor", "slurm", "--run-dir", str(tmp_path / "r")],
         "Slurm is not installed here", "sbatch", "slurm/local-cluster.sh up")
    assert not (tmp_path / "r").exists() and not (tmp_path / "r.job").exists()
    # the dry run needs no Slurm: it only renders what would be submitted
    r = runner.invoke(app, ["train", "--executor", "slurm", "--dry-run", "--run-dir", str(tmp_path / "r")])
    assert r.exit_code == 0 and "#SBATCH --partition=debug" in r.output


@pytest.mark.parametrize("cmd", [["jobs"], ["jobs", "logs"], ["jobs", "cancel"], ["jobs", "wait"],
                                 ["jobs", "profiles"]], ids=" ".join)
def test_jobs_help(cmd):
    r = runner.invoke(app, cmd + ["--help"])
    assert r.exit_code == 0 and "Usage" in r.output


def test_train_help_lists_executor_options():
    out = runner.invoke(app, ["train", "--help"], terminal_width=200).output
    for opt in ["--executor", "--profile", "--slurm", "--wait"]:
        assert opt in out
    assert re.search(r"local.*slurm.*debug", " ".join(out.split()))
