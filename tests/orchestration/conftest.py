"""One real Slurm cluster per test session (slurm/local-cluster.sh), and an isolated job registry.

If the cluster is already up (`.ci/run` brings it up first), it is used and left running. If the Slurm
binaries are installed but the cluster is down and we are root, the fixture starts it and stops it at the end
of the session. Without the Slurm binaries the Slurm tests are skipped with the command that installs them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "slurm" / "local-cluster.sh"
BINARIES = ("sbatch", "sacct", "scancel", "slurmctld", "slurmd", "slurmdbd")


def _script(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=env)


def _missing() -> list[str]:
    path = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return [b for b in BINARIES if shutil.which(b, path=path) is None]


@pytest.fixture(scope="session")
def slurm_cluster():
    """The local single-node cluster (partition debug), up for the whole session."""
    missing = _missing()
    if missing:
        pytest.skip(f"Slurm binaries absent ({', '.join(missing)}): `sudo slurm/local-cluster.sh up` installs and "
                    "starts them (.ci/run does)")
    started = False
    if _script("status", timeout=60).returncode != 0:
        if os.geteuid() != 0:
            pytest.skip("the local Slurm cluster is down and starting it needs root: sudo slurm/local-cluster.sh up")
        up = _script("up")
        assert up.returncode == 0, f"slurm/local-cluster.sh up failed:\n{up.stderr[-3000:]}"
        started = True
    yield "local"
    if started:
        _script("down")


@pytest.fixture(scope="session", autouse=True)
def _job_registry(tmp_path_factory):
    """Jobs submitted by the tests are recorded in a registry of their own (and inherit it on the node)."""
    old = os.environ.get("ZPPO_STATE_DIR")
    os.environ["ZPPO_STATE_DIR"] = str(tmp_path_factory.mktemp("zppo-state"))
    os.environ.pop("ZPPO_SLURM_PROFILE", None)
    yield
    if old is None:
        os.environ.pop("ZPPO_STATE_DIR", None)
    else:
        os.environ["ZPPO_STATE_DIR"] = old


def poll(check, timeout_s: float, what: str, every_s: float = 0.5):
    """Poll `check()` until it returns a truthy value (returned) or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)
