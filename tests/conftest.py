"""Shared fixtures: an isolated MLflow store and prepare cache per test session, and small prepared tiny models.

The prepared fixture runs the real `prepare` (SFT) with a short schedule on easy levels, so the loop tests use
real tiny models that solve some questions (non-zero rewards, non-trivial groups) within seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# small, fast settings shared by the loop tests (real models, real MLflow, short schedules)
TEST_OVERRIDES = [
    "prepare.student_warm_steps=150",
    "prepare.student_steps=30",
    "prepare.teacher_warm_steps=150",
    "prepare.teacher_steps=30",
    "prepare.batch_size=32",
    "data.levels={1: 0.5, 2: 0.5}",
    "model.tiny_student.num_hidden_layers=1",
    "model.tiny_teacher.num_hidden_layers=2",
    "algo.n_new=4",
    "rollout.group_size=4",
    "algo.updates_per_step=2",
    "rollout.max_new_tokens=24",
    "optim.lr=1e-4",
    "run.checkpoint_every=2",
    "eval.every=0",  # no periodic eval unless a test asks for it (the loop evaluates a run's last step)
]


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("zppo-env")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["ZPPO_TEST_CACHE"] = str(root / "prepared")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["XDG_CONFIG_HOME"] = str(root / "config")  # no user presets from the developer's ~/.config
    os.environ.pop("ZPPO_PRESETS", None)
    yield


@pytest.fixture(scope="session")
def test_overrides() -> list[str]:
    return TEST_OVERRIDES + [f"prepare.cache_dir={os.environ['ZPPO_TEST_CACHE']}"]


@pytest.fixture(scope="session")
def prepared(test_overrides) -> Path:
    from zppo_core.config import load_config
    from zppo_core.train.prepare import ensure_prepared

    return ensure_prepared(load_config("tiny", overrides=test_overrides))


# tiny-vl (images): a small Qwen3.5 VLM pair prepared in seconds; the loop tests need real image inputs, not skill
TEST_VL_OVERRIDES = [
    "prepare.student_warm_steps=30",
    "prepare.student_steps=10",
    "prepare.teacher_warm_steps=30",
    "prepare.teacher_steps=10",
    "prepare.batch_size=16",
    "data.levels={1: 0.5, 2: 0.5}",
    "model.tiny_student.hidden_size=64",
    "model.tiny_student.intermediate_size=128",
    "model.tiny_student.num_hidden_layers=2",
    "model.tiny_teacher.hidden_size=64",
    "model.tiny_teacher.intermediate_size=128",
    "model.tiny_teacher.num_hidden_layers=2",
    "algo.n_new=4",
    "rollout.group_size=4",
    "algo.updates_per_step=2",
    "rollout.max_new_tokens=16",
    "optim.lr=1e-4",
    "run.checkpoint_every=2",
    "run.final_eval_per_level=0",
    "eval.every=0",
    "eval.per_level=1",
    "eval.samples=1",
    "eval.max_new_tokens=16",
]


@pytest.fixture(scope="session")
def test_vl_overrides() -> list[str]:
    return TEST_VL_OVERRIDES + [f"prepare.cache_dir={os.environ['ZPPO_TEST_CACHE']}"]


@pytest.fixture(scope="session")
def prepared_vl(test_vl_overrides) -> Path:
    from zppo_core.config import load_config
    from zppo_core.train.prepare import ensure_prepared

    return ensure_prepared(load_config("tiny-vl", overrides=test_vl_overrides))
