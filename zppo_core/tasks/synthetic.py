"""Synthetic verifiable task families for the tiny (CPU) regime.

Every question has an integer gold answer, a compact printable-ASCII prompt, and a canonical response
``<think>SCRATCHPAD</think>\\boxed{ANSWER}`` whose scratchpad holds the real intermediate steps:

=============  =========================  ==================================================  ==========
family         prompt                     response                                            levels
=============  =========================  ==================================================  ==========
modsum         ``Add mod 10: 7+8+4.``     ``<think>7+8=5;5+4=9</think>\\boxed{9}``            1-5
add            ``Compute 345+789.``       ``<think>4311</think>\\boxed{1134}``                 1-4
linear         ``Solve 3x+5=20.``         ``<think>20-5=15;15/3=5</think>\\boxed{5}``          1-4
chain          ``Compute 12+34+56.``      ``<think>12+34=46;46+56=102</think>\\boxed{102}``    1-3
sub (OOD)      ``Compute 345-78.``        ``<think>762</think>\\boxed{267}``                   1-4
linear_neg     ``Solve 3x-5=10.``         ``<think>10+5=15;15/3=5</think>\\boxed{5}``          1-4
chain4 (OOD)   ``Compute 1+2+3+4.``       ``<think>1+2=3;3+3=6;6+4=10</think>\\boxed{10}``     1-3
=============  =========================  ==================================================  ==========

* ``modsum`` (the tiny preset's training family): L+1 single digits summed modulo 10, every running sum
  written as ``u+v=w``; each step is one lookup in a 100-entry table, so a 0.5M-parameter model learns the
  skill in a few hundred SFT steps, and difficulty is the number of steps. ``believed_solution`` writes a
  solver's consistent wrong beliefs (misconceptions, :func:`make_beliefs`), which `prepare` puts in the
  tiny student's SFT data so that some questions are hard for it in a way plain sampling rarely fixes.
* ``add``/``sub``: level L = digits of the larger operand; the other operand has 1..L digits. The
  scratchpad is the result written least-significant digit first: a left-to-right decoder then emits
  each digit after the carry/borrow it depends on (reversed output is the cheapest known aid for small
  transformers learning addition), and the answer is a copy of the scratchpad reversed.
* ``linear``/``linear_neg``: ``a*x+b=c`` (``a*x-b=c``) with a positive integer x; the scratchpad undoes
  the constant, then divides. Checking a candidate x (one multiply, one add) is easier than producing it
  (one subtract, one division). Levels: L1 a<=5, x and b 1-digit; L2 b 2-digit; L3 x and b 2-digit;
  L4 x and b 3-digit (a is 2..9 from L2 on). linear_neg keeps c >= 1.
* ``chain``/``chain4``: a sum of 3 (4) terms, level L = digits of the largest term; the scratchpad
  writes every partial sum as ``u+v=w``.

The decoys (:meth:`wrong_solution`) make ONE arithmetic slip in one step (a digit off by one, i.e. a
dropped or spurious carry, ``+-10**j``; for linear also a wrong sign when undoing the constant, or an
off-by-one quotient) and then continue correctly from the wrong value, so the scratchpad is
self-consistent and the boxed answer differs from the gold one.

Train/eval split. Small levels have tiny question spaces (level-1 ``add`` has 81 prompts), so seeds
alone cannot keep an evaluation set out of training. Every question therefore has a canonical key
(family + operands, sorted for the commutative families, so ``12+34`` and ``34+12`` go to the same
side) whose hash puts 1/8 of each family's space in a held-out split: :class:`QuestionStream` never
yields such a question and :func:`make_eval_set` yields only those. Disjointness holds for every pair
of seeds by construction.

Why not reasoning-gym? It would serve as a generator and checker, but its prompts are long English
(each character costs a step for a char-level model), its checker gives partial credit (the reward
must be binary), it has no scratchpad solutions or plausible-wrong decoys, its levels do not map onto
ours, and importing it costs ~1.7 s. These families are a few lines each, exact, and fast (~10 µs per
question).

Nothing here imports torch.

Why this file is long: seven families are small classes sharing a base (generation, canonical solution, slips,
misconceptions) and one question stream; they are read and tested side by side (tests/unit/test_synthetic.py).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from zppo_core.types import Question

__all__ = [
    "Family",
    "FAMILIES",
    "IN_DIST",
    "OOD",
    "OOD_OF",
    "EVAL_SPLIT_MOD",
    "QuestionStream",
    "make_eval_set",
    "in_eval_split",
    "format_response",
    "parse_response",
]

EVAL_SPLIT_MOD = 8  # 1/EVAL_SPLIT_MOD of every family's question space is held out for evaluation


@runtime_checkable
class Family(Protocol):
    """A generator of verifiable questions with known correct and plausible-wrong responses."""

    name: str
    levels: tuple[int, ...]

    def make(self, rng: random.Random, level: int) -> Question: ...

    def solution(self, q: Question) -> str: ...

    def wrong_solution(self, q: Question, rng: random.Random) -> str: ...


# --------------------------------------------------------------------------------------------------
# helpers


def format_response(think: str, answer: str) -> str:
    """The canonical response text: ``<think>THINK</think>\\boxed{ANSWER}``."""
    return f"<think>{think}</think>\\boxed{{{answer}}}"


_RESPONSE = re.compile(r"<think>(.*)</think>\\boxed\{(.*)\}", re.S)


def parse_response(text: str) -> tuple[str, str] | None:
    """(scratchpad, boxed answer) of a response in the canonical format, else None."""
    m = _RESPONSE.fullmatch(text)
    return (m.group(1), m.group(2)) if m else None


def _digest(text: str, size: int) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=size).digest()


def _question_id(name: str, level: int, prompt: str) -> str:
    return f"{name}-L{level}-{_digest(prompt, 5).hex()}"


def _is_heldout_key(key: str) -> bool:
    return int.from_bytes(_digest("zppo-split:" + key, 8), "big") % EVAL_SPLIT_MOD == 0


def _rand_digits(rng: random.Random, digits: int, lo1: int = 1) -> int:
    """A uniform integer with exactly `digits` digits (1-digit numbers start at `lo1`)."""
    lo = lo1 if digits == 1 else 10 ** (digits - 1)
    return rng.randint(lo, 10**digits - 1)


def _slip(value: int, width: int, rng: random.Random, floor: int = 0) -> int:
    """`value` with one column off by one (``+-10**j``, j < width), staying >= floor and != value."""
    options = [value + s * 10**j for j in range(max(width, 1)) for s in (1, -1)]
    options = [v for v in options if v >= floor and v != value]
    return rng.choice(options) if options else value + 1


class _Base:
    """Shared plumbing: ids, held-out keys, parsing a question back from its prompt."""

    name: str = ""
    levels: tuple[int, ...] = ()
    description: str = ""
    in_dist: bool = True

    def _check_level(self, level: int) -> None:
        if level not in self.levels:
            raise ValueError(f"family '{self.name}' has levels {self.levels}, not {level!r}")

    def _question(self, level: int, prompt: str, answer: int, meta: dict[str, Any]) -> Question:
        return Question(
            id=_question_id(self.name, level, prompt),
            prompt=prompt,
            answer=str(answer),
            family=self.name,
            level=level,
            meta=meta,
        )

    def split_key(self, q: Question) -> str:
        """Canonical identity of the question for the train/eval split."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<family {self.name} levels={self.levels}>"


