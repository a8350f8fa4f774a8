"""Training questions from a local JSONL file (GPU scales; nothing is downloaded).

Each line is an object with a question and a short gold answer. Accepted field names: `question` / `prompt` /
`problem` for the text, `answer` / `solution` / `gold` for the answer, optional `id`, and the question's images
in `image` (one) and/or `images` (a list; shown in that order, `image` first): paths relative to the data file's
folder (or to `image_dir`, e.g. a shared `datasets` folder), absolute paths, or `data:` URIs. Every image is
checked when the file is read (exists, is an image): a missing, unreadable or wrongly typed image is a one-line
`DataError` naming the file and line, before any compute. Optional `answer_type`: `math` (default: the rule
grader decides, the judge only when no boxed answer parses) or `free_form` (OCR, open-ended: the judge decides
whatever the rule grader does not accept; `train/reward.py`). Other fields are kept in `Question.meta` (e.g.
`judge_answer`: the gold as the judge should see it).
The stream makes one pass in a seeded shuffled order, then reshuffles (epoch 2...) if asked for more.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Iterator

from zppo_core.tasks.images import ImageError, image_paths
from zppo_core.types import Question

_Q = ("question", "prompt", "problem")
_A = ("answer", "solution", "gold")
_IMG = ("image", "images")
ANSWER_TYPES = ("math", "free_form")  # a row's optional "answer_type"
FREE_FORM = "free_form"


class DataError(ValueError):
    """One line naming the file, line and fix."""


def iter_jsonl_rows(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line; DataError naming the file, line and fix otherwise."""
    p = Path(path)
    with p.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{p}:{n}: invalid JSON ({err.msg}); fix or remove the line") from None
            if not isinstance(row, dict):
                raise DataError(f"{p}:{n}: each line must be a JSON object (one row of the dataset)")
            yield n, row


def read_jsonl_questions(path: str | Path, image_dir: str | Path | None = None) -> list[Question]:
    """Every question of a JSONL file (see the module docstring); `image_dir`: a second folder relative image
    paths are looked up in (after the file's own folder)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {p} does not exist; set data.path to a local JSONL file (--set data.path=...)")
    out = []
    for n, row in iter_jsonl_rows(p):
        q = next((row[k] for k in _Q if k in row), None)
        a = next((row[k] for k in _A if k in row), None)
        if q is None or a is None:
            raise DataError(f"{p}:{n}: needs a question field ({'/'.join(_Q)}) and an answer field ({'/'.join(_A)})")
        if row.get("answer_type", "math") not in ANSWER_TYPES:
            raise DataError(f"{p}:{n}: answer_type={row['answer_type']!r}; use one of {', '.join(ANSWER_TYPES)} "
                            "(or leave it out: math)")
        meta = {k: v for k, v in row.items() if k not in _Q + _A + _IMG}
        bases = [p.parent] + ([Path(image_dir).expanduser()] if image_dir else [])
        try:
            images = sum((image_paths(row.get(k), bases, f"{p}:{n}", k) for k in _IMG), ())
        except ImageError as err:
            raise DataError(str(err)) from None
        out.append(Question(id=str(row.get("id", f"{p.stem}-{n}")), prompt=str(q), answer=str(a),
                            family=p.stem, meta=meta, images=images))
    if not out:
        raise DataError(f"{p}: no questions; the file is empty")
    return out


class JsonlStream:
    """Deterministic, resumable stream over a JSONL dataset (same interface as the synthetic QuestionStream)."""

    def __init__(self, path: str | Path, seed: int, image_dir: str | Path | None = None):
        self.items = read_jsonl_questions(path, image_dir)
        self.seed = seed
        self.epoch = 0
        self.pos = 0
        self._order = self._perm(0)

    def _perm(self, epoch: int) -> list[int]:
        order = list(range(len(self.items)))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def next(self, n: int) -> list[Question]:
        out = []
        while len(out) < n:
            if self.pos >= len(self._order):
                self.epoch += 1
                self.pos = 0
                self._order = self._perm(self.epoch)
            out.append(self.items[self._order[self.pos]])
            self.pos += 1
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = state["epoch"]
        self.pos = state["pos"]
        self._order = self._perm(self.epoch)
