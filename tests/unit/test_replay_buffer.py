"""Replay buffer (ZPPO.md §1 steps 1, 5, 10; §4): a model-based state machine plus hand-written cases.

The state machine drives a ReplayBuffer and a tiny independent reference model (a list of ids in FIFO order)
with random refreshes, samples and checkpoint round-trips, and checks after every operation that both agree.
"""

from __future__ import annotations

import json
import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from zppo_core.algo.replay_buffer import BufferEntry, RefreshReport, ReplayBuffer, entry_bin
from zppo_core.types import Question

POOL = 10  # distinct question ids; small so that capacity, re-admission and graduation all happen often


def q(i: int | str) -> Question:
    qid = i if isinstance(i, str) else f"q{i}"
    return Question(
        id=qid,
        prompt=f"What is {qid}?",
        answer=str(len(qid)),
        family=f"fam{len(qid) % 3}",
        level=len(qid) % 4,
        meta={"source": "test", "tags": [qid, 1, 2.5], "nested": {"ok": True, "none": None}},
    )


def acc_map(pairs) -> dict[str, tuple[Question, float]]:
    """[(i, acc), ...] -> {id: (question, acc)} in the given order."""
    return {q(i).id: (q(i), acc) for i, acc in pairs}


def roundtrip(buf: ReplayBuffer) -> ReplayBuffer:
    text = json.dumps(buf.state_dict(), allow_nan=False)
    return ReplayBuffer.from_state_dict(json.loads(text))


def check_invariants(buf: ReplayBuffer) -> None:
    assert len(buf) <= buf.capacity
    assert buf.ids() == [e.question.id for e in buf.entries()]
    assert len(set(buf.ids())) == len(buf)
    seqs = [e.seq for e in buf.entries()]
    assert seqs == sorted(seqs)  # FIFO order == admission order
    for e in buf.entries():
        assert e.fate == "buffered" and e.fate_step is None
        assert e.entry_accuracy < buf.threshold
        assert all(a < buf.threshold for _, a in e.history)
    for e in buf.departed:
        assert e.fate in ("graduated", "evicted")
        assert e.fate_step is not None and e.fate_step >= e.entry_step
        assert e.question.id not in buf or buf.entry(e.question.id).seq > e.seq
    for e in buf.departed + buf.entries():
        assert e.visits == len(e.history)
        steps = [s for s, _ in e.history]
        assert steps == sorted(set(steps)) and all(s > e.entry_step for s in steps)
        assert e.entry_bin == entry_bin(e.entry_accuracy, buf.group_size)
        if e.fate == "graduated":
            assert e.history and e.history[-1] == (e.fate_step, e.history[-1][1])
            assert e.history[-1][1] >= buf.threshold
            assert all(a < buf.threshold for _, a in e.history[:-1])
            assert e.steps_to_graduate == e.fate_step - e.entry_step
        else:
            assert e.steps_to_graduate is None
            assert all(a < buf.threshold for _, a in e.history)


accuracies = st.one_of(
    st.sampled_from([k / 8 for k in range(9)]),
    st.floats(min_value=0.0, max_value=1.0, allow_nan=False),
)
batches = st.lists(st.tuples(st.integers(0, POOL - 1), accuracies), max_size=6, unique_by=lambda t: t[0])
thresholds = st.one_of(st.sampled_from([0.125, 0.375, 0.5, 0.75, 1.0]), st.floats(min_value=0.01, max_value=1.0))


