"""Draw questions that pass a filter from a resumable question stream (the paper's plain-prompt length filter).

The paper drops training questions whose plain prompt is longer than 4,096 tokens (`data.max_prompt_tokens`).
Here the filter is applied as questions are drawn: the stream's cursor (checkpointed) moves past the skipped
ones, so a resumed run skips the same questions, and the count is reported per step.
"""

from __future__ import annotations

from collections.abc import Callable

from zppo_core.types import Question


def draw_fitting(stream, n: int, fits: Callable[[Question], bool], max_skipped: int | None = None
                 ) -> tuple[list[Question], int]:
    """`n` questions from `stream` (its `next(k)`) for which `fits(q)` holds, in stream order, and how many were
    skipped. RuntimeError when more than `max_skipped` (default 100·n + 1000) are skipped in one draw."""
    limit = 100 * n + 1000 if max_skipped is None else max_skipped
    kept: list[Question] = []
    skipped = 0
    while len(kept) < n:
        for q in stream.next(n - len(kept)):
            if fits(q):
                kept.append(q)
            else:
                skipped += 1
        if skipped > limit:
            raise RuntimeError(f"{skipped} questions in a row failed the prompt filter; raise data.max_prompt_tokens "
                               "or check data.path")
    return kept, skipped