# --------------------------------------------------------------------------------------------------
# add / sub: two operands, reversed-result scratchpad


class _TwoOperand(_Base):
    op = "+"
    _pattern: re.Pattern[str]

    def _operands(self, q: Question) -> tuple[int, int]:
        ops = q.meta.get("operands") if q.meta else None
        if not ops:
            m = self._pattern.fullmatch(q.prompt)
            if m is None:
                raise ValueError(f"not a '{self.name}' prompt: {q.prompt!r}")
            ops = [int(m.group(1)), int(m.group(2))]
        return int(ops[0]), int(ops[1])

    def _result(self, a: int, b: int) -> int:
        return a + b if self.op == "+" else a - b

    def make(self, rng: random.Random, level: int) -> Question:
        self._check_level(level)
        big = _rand_digits(rng, level)
        small = min(_rand_digits(rng, rng.randint(1, level)), big)
        if self.op == "+":
            a, b = (big, small) if rng.random() < 0.5 else (small, big)
        else:
            a, b = big, small  # non-negative result
        prompt = f"Compute {a}{self.op}{b}."
        return self._question(level, prompt, self._result(a, b), {"operands": [a, b]})

    def solution(self, q: Question) -> str:
        r = self._result(*self._operands(q))
        return format_response(str(r)[::-1], str(r))

    def wrong_solution(self, q: Question, rng: random.Random) -> str:
        a, b = self._operands(q)
        r = _slip(self._result(a, b), len(str(max(a, b))), rng)
        return format_response(str(r)[::-1], str(r))

    def split_key(self, q: Question) -> str:
        a, b = self._operands(q)
        if self.op == "+":
            a, b = sorted((a, b))
        return f"{self.name}:{a}{self.op}{b}"