class BufferMachine(RuleBasedStateMachine):
    """Buffer vs reference model: FIFO list of ids, departed (id, fate, step) log, admission steps."""

    @initialize(capacity=st.integers(0, 6), threshold=thresholds, group_size=st.sampled_from([4, 8, 16]))
    def setup(self, capacity, threshold, group_size):
        self.buf = ReplayBuffer(capacity, threshold, group_size)
        self.order: list[str] = []
        self.admitted_at: dict[str, int] = {}
        self.departures: list[tuple[str, str, int]] = []
        self.step = 0

    @rule(batch=batches, gap=st.integers(1, 3))
    def refresh(self, batch, gap):
        self.step += gap
        s, tau, cap = self.step, self.buf.threshold, self.buf.capacity
        before = {qid: (self.buf.entry(qid).seq, len(self.buf.entry(qid).history)) for qid in self.buf.ids()}
        report = self.buf.refresh(s, acc_map(batch))
        assert isinstance(report, RefreshReport) and report.step == s

        # reference model of step 10
        exp_adm, exp_grad, exp_vis, exp_ev = [], [], [], []
        if cap > 0:
            for i, acc in batch:
                qid = q(i).id
                if qid in self.order:
                    exp_vis.append(qid)
                    if acc >= tau:
                        self.order.remove(qid)
                        exp_grad.append(qid)
                        self.departures.append((qid, "graduated", s))
                elif acc < tau:
                    self.order.append(qid)
                    self.admitted_at[qid] = s
                    exp_adm.append(qid)
            while len(self.order) > cap:
                old = self.order.pop(0)
                exp_ev.append(old)
                self.departures.append((old, "evicted", s))
        assert report.admitted == exp_adm
        assert report.graduated == exp_grad
        assert report.visited == exp_vis
        assert report.evicted == exp_ev
        assert report.size == len(self.buf) == len(self.order)
        # re-admission keeps position (seq unchanged) and records the accuracy
        accs = {q(i).id: acc for i, acc in batch}
        for qid in self.buf.ids():
            if qid in before:
                seq, nhist = before[qid]
                assert self.buf.entry(qid).seq == seq
                assert len(self.buf.entry(qid).history) == nhist + (qid in accs)
                if qid in accs:
                    assert self.buf.entry(qid).history[-1] == (s, accs[qid])
        # graduation only at acc >= tau
        for qid in report.graduated:
            assert accs[qid] >= tau

    @rule(k=st.integers(0, 8), seed=st.integers(0, 2**16))
    def sample(self, k, seed):
        state_before = self.buf.state_dict()
        got = self.buf.sample(k, random.Random(seed))
        again = self.buf.sample(k, random.Random(seed))
        assert [x.id for x in got] == [x.id for x in again]  # deterministic by rng
        ids = [x.id for x in got]
        assert len(ids) == min(k, len(self.buf))
        assert len(set(ids)) == len(ids)  # without replacement
        assert set(ids) <= set(self.buf.ids())
        for x in got:
            assert x == self.buf.entry(x.id).question
        assert self.buf.state_dict() == state_before  # sampling never moves entries

    @rule()
    def checkpoint_roundtrip(self):
        loaded = roundtrip(self.buf)
        assert loaded.state_dict() == self.buf.state_dict()
        assert loaded.graduation_table() == self.buf.graduation_table()
        self.buf = loaded  # the rest of the run continues on the restored buffer

    @precondition(lambda self: len(self.buf) > 0)
    @rule(data=st.data())
    def ages(self, data):
        qid = data.draw(st.sampled_from(self.buf.ids()))
        assert self.buf.admission_step(qid) == self.admitted_at[qid]
        keys = [self.buf.age_key(x) for x in self.buf.ids()]
        assert keys == sorted(keys)

    @invariant()
    def agrees_with_model(self):
        if not hasattr(self, "buf"):
            return
        assert self.buf.ids() == self.order
        assert [(e.question.id, e.fate, e.fate_step) for e in self.buf.departed] == self.departures
        for qid in self.order:
            assert qid in self.buf
            assert self.buf.entry(qid).entry_step == self.admitted_at[qid]
        check_invariants(self.buf)
        table = self.buf.graduation_table()
        assert len(table) == len(self.buf.departed) + len(self.buf)
        fates = self.buf.fates_by_entry_bin()
        assert sum(sum(c.values()) for c in fates.values()) == len(table)
        assert self.buf.fate_counts() == {
            f: sum(r["fate"] == f for r in table) for f in ("buffered", "graduated", "evicted")
        }


TestBufferMachine = BufferMachine.TestCase
TestBufferMachine.settings = settings(
    max_examples=60, stateful_step_count=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("refresh"), batches),
        st.tuples(st.just("sample"), st.integers(0, 6)),
    ),
    max_size=20,
)


