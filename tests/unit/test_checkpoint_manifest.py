"""Checkpoint manifests: every file's size and sha256 written last; a truncated, corrupted or half-written checkpoint
is detected and the previous one used (with a warning); a checkpoint is loaded with weights_only=True, so a crafted
pickle is refused without running anything. Real checkpoints of a tiny model, damaged on disk."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

from zppo_core.config.schema import TinyModelSpec
from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
from zppo_core.run_dir import MANIFEST, RunDir, check_checkpoint
from zppo_core.train import checkpoint as ck


@pytest.fixture
def parts():
    tok = build_char_tokenizer()
    model = build_tiny_model(TinyModelSpec(num_hidden_layers=1, hidden_size=32, intermediate_size=64, head_dim=8,
                                           num_attention_heads=2, num_key_value_heads=1), tok, 0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.tensor([[1, 2, 3]])).logits.sum().backward()
    opt.step()  # a real AdamW state (exp_avg, exp_avg_sq, step)
    return model, tok, opt


def _save(run, parts, step, **state):
    model, tok, opt = parts
    import random

    return ck.save_checkpoint(run, step, model, tok, opt, {"step": step, "python_rng": random.Random(step).getstate(),
                                                           "torch_rng": torch.get_rng_state(), **state}, keep=3)


def test_manifest_lists_every_file_with_size_and_sha256(tmp_path, parts):
    import hashlib

    c = _save(tmp_path, parts, 1)
    files = json.loads((c / MANIFEST).read_text())["files"]
    on_disk = sorted(str(p.relative_to(c)) for p in c.rglob("*") if p.is_file() and p.name != MANIFEST)
    assert sorted(files) == on_disk and "optimizer.pt" in files and "model/model.safetensors" in files
    for rel, e in files.items():
        assert e["size"] == (c / rel).stat().st_size
        assert e["sha256"] == hashlib.sha256((c / rel).read_bytes()).hexdigest()
    assert check_checkpoint(c, verify=True) is None
    # files added to a checkpoint later (an exported model directory) are not its concern
    (c / "extra").mkdir()
    (c / "extra" / "x.bin").write_bytes(b"123")
    assert check_checkpoint(c, verify=True) is None


@pytest.mark.parametrize("damage", ["truncate", "delete", "manifest"])
def test_a_visibly_damaged_latest_falls_back_to_the_previous_with_a_warning(tmp_path, parts, damage):
    _save(tmp_path, parts, 1)
    c2 = _save(tmp_path, parts, 2)
    if damage == "truncate":
        data = (c2 / "optimizer.pt").read_bytes()
        (c2 / "optimizer.pt").write_bytes(data[: len(data) // 2])
    elif damage == "delete":
        (c2 / "model" / "model.safetensors").unlink()
    else:
        (c2 / MANIFEST).write_text('{"files": ')
    warnings: list[str] = []
    got = RunDir(tmp_path).latest_checkpoint(warn=warnings.append)
    assert got is not None and got.name == "step_000001"
    assert len(warnings) == 1 and "step_000002 is damaged" in warnings[0] and "using step_000001" in warnings[0]
    assert ck.load_state(got)["step"] == 1


def test_a_flipped_byte_is_caught_by_the_sha256_on_resume(tmp_path, parts):
    _save(tmp_path, parts, 1)
    c2 = _save(tmp_path, parts, 2)
    p = c2 / "model" / "model.safetensors"
    data = bytearray(p.read_bytes())
    data[len(data) - 5] ^= 0xFF  # inside the last tensor: same size, other bytes
    p.write_bytes(bytes(data))
    assert RunDir(tmp_path).latest_checkpoint().name == "step_000002"  # sizes alone cannot see it
    warnings: list[str] = []
    got = ck.require_checkpoint(tmp_path, verify=True, warn=warnings.append)
    assert got.name == "step_000001" and "model/model.safetensors does not match its sha256" in warnings[0]


def test_pointer_missing_or_pointing_at_a_vanished_step(tmp_path, parts):
    _save(tmp_path, parts, 1)
    c2 = _save(tmp_path, parts, 2)
    rd = RunDir(tmp_path)
    (rd.checkpoints / "latest").unlink()  # killed before the first pointer write: the newest complete one
    assert rd.latest_checkpoint() == c2
    os.replace(c2, rd.checkpoints / ".old-step_000002")  # killed while re-writing step 2 (old one moved aside)
    rd.point_latest(c2)
    assert rd.latest_checkpoint().name == "step_000001"
    # the next save clears what the killed one left
    _save(tmp_path, parts, 3)
    assert sorted(p.name for p in rd.checkpoints.iterdir()) == ["latest", "step_000001", "step_000003"]


def test_no_complete_checkpoint_is_one_line(tmp_path, parts):
    c1 = _save(tmp_path, parts, 1)
    (c1 / "state.pt").write_bytes(b"")
    with pytest.raises(ck.CheckpointError) as e:
        ck.require_checkpoint(tmp_path, verify=True, warn=lambda m: None)
    assert "no complete checkpoint (step_000001 damaged" in str(e.value) and "\n" not in str(e.value)


def test_resuming_from_an_older_checkpoint_removes_the_newer_ones_at_the_next_save(tmp_path, parts):
    for s in (2, 4, 6):
        _save(tmp_path, parts, s)
    c6 = RunDir(tmp_path).checkpoint(6)
    (c6 / "state.pt").write_bytes(b"broken")
    assert RunDir(tmp_path).latest_checkpoint(warn=lambda m: None).name == "step_000004"
    _save(tmp_path, parts, 5)  # the resumed run's next checkpoint: step 6 (damaged, from before) goes
    assert [p.name for p in RunDir(tmp_path).checkpoint_dirs()] == ["step_000002", "step_000004", "step_000005"]
    assert RunDir(tmp_path).latest_checkpoint().name == "step_000005"


def test_checkpoints_load_with_weights_only(tmp_path, parts):
    """state.pt and optimizer.pt hold tensors and plain data only; a resume restores the Python RNG from it."""
    import random

    model, tok, opt = parts
    c = _save(tmp_path, parts, 3, method={"buffer": {"buffered": [{"id": "q1", "meta": {"a": [1, 2]}}]}})
    state = torch.load(c / "state.pt", weights_only=True)
    r = random.Random()
    r.setstate(state["python_rng"])
    assert r.random() == random.Random(3).random() and state["method"]["buffer"]["buffered"][0]["meta"]["a"] == [1, 2]
    opt2 = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ck.load_optimizer(c, opt2)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_pickle_is_refused_without_running(tmp_path, parts):
    c = _save(tmp_path, parts, 1)
    marker = tmp_path / "pwned"
    with open(c / "state.pt", "wb") as fh:
        torch.save({"step": 1, "x": _Exploit(marker)}, fh, pickle_module=pickle)
    with pytest.raises(ck.CheckpointError) as e:
        ck.load_state(c)
    assert "refusing to load it" in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()
