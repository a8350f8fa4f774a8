"""Synthetic visual task families for the tiny vision-language scale (`tiny-vl`): the answer needs the image.

Every image is a white canvas of 16-pixel cells; a cell is 2×2 patches of 8 pixels, which the tiny Qwen3.5 VLM's
vision tower merges into exactly one image token, so reading one cell is one token's job. The prompt names only
the task; the content (colours, digits, bar heights) is in the picture alone. Responses follow the text families'
format, ``<think>SCRATCHPAD</think>\\boxed{ANSWER}``, the scratchpad holding what was read:

=============  ===============  =========================================  ========================================
family         prompt           image (cells)                              response
=============  ===============  =========================================  ========================================
count          ``Count red.``   4×4 grid of coloured squares               ``<think>1+0+2+1=4</think>\\boxed{4}``
digits         ``Sum row 2.``   4 rows of 2-4 digit glyphs                 ``<think>3+5=8;8+2=10</think>\\boxed{10}``
bars           ``Tallest bar?`` 2-4 bars, heights 1-8 half-cells, distinct  ``<think>2,7,1</think>\\boxed{2}``
count_tall     as count         6 rows instead of 4 (ood)                  six row counts
digits_wide    as digits        rows of 5 digits (ood)                     four running sums
bars_wide      as bars          5 bars of heights 1-10 (ood)               five heights
=============  ===============  =========================================  ========================================

* ``count``: count the squares of one colour (red, green or blue); the scratchpad holds the count per row. Level 1:
  only that colour, 1-4 squares; level 2: one other colour as distractor, 2-8 squares; level 3: all three colours,
  4-12 squares.
* ``digits``: sum the digits of one row (a 3×5 pixel font drawn 3× large); the scratchpad reads the row left to
  right as running sums. Level L: rows of L+1 digits (the other rows are filled too, as distractors).
* ``bars``: which bar (1 = leftmost) is tallest; the scratchpad lists the heights in half-cells (8 px, one patch
  row). Level L: L+1 bars, each of a random colour (a distractor).
* The ood counterparts need the same skill on more cells than training ever shows (longer scratchpads, new
  positions): the `tiny-vl-ood` suite.

Decoys (`wrong_solution`) misread one cell and continue consistently from it; misconceptions (`make_beliefs` +
`believed_solution`, used by `prepare` for the tiny student) are consistent misreadings: blind spots where a square
is missed (count), digits read as another digit (digits), bar positions read one unit too short (bars). Questions
meeting one stay hard for the student under plain sampling. Chance level (the blank-image control): the share of
the most frequent answer, e.g. 1/(L+1) for bars.

Images are PNG ``data:`` URIs in `Question.images` (JSON-able, so the replay buffer checkpoints them); the grid is
in `meta`. Train/eval split as in `synthetic.py`: 1/8 of each family's space (by canonical key: the grid and the
asked row or colour) is held out for evaluation. Nothing here imports torch; images are drawn with numpy + Pillow.

Why this file is long: six families (three skills and their out-of-distribution counterparts) with their image
drawing, decoys, misconceptions and chance levels are read and tested side by side (tests/unit/test_visual.py),
like the text families of `synthetic.py`.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from zppo_core.tasks.images import to_data_uri
from zppo_core.tasks.synthetic import _Base, _digest, format_response
from zppo_core.types import Question

__all__ = ["CELL", "VISUAL_FAMILIES", "VISUAL_IN_DIST", "VISUAL_OOD", "VISUAL_OOD_OF", "chance_accuracy",
           "draw_grid", "is_visual"]

CELL = 16  # pixels per cell: 2×2 patches of 8 px = one merged image token of the tiny VLM
COLOURS = {"red": (220, 40, 40), "green": (30, 160, 60), "blue": (40, 80, 220)}
COLOUR_NAMES = tuple(COLOURS)
INK = (20, 20, 20)
BAR = (70, 70, 70)
# 3×5 glyphs of the digits 0-9, rows top to bottom
FONT = {
    0: ("111", "101", "101", "101", "111"), 1: ("010", "110", "010", "010", "111"),
    2: ("111", "001", "111", "100", "111"), 3: ("111", "001", "111", "001", "111"),
    4: ("101", "101", "111", "001", "001"), 5: ("111", "100", "111", "001", "111"),
    6: ("111", "100", "111", "101", "111"), 7: ("111", "001", "001", "001", "001"),
    8: ("111", "101", "111", "101", "111"), 9: ("111", "101", "111", "001", "111"),
}


def draw_grid(rows: int, cols: int, paint) -> Any:
    """A white `rows`×`cols`-cell RGB image; `paint(canvas, r, c, y, x)` fills cell (r, c) whose top-left pixel
    is (y, x)."""
    import numpy as np
    from PIL import Image

    canvas = np.full((rows * CELL, cols * CELL, 3), 255, dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            paint(canvas, r, c, r * CELL, c * CELL)
    return Image.fromarray(canvas)


class _Visual(_Base):
    """Plumbing shared by the visual families: question ids from the prompt and the grid, the image, beliefs."""

    rows = 4
    cols = 4

    def _visual_question(self, level: int, prompt: str, answer: int, meta: dict[str, Any]) -> Question:
        key = self._key(prompt, meta)
        return Question(id=f"{self.name}-L{level}-{_digest(key, 5).hex()}", prompt=prompt, answer=str(answer),
                        family=self.name, level=level, meta=meta, images=(to_data_uri(self.draw(meta)),))

    def _key(self, prompt: str, meta: dict[str, Any]) -> str:
        return f"{self.name}:{prompt}:{meta['grid']}"

    def split_key(self, q: Question) -> str:
        return self._key(q.prompt, q.meta)

    def draw(self, meta: dict[str, Any]):
        raise NotImplementedError

    def chance(self, questions: list[Question]) -> float:
        """Accuracy of always giving the most frequent gold answer among `questions` (the blind baseline)."""
        return chance_accuracy(questions)


# ------------------------------------------------------------------------------------------------ count


class CountFamily(_Visual):
    name = "count"
    levels = (1, 2, 3)
    in_dist = True
    description = "in-dist: count the squares of one colour in a 4x4 grid; scratchpad = count per row"
    # level -> (colours present, min squares, max squares)
    _LEVELS = {1: (1, 1, 4), 2: (2, 2, 8), 3: (3, 4, 12)}

    def make(self, rng: random.Random, level: int) -> Question:
        self._check_level(level)
        n_colours, lo, hi = self._LEVELS[level]
        target = rng.choice(COLOUR_NAMES)
        others = rng.sample([c for c in COLOUR_NAMES if c != target], n_colours - 1)
        cells = rng.sample(range(self.rows * self.cols), rng.randint(lo, min(hi, self.rows * self.cols)))
        colours = [target] + others
        grid = [["" for _ in range(self.cols)] for _ in range(self.rows)]
        for i, cell in enumerate(cells):  # every colour present at least once, then at random
            grid[cell // self.cols][cell % self.cols] = colours[i] if i < len(colours) else rng.choice(colours)
        meta = {"grid": grid, "target": target}
        return self._visual_question(level, f"Count {target}.", self._count(grid, target), meta)

    @staticmethod
    def _row_counts(grid: list[list[str]], target: str) -> list[int]:
        return [sum(cell == target for cell in row) for row in grid]

    def _count(self, grid, target) -> int:
        return sum(self._row_counts(grid, target))

    def _response(self, counts: list[int]) -> str:
        return format_response("+".join(map(str, counts)) + f"={sum(counts)}", str(sum(counts)))

    def solution(self, q: Question) -> str:
        return self._response(self._row_counts(q.meta["grid"], q.meta["target"]))

    def wrong_solution(self, q: Question, rng: random.Random) -> str:
        counts = self._row_counts(q.meta["grid"], q.meta["target"])
        r = rng.randrange(len(counts))  # one row miscounted by one (a square missed or a distractor counted)
        counts[r] = counts[r] - 1 if counts[r] and (rng.random() < 0.5 or counts[r] == self.cols) else counts[r] + 1
        return self._response(counts)

    def make_beliefs(self, n: int, rng: random.Random) -> set[tuple[int, int]]:
        """Blind spots: `n` cells where the student does not see a square."""
        return set(rng.sample([(r, c) for r in range(self.rows) for c in range(self.cols)], n))

    def believed_solution(self, q: Question, beliefs, rate: float, rng: random.Random) -> str:
        grid, target = q.meta["grid"], q.meta["target"]
        counts = [sum(cell == target and not ((r, c) in beliefs and rng.random() < rate) for c, cell in enumerate(row))
                  for r, row in enumerate(grid)]
        return self._response(counts)

    def draw(self, meta: dict[str, Any]):
        grid = meta["grid"]

        def paint(canvas, r, c, y, x):
            if grid[r][c]:
                canvas[y + 2 : y + CELL - 2, x + 2 : x + CELL - 2] = COLOURS[grid[r][c]]

        return draw_grid(len(grid), len(grid[0]), paint)


class CountTallFamily(CountFamily):
    name = "count_tall"
    rows = 6
    in_dist = False
    description = "ood: count with 6 rows of cells (training shows 4); scratchpad = six row counts"
    _LEVELS = {1: (1, 1, 6), 2: (2, 3, 12), 3: (3, 6, 18)}


# ------------------------------------------------------------------------------------------------ digits


class DigitsFamily(_Visual):
    name = "digits"
    levels = (1, 2, 3)
    in_dist = True
    description = "in-dist: sum one row of a grid of digit glyphs (L+1 digits per row); scratchpad = running sums"

    def _width(self, level: int) -> int:
        return level + 1

    def make(self, rng: random.Random, level: int) -> Question:
        self._check_level(level)
        width = self._width(level)
        grid = [[rng.randrange(10) for _ in range(width)] for _ in range(self.rows)]
        row = rng.randrange(self.rows)
        meta = {"grid": grid, "row": row}
        return self._visual_question(level, f"Sum row {row + 1}.", sum(grid[row]), meta)

    @staticmethod
    def _response(digits: list[int]) -> str:
        acc, parts = digits[0], []
        for v in digits[1:]:
            parts.append(f"{acc}+{v}={acc + v}")
            acc += v
        return format_response(";".join(parts), str(acc))

    def solution(self, q: Question) -> str:
        return self._response(list(q.meta["grid"][q.meta["row"]]))

    def wrong_solution(self, q: Question, rng: random.Random) -> str:
        digits = list(q.meta["grid"][q.meta["row"]])
        i = rng.randrange(len(digits))  # one glyph misread as a neighbouring digit
        digits[i] = (digits[i] + rng.choice((1, 9))) % 10
        return self._response(digits)

    def make_beliefs(self, n: int, rng: random.Random) -> dict[int, int]:
        """`n` digits the student consistently reads as another digit."""
        return {d: (d + rng.randint(1, 9)) % 10 for d in rng.sample(range(10), min(n, 10))}

    def believed_solution(self, q: Question, beliefs, rate: float, rng: random.Random) -> str:
        digits = [beliefs[d] if d in beliefs and rng.random() < rate else d for d in q.meta["grid"][q.meta["row"]]]
        return self._response(digits)

    def draw(self, meta: dict[str, Any]):
        grid = meta["grid"]
        masks = _glyph_masks()

        def paint(canvas, r, c, y, x):
            canvas[y : y + CELL, x : x + CELL][masks[grid[r][c]]] = INK

        return draw_grid(len(grid), len(grid[0]), paint)


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


class DigitsWideFamily(DigitsFamily):
    name = "digits_wide"
    levels = (4,)
    in_dist = False
    description = "ood: sum a row of 5 digits (training shows at most 4); scratchpad = four running sums"


# ------------------------------------------------------------------------------------------------ bars


class BarsFamily(_Visual):
    name = "bars"
    levels = (1, 2, 3)
    in_dist = True
    description = "in-dist: which of L+1 bars (heights 1-8 half-cells, distinct) is tallest; scratchpad = the heights"
    UNIT = CELL // 2  # bar heights count half-cells (8 px, one patch row)

    def make(self, rng: random.Random, level: int) -> Question:
        self._check_level(level)
        heights = rng.sample(range(1, 2 * self.rows + 1), level + 1)
        colours = [rng.choice(COLOUR_NAMES) for _ in heights]  # distractor: colour says nothing about height
        meta = {"grid": heights, "colours": colours}
        return self._visual_question(level, "Tallest bar?", self._tallest(heights), meta)

    def _key(self, prompt: str, meta: dict[str, Any]) -> str:
        return f"{self.name}:{prompt}:{meta['grid']}:{meta['colours']}"

    @staticmethod
    def _tallest(heights: list[int]) -> int:
        return heights.index(max(heights)) + 1

    def _response(self, heights: list[int]) -> str:
        return format_response(",".join(map(str, heights)), str(self._tallest(heights)))

    def solution(self, q: Question) -> str:
        return self._response(list(q.meta["grid"]))

    def wrong_solution(self, q: Question, rng: random.Random) -> str:
        heights = list(q.meta["grid"])
        top = heights.index(max(heights))
        others = [i for i in range(len(heights)) if i != top]
        heights[top], j = max(heights) - 1, rng.choice(others)  # the tallest read one short, another one taller
        heights[j] = max(heights[j], heights[top]) + 1
        return self._response(heights)

    def make_beliefs(self, n: int, rng: random.Random) -> set[tuple[int, int]]:
        """`n` (bar position, height) pairs the student reads one unit too short."""
        pairs = [(i, h) for i in range(self.rows + 1) for h in range(2, 2 * self.rows + 1)]
        return set(rng.sample(pairs, min(n, len(pairs))))

    def believed_solution(self, q: Question, beliefs, rate: float, rng: random.Random) -> str:
        heights = [h - 1 if (i, h) in beliefs and rng.random() < rate else h for i, h in enumerate(q.meta["grid"])]
        return self._response(heights)

    def draw(self, meta: dict[str, Any]):
        heights, colours = meta["grid"], meta["colours"]
        rows = self.rows

        def paint(canvas, r, c, y, x):
            if c < len(heights):
                top = rows * CELL - heights[c] * self.UNIT  # the bar's top pixel row
                lo = max(y, top)
                if lo < y + CELL:
                    canvas[lo : y + CELL, x + 2 : x + CELL - 2] = COLOURS[colours[c]]

        return draw_grid(rows, max(len(heights), 4), paint)


class BarsWideFamily(BarsFamily):
    name = "bars_wide"
    levels = (4,)
    rows = 5
    in_dist = False
    description = "ood: which of 5 bars (heights 1-10 half-cells) is tallest (training: at most 4 bars, height 8)"


# ------------------------------------------------------------------------------------------------ catalogue


def chance_accuracy(questions: list[Question]) -> float:
    """Accuracy of always answering the most frequent gold answer of `questions` (0.0 for none)."""
    if not questions:
        return 0.0
    return Counter(q.answer for q in questions).most_common(1)[0][1] / len(questions)


VISUAL_FAMILIES: dict[str, _Visual] = {f.name: f for f in (CountFamily(), DigitsFamily(), BarsFamily(),
                                                           CountTallFamily(), DigitsWideFamily(), BarsWideFamily())}
VISUAL_IN_DIST: tuple[str, ...] = ("count", "digits", "bars")
VISUAL_OOD: tuple[str, ...] = ("count_tall", "digits_wide", "bars_wide")
VISUAL_OOD_OF: dict[str, str] = {"count": "count_tall", "digits": "digits_wide", "bars": "bars_wide"}


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