class AddFamily(_TwoOperand):
    name = "add"
    levels = (1, 2, 3, 4)
    op = "+"
    in_dist = True
    description = "in-dist: a+b, level = digits of the larger operand; scratchpad = sum reversed"
    _pattern = re.compile(r"Compute (\d+)\+(\d+)\.")


class SubFamily(_TwoOperand):
    name = "sub"
    levels = (1, 2, 3, 4)
    op = "-"
    in_dist = False
    description = "ood: a-b >= 0, level = digits of a; scratchpad = difference reversed"
    _pattern = re.compile(r"Compute (\d+)-(\d+)\.")


# --------------------------------------------------------------------------------------------------
# linear / linear_neg: a*x+b=c (a*x-b=c)

# level -> (a range, x digits, b digits)
_LINEAR_LEVELS: dict[int, tuple[tuple[int, int], int, int]] = {
    1: ((2, 5), 1, 1),
    2: ((2, 9), 1, 2),
    3: ((2, 9), 2, 2),
    4: ((2, 9), 3, 3),
}


class _Linear(_Base):
    sign = "+"
    levels = (1, 2, 3, 4)
    _pattern: re.Pattern[str]

    def _abcx(self, q: Question) -> tuple[int, int, int, int]:
        m = q.meta if q.meta and "x" in q.meta else None
        if m is None:
            mm = self._pattern.fullmatch(q.prompt)
            if mm is None:
                raise ValueError(f"not a '{self.name}' prompt: {q.prompt!r}")
            a, b, c = int(mm.group(1)), int(mm.group(2)), int(mm.group(3))
            d = c - b if self.sign == "+" else c + b
            return a, b, c, d // a
        return int(m["a"]), int(m["b"]), int(m["c"]), int(m["x"])

    def make(self, rng: random.Random, level: int) -> Question:
        self._check_level(level)
        (alo, ahi), xd, bd = _LINEAR_LEVELS[level]
        while True:
            a, x, b = rng.randint(alo, ahi), _rand_digits(rng, xd), _rand_digits(rng, bd)
            c = a * x + b if self.sign == "+" else a * x - b
            if c >= 1:
                break
        prompt = f"Solve {a}x{self.sign}{b}={c}."
        return self._question(level, prompt, x, {"a": a, "b": b, "c": c, "x": x})

    def _undo(self, c: int, b: int) -> tuple[str, int]:
        """The first step's text and value: c-b (linear) or c+b (linear_neg)."""
        inv = "-" if self.sign == "+" else "+"
        d = c - b if inv == "-" else c + b
        return f"{c}{inv}{b}={d}", d

    def solution(self, q: Question) -> str:
        a, b, c, x = self._abcx(q)
        step1, d = self._undo(c, b)
        return format_response(f"{step1};{d}/{a}={d // a}", str(d // a))

    def wrong_solution(self, q: Question, rng: random.Random) -> str:
        a, b, c, x = self._abcx(q)
        inv = "-" if self.sign == "+" else "+"
        d = c - b if inv == "-" else c + b
        candidates: list[tuple[str, int]] = []  # (step-1 text, wrong d) that still divide exactly
        wrong_sign = c + b if inv == "-" else c - b  # undid the constant with the wrong sign
        if wrong_sign > 0 and wrong_sign % a == 0:
            candidates.append((f"{c}{'+' if inv == '-' else '-'}{b}={wrong_sign}", wrong_sign))
        for j in range(len(str(d))):
            for s in (1, -1):
                d2 = d + s * 10**j
                if d2 > 0 and d2 % a == 0:
                    candidates.append((f"{c}{inv}{b}={d2}", d2))
        if candidates and rng.random() < 0.5:
            step1, d2 = rng.choice(candidates)
            x2 = d2 // a
        else:  # slip in the division: quotient off by one in one column
            step1 = f"{c}{inv}{b}={d}"
            x2 = _slip(x, len(str(x)), rng)
        return format_response(f"{step1};{step1.rsplit('=', 1)[1]}/{a}={x2}", str(x2))

    def split_key(self, q: Question) -> str:
        a, b, c, _ = self._abcx(q)
        return f"{self.name}:{a}x{self.sign}{b}={c}"


class LinearFamily(_Linear):
    name = "linear"
    sign = "+"
    in_dist = True
    description = "in-dist: solve a*x+b=c for a positive integer x; scratchpad c-b=d;d/a=x"
    _pattern = re.compile(r"Solve (\d+)x\+(\d+)=(\d+)\.")


class LinearNegFamily(_Linear):
    name = "linear_neg"
    sign = "-"
    in_dist = False
    description = "ood: solve a*x-b=c (c >= 1) for a positive integer x; scratchpad c+b=d;d/a=x"
    _pattern = re.compile(r"Solve (\d+)x-(\d+)=(\d+)\.")


# --------------------------------------------------------------------------------------------------
# chain / chain4: sums of k terms with every partial sum written out


class _Chain(_Base):
    terms = 3
    levels = (1, 2, 3)
    _pattern = re.compile(r"Compute (\d+(?:\+\d+)+)\.")

    def _operands(self, q: Question) -> list[int]:
        ops = q.meta.get("operands") if q.meta else None
        if not ops:
            m = self._pattern.fullmatch(q.prompt)
            if m is None or m.group(1).count("+") != self.terms - 1:
                raise ValueError(f"not a '{self.name}' prompt: {q.prompt!r}")
            ops = m.group(1).split("+")
        return [int(v) for v in ops]

    def make(self, rng: random.Random, level: int) -> Question:
        self._check_level(level)
        ops = [_rand_digits(rng, level)] + [_rand_digits(rng, rng.randint(1, level)) for _ in range(self.terms - 1)]
        rng.shuffle(ops)
        prompt = "Compute " + "+".join(map(str, ops)) + "."
        return self._question(level, prompt, sum(ops), {"operands": ops})

    @staticmethod
    def _steps(ops: list[int], slip_at: int = -1, rng: random.Random | None = None) -> tuple[str, int]:
        acc, parts = ops[0], []
        for i, v in enumerate(ops[1:]):
            new = acc + v
            if i == slip_at:
                assert rng is not None
                new = _slip(new, len(str(max(acc, v))), rng)
            parts.append(f"{acc}+{v}={new}")
            acc = new
        return ";".join(parts), acc

    def solution(self, q: Question) -> str:
        think, total = self._steps(self._operands(q))
        return format_response(think, str(total))

    def wrong_solution(self, q: Question, rng: random.Random) -> str:
        ops = self._operands(q)
        think, total = self._steps(ops, slip_at=rng.randrange(len(ops) - 1), rng=rng)
        return format_response(think, str(total))

    def split_key(self, q: Question) -> str:
        return f"{self.name}:" + "+".join(map(str, sorted(self._operands(q))))


class ChainFamily(_Chain):
    name = "chain"
    terms = 3
    in_dist = True
    description = "in-dist: a+b+c, level = digits of the largest term; scratchpad a+b=d;d+c=e"


class Chain4Family(_Chain):
    name = "chain4"
    terms = 4
    in_dist = False
    description = "ood: a+b+c+d, level = digits of the largest term; scratchpad of 3 partial sums"


# --------------------------------------------------------------------------------------------------
# modsum: a running sum modulo 10, one table lookup per step (the tiny scale's main training family)


class ModSumFamily(_Chain):
    """Sum of single digits modulo 10 with every partial result written out.

    Each step is one lookup in a 100-entry table, so a ~1M-parameter model learns the skill in a few hundred SFT
    steps; difficulty is the number of steps (level L has L+1 terms), and a sampled response fails when any
    step slips, so accuracy falls smoothly with the level. A candidate is checked step by step.
    """

    name = "modsum"
    levels = (1, 2, 3, 4, 5)
    in_dist = True
    description = "in-dist: (a+b+...) mod 10 over L+1 single digits; scratchpad of running sums mod 10"
    _pattern = re.compile(r"Add mod 10: (\d(?:\+\d)+)\.")

    def _operands(self, q: Question) -> list[int]:
        ops = q.meta.get("operands") if q.meta else None
        if not ops:
            m = self._pattern.fullmatch(q.prompt)
            if m is None:
                raise ValueError(f"not a '{self.name}' prompt: {q.prompt!r}")
            ops = m.group(1).split("+")
        return [int(v) for v in ops]

    def make(self, rng: random.Random, level: int) -> Question:
        self._check_level(level)
        ops = [rng.randrange(10) for _ in range(level + 1)]
        prompt = "Add mod 10: " + "+".join(map(str, ops)) + "."
        return self._question(level, prompt, sum(ops) % 10, {"operands": ops})

    @staticmethod
    def _steps(ops: list[int], slip_at: int = -1, rng: random.Random | None = None) -> tuple[str, int]:
        acc, parts = ops[0], []
        for i, v in enumerate(ops[1:]):
            new = (acc + v) % 10
            if i == slip_at:
                assert rng is not None
                new = (new + rng.choice((1, 9))) % 10
            parts.append(f"{acc}+{v}={new}")
            acc = new
        return ";".join(parts), acc

    # solution / wrong_solution: _Chain's, over these steps

    def believed_solution(
        self, q: Question, beliefs: Mapping[tuple[int, int], int], rate: float, rng: random.Random
    ) -> str:
        """The response of a solver with misconceptions: at a step (acc, v) listed in `beliefs` it writes the
        believed (wrong) result with probability `rate`, and carries on correctly from whatever it wrote."""
        ops = self._operands(q)
        acc, parts = ops[0], []
        for v in ops[1:]:
            new = (acc + v) % 10
            if (acc, v) in beliefs and rng.random() < rate:
                new = beliefs[(acc, v)]
            parts.append(f"{acc}+{v}={new}")
            acc = new
        return format_response(";".join(parts), str(acc))

    def split_key(self, q: Question) -> str:
        return f"{self.name}:" + "+".join(map(str, self._operands(q)))


class ModSumLongFamily(ModSumFamily):
    """modsum with more terms than training ever shows (7 and 8 digits): length generalisation, the tiny
    scale's out-of-distribution counterpart of modsum."""

    name = "modsum_long"
    levels = (6, 7)
    in_dist = False
    description = "ood: modsum with 7-8 terms (training stops at 6); scratchpad of running sums mod 10"


def make_beliefs(n: int, seed: int) -> dict[tuple[int, int], int]:
    """`n` (a, b) digit pairs with a consistent wrong belief about (a + b) mod 10 (the tiny student's
    misconceptions: questions whose running sum meets one are hard for it, and stay hard under plain sampling)."""
    rng = random.Random(seed)
    pairs = rng.sample([(a, b) for a in range(10) for b in range(10)], n)
    return {(a, b): (a + b + rng.randint(1, 9)) % 10 for a, b in pairs}


# --------------------------------------------------------------------------------------------------
# the catalogue

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        ModSumFamily(), AddFamily(), LinearFamily(), ChainFamily(), SubFamily(), LinearNegFamily(), Chain4Family(),
        ModSumLongFamily(),
    )
}
IN_DIST: tuple[str, ...] = ("modsum", "add", "linear", "chain")
OOD: tuple[str, ...] = ("sub", "linear_neg", "chain4", "modsum_long")
# the held-out family that tests generalisation of each training family (the `tiny-ood` eval suite)
OOD_OF: dict[str, str] = {"modsum": "modsum_long", "add": "sub", "linear": "linear_neg", "chain": "chain4"}


