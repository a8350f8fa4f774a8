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


def _record_groups(cfg, tmp_path, steps: int = 3, tries: int = 12):
    """`steps` steps of graded plain groups sampled by the real engine from the prepared student (one process),
    keeping only steps with at least one non-trivial group (a step whose groups are all solved or all failed has
    zero advantages and compares nothing)."""
    from zppo_core.algo.reformulate import plain_prompt
    from tests.integration.dist_ranks import build_trainer
    from zppo_core.dist import LOCAL

    torch.set_num_threads(1)
    trainer = build_trainer(cfg, tmp_path / "record", LOCAL)
    out = []
    for _ in range(tries):
        qs = trainer.stream.next(cfg.algo.n_new)
        groups = trainer._rollout_groups(trainer.engine, [("plain", q, plain_prompt(q, cfg.data.closer)) for q in qs],
                                         cfg.rollout.group_size)
        if any(0 < g.mean_reward < 1 for g in groups):
            out.append(groups)
        if len(out) == steps:
            return out
    raise AssertionError(f"only {len(out)} of {tries} sampled steps had a non-trivial group; need {steps}")


@pytest.mark.parametrize("old_logprobs", ["engine", "trainer"])
def test_two_ranks_compute_what_one_rank_computes(prepared, test_overrides, tmp_path, old_logprobs):
    """π_old from the engine (recorded with the rollouts), or from the trainer (each rank's no-grad forward over
    its own micro-batches, padded with idle forwards to the same count as the other rank's; 2 rollouts per
    micro-batch, so the ranks' counts differ and idle forwards and backwards run)."""
    from tests.integration.dist_ranks import learn_on_recorded

    small = ["algo.micro_batch_size=2"] if old_logprobs == "trainer" else []
    cfg = load_config("tiny", overrides=test_overrides + COMMON + [f"algo.old_logprobs={old_logprobs}", *small])
    steps = _record_groups(cfg, tmp_path)
    path = tmp_path / "groups.pkl"
    path.write_bytes(pickle.dumps(steps))

    one = learn_on_recorded(cfg, str(path), str(tmp_path / "one"))
    two = launch(2, "tests.integration.dist_ranks:learn_on_recorded",
                 {"cfg": cfg, "groups_path": str(path), "run_dir": str(tmp_path / "two")})

    assert two["steps"][0]["mine"] == [g.id for g in steps[0][0::2]]  # rank 0's groups: 3 of 5 (uneven)
    # shared prompt pass on both (`models.logprobs`); on 2 ranks every micro-batch, an idle one too, makes its two
    # forward calls (FSDP2's forwards are collective)
    assert one["share_prompts"] and not one["fixed_calls"] and two["share_prompts"] and two["fixed_calls"]
    assert two["idle_forwards"] > 0 or not small  # a rank sat micro-batches out: the idle path ran
    worst = {"adv": 0.0, "grad": 0.0, "param": 0.0}
    for s1, s2 in zip(one["steps"], two["steps"]):
        a1, a2 = torch.tensor(s1["adv"]), torch.tensor(s2["adv"])
        assert a1.abs().max() > 0
        worst["adv"] = max(worst["adv"], float((a1 - a2).abs().max()))
        assert torch.allclose(a1, a2, rtol=0, atol=1e-6)
        keys = ["train/loss", "train/grad_norm", "train/entropy", "train/ratio_mean", "perf/train_tokens",
                "train/ratio_mean_first", "train/approx_kl_max"]
        if old_logprobs == "trainer":
            keys.append("rollout/logprob_abs_diff_mean")  # summed over the ranks' micro-batches
        for key in keys:
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
    print(f"observed max |1 rank - 2 ranks|: {worst}; idle forwards on 2 ranks: {two['idle_forwards']}")


_INITIAL: dict = {}  # the prepared student before training


def _initial(cfg):
    if not _INITIAL:
        from zppo_core.train.run import load_models

        student, _, _ = load_models(cfg, False, lambda s: None)
        _INITIAL.update({k: v.detach().clone() for k, v in student.model.state_dict().items()})
    return _INITIAL


# ----------------------------------------------------------------------------------- whole runs on 2 ranks
RUN_SETS = ["run.threads=1", "eval.every=0", "run.steps=6", "run.checkpoint_every=2", "zppo.samples_to_log=2",
            "algo.n_new=4"]


def _stable(rows):
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def _metrics(run_dir):
    import json

    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]


def _digests(prefix, rank):
    import json

    return [json.loads(x) for x in open(f"{prefix}.rank{rank}.jsonl")]


def _safetensors(model_dir):
    from safetensors.torch import load_file

    return load_file(str(model_dir / "model.safetensors"))


