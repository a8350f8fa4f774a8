"""Sweep workers at scale, on real storages and real processes (issue 18).

- 8 trial processes on one study, with the journal file, SQLite and a real MariaDB server started here: two workers
  are SIGKILLed mid-trial (which two, and after which step, is a seeded choice; the moment is observed from their
  runs' metrics and checkpoints, never slept for). Each killed trial is relaunched under the same number and resumes
  from its checkpoint; every trial is recorded exactly once, none is lost, and each has one MLflow run.
- Two `zppo sweep` processes on one study share its budget; when one is SIGKILLed together with one of its workers,
  the other sees its driver lock free, follows its surviving workers through their heartbeats and relaunches the
  killed trial from its checkpoint.

Trials are 4 steps (the takeover test: 24) of the session's tiny test models (eval and checkpoints every 2 steps,
one thread).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.orchestration.conftest import poll

pytestmark = pytest.mark.slow

SCALE_SWEEP = """
description: "test: many trial workers on one study"
method: zppo
objective: {metric: eval/tiny-ood/avg, direction: maximize}
sampler: {name: random, seed: 0}
pruner: {name: none}
set: ["eval.suites=[tiny-ood]"]
space:
  tau: {field: zppo.tau, low: 0.25, high: 0.75, step: 0.125}
