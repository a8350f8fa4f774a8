"""`submit(executor="local")`: submitit's LocalExecutor, whose own default time limit is 2 minutes (USR2, then a
requeue from the last checkpoint, killed after 3). zppo's local jobs (e.g. every run of `zppo reproduce`) must get
no such limit: the job reads the limit its controller enforces from its own environment."""

from __future__ import annotations

from zppo_cli.orchestration.submit import LOCAL_TIME_LIMIT_MIN, JobSpec, submit


def test_a_local_job_has_no_two_minute_limit(tmp_path):
    spec = JobSpec("os:getenv", {"key": "SUBMITIT_LOCAL_TIMEOUT_S"}, name="limit-probe")
    [sub] = submit([spec], executor="local", folder=tmp_path / "job")
    limit_s = int(sub.job.result())  # what submitit's local controller counts down from, in this job
    assert limit_s == 60 * LOCAL_TIME_LIMIT_MIN and limit_s >= 7 * 24 * 3600