def test_two_rank_zppo_run_kill_resume_and_world_size_one(prepared, test_overrides, tmp_path):
    """`zppo train --nproc 2` runs the tiny zppo recipe to the end (one MLflow run, metrics.jsonl written once);
    a rank killed in the middle of a checkpoint save stops the run with a clear error and leaves no half-written
    checkpoint; the resumed run equals the uninterrupted one at every metric point, with the replicated state
    (buffer, cursor, RNG) equal on both ranks after every step; a 2-rank checkpoint resumes on 1 rank; the offline
    HF export of a sharded checkpoint equals the one written by the run."""
    import os
    import shutil
    import subprocess
    import sys

    from mlflow.tracking import MlflowClient

    from tests.integration.dist_ranks import train_rank  # noqa: F401  (the ranks import it by name)
    from zppo_cli.launch import RankFailed
    from zppo_core.dist.checkpoint import export_hf
    from zppo_core.train.run import train

    # 1. the uninterrupted run, through the command line
    full = tmp_path / "full"
    sets = [a for o in test_overrides + RUN_SETS for a in ("--set", o)]
    cmd = [sys.executable, "-m", "zppo_cli.app", "train", "--scale", "tiny", "--method", "zppo", "--nproc", "2",
           "--steps", "6", "--run-dir", str(full), *sets]
    env = dict(os.environ, OMP_NUM_THREADS="1", COLUMNS="200")
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert "zppo train · zppo · scale tiny" in p.stdout and "replay buffer" in p.stdout
    rows = _metrics(full)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # rank 0 alone writes metrics.jsonl
    meta_id = (full / "run.json").read_text()
    client = MlflowClient()
    runs = client.search_runs([client.get_experiment_by_name("zppo").experiment_id],
                              filter_string=f"tags.`zppo.run_dir` = '{full.resolve()}'")
    assert len(runs) == 1 and runs[0].info.run_id in meta_id and runs[0].info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/accuracy")] == [1, 2, 3, 4, 5, 6]
    last = full / "checkpoints" / "step_000006"
    assert (last / "dcp" / ".metadata").is_file() and (last / "model" / "config.json").is_file()
    assert sorted(x.name for x in (last / "rng").iterdir()) == ["rank_00000.pt", "rank_00001.pt"]
    assert any(r["zppo/replayed"] > 0 for r in rows[1:]) and sum(r["zppo/ncq_instances"] for r in rows) >= 1

    # 2. the same run, rank 1 killed while saving step 4's checkpoint (its shards written, the checkpoint not)
    cfg = load_config("tiny", method="zppo", overrides=test_overrides + RUN_SETS)
    part, digests = tmp_path / "part", str(tmp_path / "digests")
    args = {"cfg": cfg, "run_dir": str(part), "resume": False, "digests": digests}
    with pytest.raises(RankFailed, match=r"rank 1 \(pid \d+\) was killed by SIGKILL") as err:
        launch(2, "tests.integration.dist_ranks:train_rank", {**args, "kill": {"rank": 1, "step": 4}})
    assert err.value.rank == 1
    assert (part / "checkpoints" / "latest").read_text().strip() == "step_000002"
    assert sorted(x.name for x in (part / "checkpoints").iterdir() if x.name.startswith("step_")) == \
        ["step_000002"]  # step 4's directory never appeared (at most a .tmp- one, ignored and removed later)
    one_rank = tmp_path / "one-rank"
    shutil.copytree(part, one_rank)

    # 3. resumed on 2 ranks: every metric point equals the uninterrupted run's
    out = launch(2, "tests.integration.dist_ranks:train_rank", {**args, "resume": True})
    assert _stable(_metrics(part)) == _stable(rows)
    assert _stable(out["history"]) == _stable(rows)
    assert not [x for x in (part / "checkpoints").iterdir() if x.name.startswith(".")]
    w_full, w_part = _safetensors(last / "model"), _safetensors(part / "checkpoints" / "step_000006" / "model")
    assert set(w_full) == set(w_part) and all(torch.equal(w_full[k], w_part[k]) for k in w_full)
    d0, d1 = _digests(digests, 0), _digests(digests, 1)
    assert [x["step"] for x in d0] == [1, 2, 3, 4, 3, 4, 5, 6]  # killed attempt, then steps 3-6 resumed
    assert d0 == d1  # data cursor, buffer, RNG, group ids: identical on both ranks after every step
    assert len({x["buffer"] for x in d0}) > 2  # the buffer did change along the way

    # 4. the 2-rank checkpoint of step 2 resumed on one rank (resharded by DCP; sampling not bit-exact)
    res = train(None, run_dir=one_rank, resume=True)
    assert [r["step"] for r in _metrics(one_rank)] == [1, 2, 3, 4, 5, 6]
    assert _stable(_metrics(one_rank))[:2] == _stable(rows)[:2] and res.history[-1]["step"] == 6
    assert (one_rank / "checkpoints" / "step_000006" / "optimizer.pt").is_file()  # one rank: the HF format

    # 5. the offline export of a sharded checkpoint equals the run's own
    shutil.move(last / "model", tmp_path / "run-export")
    export_hf(last)
    again, run_export = _safetensors(last / "model"), _safetensors(tmp_path / "run-export")
    assert all(torch.equal(again[k], run_export[k]) for k in again)


