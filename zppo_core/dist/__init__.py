"""torch.distributed for the one training loop: the process group, rank helpers and the collectives the loop uses.

A run is N ranks of the same loop (`zppo_core.train.loop`), launched by `zppo train --nproc N` (torch's elastic
launcher), `torchrun`, or a multi-task Slurm job (one task per GPU). `init_from_env()` reads the launcher's
variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and starts the process group: `gloo` on CPU,
`nccl` on GPUs. Without those variables (or with WORLD_SIZE=1) it returns `LOCAL`, a one-rank `Dist` whose
collectives are identities, so the single-process loop runs exactly as before (no process group, no FSDP).

What the loop needs from the ranks (see `train/loop.py`):

- `map_shards(items, fn, light)`: each rank runs `fn` on its round-robin share of a list every rank holds (its
  questions, BCQ/NCQ prompts, teacher requests); the results come back in the list's order on every rank, other
  ranks' results reduced by `light` (e.g. completions without token ids). A group never spans ranks.
- `sum` / `max` / `any`: all-reduce of a few floats (advantage sums, token counts, metrics, the stop flag).
- `on_main(fn)` / `main_only(fn)`: rank 0 runs `fn` (the preflight, the run dir, the MLflow run, preparing the tiny
  models); every rank gets its value (`on_main`) and raises its error, so a bad input stops all ranks with the same
  one-line message.
- `check_replicas(what, obj)`: the replicated state (data cursor, replay buffer, the run's Python RNG, group ids)
  must be equal on every rank; a digest of it is compared after every step and a divergence stops the run.

Stop requests (`request_stop`): a signal handler (Slurm's USR2 before a time limit or a preemption) sets a flag;
the loop agrees on it at the next step boundary with an all-reduce (any rank's flag counts), checkpoints
collectively and returns, and the job requeues itself (`zppo_cli.orchestration.jobs`). Nothing collective ever
runs inside a signal handler.

FSDP2 wrapping and full-weight gathering are in `dist/fsdp.py`, sharded checkpoints (DCP) in `dist/checkpoint.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")

DEFAULT_TIMEOUT_MIN = 60.0  # a collective waits this long for the slowest rank (ZPPO_DIST_TIMEOUT_MIN overrides)


class ReplicaMismatch(RuntimeError):
    """The replicated state of the ranks diverged (a bug: the run stops rather than train on inconsistent data)."""


class RankError(RuntimeError):
    """Raised on every rank when `on_main`'s function failed on rank 0 with an error that cannot be re-raised as is."""


