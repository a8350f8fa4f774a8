"""The prompt replay buffer of ZPPO (ZPPO.md §1 steps 1, 5, 10 and §4; paper Alg. 1).

The buffer B holds *questions only* (no rollouts, no teacher text: teacher answers and candidates are re-drawn
on every visit), keyed by ``Question.id``, in FIFO order of admission. It is pure Python: no torch, no I/O.

What the loop does with it, once per rollout step s:

    step 1    X_replay = buffer.sample(rho_replay * n_new, rng)      uniform, without replacement, non-destructive
    step 5    ties in the pre-cap ("older buffer entries first"):    buffer.entry(qid).seq  (smaller = older)
    step 10   buffer.refresh(s, {x.id: (x, r_x) for x in X})         r_x = PLAIN mean accuracy of x this step

``refresh`` is the only method that moves entries. For each rolled-out question x, in the mapping's order:

    r_x <  tau and x not in B   ->  admit x at the tail (entry step s, entry accuracy r_x)
    r_x <  tau and x in B       ->  no move (keeps its FIFO position); (s, r_x) appended to its history
    r_x >= tau and x in B       ->  (s, r_x) appended to its history; graduate: removed, fate "graduated" at s
    r_x >= tau and x not in B   ->  nothing

then FIFO-evict the oldest entries until len(B) <= capacity (fate "evicted" at s). A question admitted and
evicted in the same step (only possible when one step admits more than the capacity) is archived as evicted.

The caller must pass PLAIN accuracies only: BCQ/NCQ (or hint/prefix) groups never admit, graduate or count as a
visit (ZPPO.md §1 step 10). The buffer cannot tell where a number came from; this is the caller's contract.

[decisions] (ZPPO.md §4 is silent on these):
- visits: a visit is one refresh step in which the question was rolled out while *already* in the buffer
  (normally: it was replayed). The admitting step is not a visit (the question was rolled out as new, before
  it entered B); the step that graduates it is a visit. Hence ``visits == len(history)`` always.
- history (the graduation curve): every plain accuracy after admission, with its step; it ends with the
  graduating accuracy (>= tau) for graduated entries. The entry accuracy is kept apart (``entry_accuracy``).
- entry bin: the entry accuracy rounded to the nearest multiple of 1/group_size (halves round up), as a
  percent float: with G_S = 8 and tau = 0.5 the bins are 0.0 / 12.5 / 25.0 / 37.5.
- capacity 0 disables the buffer: refresh admits nothing and archives nothing (GRPO without dagger).
- steps passed to refresh must strictly increase (one refresh per rollout step).
- a question that graduated or was evicted and is later admitted again gets a fresh entry; its old entry
  stays in the archive, so the graduation table may hold several rows with the same question_id.
- departed entries are archived forever (``departed``), in order of departure, so the per-question
  graduation table covers the whole run; the archive is part of ``state_dict``.

Entries returned by ``entry``/``entries``/``departed`` are the live objects: read them, do not mutate them.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from zppo_core.types import Question

Fate = Literal["buffered", "graduated", "evicted"]
FATES: tuple[str, ...] = ("buffered", "graduated", "evicted")

STATE_VERSION = 1


@dataclass
class BufferEntry:
    """One admission of one question into the buffer, and what became of it."""

    question: Question
    entry_step: int  # the rollout step whose plain accuracy admitted it
    entry_accuracy: float  # that plain accuracy (< tau)
    entry_bin: float  # entry_accuracy rounded to the nearest 1/group_size, in percent (0.0, 12.5, 25.0, 37.5)
    seq: int  # admission sequence number over the whole run: a total "older first" order (smaller = older)
    history: list[tuple[int, float]] = field(default_factory=list)  # (step, plain accuracy) after admission
    visits: int = 0  # steps rolled out while already buffered (== len(history))
    fate: Fate = "buffered"
    fate_step: int | None = None  # step of graduation / eviction; None while buffered

    @property
    def question_id(self) -> str:
        return self.question.id

    @property
    def steps_to_graduate(self) -> int | None:
        if self.fate != "graduated" or self.fate_step is None:
            return None
        return self.fate_step - self.entry_step

    def to_row(self) -> dict[str, Any]:
        """One row of the graduation table (JSON-serialisable)."""
        return {
            "question_id": self.question.id,
            "family": self.question.family,
            "level": self.question.level,
            "entry_step": self.entry_step,
            "entry_accuracy": self.entry_accuracy,
            "entry_bin": self.entry_bin,
            "accuracy_history": [[s, a] for s, a in self.history],
            "visits": self.visits,
            "fate": self.fate,
            "fate_step": self.fate_step,
            "steps_to_graduate": self.steps_to_graduate,
        }

    def to_state(self) -> dict[str, Any]:
        return {
            "question": _question_to_state(self.question),
            "entry_step": self.entry_step,
            "entry_accuracy": self.entry_accuracy,
            "entry_bin": self.entry_bin,
            "seq": self.seq,
            "history": [[s, a] for s, a in self.history],
            "visits": self.visits,
            "fate": self.fate,
            "fate_step": self.fate_step,
        }

    @classmethod
    def from_state(cls, d: Mapping[str, Any]) -> BufferEntry:
        fate = d["fate"]
        if fate not in FATES:
            raise ValueError(f"buffer state: entry fate {fate!r} is not one of {FATES}; the state is corrupt")
        return cls(
            question=_question_from_state(d["question"]),
            entry_step=int(d["entry_step"]),
            entry_accuracy=float(d["entry_accuracy"]),
            entry_bin=float(d["entry_bin"]),
            seq=int(d["seq"]),
            history=[(int(s), float(a)) for s, a in d["history"]],
            visits=int(d["visits"]),
            fate=fate,
            fate_step=None if d["fate_step"] is None else int(d["fate_step"]),
        )


@dataclass
class RefreshReport:
    """What one ``refresh`` did (ids in processing order; evicted oldest first)."""

    step: int
    admitted: list[str] = field(default_factory=list)
    graduated: list[str] = field(default_factory=list)
    evicted: list[str] = field(default_factory=list)
    visited: list[str] = field(default_factory=list)  # rolled out while already buffered (incl. graduated)
    size: int = 0  # len(buffer) after the refresh


def entry_bin(accuracy: float, group_size: int = 8) -> float:
    """``accuracy`` rounded to the nearest multiple of 1/group_size (halves up), in percent.

    With group_size 8: 0 -> 0.0, 1/8 -> 12.5, 2/8 -> 25.0, 3/8 -> 37.5.
    """
    k = math.floor(accuracy * group_size + 0.5)
    return 100.0 * k / group_size


class ReplayBuffer:
    """FIFO prompt replay buffer with graduation (see the module docstring for the rules and decisions).

    Args:
        capacity: |B|max, the most questions held after a refresh; 0 disables the buffer (admits nothing).
        threshold: tau in (0, 1]; plain accuracy < tau admits, >= tau graduates.
        group_size: G_S, student rollouts per plain prompt; sets the entry-bin grid (multiples of 1/G_S).
    """

    def __init__(self, capacity: int, threshold: float = 0.5, group_size: int = 8) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 0:
            raise ValueError(
                f"capacity must be an int >= 0 (0 disables the buffer), got {capacity!r}; "
                "set buffer capacity to a non-negative integer"
            )
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not math.isfinite(threshold)
            or not 0.0 < threshold <= 1.0
        ):
            raise ValueError(
                f"threshold (tau) must be a number in (0, 1], got {threshold!r}; "
                "use e.g. threshold=0.5 (the paper's value)"
            )
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(
                f"group_size must be an int >= 1 (G_S, rollouts per plain prompt), got {group_size!r}; "
                "pass the rollout group size, e.g. group_size=8"
            )
        self.capacity: int = capacity
        self.threshold: float = float(threshold)
        self.group_size: int = group_size
        self._entries: dict[str, BufferEntry] = {}  # insertion order == FIFO order (oldest first)
        self.departed: list[BufferEntry] = []  # archive, in order of departure
        self._next_seq: int = 0
        self._last_step: int | None = None

    # ------------------------------------------------------------------ container protocol

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, qid: object) -> bool:
        return qid in self._entries

    def ids(self) -> list[str]:
        """Buffered question ids, oldest admission first."""
        return list(self._entries)

    def entries(self) -> list[BufferEntry]:
        """Buffered entries, oldest admission first."""
        return list(self._entries.values())

    def entry(self, qid: str) -> BufferEntry:
        """The buffered entry of ``qid`` (KeyError if not buffered). ``.seq`` orders entries oldest first."""
        try:
            return self._entries[qid]
        except KeyError:
            raise KeyError(f"question {qid!r} is not in the replay buffer") from None

    def admission_step(self, qid: str) -> int:
        """The step at which the buffered ``qid`` was admitted (KeyError if not buffered)."""
        return self.entry(qid).entry_step

    def age_key(self, qid: str) -> int:
        """Total order for the pre-cap tie-break "older buffer entries first": smaller = admitted earlier."""
        return self.entry(qid).seq

    @property
    def last_step(self) -> int | None:
        """The step of the last refresh (None before the first)."""
        return self._last_step

    # ------------------------------------------------------------------ sampling (never moves entries)

    def sample(self, k: int, rng: random.Random) -> list[Question]:
        """min(k, len) buffered questions, uniformly without replacement; entries stay in the buffer.

        Deterministic given the state of ``rng`` (and the buffer's FIFO order); consumes rng only when
        there is something to draw.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be an int >= 0 (how many questions to replay), got {k!r}")
        n = min(k, len(self._entries))
        if n == 0:
            return []
        pool = list(self._entries.values())
        return [e.question for e in rng.sample(pool, n)]

    # ------------------------------------------------------------------ the one method that moves entries

    def refresh(self, step: int, plain_accuracy: Mapping[str, tuple[Question, float]]) -> RefreshReport:
        """Admit / graduate / FIFO-evict from this step's PLAIN mean accuracies (ZPPO.md §1 step 10).

        Args:
            step: the rollout step; must be greater than the previous refresh's step.
            plain_accuracy: question id -> (question, plain mean accuracy r_x in [0, 1]) for every question
                rolled out this step, new and replayed. Never pass BCQ/NCQ accuracies. Processed in the
                mapping's order (admissions enter the FIFO in that order).
        """
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0, got {step!r}")
        if self._last_step is not None and step <= self._last_step:
            raise ValueError(
                f"step must increase between refreshes (last refresh was step {self._last_step}, got {step}); "
                "call refresh once per rollout step"
            )
        items = list(plain_accuracy.items())
        for qid, value in items:  # validate everything before mutating anything
            if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], Question)):
                raise ValueError(
                    f"plain_accuracy[{qid!r}] must be a (Question, accuracy) tuple, got {type(value).__name__}"
                )
            q, acc = value
            if q.id != qid:
                raise ValueError(f"plain_accuracy key {qid!r} does not match its question's id {q.id!r}")
            if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not (0.0 <= acc <= 1.0):
                raise ValueError(
                    f"plain_accuracy[{qid!r}] accuracy must be a number in [0, 1] (the plain group's mean "
                    f"reward), got {acc!r}"
                )
        self._last_step = step
        report = RefreshReport(step=step)
        if self.capacity == 0:
            return report

        for qid, (q, acc) in items:
            acc = float(acc)
            present = self._entries.get(qid)
            if present is not None:
                present.history.append((step, acc))
                present.visits += 1
                report.visited.append(qid)
                if acc >= self.threshold:
                    self._depart(qid, "graduated", step)
                    report.graduated.append(qid)
            elif acc < self.threshold:
                self._entries[qid] = BufferEntry(
                    question=q,
                    entry_step=step,
                    entry_accuracy=acc,
                    entry_bin=entry_bin(acc, self.group_size),
                    seq=self._next_seq,
                )
                self._next_seq += 1
                report.admitted.append(qid)

        while len(self._entries) > self.capacity:
            oldest = next(iter(self._entries))
            self._depart(oldest, "evicted", step)
            report.evicted.append(oldest)
        report.size = len(self._entries)
        return report

    def _depart(self, qid: str, fate: Fate, step: int) -> None:
        e = self._entries.pop(qid)
        e.fate = fate
        e.fate_step = step
        self.departed.append(e)

    # ------------------------------------------------------------------ reporting

    def graduation_table(self) -> list[dict[str, Any]]:
        """One row per entry: departed ones (in order of departure), then buffered ones (FIFO order)."""
        return [e.to_row() for e in self.departed] + [e.to_row() for e in self._entries.values()]

    def fate_counts(self) -> dict[str, int]:
        """How many entries are buffered / graduated / evicted."""
        counts = {f: 0 for f in FATES}
        for e in self.departed:
            counts[e.fate] += 1
        counts["buffered"] += len(self._entries)
        return counts

    def fates_by_entry_bin(self) -> dict[float, dict[str, int]]:
        """entry bin (percent) -> {fate: count} over all entries; bins ascending, every fate present."""
        out: dict[float, dict[str, int]] = {}
        for e in list(self.departed) + list(self._entries.values()):
            out.setdefault(e.entry_bin, {f: 0 for f in FATES})[e.fate] += 1
        return {b: out[b] for b in sorted(out)}

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Everything, as plain JSON-serialisable data (question.meta must itself be JSON-serialisable)."""
        return {
            "version": STATE_VERSION,
            "capacity": self.capacity,
            "threshold": self.threshold,
            "group_size": self.group_size,
            "next_seq": self._next_seq,
            "last_step": self._last_step,
            "buffered": [e.to_state() for e in self._entries.values()],  # FIFO order
            "departed": [e.to_state() for e in self.departed],  # departure order
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        """Restore exactly (settings included: the checkpoint's capacity/threshold/group_size win)."""
        version = d.get("version")
        if version != STATE_VERSION:
            raise ValueError(
                f"buffer state version {version!r} is not supported (expected {STATE_VERSION}); "
                "was the checkpoint written by another zppo version?"
            )
        fresh = ReplayBuffer(d["capacity"], d["threshold"], d["group_size"])  # validates the settings
        buffered = [BufferEntry.from_state(x) for x in d["buffered"]]
        departed = [BufferEntry.from_state(x) for x in d["departed"]]
        for e in buffered:
            if e.fate != "buffered":
                raise ValueError(f"buffer state: buffered entry {e.question.id!r} has fate {e.fate!r}")
            if e.question.id in fresh._entries:
                raise ValueError(f"buffer state: question {e.question.id!r} is buffered twice")
            fresh._entries[e.question.id] = e
        for e in departed:
            if e.fate == "buffered":
                raise ValueError(f"buffer state: departed entry {e.question.id!r} has fate 'buffered'")
        self.capacity, self.threshold, self.group_size = fresh.capacity, fresh.threshold, fresh.group_size
        self._entries = fresh._entries
        self.departed = departed
        self._next_seq = int(d["next_seq"])
        self._last_step = None if d["last_step"] is None else int(d["last_step"])

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> ReplayBuffer:
        buf = cls(d["capacity"], d["threshold"], d["group_size"])
        buf.load_state_dict(d)
        return buf


def _question_to_state(q: Question) -> dict[str, Any]:
    return {
        "id": q.id,
        "prompt": q.prompt,
        "answer": q.answer,
        "family": q.family,
        "level": q.level,
        "meta": copy.deepcopy(q.meta),
        "images": [_image_state(im) for im in q.images],
    }


def _image_state(image: Any) -> str:
    """An image as checkpoint state: paths and data URIs as they are, a decoded (PIL) image as a PNG data URI."""
    if isinstance(image, str):
        return image
    import base64
    import io

    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _question_from_state(d: Mapping[str, Any]) -> Question:
    return Question(
        id=d["id"],
        prompt=d["prompt"],
        answer=d["answer"],
        family=d.get("family", ""),
        level=int(d.get("level", 0)),
        meta=copy.deepcopy(d.get("meta", {})),
        images=tuple(d.get("images", ())),
    )
