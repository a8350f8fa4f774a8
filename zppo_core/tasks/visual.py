"""Synthetic visual task families for the tiny vision-language scale (`tiny-vl`): the answer needs the image.

Every image is a strip of 16-pixel cells on white; a cell is 2×2 patches of 8 pixels, which the tiny Qwen3.5 VLM's
vision tower merges into exactly one image token, so reading one cell is one token's job. The prompt names only the
task; the content (colours, digits, bar heights) is in the picture alone. Responses follow the text families'
format, ``<think>SCRATCHPAD</think>\\boxed{ANSWER}``, the scratchpad reading the cells left to right, one step per
cell (like ``modsum``: what a tiny model learns in a few hundred SFT steps):

=============  ================  ====================================  ==========================================
family         prompt            image (one row of cells)              response
=============  ================  ====================================  ==========================================
count          ``Count red.``    squares of red/green/blue or empty    ``<think>1,1,2,3</think>\\boxed{3}``
digits         ``Add mod 10.``   digit glyphs                          ``<think>3+5=8;8+4=2</think>\\boxed{2}``
bars           ``Tallest bar?``  bars of heights 1-8, distinct         ``<think>3,8,5</think>\\boxed{2}``
=============  ================  ====================================  ==========================================

* Level L (1-4): L+1 cells. ``count``: the scratchpad is the running count of squares of the asked colour (each
  cell empty or one of three colours); ``digits``: the running sum modulo 10 (the visual ``modsum``; a 3×5 pixel
  font drawn 3× large); ``bars``: the heights (in 2-pixel units), then the position of the tallest (1 = leftmost);
  each bar has a random colour (a distractor).
* Out of distribution (`count_long`, `digits_long`, `bars_long`; the `tiny-vl-ood` suite): 6 and 7 cells, longer
  than training ever shows (as ``modsum_long``).

Decoys (`wrong_solution`) misread one cell and continue consistently from it; misconceptions (`make_beliefs(share)`
+ `believed_solution`, used by `prepare` for the tiny student) are consistent misreadings of a share of the
family's atoms: a colour missed at a position (count: of 5 positions × 3 colours), a digit read as another digit
(digits: of 10), a bar at a position read one unit short (bars: of 5 positions × 7 heights). Questions meeting one
stay hard for the student under plain sampling. Chance level (the blank-image control): the share of the most
frequent answer (`chance_accuracy`), e.g. about 1/(L+1) for bars.

Images are PNG ``data:`` URIs in `Question.images` (JSON-able, so the replay buffer checkpoints them); the cells
are in `meta`. Train/eval split as in `synthetic.py`: 1/8 of each family's space (by canonical key: the cells and
the asked colour) is held out for evaluation. Nothing here imports torch; images are drawn with numpy + Pillow.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

from zppo_core.tasks.images import to_data_uri
from zppo_core.tasks.synthetic import _Base, _digest, format_response
from zppo_core.types import Question

__all__ = ["CELL", "VISUAL_FAMILIES", "VISUAL_IN_DIST", "VISUAL_OOD", "VISUAL_OOD_OF", "chance_accuracy",
           "draw_strip", "is_visual"]

CELL = 16  # pixels per cell: 2×2 patches of 8 px = one merged image token of the tiny VLM
COLOURS = {"red": (220, 40, 40), "green": (30, 160, 60), "blue": (40, 80, 220)}
COLOUR_NAMES = tuple(COLOURS)
INK = (20, 20, 20)
# 3×5 glyphs of the digits 0-9, rows top to bottom
FONT = {
    0: ("111", "101", "101", "101", "111"), 1: ("010", "110", "010", "010", "111"),
    2: ("111", "001", "111", "100", "111"), 3: ("111", "001", "111", "001", "111"),
    4: ("101", "101", "111", "001", "001"), 5: ("111", "100", "111", "001", "111"),
    6: ("111", "100", "111", "101", "111"), 7: ("111", "001", "001", "001", "001"),
    8: ("111", "101", "111", "101", "111"), 9: ("111", "101", "111", "001", "111"),
}


def draw_strip(n: int, paint) -> Any:
    """A white RGB image of `n` cells in a row; `paint(canvas, i, x)` fills cell i, whose left pixel column is x."""
    import numpy as np
    from PIL import Image

    canvas = np.full((CELL, n * CELL, 3), 255, dtype=np.uint8)
    for i in range(n):
        paint(canvas, i, i * CELL)
    return Image.fromarray(canvas)


class _Visual(_Base):
    """Plumbing shared by the visual families: cells per level, question ids from the prompt and the cells, the
    image, the held-out key."""

    levels = (1, 2, 3, 4)
    prompt = ""

    def _n_cells(self, level: int) -> int:
        return level + 1

    def _visual_question(self, level: int, answer: int, meta: dict[str, Any], prompt: str | None = None) -> Question:
        prompt = prompt or self.prompt
        key = self._key(prompt, meta)
        return Question(id=f"{self.name}-L{level}-{_digest(key, 5).hex()}", prompt=prompt, answer=str(answer),
                        family=self.name, level=level, meta=meta, images=(to_data_uri(self.draw(meta)),))

    def _key(self, prompt: str, meta: dict[str, Any]) -> str:
        return f"{self.name}:{prompt}:{json.dumps(meta, sort_keys=True)}"

    def split_key(self, q: Question) -> str:
        return self._key(q.prompt, q.meta)

    def draw(self, meta: dict[str, Any]):
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------ count


class CountFamily(_Visual):
    name = "count"
    in_dist = True
    description = "in-dist: count the squares of one colour in a row of L+1 cells; scratchpad = running count"

    def make(self, rng: random.Random, level: int) -> Question:
        self._check_level(level)
        target = rng.choice(COLOUR_NAMES)
        cells = [target if rng.random() < 0.4 else rng.choice(["", *[c for c in COLOUR_NAMES if c != target]])
                 for _ in range(self._n_cells(level))]
        meta = {"cells": cells, "target": target}
        return self._visual_question(level, cells.count(target), meta, f"Count {target}.")

    @staticmethod
    def _response(hits: list[bool]) -> str:
        running, acc = [], 0
        for h in hits:
            acc += int(h)
            running.append(str(acc))
        return format_response(",".join(running), str(acc))

    def solution(self, q: Question) -> str:
        return self._response([c == q.meta["target"] for c in q.meta["cells"]])

    def wrong_solution(self, q: Question, rng: random.Random) -> str:
        hits = [c == q.meta["target"] for c in q.meta["cells"]]
        i = rng.randrange(len(hits))  # one cell misread: a square missed or a distractor counted
        hits[i] = not hits[i]
        return self._response(hits)

    def make_beliefs(self, share: float, rng: random.Random) -> set[tuple[int, str]]:
        """A `share` of the (position, colour) pairs, where the student does not see a square of that colour."""
        atoms = [(i, c) for i in range(5) for c in COLOUR_NAMES]
        return set(rng.sample(atoms, _how_many(share, len(atoms))))

    def believed_solution(self, q: Question, beliefs, rate: float, rng: random.Random) -> str:
        target = q.meta["target"]
        hits = [c == target and not ((i, c) in beliefs and rng.random() < rate) for i, c in enumerate(q.meta["cells"])]
        return self._response(hits)

    def draw(self, meta: dict[str, Any]):
        cells = meta["cells"]

        def paint(canvas, i, x):
            if cells[i]:
                canvas[2 : CELL - 2, x + 2 : x + CELL - 2] = COLOURS[cells[i]]

        return draw_strip(len(cells), paint)


class CountLongFamily(CountFamily):
    name = "count_long"
    levels = (5, 6)
    in_dist = False
    description = "ood: count with 6-7 cells (training shows at most 5); scratchpad = running count"


# ------------------------------------------------------------------------------------------------ digits


class DigitsFamily(_Visual):
    name = "digits"
    in_dist = True
    prompt = "Add mod 10."
    description = "in-dist: sum L+1 digit glyphs modulo 10 (the visual modsum); scratchpad = running sums mod 10"

    def make(self, rng: random.Random, level: int) -> Question:
        self._check_level(level)
        digits = [rng.randrange(10) for _ in range(self._n_cells(level))]
        return self._visual_question(level, sum(digits) % 10, {"cells": digits})

    @staticmethod
    def _response(digits: list[int]) -> str:
        acc, parts = digits[0], []
        for v in digits[1:]:
            parts.append(f"{acc}+{v}={(acc + v) % 10}")
            acc = (acc + v) % 10
        return format_response(";".join(parts), str(acc))

    def solution(self, q: Question) -> str:
        return self._response(list(q.meta["cells"]))

    def wrong_solution(self, q: Question, rng: random.Random) -> str:
        digits = list(q.meta["cells"])
        i = rng.randrange(len(digits))  # one glyph misread as a neighbouring digit
        digits[i] = (digits[i] + rng.choice((1, 9))) % 10
        return self._response(digits)

    def make_beliefs(self, share: float, rng: random.Random) -> dict[int, int]:
        """A `share` of the ten digits, each consistently read as another digit."""
        return {d: (d + rng.randint(1, 9)) % 10 for d in rng.sample(range(10), _how_many(share, 10))}

    def believed_solution(self, q: Question, beliefs, rate: float, rng: random.Random) -> str:
        return self._response([beliefs[d] if d in beliefs and rng.random() < rate else d for d in q.meta["cells"]])

    def draw(self, meta: dict[str, Any]):
        digits = meta["cells"]
        masks = _glyph_masks()

        def paint(canvas, i, x):
            canvas[:, x : x + CELL][masks[digits[i]]] = INK

        return draw_strip(len(digits), paint)


class DigitsLongFamily(DigitsFamily):
    name = "digits_long"
    levels = (5, 6)
    in_dist = False
    description = "ood: the visual modsum with 6-7 digits (training shows at most 5)"


_GLYPHS: dict[int, Any] = {}


def _glyph_masks() -> dict[int, Any]:
    """Digit -> boolean CELL×CELL mask of its glyph: the 3×5 font drawn with 3×3-pixel dots from (1, 3)."""
    if not _GLYPHS:
        import numpy as np

        for d, lines in FONT.items():
            m = np.zeros((CELL, CELL), dtype=bool)
            for gy, line in enumerate(lines):
                for gx, bit in enumerate(line):
                    if bit == "1":
                        m[1 + 3 * gy : 4 + 3 * gy, 3 + 3 * gx : 6 + 3 * gx] = True
            _GLYPHS[d] = m
    return _GLYPHS


# ------------------------------------------------------------------------------------------------ bars


class BarsFamily(_Visual):
    name = "bars"
    in_dist = True
    prompt = "Tallest bar?"
    description = "in-dist: which of L+1 bars (heights 1-8, distinct) is tallest; scratchpad = the heights"
    UNIT = 2  # pixels per height unit: heights 1-8 fill 2-16 of a cell's 16 pixel rows

    def make(self, rng: random.Random, level: int) -> Question:
        self._check_level(level)
        heights = rng.sample(range(1, CELL // self.UNIT + 1), self._n_cells(level))
        colours = [rng.choice(COLOUR_NAMES) for _ in heights]  # distractor: colour says nothing about height
        return self._visual_question(level, self._tallest(heights), {"cells": heights, "colours": colours})

    @staticmethod
    def _tallest(heights: list[int]) -> int:
        return heights.index(max(heights)) + 1

    def _response(self, heights: list[int]) -> str:
        return format_response(",".join(map(str, heights)), str(self._tallest(heights)))

    def solution(self, q: Question) -> str:
        return self._response(list(q.meta["cells"]))

    def wrong_solution(self, q: Question, rng: random.Random) -> str:
        heights = list(q.meta["cells"])
        top = heights.index(max(heights))
        j = rng.choice([i for i in range(len(heights)) if i != top])
        heights[j] = max(heights) + 1  # another bar read taller than the tallest
        return self._response(heights)

    def make_beliefs(self, share: float, rng: random.Random) -> set[tuple[int, int]]:
        """A `share` of the (position, height) pairs, each read one unit too short."""
        atoms = [(i, h) for i in range(5) for h in range(2, CELL // self.UNIT + 1)]
        return set(rng.sample(atoms, _how_many(share, len(atoms))))

    def believed_solution(self, q: Question, beliefs, rate: float, rng: random.Random) -> str:
        heights = [h - 1 if (i, h) in beliefs and rng.random() < rate else h for i, h in enumerate(q.meta["cells"])]
        return self._response(heights)

    def draw(self, meta: dict[str, Any]):
        heights, colours = meta["cells"], meta["colours"]

        def paint(canvas, i, x):
            canvas[CELL - self.UNIT * heights[i] :, x + 3 : x + CELL - 3] = COLOURS[colours[i]]

        return draw_strip(len(heights), paint)


class BarsLongFamily(BarsFamily):
    name = "bars_long"
    levels = (5, 6)
    in_dist = False
    description = "ood: which of 6-7 bars is tallest (training shows at most 5)"


# ------------------------------------------------------------------------------------------------ catalogue


def _how_many(share: float, space: int) -> int:
    return min(space, max(0, round(share * space)))


def chance_accuracy(questions: list[Question]) -> float:
    """Accuracy of always answering the most frequent gold answer of `questions` (0.0 for none)."""
    if not questions:
        return 0.0
    return Counter(q.answer for q in questions).most_common(1)[0][1] / len(questions)


VISUAL_FAMILIES: dict[str, _Visual] = {f.name: f for f in (CountFamily(), DigitsFamily(), BarsFamily(),
                                                           CountLongFamily(), DigitsLongFamily(), BarsLongFamily())}
VISUAL_IN_DIST: tuple[str, ...] = ("count", "digits", "bars")
VISUAL_OOD: tuple[str, ...] = ("count_long", "digits_long", "bars_long")
VISUAL_OOD_OF: dict[str, str] = {"count": "count_long", "digits": "digits_long", "bars": "bars_long"}


def is_visual(family: str) -> bool:
    """Whether a task family's questions come with images."""
    return family in VISUAL_FAMILIES


def _register() -> None:
    """The visual families join the one catalogue (`synthetic.FAMILIES`, looked up by name everywhere) and the
    ood map of the `tiny-ood` / `tiny-vl-ood` suites."""
    from zppo_core.tasks.synthetic import FAMILIES, OOD_OF

    for name, fam in VISUAL_FAMILIES.items():
        FAMILIES.setdefault(name, fam)
    for name, ood in VISUAL_OOD_OF.items():
        OOD_OF.setdefault(name, ood)


_register()
