"""The run record (train/record.py): which params apply to a method, run names, provenance, the dataset input."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

from zppo_core.config import flat_params, load_config
from zppo_core.train.run import default_run_dir
from zppo_core.train.record import (command_line, git_state, provenance_tags, run_name, run_params,
                                    training_dataset)


def _keys(method: str, *sets: str) -> set[str]:
    return set(run_params(load_config("tiny", method=method, overrides=list(sets))))


def test_params_only_for_what_applies_to_the_method():
    grpo, buf, both, zppo = (_keys(m) for m in ("grpo", "grpo_buffer", "grpo_both", "zppo"))
    assert not {k for k in grpo if k.startswith("zppo.")}
    assert {k for k in buf if k.startswith("zppo.")} == {"zppo.tau", "zppo.rho_replay", "zppo.capacity"}
    assert "zppo.capacity" not in both and "zppo.rho_replay" not in both and "zppo.rho_aug" in both
    assert {"zppo.tau", "zppo.capacity", "zppo.rho_aug", "zppo.teacher_group_size", "zppo.template"} <= zppo
    # a teacher only where the method uses one (grpo never loads it)
    assert not {k for k in grpo if "teacher" in k} and "model.teacher" in zppo
    assert "model.tiny_teacher.hidden_size" in zppo and "prepare.teacher_steps" in zppo
    for keys in (grpo, zppo):  # where/how a run executes is not a param
        assert not {k for k in keys if k.startswith("tracking.")}
        assert not {"run.run_dir", "run.threads", "rollout.batch_size", "algo.micro_batch_size",
                    "prepare.cache_dir"} & keys
        assert {"method", "scale", "run.seed", "run.steps", "optim.lr", "algo.n_new"} <= keys
    # the baselines: a teacher where they use one, their own knobs only
    hint, prefix, off = (_keys(m) for m in ("hint", "prefix", "off_distill"))
    assert "model.teacher" in hint and "model.teacher" in off and "model.teacher" not in grpo
    assert "baselines.hint_fraction" in hint and "baselines.prefix_fraction" not in hint
    assert "baselines.prefix_fraction" in prefix and "baselines.jsd_beta" in off and "baselines.jsd_beta" not in hint
    assert not {k for k in grpo | zppo if k.startswith("baselines.")}
    # candidate compression: the knob of the mode in use only
    assert "zppo.candidate_max_chars" in _keys("zppo", "zppo.compression=none")
    assert "zppo.compression_max_tokens" not in _keys("zppo", "zppo.compression=none")
    assert "zppo.compression_max_tokens" in _keys("zppo", "zppo.compression=teacher")
    # a served teacher / judge: its url and model when one is set (for a method that uses it); never how the
    # requests go (timeouts, retries, concurrency, the key's variable)
    assert not {k for k in zppo if "_endpoint." in k}
    served = _keys("zppo", "model.teacher_endpoint.url=http://t:8000/v1", "eval.judge_endpoint.url=http://j:8000/v1",
                   "eval.every=5", "eval.suites=[tiny-ood]")
    assert {k for k in served if "_endpoint." in k} == {"model.teacher_endpoint.url", "model.teacher_endpoint.model",
                                                         "eval.judge_endpoint.url", "eval.judge_endpoint.model"}
    assert not {k for k in _keys("grpo", "model.teacher_endpoint.url=http://t:8000/v1") if "teacher" in k}
    kw = _keys("zppo", "model.teacher_endpoint.url=http://t:8000/v1", "eval.every=0",
               "model.teacher_endpoint.chat_template_kwargs={enable_thinking: false}")
    assert "model.teacher_endpoint.chat_template_kwargs.enable_thinking" in kw
    # per-role chat-template keywords: the teacher's roles only where a teacher is used
    roles = ["model.chat_template_kwargs.teacher={enable_thinking: false}",
             "model.chat_template_kwargs.student={enable_thinking: false}"]
    assert "model.chat_template_kwargs.teacher.enable_thinking" in _keys("zppo", *roles)
    g = _keys("grpo", *roles)
    assert "model.chat_template_kwargs.teacher.enable_thinking" not in g
    assert "model.chat_template_kwargs.student.enable_thinking" in g
    # the judge's budget only with a judge in the reward
    assert "reward.judge_max_new_tokens" not in grpo and "reward.judge" in grpo
    assert "reward.judge_max_new_tokens" in _keys("grpo", "reward.judge=teacher")


def test_eval_params_only_when_evaluating_during_training():
    off = _keys("grpo", "eval.every=0")
    assert not {k for k in off if k.startswith("eval.")}
    on = _keys("grpo", "eval.every=5", "eval.suites=[tiny-ood]")
    assert {"eval.every", "eval.suites", "eval.per_level", "eval.samples"} <= on and "eval.limit" not in on
    assert len(run_params(load_config("tiny", method="grpo"))) < len(flat_params(load_config("tiny")))


def test_run_name_and_override():
    cfg = load_config("tiny", method="grpo_buffer", overrides=["run.seed=7"])
    assert re.fullmatch(r"grpo_buffer-tiny-s7-\d{8}-\d{6}", run_name(cfg))
    assert run_name(load_config("tiny", overrides=["tracking.run_name=mine"])) == "mine"
    # a default run dir names the MLflow run (same time stamp); a hand-named one does not
    assert run_name(cfg, Path("runs") / "grpo_buffer-tiny-s7-20260101-120000") == "grpo_buffer-tiny-s7-20260101-120000"
    assert run_name(cfg, Path("runs") / "my-experiment").startswith("grpo_buffer-tiny-s7-")
    assert default_run_dir(cfg).name.startswith("grpo_buffer-tiny-s7-")


def test_command_line_reads_like_what_was_typed():
    assert command_line(["/x/.venv/bin/zppo", "train", "--set", "a=b c"]) == "zppo train --set 'a=b c'"
    assert command_line(["/usr/bin/tool", "-x"]) == "tool -x"
    assert command_line(["/v/lib/python3.11/site-packages/pytest/__main__.py", "-q"]) == "python -m pytest -q"


def test_provenance_tags(tmp_path, monkeypatch):
    cfg = load_config("tiny", overrides=["tracking.description=zppo train --scale tiny --steps 3"])
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    tags = provenance_tags(cfg)
    assert tags["mlflow.note.content"] == "zppo train --scale tiny --steps 3"
    assert tags["mlflow.source.name"] == "zppo train" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"]
    repo = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert tags["mlflow.source.git.commit"] == head.stdout.strip()
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert provenance_tags(cfg)["mlflow.source.type"] == "JOB"
    assert git_state(tmp_path) == (None, False)  # not a checkout: no commit claimed


def test_training_dataset_synthetic_and_jsonl(tmp_path):
    a = training_dataset(load_config("tiny", overrides=["run.seed=1"]))
    b = training_dataset(load_config("tiny", overrides=["run.seed=2"]))
    c = training_dataset(load_config("tiny", overrides=["data.levels={1: 1.0}"]))
    assert a["name"] == "modsum" and a["source_type"] == "code"
    assert a["digest"] == b["digest"] != c["digest"]  # the seed orders the stream; the levels change the data
    data = tmp_path / "train.jsonl"
    data.write_text('{"question": "1+1", "answer": "2"}\n{"question": "2+2", "answer": "4"}\n')
    cfg = load_config("tiny", overrides=[f"data.path={data}"])
    d = training_dataset(cfg)
    assert d["name"] == "train" and d["source_type"] == "local"
    assert d["digest"] == hashlib.sha256(data.read_bytes()).hexdigest()[:12]
    assert d["profile"]["num_rows"] == 2 and d["source"]["uri"] == data.resolve().as_uri()
    assert "data.path" in run_params(cfg) and "data.families" not in run_params(cfg)


@pytest.mark.parametrize("method", ["grpo", "zppo"])
def test_every_param_key_is_a_config_field(method):
    cfg = load_config("tiny", method=method)
    assert set(run_params(cfg)) <= set(flat_params(cfg))