def apply_ops(buf: ReplayBuffer, ops_list, start_step: int, seed: int) -> list:
    """Apply ops; return everything observable (reports, samples)."""
    rng = random.Random(seed)
    out, step = [], start_step
    for kind, arg in ops_list:
        if kind == "refresh":
            step += 1
            out.append(buf.refresh(step, acc_map(arg)))
        else:
            out.append([x.id for x in buf.sample(arg, rng)])
    return out


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(0, 5),
    threshold=thresholds,
    before=ops,
    after=ops,
    seed=st.integers(0, 1000),
)
def test_state_roundtrip_identical_behaviour(capacity, threshold, before, after, seed):
    a = ReplayBuffer(capacity, threshold)
    apply_ops(a, before, 0, seed)
    text = json.dumps(a.state_dict(), allow_nan=False)
    b = ReplayBuffer(capacity=99, threshold=0.9, group_size=4)  # settings come from the state
    b.load_state_dict(json.loads(text))
    assert b.state_dict() == a.state_dict()
    assert b.graduation_table() == a.graduation_table()
    start = a.last_step or 0
    assert apply_ops(a, after, start, seed + 1) == apply_ops(b, after, start, seed + 1)
    assert json.dumps(b.state_dict()) == json.dumps(a.state_dict())
    assert b.graduation_table() == a.graduation_table()
    assert b.fates_by_entry_bin() == a.fates_by_entry_bin()
    assert [e.question for e in b.entries()] == [e.question for e in a.entries()]
    assert all(x.question.meta == y.question.meta for x, y in zip(b.departed, a.departed))


# ---------------------------------------------------------------------------------------------- hand-written


def test_threshold_boundary():
    buf = ReplayBuffer(capacity=10, threshold=0.5)
    r = buf.refresh(1, acc_map([(0, 0.5), (1, 0.375), (2, 0.4999)]))
    assert r.admitted == ["q1", "q2"] and "q0" not in buf  # acc == tau is not hard
    r = buf.refresh(2, acc_map([(1, 0.5), (2, 0.49)]))
    assert r.graduated == ["q1"]  # acc == tau graduates
    assert buf.ids() == ["q2"]
    (gone,) = buf.departed
    assert (gone.question.id, gone.fate, gone.fate_step) == ("q1", "graduated", 2)
    tau1 = ReplayBuffer(capacity=10, threshold=1.0)
    tau1.refresh(1, acc_map([(0, 0.875), (1, 1.0)]))
    assert tau1.ids() == ["q0"]
    tau1.refresh(2, acc_map([(0, 1.0)]))
    assert len(tau1) == 0 and tau1.departed[0].fate == "graduated"


def test_capacity_zero_admits_nothing():
    buf = ReplayBuffer(capacity=0)
    r = buf.refresh(0, acc_map([(0, 0.0), (1, 0.125)]))
    assert (r.admitted, r.graduated, r.evicted, r.size) == ([], [], [], 0)
    assert len(buf) == 0 and buf.departed == [] and buf.graduation_table() == []
    assert buf.sample(4, random.Random(0)) == []
    assert buf.last_step == 0


@pytest.mark.parametrize("k,expected", [(0, 0.0), (1, 12.5), (2, 25.0), (3, 37.5)])
def test_entry_bins_of_eight(k, expected):
    buf = ReplayBuffer(capacity=4)
    buf.refresh(7, acc_map([(0, k / 8)]))
    e = buf.entry("q0")
    assert e.entry_bin == expected and e.entry_accuracy == k / 8 and e.entry_step == 7
    assert buf.graduation_table()[0]["entry_bin"] == expected


