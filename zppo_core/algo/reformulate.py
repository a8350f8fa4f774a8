"""Prompt builders (pure text, no models): the plain prompt with the shared closer.

ZPPO.md §3: a shared closer is appended to every training and evaluation prompt; dataset prompts are first
stripped of their own "think step by step" / "put the answer in a box" directives so the closer is the only
instruction about format.
"""

from __future__ import annotations

import re

from zppo_core.types import Question

_DIRECTIVES = [
    r"let'?s think step by step\.?",
    r"think step by step\.?",
    r"please reason step by step[^.\n]*\.?",
    r"(please )?put (your|the) (final )?answer (with)?in (a )?\\boxed\{\}\.?",
    r"(please )?put (your|the) (final )?answer in a box\.?",
    r"(your )?final answer (should|must) be (put |placed )?(with)?in \\boxed\{\}\.?",
]
_DIRECTIVE_RE = re.compile("|".join(f"(?:{d})" for d in _DIRECTIVES), re.IGNORECASE)


def strip_directives(text: str) -> str:
    """Remove a dataset's own reasoning/format directives (the closer replaces them)."""
    out = _DIRECTIVE_RE.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", out).strip()


def plain_prompt(question: Question, closer: str) -> str:
    """The plain prompt: the bare question followed by the shared closer."""
    return strip_directives(question.prompt) + closer