# τ = 1, every hard question kept (ρ_aug = 1) and 16 teacher rollouts per question: the session's test teacher is
# weak (a few % correct), and the test needs steps where it solved some (checked below)
BASELINE_SETS = ["run.threads=1", "eval.every=0", "run.steps=2", "run.final_eval_per_level=0", "zppo.tau=1.0",
                 "zppo.capacity=6", "zppo.samples_to_log=2", "algo.n_new=6", "zppo.rho_aug=1.0",
                 "zppo.teacher_group_size=16"]


@pytest.mark.parametrize("name", ["off_distill", "prefix", "grpo_teacher_injected"])
def test_baselines_on_two_ranks(prepared, test_overrides, tmp_path, name):
    """The baselines whose training sequences come from the teacher run on 2 ranks: the teacher's groups travel
    whole (Off-Distill trains the sampling rank's share with the teacher's logits computed on that rank; Prefix
    forces their tokens, sent with each rank's share of the prompts; the drift baseline injects them, its student
    log-probs computed by every rank on the same sequences), the step's metrics are written once, they add up
    as on one rank, and the replicated state is identical on both ranks after every step."""
    import math

    from tests.integration.dist_ranks import train_rank  # noqa: F401  (the ranks import it by name)

    cfg = load_config("tiny", method=name, overrides=test_overrides + BASELINE_SETS)
    run, digests = tmp_path / "run", str(tmp_path / "digests")
    out = launch(2, "tests.integration.dist_ranks:train_rank",
                 {"cfg": cfg, "run_dir": str(run), "resume": False, "digests": digests})
    rows = _metrics(run)
    assert [r["step"] for r in rows] == [1, 2] and _stable(out["history"]) == _stable(rows)
    assert all(math.isfinite(v) for r in rows for v in r.values())
    d0, d1 = _digests(digests, 0), _digests(digests, 1)
    assert [x["step"] for x in d0] == [1, 2] and d0 == d1
    for r in rows:
        assert r["train/rollouts"] == 4 * r["train/groups"]  # G_S = 4 per group, every rank's groups counted
        kept = min(6, r.get("zppo/hard", 0))  # ρ_aug·n_new = 6 (as one rank's planner)
        solved = round(r.get("zppo/teacher_solved_frac", 0.0) * kept)
        if name == "off_distill":
            assert r["train/trained_sequences"] == r["distill/sequences"]
            assert "train/ratio_mean" not in r and (r["train/jsd"] > 0) == (r["train/trained_sequences"] > 0)
        if name == "prefix":
            assert r["zppo/prefix_groups"] == solved
            assert r["train/groups"] == cfg.algo.n_new + r.get("zppo/replayed", 0) + solved
        if name == "grpo_teacher_injected":
            assert r["zppo/injected"] == solved
            assert r["train/trained_sequences"] == r["train/rollouts"] + solved
    if name == "off_distill":
        assert sum(r["distill/sequences"] for r in rows) > 0  # some step trained on the teacher's sequences
    else:  # some prefix forced / teacher response injected: the teacher's token ids were used on both ranks
        assert sum(r.get("zppo/prefix_groups", r.get("zppo/injected", 0)) for r in rows) > 0


def test_rank_helpers_fsdp_and_a_one_rank_checkpoint_on_two_ranks(tmp_path):
    out = launch(2, "tests.integration.dist_ranks:helpers", {"ckpt_dir": str(tmp_path / "ckpt")})
    assert out["shares"] == ["a0", "b1", "c0", "d1", "e0"]  # round-robin, back in order on every rank
    assert out["sum"] == [2.0, 1.0] and out["max"] == [1.0, 0.0] and out["any"] == [True, False]
    assert out["on_main_error"] == "bad input on rank 0"  # rank 0's error, raised on rank 0 too
    assert out["tied_after_sharding"]  # embedding and LM head sharded as one group, still one parameter
    assert out["weights_equal"] and out["exp_avg_equal"]  # a single-process checkpoint resumes on 2 ranks
    assert "rank(s) [1] differs from rank 0's" in out["mismatch"] and len(out["same"]) == 64
