"""Tasks: verifiable questions (synthetic text and visual families, JSONL data) and the binary rule grader.

Nothing in this package imports torch; sympy is imported only when a non-numeric answer is graded. The visual
families (`visual.py`) register themselves in the one catalogue when this package is imported.
"""

from zppo_core.tasks.graders import answers_equal, extract_boxed, grade, strip_degree_percent
from zppo_core.tasks.registry import get_family, list_families, register_family
from zppo_core.tasks.synthetic import (
    EVAL_SPLIT_MOD,
    FAMILIES,
    IN_DIST,
    OOD,
    OOD_OF,
    Family,
    QuestionStream,
    format_response,
    in_eval_split,
    make_eval_set,
    parse_response,
)
from zppo_core.tasks.visual import VISUAL_FAMILIES, VISUAL_IN_DIST, VISUAL_OOD, VISUAL_OOD_OF, is_visual

__all__ = [
    "EVAL_SPLIT_MOD",
    "FAMILIES",
    "IN_DIST",
    "OOD",
    "OOD_OF",
    "Family",
    "QuestionStream",
    "answers_equal",
    "extract_boxed",
    "format_response",
    "get_family",
    "grade",
    "in_eval_split",
    "list_families",
    "make_eval_set",
    "parse_response",
    "register_family",
    "strip_degree_percent",
    "VISUAL_FAMILIES",
    "VISUAL_IN_DIST",
    "VISUAL_OOD",
    "VISUAL_OOD_OF",
    "is_visual",
]
