"""The synthetic visual families (tiny-vl): answers follow from the cells, which only the image shows; decoys and
misconceptions are wrong in the intended way; the held-out split is disjoint; chance is the blind baseline."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zppo_core.tasks import (VISUAL_FAMILIES, VISUAL_IN_DIST, VISUAL_OOD, VISUAL_OOD_OF, QuestionStream, get_family,
                             grade, in_eval_split, is_visual, make_eval_set, parse_response)
from zppo_core.tasks.images import load_image
from zppo_core.tasks.visual import CELL, COLOURS, chance_accuracy

PAIRS = [(name, level) for name in VISUAL_FAMILIES for level in VISUAL_FAMILIES[name].levels]


def _cells_from_pixels(q):
    """Read the answer back from the image alone (the check that the picture holds everything needed)."""
    img = load_image(q.images[0], 16, 10**6)
    n = img.size[0] // CELL
    assert img.size == (n * CELL, CELL) and n == len(q.meta["cells"])
    if q.family.startswith("count"):
        def colour(i):
            px = img.getpixel((i * CELL + CELL // 2, CELL // 2))
            return next((name for name, rgb in COLOURS.items() if px == rgb), "")
        return [colour(i) for i in range(n)]
    if q.family.startswith("bars"):
        return [sum(img.getpixel((i * CELL + CELL // 2, y)) != (255, 255, 255) for y in range(CELL)) // 2
                for i in range(n)]
    from zppo_core.tasks.visual import _glyph_masks

    masks = _glyph_masks()
    return [next(d for d, m in masks.items()
                 if all((img.getpixel((i * CELL + x, y)) != (255, 255, 255)) == bool(m[y, x])
                        for y in range(CELL) for x in range(CELL))) for i in range(n)]


@settings(max_examples=60, deadline=None)
@given(pair=st.sampled_from(PAIRS), seed=st.integers(0, 10**6))
def test_solution_decoy_and_image_agree(pair, seed):
    name, level = pair
    fam = VISUAL_FAMILIES[name]
    rng = random.Random(seed)
    q = fam.make(rng, level)
    assert q.family == name and q.level == level and len(q.meta["cells"]) == level + 1
    assert json.loads(json.dumps(q.meta)) == q.meta and q.images[0].startswith("data:image/png;base64,")
    assert _cells_from_pixels(q) == q.meta["cells"]  # the image shows exactly the cells the answer comes from
    sol = fam.solution(q)
    assert parse_response(sol) is not None and grade(sol, q.answer)[0] == 1.0
    wrong = fam.wrong_solution(q, rng)
    assert parse_response(wrong) is not None and grade(wrong, q.answer)[0] == 0.0
    assert fam.believed_solution(q, fam.make_beliefs(0.5, random.Random(seed)), 0.0, rng) == sol  # rate 0: correct


def test_answers_by_hand():
    fam = get_family("count")
    q = fam._visual_question(3, 2, {"cells": ["red", "", "blue", "red"], "target": "red"}, "Count red.")
    assert fam.solution(q) == "<think>1,1,1,2</think>\\boxed{2}"
    fam = get_family("digits")
    q = fam._visual_question(2, 6, {"cells": [3, 5, 8]})
    assert (q.prompt, fam.solution(q)) == ("Add mod 10.", "<think>3+5=8;8+8=6</think>\\boxed{6}")
    fam = get_family("bars")
    q = fam._visual_question(2, 2, {"cells": [3, 8, 5], "colours": ["red", "red", "blue"]})
    assert (q.prompt, fam.solution(q)) == ("Tallest bar?", "<think>3,8,5</think>\\boxed{2}")


def test_misconceptions_are_consistent_and_make_questions_hard():
    fam = get_family("digits")
    beliefs = fam.make_beliefs(0.2, random.Random(0))
    assert len(beliefs) == 2 and all(b != d for d, b in beliefs.items())
    d = next(iter(beliefs))
    q = fam._visual_question(1, (d + d) % 10, {"cells": [d, d]})
    outs = {fam.believed_solution(q, beliefs, 1.0, random.Random(i)) for i in range(5)}
    assert len(outs) == 1 and grade(outs.pop(), q.answer)[0] == 0.0  # the same wrong belief every time
    assert len(get_family("count").make_beliefs(0.2, random.Random(0))) == 3  # of 5 positions x 3 colours
    assert len(get_family("bars").make_beliefs(0.2, random.Random(0))) == 7  # of 5 positions x 7 heights


def test_catalogue_ood_and_split():
    assert set(VISUAL_FAMILIES) == set(VISUAL_IN_DIST) | set(VISUAL_OOD)
    assert all(is_visual(f) for f in VISUAL_FAMILIES) and not is_visual("modsum")
    for name, ood in VISUAL_OOD_OF.items():  # more cells than training ever shows
        assert min(get_family(ood).levels) > max(get_family(name).levels)
    train = QuestionStream(list(VISUAL_IN_DIST), None, 3).next(300)
    ev = make_eval_set(list(VISUAL_IN_DIST), 10, 12345)
    assert not any(in_eval_split(q) for q in train) and all(in_eval_split(q) for q in ev)
    assert not {q.id for q in train} & {q.id for q in ev}
    assert len({q.id for q in ev}) == len(ev)  # distinct by image, not by (repeated) prompt text
    # every (family, level) full, except count level 1, whose space (2 cells: 48 questions) holds ~6 held out
    assert len(ev) > 10 * 4 * 3 - 10 and sum(q.family == "bars" for q in ev) == 40


def test_chance_accuracy_is_the_most_frequent_answer_share():
    fam = get_family("bars")
    qs = [fam._visual_question(1, a, {"cells": [a, 9 - a], "colours": ["red", "red"]}) for a in (1, 1, 2, 1)]
    assert chance_accuracy(qs) == pytest.approx(0.75) and chance_accuracy([]) == 0.0
