"""The loop on 2 ranks (gloo, CPU, FSDP2) against 1 rank, on the prepared tiny models.

Rollouts are sampled per rank (each rank's own torch RNG), so two runs of different world sizes sample different
completions; the equality of the distributed arithmetic is therefore tested on recorded rollouts: the same 3 steps
of groups go through the loop's steps 6-7 (`Trainer.learn`) on 1 rank and on 2 ranks (groups dealt round-robin,
uneven: 5 groups over 2 ranks). Tolerances (float32 training, float64 advantage statistics), observed on this
machine and stated in the README: advantages equal to 1e-6 (float64 sums added in another order, cast to
float32), losses and grad norms to rtol 1e-5, gradients at every optimizer step to rtol 1e-4 / atol 1e-7, and the
parameters after 3 steps (6 AdamW updates) to atol 2e-6.
"""

from __future__ import annotations

import pickle

import pytest
import torch

from zppo_cli.launch import launch
from zppo_core.config import load_config

COMMON = ["run.threads=1", "eval.every=0", "tracking.enabled=false", "algo.n_new=5", "algo.updates_per_step=2"]


def _record_groups(cfg, tmp_path, steps: int = 3):
    """3 steps of graded plain groups sampled by the real engine from the prepared student (one process)."""
    from zppo_core.algo.reformulate import plain_prompt
    from tests.integration.dist_ranks import build_trainer
    from zppo_core.dist import LOCAL

    torch.set_num_threads(1)
    trainer = build_trainer(cfg, tmp_path / "record", LOCAL)
    out = []
    for _ in range(steps):
        qs = trainer.stream.next(cfg.algo.n_new)
        out.append(trainer._rollout_groups(trainer.engine, [("plain", q, plain_prompt(q, cfg.data.closer)) for q in qs],
                                           cfg.rollout.group_size))
    return out


def test_two_ranks_compute_what_one_rank_computes(prepared, test_overrides, tmp_path):
    from tests.integration.dist_ranks import learn_on_recorded

    cfg = load_config("tiny", overrides=test_overrides + COMMON)
    steps = _record_groups(cfg, tmp_path)
    assert any(0 < g.mean_reward < 1 for gs in steps for g in gs), "need non-trivial groups to learn from"
    path = tmp_path / "groups.pkl"
    path.write_bytes(pickle.dumps(steps))

    one = learn_on_recorded(cfg, str(path), str(tmp_path / "one"))
    two = launch(2, "tests.integration.dist_ranks:learn_on_recorded",
                 {"cfg": cfg, "groups_path": str(path), "run_dir": str(tmp_path / "two")})

    assert two["steps"][0]["mine"] == [g.id for g in steps[0][0::2]]  # rank 0's groups: 3 of 5 (uneven)
    worst = {"adv": 0.0, "grad": 0.0, "param": 0.0}
    for s1, s2 in zip(one["steps"], two["steps"]):
        a1, a2 = torch.tensor(s1["adv"]), torch.tensor(s2["adv"])
        assert a1.abs().max() > 0
        worst["adv"] = max(worst["adv"], float((a1 - a2).abs().max()))
        assert torch.allclose(a1, a2, rtol=0, atol=1e-6)
        for key in ("train/loss", "train/grad_norm", "train/entropy", "train/ratio_mean", "perf/train_tokens"):
            assert s2["metrics"][key] == pytest.approx(s1["metrics"][key], rel=1e-5, abs=1e-7), key
        assert len(s1["grads"]) == len(s2["grads"]) == 2  # I = 2 optimizer steps per rollout step
        for g1, g2 in zip(s1["grads"], s2["grads"]):
            assert set(g1) == set(g2)
            for name in g1:
                worst["grad"] = max(worst["grad"], float((g1[name] - g2[name]).abs().max()))
                assert torch.allclose(g1[name], g2[name], rtol=1e-4, atol=1e-7), name
        for name, p1 in s1["params"].items():
            worst["param"] = max(worst["param"], float((p1 - s2["params"][name]).abs().max()))
    last1, last2 = one["steps"][-1]["params"], two["steps"][-1]["params"]
    moved = max(float((last1[k] - steps_initial).abs().max()) for k, steps_initial in
                ((k, _initial(cfg)[k]) for k in last1 if k in _initial(cfg)))
    assert moved > 1e-5  # the parameters did move: the comparison below is not trivially true
    for name, p1 in last1.items():
        assert torch.allclose(p1, last2[name], rtol=0, atol=2e-6), name
    print(f"observed max |1 rank - 2 ranks|: {worst}")


_INITIAL: dict = {}


def _initial(cfg):
    if not _INITIAL:
        from zppo_core.train.run import load_models

        student, _, _ = load_models(cfg, False, lambda s: None)
        _INITIAL.update({k: v.detach().clone() for k, v in student.model.state_dict().items()})
    return _INITIAL