def test_entry_bin_other_group_sizes():
    assert entry_bin(0.25, 4) == 25.0
    assert entry_bin(0.125, 4) == 25.0  # halfway between 0 and 1/4 rounds up
    assert entry_bin(0.1, 4) == 0.0
    assert entry_bin(0.3, 8) == 25.0  # 2.4/8 -> 2/8
    assert entry_bin(3 / 16, 16) == 18.75
    assert entry_bin(1 / 3, 3) == pytest.approx(100 / 3)
    buf = ReplayBuffer(capacity=4, threshold=0.5, group_size=4)
    buf.refresh(0, acc_map([(0, 0.25)]))
    assert buf.entry("q0").entry_bin == 25.0


def test_graduation_curve_and_steps_to_graduate():
    buf = ReplayBuffer(capacity=5)
    buf.refresh(3, acc_map([(0, 0.125), (1, 0.0)]))
    buf.refresh(5, acc_map([(0, 0.25), (7, 0.75)]))  # q0 replayed (visit); q7 new and easy: ignored
    buf.refresh(9, acc_map([(0, 0.625)]))
    rows = {r["question_id"]: r for r in buf.graduation_table()}
    assert rows["q0"] == {
        "question_id": "q0",
        "family": q(0).family,
        "level": q(0).level,
        "entry_step": 3,
        "entry_accuracy": 0.125,
        "entry_bin": 12.5,
        "accuracy_history": [[5, 0.25], [9, 0.625]],
        "visits": 2,
        "fate": "graduated",
        "fate_step": 9,
        "steps_to_graduate": 6,
    }
    assert rows["q1"]["fate"] == "buffered" and rows["q1"]["fate_step"] is None
    assert rows["q1"]["steps_to_graduate"] is None and rows["q1"]["visits"] == 0
    assert "q7" not in rows
    assert list(rows) == ["q0", "q1"]  # departed first, then buffered
    json.dumps(buf.graduation_table(), allow_nan=False)


def test_readmission_keeps_position_and_fifo_eviction():
    buf = ReplayBuffer(capacity=3)
    buf.refresh(1, acc_map([(0, 0.0), (1, 0.0), (2, 0.0)]))
    r = buf.refresh(2, acc_map([(0, 0.25), (3, 0.125)]))  # q0 re-seen hard: no move; q3 in, q0 oldest out
    assert r.admitted == ["q3"] and r.visited == ["q0"] and r.evicted == ["q0"]
    assert buf.ids() == ["q1", "q2", "q3"]
    evicted = buf.departed[0]
    assert (evicted.fate, evicted.fate_step, evicted.history) == ("evicted", 2, [(2, 0.25)])
    r = buf.refresh(3, acc_map([(1, 0.375)]))  # re-admission of a present question: no-op
    assert buf.ids() == ["q1", "q2", "q3"] and r.admitted == [] and buf.entry("q1").visits == 1
    r = buf.refresh(4, acc_map([(4, 0.0), (5, 0.0), (6, 0.0), (7, 0.0)]))  # more than capacity in one step
    assert r.evicted == ["q1", "q2", "q3", "q4"] and buf.ids() == ["q5", "q6", "q7"]
    assert buf.departed[-1].entry_step == buf.departed[-1].fate_step == 4
    # a departed question can come back as a fresh entry; its old row stays in the table
    buf.refresh(5, acc_map([(0, 0.125)]))
    assert buf.ids() == ["q6", "q7", "q0"] and buf.entry("q0").entry_step == 5
    assert [r["question_id"] for r in buf.graduation_table()].count("q0") == 2


def test_fates_by_entry_bin():
    buf = ReplayBuffer(capacity=2)
    buf.refresh(0, acc_map([(0, 0.0), (1, 0.125)]))
    buf.refresh(1, acc_map([(0, 0.5), (2, 0.0), (3, 0.375)]))  # q0 graduates; q1 evicted
    assert buf.fates_by_entry_bin() == {
        0.0: {"buffered": 1, "graduated": 1, "evicted": 0},
        12.5: {"buffered": 0, "graduated": 0, "evicted": 1},
        37.5: {"buffered": 1, "graduated": 0, "evicted": 0},
    }
    assert buf.fate_counts() == {"buffered": 2, "graduated": 1, "evicted": 1}