@dataclass(frozen=True)
class Dist:
    """This process's place in the run: rank, world size, local rank, and the device collectives run on."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: str = "cpu"  # "cpu" (gloo) or "cuda:<local_rank>" (nccl)

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device_type(self) -> str:
        return self.device.split(":")[0]

    # ------------------------------------------------------------------ shares of a list
    def mine(self, items: Sequence[T]) -> list[T]:
        """This rank's round-robin share of `items` (every item on one rank only)."""
        return list(items[self.rank :: self.world])

    def map_shards(self, items: Sequence[T], fn: Callable[[list[T]], list[R]],
                   light: Callable[[R], R] | None = None) -> list[R]:
        """`fn` on this rank's share of `items` (one result per item, in order); returns every item's result in
        the order of `items` on every rank. Other ranks' results pass through `light` before they travel (this
        rank's own stay whole). A rank with no share still takes part in the exchange."""
        share = self.mine(items)
        own = list(fn(share)) if share else []
        if len(own) != len(share):
            raise ValueError(f"map_shards: fn returned {len(own)} results for {len(share)} items")
        if not self.enabled:
            return own
        parts = self.gather_objects([light(x) for x in own] if light is not None else own)
        parts[self.rank] = own
        out: list[Any] = [None] * len(items)
        for r, part in enumerate(parts):
            out[r :: self.world] = part
        return out

    # ------------------------------------------------------------------ collectives (identities on one rank)
    def _tensor(self, values: Sequence[float]):
        import torch

        return torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)

    def _all_reduce(self, values: Sequence[float], op: str) -> list[float]:
        """Element-wise `op` (a torch.distributed.ReduceOp name) over the ranks, in float64."""
        if not self.enabled or not values:
            return [float(v) for v in values]
        import torch.distributed as td

        t = self._tensor(values)  # [k]
        td.all_reduce(t, op=getattr(td.ReduceOp, op))
        return t.cpu().tolist()

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sum over the ranks (float64)."""
        return self._all_reduce(values, "SUM")

    def max(self, values: Sequence[float]) -> list[float]:
        """Element-wise maximum over the ranks."""
        return self._all_reduce(values, "MAX")

    def any(self, *flags: bool) -> list[bool]:
        """Each flag is true on some rank."""
        return [v > 0 for v in self.max([1.0 if f else 0.0 for f in flags])]

    def sum_tensor(self, t):
        """All-reduce (sum) a tensor in place on the collective device and return it (the caller's device/dtype)."""
        if not self.enabled:
            return t
        import torch.distributed as td

        buf = t.detach().to(self.device)
        td.all_reduce(buf, op=td.ReduceOp.SUM)
        return buf.to(device=t.device, dtype=t.dtype)

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order (pickled)."""
        if not self.enabled:
            return [obj]
        import torch.distributed as td

        out: list[Any] = [None] * self.world
        td.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """Rank `src`'s `obj` on every rank."""
        if not self.enabled:
            return obj
        import torch.distributed as td

        box = [obj if self.rank == src else None]
        td.broadcast_object_list(box, src=src)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as td

            td.barrier()

    def on_main(self, fn: Callable[[], T]) -> T:
        """Rank 0 runs `fn`; every rank returns its value, or raises its exception (same type and message)."""
        if not self.enabled:
            return fn()
        result: tuple[str, Any] = ("ok", None)
        if self.is_main:
            try:
                result = ("ok", fn())
            except BaseException as err:  # re-raised below, on every rank
                result = ("err", err)
        kind, value = self.broadcast(_picklable(result))
        if kind == "err":
            raise value
        return value

    def main_only(self, fn: Callable[[], T]) -> T | None:
        """Rank 0 runs `fn` and gets its value (the others get None); an error of rank 0 is raised on every rank.
        For values that cannot travel (an MLflow tracker)."""
        if not self.enabled:
            return fn()
        value, result = None, ("ok", None)
        if self.is_main:
            try:
                value = fn()
            except BaseException as err:  # re-raised below, on every rank
                result = ("err", err)
        kind, err = self.broadcast(_picklable(result))
        if kind == "err":
            raise err
        return value

    def check_replicas(self, what: str, obj: Any) -> str:
        """The digest of `obj`, which must be equal on every rank: ReplicaMismatch names the ranks that differ."""
        digest = state_digest(obj)
        if not self.enabled:
            return digest
        digests = self.gather_objects(digest)
        if len(set(digests)) > 1:
            odd = [r for r, d in enumerate(digests) if d != digests[0]]
            raise ReplicaMismatch(f"{what}: the replicated state of rank(s) {odd} differs from rank 0's "
                                  f"({digests[0][:12]} vs {', '.join(digests[r][:12] for r in odd)}); the ranks "
                                  "diverged, stopping rather than training on inconsistent data")
        return digest


LOCAL = Dist()
_current: Dist = LOCAL


def _picklable(result: tuple[str, Any]) -> tuple[str, Any]:
    kind, value = result
    if kind != "err":
        return result
    try:
        pickle.dumps(value)
        return result
    except Exception:
        return ("err", RankError(f"rank 0: {type(value).__name__}: {value}"))


def state_digest(obj: Any) -> str:
    """sha256 of a JSON rendering of `obj` (tuples as lists, keys sorted, anything else by repr)."""
    text = json.dumps(obj, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from the launcher's variables (torchrun, the elastic launcher, or a Slurm job
    whose variables `zppo_cli.orchestration.jobs` exported); (0, 1, 0) when none are set."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1, 0
    return int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0"))


def init_from_env(device_type: str | None = None, timeout_min: float | None = None) -> Dist:
    """The run's `Dist`: starts the process group (once per process) when the launcher's variables say there is
    more than one rank; `LOCAL` otherwise. `device_type`: "cuda" (nccl) or "cpu" (gloo); default cuda when
    available. The timeout is how long a collective waits for the slowest rank (default 60 min, or
    $ZPPO_DIST_TIMEOUT_MIN)."""
    global _current
    import torch
    import torch.distributed as td

    rank, world, local_rank = env_world()
    if world <= 1:
        _current = LOCAL
        return LOCAL
    if td.is_initialized():
        if td.get_world_size() != world or td.get_rank() != rank:
            raise RuntimeError(f"a process group of world size {td.get_world_size()} is already running, but the "
                               f"environment says rank {rank} of {world}")
        return _current
    if device_type is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    from datetime import timedelta

    minutes = timeout_min if timeout_min is not None else float(os.environ.get("ZPPO_DIST_TIMEOUT_MIN",
                                                                               DEFAULT_TIMEOUT_MIN))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
        td.init_process_group("nccl", timeout=timedelta(minutes=minutes), device_id=torch.device(device))
    else:
        device = "cpu"
        td.init_process_group("gloo", timeout=timedelta(minutes=minutes))
    _current = Dist(rank=rank, world=world, local_rank=local_rank, device=device)
    return _current


def current() -> Dist:
    """The `Dist` of this process (`LOCAL` until `init_from_env` started a process group)."""
    return _current


def shutdown() -> None:
    """Destroy the process group (end of a run)."""
    global _current
    import torch.distributed as td

    if td.is_initialized():
        td.destroy_process_group()
    _current = LOCAL


def rank_seed(seed: int, rank: int) -> int:
    """The torch seed of a rank: the run's seed on rank 0 (so one rank samples as the single-process run does),
    a hash of (seed, rank) on the others."""
    if rank == 0:
        return int(seed)
    h = hashlib.sha256(f"zppo-rank:{seed}:{rank}".encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


# ---------------------------------------------------------------------- stop requests (signal-safe: a flag only)
_stop_reason: str | None = None


def request_stop(reason: str = "stop requested") -> None:
    """Ask the loop to checkpoint and return at the next step boundary (safe to call from a signal handler)."""
    global _stop_reason
    _stop_reason = reason


def stop_requested() -> str | None:
    """The reason given to `request_stop`, or None."""
    return _stop_reason


def clear_stop() -> None:
    global _stop_reason
    _stop_reason = None
