"""Rank functions for the multi-rank tests (started by `zppo_cli.launch.launch`, one process per rank, gloo).

Each is a `module:function` target: it runs on every rank with RANK/WORLD_SIZE set and returns rank 0's findings
to the test. They drive the real loop and checkpoint code; what they add is observation (gradients at each
optimizer step through torch's public `register_step_pre_hook`, digests of the replicated state per step) and,
for the kill test, one rank killing itself at a chosen point.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
from pathlib import Path
from typing import Any

import torch


def build_trainer(cfg, run_dir: Path, dist):
    """The loop's Trainer over the prepared tiny student, set up as `train/run.py` does (sharded when several
    ranks), with a null tracker."""
    import copy

    from zppo_core.dist.fsdp import shard_model
    from zppo_core.rollout import make_engine
    from zppo_core.train.loop import Trainer
    from zppo_core.train.methods.registry import build_method
    from zppo_core.train.run import load_models, make_stream

    method = build_method(cfg)
    student, _, _ = load_models(cfg, False, lambda s: None)
    engine_model = student.model
    if dist.enabled:
        engine_model = copy.deepcopy(student.model).eval().requires_grad_(False)
        shard_model(student.model, dist)
    engine = make_engine(cfg, engine_model, student.tokenizer)
    return Trainer(cfg, run_dir, student.model, student.tokenizer, engine, make_stream(cfg), method, dist=dist)


def learn_on_recorded(cfg, groups_path: str, run_dir: str) -> dict[str, Any]:
    """Steps 6-7 of the loop (`Trainer.learn`) on recorded groups, 3 steps: per step the global advantages, the
    update metrics, the full gradient at every optimizer step and the full parameters after the step."""
    from zppo_core.dist import init_from_env
    from zppo_core.dist.fsdp import FullWeights, full_tensor

    torch.set_num_threads(1)
    d = init_from_env()
    steps = pickle.loads(Path(groups_path).read_bytes())
    trainer = build_trainer(cfg, Path(run_dir), d)
    grads: list[dict[str, torch.Tensor]] = []

    def capture(optimizer, args, kwargs):  # every rank, same order: full_tensor is a collective
        grads.append({n: full_tensor(p.grad).detach().clone() for n, p in trainer.model.named_parameters()
                      if p.grad is not None})

    trainer.optimizer.register_step_pre_hook(capture)
    idle = trainer._idle_forward
    idle_calls = []
    trainer._idle_forward = lambda: idle_calls.append(1) or idle()  # micro-batches this rank sat out
    out: dict[str, Any] = {"steps": [], "fixed_calls": trainer.fixed_calls, "share_prompts": trainer.share_prompts}
    for groups in steps:
        n_grads = len(grads)
        upd, adv, positions = trainer.learn(groups, {g.id for g in d.mine(groups)})
        parts = d.gather_objects((positions, adv.tolist()))
        n = sum(len(g.rollouts) for g in groups)
        global_adv = [0.0] * n
        for pos, values in parts:
            for p, v in zip(pos, values):
                global_adv[p] = v
        params = {k: v.clone() for k, v in FullWeights(trainer.model).state_dict().items()}
        out["steps"].append({"adv": global_adv, "metrics": upd, "grads": grads[n_grads:], "params": params,
                             "mine": [g.id for g in d.mine(groups)]})
    out["idle_forwards"] = sum(d.sum([float(len(idle_calls))]))  # over the ranks
    return out


def train_rank(cfg, run_dir: str, resume: bool, digests: str, kill: dict | None = None,
               stop_after: int | None = None) -> dict[str, Any]:
    """`train/run.py`'s `train` on this rank, recording the digest of the replicated state (data cursor, buffer,
    the run's RNG, group ids) after every step in `<digests>.rank<R>.jsonl`. `kill`: {"rank", "step", "where"}:
    that rank SIGKILLs itself during that step's checkpoint save, after writing its DCP shards ("after_shards")."""
    import zppo_core.dist as zdist
    from zppo_core.dist import Dist, init_from_env, state_digest
    from zppo_core.train.run import train

    torch.set_num_threads(1)
    d = init_from_env()
    log_path = Path(f"{digests}.rank{d.rank}.jsonl")
    original = Dist.check_replicas

    def check_replicas(self, what, obj):
        with open(log_path, "a") as fh:
            fh.write(json.dumps({"what": what, "step": obj["step"], "digest": state_digest(obj),
                                 "buffer": state_digest(obj["method"].get("buffer")),
                                 "cursor": obj["stream"].get("cursor")}) + "\n")
        return original(self, what, obj)

    Dist.check_replicas = check_replicas
    if kill is not None and kill["rank"] == d.rank:
        import torch.distributed.checkpoint as dcp

        save = dcp.save

        def save_then_die(state_dict, *args, **kwargs):
            result = save(state_dict, *args, **kwargs)
            if f"step_{kill['step']:06d}" in str(kwargs.get("checkpoint_id", "")):
                os.kill(os.getpid(), signal.SIGKILL)  # this rank's shards are written; the checkpoint is not
            return result

        dcp.save = save_then_die
    res = train(cfg if not resume else None, run_dir=Path(run_dir), resume=resume, stop_after=stop_after)
    assert zdist.current() is d
    return {"history": res.history, "mlflow_run_id": res.mlflow_run_id, "rank": d.rank}


