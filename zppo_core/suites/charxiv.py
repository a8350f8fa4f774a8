"""CharXiv's questions and grading prompts, built as the official code builds them.

A row of ``princeton-nlp/CharXiv`` holds one chart, one reasoning question and four descriptive questions:

* ``reasoning_q`` / ``reasoning_a`` with ``reasoning_q_source`` (1–4): the model sees the question wrapped in the
  official answer instruction of that category; category 4 (number-in-general) adds "must be an exact integer" or
  "a number with N decimal places" from the gold's form (``src/reasoning_utils.py`` ``build_reasoning_queries``,
  ``get_number_instruction``);
* ``descriptive_q1..4`` are template ids (1–19), not text; the question is the template with a subplot prefix
  from ``subplot_loc`` ("For the current plot, " when ``[0, 0]``, "For the subplot at row r and column c, ",
  or "For <text>, " when the location is a description; templates 18 and 19 take none), as in
  ``src/descriptive_utils.py`` ``descriptive_query_helper``. The hub copy may give the location as
  ``subplot_row`` / ``subplot_col`` with ``subplot_loc`` null (lmms-eval ``tasks/charxiv/utils.py``).

Grading follows ``src/evaluate.py``: the judge gets the official prefix, the rubric of the question's category and
the response, and answers JSON with a 0/1 score. Difference: the official descriptive grader batches up to five
responses to the same template into one query (``extract_answer_T1..T5``); here each response is graded alone
(``T1`` only), with the same prefix, rubric and examples.
"""

from __future__ import annotations

import json
from typing import Any

from zppo_core.suites.charxiv_text import (
    DESCRIPTIVE_GRADING_ICL,
    DESCRIPTIVE_GRADING_PREFIX,
    DESCRIPTIVE_GRADING_QMAP,
    DESCRIPTIVE_RESP_INST,
    REASONING_GRADING_INST,
    REASONING_GRADING_PREFIX,
    REASONING_RESP_INST,
)

__all__ = ["descriptive_judge_prompt", "descriptive_question", "reasoning_judge_prompt", "reasoning_question",
           "rubric_of", "subplot_location"]

# template id -> rubric (src/descriptive_utils.py get_rubric)
_RUBRIC = {1: "title", **dict.fromkeys((2, 3, 4, 5, 6, 7), "ocr"),
           **dict.fromkeys((8, 9, 10, 12, 14, 15, 17, 19), "quant"), 11: "bool", 13: "enum", 16: "trend",
           18: "layout"}


def subplot_location(row: dict[str, Any]) -> list[int] | str | None:
    """The row's subplot location: ``subplot_loc`` (a [row, col] pair, a JSON string of one, or a description),
    else ``[subplot_row, subplot_col]``; None when the row has neither."""
    loc = row.get("subplot_loc")
    if isinstance(loc, str) and loc.strip().startswith("["):
        try:
            loc = json.loads(loc)
        except json.JSONDecodeError:
            pass
    if isinstance(loc, (list, tuple)) and len(loc) >= 2:
        return [int(loc[0]), int(loc[1])]
    if isinstance(loc, str) and loc.strip():
        return loc.strip()
    r, c = row.get("subplot_row"), row.get("subplot_col")
    if r is not None and c is not None:
        return [int(r), int(c)]
    return None


def descriptive_question(qid: int, loc: list[int] | str | None) -> str:
    """The descriptive question for template `qid` at subplot location `loc` (ValueError when unknown)."""
    if qid not in DESCRIPTIVE_RESP_INST:
        raise ValueError(f"descriptive template id {qid!r} is not one of 1..19")
    if qid in (18, 19):  # the layout questions ask about the whole figure
        return DESCRIPTIVE_RESP_INST[qid]
    if isinstance(loc, list):
        prefix = "For the current plot, " if loc[0] == 0 else f"For the subplot at row {loc[0]} and column {loc[1]}, "
    elif isinstance(loc, str):
        prefix = f"For {loc}, "
    else:
        raise ValueError("no subplot location (subplot_loc or subplot_row/subplot_col)")
    return DESCRIPTIVE_RESP_INST[qid].format(prefix)


def _number_instruction(answer: str) -> str:
    parts = str(answer).split(".")
    if len(parts) == 1:
        return "* Your final answer must be an exact integer."
    return f"* Your final answer must be a number with {len(parts[1])} decimal places."


def reasoning_question(question: str, source: int, answer: str) -> str:
    """The reasoning question wrapped in the official instruction of its category `source` (1–4)."""
    if source in (1, 2, 3):
        return REASONING_RESP_INST[source].format(question)
    if source == 4:
        return REASONING_RESP_INST[4].format(question, _number_instruction(answer))
    raise ValueError(f"reasoning_q_source {source!r} is not one of 1..4")


def rubric_of(qid: int) -> str:
    """The grading rubric name of descriptive template `qid`."""
    return _RUBRIC[qid]


def reasoning_judge_prompt(question: str, gold: str, response: str, source: int) -> str:
    """The official grading query of a reasoning answer (JSON keys ``extracted_answer``, ``score``)."""
    body = REASONING_GRADING_INST[source]
    for key, value in (("<|question|>", question), ("<|ground_truth|>", gold), ("<|response|>", response)):
        body = body.replace(key, value)
    return REASONING_GRADING_PREFIX + body


def descriptive_judge_prompt(qid: int, gold: str, response: str) -> str:
    """The official grading query of one descriptive answer (JSON keys ``extract_answer_T1``, ``score_T1``)."""
    prefix = (DESCRIPTIVE_GRADING_PREFIX.replace("<|NUM_TRIPLETS|>", "1")
              .replace("<|OVERARCHING_QUESTION|>", DESCRIPTIVE_GRADING_QMAP[qid])
              .replace("<|JSON_KEYS|>", str(["extract_answer_T1", "score_T1"])))
    return prefix + DESCRIPTIVE_GRADING_ICL[_RUBRIC[qid]] + f"T1:\nResponse 1: {response}\nGround Truth 1: {gold}\n\n"