def test_sample_is_uniform_ish_and_does_not_remove():
    buf = ReplayBuffer(capacity=10)
    buf.refresh(0, acc_map([(i, 0.0) for i in range(4)]))
    rng = random.Random(0)
    counts = {qid: 0 for qid in buf.ids()}
    for _ in range(400):
        for x in buf.sample(2, rng):
            counts[x.id] += 1
    assert len(buf) == 4 and all(150 < c < 250 for c in counts.values())  # each expected 200
    assert sorted(x.id for x in buf.sample(10, rng)) == buf.ids()
    rng, ref = random.Random(5), random.Random(5)
    assert ReplayBuffer(capacity=3).sample(2, rng) == [] and rng.random() == ref.random()


def test_state_dict_is_plain_json_and_restores_questions():
    buf = ReplayBuffer(capacity=2, threshold=0.375, group_size=8)
    buf.refresh(0, acc_map([(0, 0.0), (1, 0.25), (2, 0.125)]))
    buf.refresh(2, acc_map([(1, 0.375)]))
    d = buf.state_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    restored = ReplayBuffer.from_state_dict(json.loads(json.dumps(d)))
    assert (restored.capacity, restored.threshold, restored.group_size) == (2, 0.375, 8)
    assert restored.ids() == buf.ids() and restored.last_step == 2
    assert restored.entry("q2").question.meta == q(2).meta
    assert [(e.question.id, e.fate, e.fate_step) for e in restored.departed] == [
        ("q0", "evicted", 0),  # capacity 2, three admitted at step 0
        ("q1", "graduated", 2),
    ]
    assert [e.question for e in restored.departed] == [e.question for e in buf.departed]
    assert isinstance(restored.departed[1], BufferEntry) and restored.departed[1].history == [(2, 0.375)]
    with pytest.raises(ValueError, match="step must increase"):
        restored.refresh(2, {})
    with pytest.raises(ValueError, match="version"):
        ReplayBuffer.from_state_dict({**d, "version": 99})


@pytest.mark.parametrize(
    "kwargs,field_name",
    [
        ({"capacity": -1}, "capacity"),
        ({"capacity": 2.5}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"capacity": "10"}, "capacity"),
        ({"capacity": 4, "threshold": 0.0}, "threshold"),
        ({"capacity": 4, "threshold": 1.5}, "threshold"),
        ({"capacity": 4, "threshold": -0.1}, "threshold"),
        ({"capacity": 4, "threshold": math.nan}, "threshold"),
        ({"capacity": 4, "threshold": "0.5"}, "threshold"),
        ({"capacity": 4, "group_size": 0}, "group_size"),
    ],
)
def test_bad_constructor_arguments(kwargs, field_name):
    with pytest.raises(ValueError, match=field_name):
        ReplayBuffer(**kwargs)


def test_bad_call_arguments():
    buf = ReplayBuffer(capacity=4)
    with pytest.raises(ValueError, match="k must be"):
        buf.sample(-1, random.Random(0))
    with pytest.raises(ValueError, match="step must be"):
        buf.refresh(-1, {})
    with pytest.raises(ValueError, match=r"accuracy must be a number in \[0, 1\]"):
        buf.refresh(0, acc_map([(0, 1.5)]))
    with pytest.raises(ValueError, match=r"accuracy must be a number in \[0, 1\]"):
        buf.refresh(0, acc_map([(0, math.nan)]))
    with pytest.raises(ValueError, match="does not match"):
        buf.refresh(0, {"q9": (q(0), 0.0)})
    with pytest.raises(ValueError, match="tuple"):
        buf.refresh(0, {"q0": q(0)})
    assert len(buf) == 0 and buf.last_step is None  # failed refreshes change nothing
    with pytest.raises(ValueError, match="q1"):  # validation happens before any mutation
        buf.refresh(0, acc_map([(0, 0.0), (1, 2.0)]))
    assert len(buf) == 0
    buf.refresh(3, {})
    with pytest.raises(ValueError, match="step must increase"):
        buf.refresh(3, acc_map([(0, 0.0)]))
    with pytest.raises(KeyError, match="not in the replay buffer"):
        buf.entry("q0")
