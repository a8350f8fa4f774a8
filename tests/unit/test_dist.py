"""Rank helpers without a process group: round-robin shares and their reassembly (as N ranks would exchange them),
seeds, digests, what travels between ranks, Slurm durations, and the launcher's one-line failure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zppo_core.dist import LOCAL, Dist, rank_seed, state_digest
from zppo_core.dist.data import light
from zppo_core.types import Completion, Group, Question, Rollout
from zppo_cli.orchestration.preempt import parse_slurm_duration


class World:
    """N ranks in one process: rank r's `gather_objects` returns what every rank's share produced."""

    def __init__(self, world: int, fn):
        self.world, self.fn = world, fn

    def run(self, items, rank):
        world, fn = self.world, self.fn

        class Fake(Dist):
            def gather_objects(self, obj):
                return [[fn(x, r) for x in items[r::world]] for r in range(world)]

        return Fake(rank=rank, world=world).map_shards(items, lambda mine: [fn(x, rank) for x in mine])


@given(n=st.integers(0, 40), world=st.integers(1, 6))
def test_shares_partition_the_items_and_come_back_in_order(n, world):
    items = list(range(n))
    shares = [Dist(rank=r, world=world).mine(items) for r in range(world)]
    assert sorted(x for s in shares for x in s) == items  # every item on exactly one rank
    assert all(s == items[r::world] for r, s in enumerate(shares))
    w = World(world, lambda x, r: (x, r))
    for rank in range(world):
        assert w.run(items, rank) == [(x, x % world) for x in items]  # each computed by its owner, in order


def test_one_rank_is_the_identity():
    assert LOCAL.map_shards([1, 2, 3], lambda mine: [x * 2 for x in mine]) == [2, 4, 6]
    assert LOCAL.sum([1.5, 2]) == [1.5, 2.0] and LOCAL.any(True, False) == [True, False]
    assert LOCAL.on_main(lambda: 7) == 7 and LOCAL.gather_objects("x") == ["x"]
    with pytest.raises(ValueError, match="2 results for 3 items"):
        LOCAL.map_shards([1, 2, 3], lambda mine: mine[:2])


def test_seeds_digests_and_light_groups():
    assert rank_seed(11, 0) == 11 and len({rank_seed(11, r) for r in range(8)}) == 8
    assert state_digest({"a": 1, "b": (1, 2)}) == state_digest({"b": [1, 2], "a": 1})
    assert state_digest({"a": 1}) != state_digest({"a": 2})
    q = Question("q1", "1+1?", "2")
    g = Group(3, "plain", q, "1+1?", [Rollout("q1", 3, "plain", [1, 2], Completion([5, 6], [-0.1, -0.2], "2", True),
                                              1.0, "2")])
    lg = light(g)
    r = lg.rollouts[0]
    assert (r.prompt_ids, r.completion.token_ids, r.completion.logprobs) == ([], [], [])
    assert (r.completion.text, r.reward, r.extracted, lg.mean_reward, lg.id) == ("2", 1.0, "2", 1.0, 3)
    assert g.rollouts[0].completion.token_ids == [5, 6]  # the original is untouched


@pytest.mark.parametrize("text,seconds", [("0:40", 40), ("12:03", 723), ("1:02:03", 3723), ("2-01:00:00", 176400),
                                          ("5", 300), ("UNLIMITED", None), ("NOT_SET", None), ("", None)])
def test_slurm_durations(text, seconds):
    assert parse_slurm_duration(text) == seconds


def test_a_killed_rank_is_named_in_one_line(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from zppo_cli.launch import _failure_line

    killed = ProcessFailure(local_rank=1, pid=4321, exitcode=-9, error_file=str(tmp_path / "none.json"))
    broken = ProcessFailure(local_rank=0, pid=4320, exitcode=1, error_file=str(tmp_path / "none.json"))
    line, rank, sig = _failure_line(ChildFailedError("zppo", {0: broken, 1: killed}))
    assert (line, rank, sig) == ("rank 1 (pid 4321) was killed by SIGKILL", 1, "SIGKILL")


def test_a_sharded_served_engine_stays_a_chat_engine_and_sends_only_its_share():
    """`ShardedEngine` over a served model (ChatEngine: chat messages in) splits `generate_chat` like `generate`;
    over an in-process engine it is not a ChatEngine, so `generate_messages` renders token ids for it."""
    from zppo_core.dist.data import ShardedEngine
    from zppo_core.rollout.base import ChatEngine, SamplingParams, generate_messages

    class Served:
        def __init__(self):
            self.sent = []

        def generate_chat(self, conversations, params):
            self.sent += [c[0]["content"] for c in conversations]
            return [[Completion([], [], f"re:{c[0]['content']}", True)] for c in conversations]

    class InProcess:
        def generate(self, prompts, params):
            return [[Completion(p, [], "", True)] for p in prompts]

        def sync_weights(self, model):
            pass

    convs = [[{"role": "user", "content": t}] for t in "abcde"]

    class Rank1(Dist):  # rank 1 of 2; rank 0 answered its share (a, c, e) the same way
        def gather_objects(self, obj):
            return [[[Completion([], [], f"re:{t}", True)] for t in "ace"], obj]

    served = Served()
    sharded = ShardedEngine(served, Rank1(rank=1, world=2))
    assert isinstance(sharded, ChatEngine)
    outs = generate_messages(sharded, convs, SamplingParams(), render=lambda c: [0])
    assert served.sent == ["b", "d"]  # only this rank's share went to the server
    assert [o[0].text for o in outs] == [f"re:{t}" for t in "abcde"]  # every reply, in order
    plain = ShardedEngine(InProcess(), LOCAL)
    assert not isinstance(plain, ChatEngine)
    assert generate_messages(plain, convs, SamplingParams(), render=lambda c: [ord(c[0]["content"])])[1][0].token_ids \
        == [ord("b")]