def _family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task family {name!r}; valid: {', '.join(sorted(FAMILIES))}") from None


def _heldout(fam: Family, q: Question) -> bool:
    split_key = getattr(fam, "split_key", None)  # families registered later may lack one: use the prompt
    return _is_heldout_key(split_key(q) if split_key is not None else f"{q.family}:{q.prompt}")


def in_eval_split(q: Question) -> bool:
    """True when `q` belongs to the held-out evaluation split of its family (never used in training)."""
    return _heldout(_family(q.family), q)


# --------------------------------------------------------------------------------------------------
# training stream and evaluation set


def _normalise_levels(levels: Mapping[int, float] | None) -> dict[int, float] | None:
    if levels is None:
        return None
    out: dict[int, float] = {}
    for k, w in levels.items():
        w = float(w)
        if w < 0 or w != w:
            raise ValueError(f"level weight must be >= 0, got {k}: {w}")
        out[int(k)] = w
    return dict(sorted(out.items()))


class QuestionStream:
    """Deterministic, resumable, infinite stream of training questions.

    Question i depends only on (seed, i): a family is picked uniformly, then a level of that family by
    the given weights (``levels``: level -> weight; levels a family lacks are skipped, and a family with
    no weighted level is left out; None means uniform over each family's own levels). Questions in the
    held-out evaluation split are re-drawn. The state is just the cursor, so resuming is exact.
    """

    def __init__(self, families: Sequence[str], levels: Mapping[int, float] | None = None, seed: int = 0):
        if isinstance(families, str):
            families = [families]
        self.families: tuple[str, ...] = tuple(families)
        if not self.families:
            raise ValueError("QuestionStream needs at least one task family")
        self.levels = _normalise_levels(levels)
        self.seed = int(seed)
        self.cursor = 0
        self.plan: list[tuple[Family, tuple[int, ...], tuple[float, ...]]] = []
        for name in self.families:
            fam = _family(name)
            if self.levels is None:
                lv, wt = tuple(fam.levels), tuple(1.0 for _ in fam.levels)
            else:
                pairs = [(lvl, w) for lvl, w in self.levels.items() if lvl in fam.levels and w > 0]
                lv, wt = tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)
            if lv:
                self.plan.append((fam, lv, wt))
        if not self.plan:
            raise ValueError(
                f"no family among {list(self.families)} has a level with positive weight in {self.levels}; "
                f"levels are {({n: _family(n).levels for n in self.families})}"
            )

    def _draw(self, index: int) -> Question:
        rng = random.Random(f"zppo-train:{self.seed}:{index}")
        fam, lv, wt = self.plan[rng.randrange(len(self.plan))]
        level = lv[0] if len(lv) == 1 else rng.choices(lv, weights=wt)[0]
        while True:
            q = fam.make(rng, level)
            if not _heldout(fam, q):
                return q

    def next(self, n: int) -> list[Question]:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        out = [self._draw(self.cursor + i) for i in range(n)]
        self.cursor += n
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "seed": self.seed,
            "families": list(self.families),
            "levels": None if self.levels is None else [[k, w] for k, w in self.levels.items()],
            "cursor": self.cursor,
        }

    def load_state_dict(self, d: Mapping[str, Any]) -> None:
        levels = None if d.get("levels") is None else {int(k): float(w) for k, w in d["levels"]}
        mine = (self.seed, list(self.families), self.levels)
        theirs = (int(d["seed"]), list(d["families"]), levels)
        if mine != theirs:
            raise ValueError(
                f"stream state is for (seed, families, levels)={theirs}, this stream is {mine}; "
                "build the stream with the checkpoint's settings"
            )
        self.cursor = int(d["cursor"])