def helpers(ckpt_dir: str) -> dict[str, Any]:
    """The rank helpers and FSDP2 pieces on their own (a tiny random model with tied embeddings): round-robin
    shares, reductions, rank 0's errors on every rank, full weights of the sharded model, a single-process
    checkpoint loaded into the sharded model and optimizer, and the replica check catching a divergence."""
    from zppo_core.config import ConfigError
    from zppo_core.config.schema import TinyModelSpec
    from zppo_core.dist import ReplicaMismatch, init_from_env
    from zppo_core.dist.fsdp import FullWeights, full_tensor, shard_model
    from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
    from zppo_core.train import checkpoint as ck

    torch.set_num_threads(1)
    d = init_from_env()
    out: dict[str, Any] = {}
    out["shares"] = d.map_shards(list("abcde"), lambda mine: [f"{x}{d.rank}" for x in mine])
    out["sum"], out["max"] = d.sum([1.0, d.rank]), d.max([d.rank, -d.rank])
    out["any"] = d.any(d.rank == 1, False)
    try:
        d.on_main(lambda: (_ for _ in ()).throw(ConfigError("bad input on rank 0")))
    except ConfigError as err:
        out["on_main_error"] = str(err)
    # a single-process checkpoint (HF weights + optimizer.pt keyed by parameter index) into the sharded model
    tok = build_char_tokenizer()
    spec = TinyModelSpec(num_hidden_layers=2, hidden_size=32, intermediate_size=64, head_dim=8,
                         num_attention_heads=2, num_key_value_heads=1)
    model = build_tiny_model(spec, tok, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(input_ids=torch.arange(5, 21).reshape(2, 8)).logits.square().mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if d.is_main:
        ck.save_checkpoint(Path(ckpt_dir), 1, model, tok, opt, {"step": 1, "torch_rng": torch.get_rng_state()})
    d.barrier()
    reference = {k: v.clone() for k, v in model.state_dict().items()}
    ref_exp_avg = {n: opt.state[p]["exp_avg"].clone() for n, p in model.named_parameters()}
    fresh = build_tiny_model(spec, tok, seed=2)  # other weights: the load must replace them
    shard_model(fresh, d)
    out["tied_after_sharding"] = fresh.lm_head.weight is fresh.model.embed_tokens.weight
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    ck.load_checkpoint(ck.latest_checkpoint(Path(ckpt_dir)), fresh, fresh_opt, d, seed=0)
    full = FullWeights(fresh).state_dict()
    out["weights_equal"] = all(torch.equal(full[k], reference[k]) for k in full)
    out["exp_avg_equal"] = all(torch.equal(full_tensor(fresh_opt.state[p]["exp_avg"]), ref_exp_avg[n])
                               for n, p in fresh.named_parameters())
    try:
        d.check_replicas("test", {"cursor": 3 + d.rank})
    except ReplicaMismatch as err:
        out["mismatch"] = str(err)
    out["same"] = d.check_replicas("test", {"cursor": 3})
    return out