"""
STEPS = 4
# the takeover test's trials: long enough that sweep B joins while A's first four still run. B's start (a new Python
# process: imports, storage, MLflow parent run) took 28 s at load ~5 while a 12-step trial took 22-25 s, so A took a
# freed slot first; both scale with the load, so what counts is their ratio: 24 steps give ~2x
TAKEOVER_STEPS = 24
SEED = 18


@pytest.fixture()
def scale_sets(prepared, test_overrides, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return list(test_overrides) + [f"run.steps={STEPS}", "eval.every=2", "eval.per_level=1", "eval.samples=1",
                                   "eval.max_new_tokens=24", "run.threads=1", "run.final_eval_per_level=0"]


def _set_args(sets):
    return [a for s in sets for a in ("--set", s)]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    """`zppo sweep ARGS` as its own process (heartbeat every second: a dead worker is known after 6 s)."""
    env = dict(os.environ, ZPPO_SWEEP_HEARTBEAT_S="1", OMP_NUM_THREADS="1", COLUMNS="200")
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", "from zppo_cli.app import main; main()", "sweep", *args],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)


def _wait(proc: subprocess.Popen, log: Path, timeout_s: float) -> str:
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"sweep still running after {timeout_s:.0f} s:\n{log.read_text()[-4000:]}")
    text = log.read_text()
    assert rc == 0, text[-4000:]
    return text


def _study(sdir: Path):
    import optuna

    from zppo_cli.orchestration.trial import open_storage

    meta = json.loads((sdir / "sweep.json").read_text())
    return optuna.load_study(study_name=meta["study"], storage=open_storage(meta["storage"])), meta


def _run_dir(sdir: Path, n: int) -> Path:
    return sdir / "trials" / f"{n:04d}" / f"{sdir.name}-t{n:03d}"


def _steps(rd: Path) -> list[int]:
    from zppo_core.run_dir import RunDir

    return [row["step"] for row in RunDir(rd).metrics()]


def _kill_when(sdir: Path, victims: dict[int, int], timeout_s: float) -> dict[int, int]:
    """SIGKILL each victim trial's worker once its run has logged step `k` (victims: number -> k) and has a
    checkpoint, before it finishes. Returns {number: the step it was killed after}."""
    from zppo_core.run_dir import RunDir

    killed: dict[int, int] = {}

    def check():
        for n, k in victims.items():
            if n in killed:
                continue
            tdir = sdir / "trials" / f"{n:04d}"
            assert not (tdir / "result.json").is_file(), f"trial {n} finished before its kill point (step {k})"
            rd = _run_dir(sdir, n)
            steps = _steps(rd)
            if steps and steps[-1] >= k and RunDir(rd).latest_checkpoint() is not None and (tdir / "launch.json").is_file():
                os.kill(json.loads((tdir / "launch.json").read_text())["pid"], signal.SIGKILL)
                killed[n] = steps[-1]
        return len(killed) == len(victims)

    poll(check, timeout_s, f"trials {sorted(victims)} to reach their kill points", every_s=0.1)
    return killed


def _children(parent_id: str):
    from mlflow.tracking import MlflowClient

    c = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = c.get_run(parent_id).info.experiment_id
    return c.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent_id}'")


def _check_every_trial_once(sdir: Path, trials: int, restarted: set[int], steps: int = STEPS) -> None:
    """Exactly `trials` trials, all COMPLETE with a value; the restarted ones relaunched once and resumed from a
    checkpoint; every run logged each step once; one finished MLflow run per trial, under the parent run."""
    study, meta = _study(sdir)
    assert [t.number for t in study.trials] == list(range(trials))
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * trials
    assert all(t.value is not None and set(t.intermediate_values) == set(range(2, steps + 1, 2)) for t in study.trials)
    assert {t.number for t in study.trials if t.user_attrs.get("restarts")} == restarted
    assert all(t.user_attrs["restarts"] == 1 for t in study.trials if t.number in restarted)
    for t in study.trials:
        assert _steps(_run_dir(sdir, t.number)) == list(range(1, steps + 1)), t.number
        result = json.loads((sdir / "trials" / f"{t.number:04d}" / "result.json").read_text())
        assert result["state"] == "complete" and result["value"] == t.value
        log = (sdir / "trials" / f"{t.number:04d}" / "worker.log").read_text()
        assert ("resuming" in log) == (t.number in restarted), log[-2000:]
    kids = _children(meta["parent_run_id"])
    assert sorted(int(k.data.tags["optuna.trial_number"]) for k in kids) == list(range(trials))
    assert all(k.info.status == "FINISHED" for k in kids)


# ------------------------------------------------------------------------------------------------ MariaDB
@pytest.fixture(scope="module")
def mariadb_url(tmp_path_factory):
    """A private MariaDB server on 127.0.0.1 (its own datadir and port), for the duration of this module."""
    missing = [b for b in ("mariadbd", "mariadb-install-db", "mariadb")
               if shutil.which(b, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None]
    if missing:
        pytest.fail(f"MariaDB is not installed ({', '.join(missing)} missing): `apt-get install mariadb-server` "
                    "(slurm/local-cluster.sh up, which CI runs, installs it)")
    root = tmp_path_factory.mktemp("mariadb")
    data, sock = root / "data", root / "mysqld.sock"
    user = ["--user=root"] if os.geteuid() == 0 else []
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    env = dict(os.environ, PATH=path)
    subprocess.run(["mariadb-install-db", "--no-defaults", *user, f"--datadir={data}", "--skip-test-db",
                    "--auth-root-authentication-method=normal"], check=True, capture_output=True, env=env)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(root / "mariadbd.out", "ab") as out:
        server = subprocess.Popen(["mariadbd", "--no-defaults", *user, f"--datadir={data}", f"--socket={sock}",
                                   f"--log-error={root / 'error.log'}", "--bind-address=127.0.0.1", f"--port={port}",
                                   "--skip-name-resolve", "--skip-log-bin", "--innodb-buffer-pool-size=64M"],
                                  stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    def sql(statement: str) -> bool:
        return subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e", statement],
                              capture_output=True, env=env).returncode == 0

    try:
        poll(lambda: server.poll() is not None or sql("SELECT 1"), 60, "mariadbd to accept connections", 0.2)
        assert server.poll() is None, (root / "error.log").read_text()[-2000:]
        assert sql("CREATE DATABASE optuna; CREATE USER 'zppo'@'127.0.0.1' IDENTIFIED BY 'zppo-test'; "
                   "GRANT ALL ON optuna.* TO 'zppo'@'127.0.0.1';")
        yield f"mysql+pymysql://zppo:zppo-test@127.0.0.1:{port}/optuna"
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()


# ------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("storage", ["journal", "sqlite", "mariadb"])
def test_eight_workers_two_killed_mid_trial_every_trial_recorded_once(storage, scale_sets, tmp_path, request):
    path = tmp_path / "scale.yaml"
    path.write_text(SCALE_SWEEP)
    url = {"journal": None, "sqlite": f"sqlite:///{tmp_path / 'optuna.db'}"}.get(storage)
    if storage == "mariadb":
        url = request.getfixturevalue("mariadb_url")
    rng = random.Random(f"{SEED}-{storage}")
    victims = {n: rng.choice([2, 3]) for n in sorted(rng.sample(range(8), 2))}
    log = tmp_path / "sweep.log"
    t0 = time.monotonic()
    proc = _start([str(path), "--trials", "8", "--parallel", "8", *(["--storage", url] if url else []),
                   *_set_args(scale_sets)], log)
    sdir = tmp_path / "runs" / "sweeps" / "scale-tiny"
    killed = _kill_when(sdir, victims, timeout_s=600)
    text = _wait(proc, log, timeout_s=900)
    seconds = time.monotonic() - t0
    _check_every_trial_once(sdir, 8, set(victims))
    for n in victims:
        assert f"trial {n}: worker killed by signal 9; relaunched, resumes from its checkpoint (restart 1" in text
    print(f"\n[scale] {storage}: 8 workers, 8 trials, killed {killed} (trial: step), 0 lost, {seconds:.0f} s")


def test_two_sweep_processes_share_the_budget_and_one_takes_over_a_killed_one(scale_sets, tmp_path):
    """A runs 4 trials at a time, B joins with room for 8: B takes the rest of the budget (4), then, when A and
    one of A's workers are SIGKILLed, claims A's trials at once (A's driver lock is free), follows the surviving
    workers through their heartbeats, and relaunches the killed one when its heartbeat stops."""
    path = tmp_path / "coop.yaml"
    path.write_text(SCALE_SWEEP)
    sdir = tmp_path / "runs" / "sweeps" / "coop-tiny"
    t0 = time.monotonic()
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    sets = [s for s in scale_sets if not s.startswith("run.steps=")] + [f"run.steps={TAKEOVER_STEPS}"]
    a = _start([str(path), "--trials", "8", "--parallel", "4", *_set_args(sets)], log_a)
    poll(lambda: (sdir / "trials" / "0003" / "launch.json").is_file(), 300, "sweep A to launch its 4 trials")
    b = _start([str(path), "--resume", "--parallel", "8"], log_b)

    def owned(pid: int) -> set[int]:
        study, _ = _study(sdir)
        return {t.number for t in study.trials if f"-{pid}-" in str(t.user_attrs.get("owner"))}

    try:
        poll(lambda: len(owned(b.pid)) == 4, 300, "sweep B to launch the other 4 trials of the budget")
        # kill one of A's workers mid-trial (seeded choice of trial and step, observed progress), then A itself
        rng = random.Random(SEED)
        victim = rng.choice(sorted(owned(a.pid)))
        _kill_when(sdir, {victim: rng.choice([2, 3])}, timeout_s=600)
        a.kill()
        a.wait(30)
        text_b = _wait(b, log_b, timeout_s=900)
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    seconds = time.monotonic() - t0
    _check_every_trial_once(sdir, 8, {victim}, steps=TAKEOVER_STEPS)
    started_a = {int(ln.split()[1].rstrip(":")) for ln in log_a.read_text().splitlines() if ": started (" in ln}
    started_b = {int(ln.split()[1].rstrip(":")) for ln in text_b.splitlines() if ": started (" in ln}
    assert started_a == {0, 1, 2, 3} and started_b == {4, 5, 6, 7}, (started_a, started_b)  # none started twice
    # B followed the killed worker by its heartbeat until it stopped, then relaunched it from its checkpoint
    assert f"trial {victim}: its sweep process is gone; following its worker (heartbeat)" in text_b, text_b[-3000:]
    assert (f"trial {victim}: its worker's heartbeat stopped (none for 6 s); relaunched, resumes from its checkpoint "
            "(restart 1 of") in text_b
    print(f"\n[scale] two sweep processes, 8 workers: A started {sorted(started_a)}, B {sorted(started_b)}; A and the "
          f"worker of trial {victim} killed, B took over; 8 trials, 0 lost, {seconds:.0f} s")