def make_eval_set(
    families: Sequence[str],
    n_per_family_level: int,
    seed: int,
    levels: Sequence[int] | None = None,
) -> list[Question]:
    """A fixed evaluation set: up to `n_per_family_level` distinct held-out questions per (family, level).

    Only questions of the held-out split (see module docstring) are used, so the set is disjoint from
    every :class:`QuestionStream`. Where a level's held-out space is smaller than requested (e.g.
    level-1 ``add`` has ~10 held-out prompts) all of it is returned and the level has fewer items.
    `levels` restricts the levels (default: all of each family's levels). Ordered by family, level.
    """
    if isinstance(families, str):
        families = [families]
    out: list[Question] = []
    for name in families:
        fam = _family(name)
        for level in fam.levels:
            if levels is not None and level not in levels:
                continue
            rng = random.Random(f"zppo-eval:{seed}:{name}:{level}")
            seen: set[str] = set()
            misses = 0  # consecutive draws that added nothing: the held-out space is exhausted
            while len(seen) < n_per_family_level and misses < 4000:
                q = fam.make(rng, level)
                if q.id in seen or not _heldout(fam, q):  # the id hashes the prompt (and a visual question's grid)
                    misses += 1
                    continue
                misses = 0
                seen.add(q.id)
                out.append(q)
    return out
