"""Prompt builders (pure text, no models): plain, BCQ, NCQ and hint prompts from sandboxed Jinja2 templates.

ZPPO.md §3: a shared closer is appended to every training and evaluation prompt; dataset prompts are first
stripped of their own "think step by step" / "put the answer in a box" directives so the closer is the only
instruction about format.

- **BCQ** (:func:`build_bcq`): the question, a sentence saying two candidates follow (one correct, one wrong,
  usable as references), the two candidates in ``<candidate>`` tags in random order with no labels, the closer.
- **NCQ** (:func:`build_ncq`): the question, the deduplicated wrong final answers (each ``\\boxed{a}``; a wrong
  rollout without a parseable answer shows once as "(no final answer)"), a sentence saying the incorrect
  reasoning follows, one ``<candidate>`` block per wrong rollout (all of them), the closer.
- **Hint** (:func:`build_hint`, the Hint baseline): the question, the teacher's hint in ``<hint>`` tags, the closer.
  The hint itself: written by the teacher (:data:`HINT_PROMPT`, then :func:`clean_hint` removes any box), or, in
  compression mode ``none`` (tiny scale, where the teacher cannot write prose), :func:`hint_from_solution`: the
  leading share of a correct teacher response's reasoning, never its final answer (a [decision]).
- **Prefix** (:func:`prefix_length`, the Prefix baseline): how many leading tokens of a correct teacher
  response are forced at the start of the student's response (floor of 40 % of its tokens).

Candidate (and hint / wrong-answer) text is escaped first (:func:`escape_candidate`, a [decision] of
ZPPO.md §3) so that a rollout cannot open or close the prompt's structural tags. With compression mode
``none`` candidates are capped by :func:`truncate_candidate`, which keeps the final ``\\boxed{}`` answer.

Templates. Wording is zppo's own, in two built-ins (:data:`TEMPLATES`): ``compact`` (tiny scale: every
character costs a character-level model) and ``full`` (plain English sentences, GPU scales). Users may supply
their own, e.g. the paper's verbatim text, as a YAML file (:func:`load_template`)::

    # my_prompts.yaml: any of bcq / ncq / hint (missing keys come from the scale's built-in default)
    bcq: |-
      {{ question }}
      Two candidate solutions follow ...
      {% for c in candidates %}<candidate>{{ c }}</candidate>{% endfor %}
      {{ closer }}

Variables per template (:data:`TEMPLATE_VARIABLES`): ``bcq``: question, candidates, closer; ``ncq``: question,
candidates, wrong_answers (already formatted: ``\\boxed{a}`` or "(no final answer)"), closer; ``hint``:
question, hint, closer. Candidates are escaped strings, stripped of surrounding whitespace. Templates render in
``ImmutableSandboxedEnvironment`` (autoescape off, StrictUndefined, trailing newline kept); every template is
validated when loaded, before any compute (:class:`TemplateError`).

This module lives below ``tasks`` in the import layering, so it finds the final box itself
(:func:`boxed_answer`, the same rule as ``tasks.graders.extract_boxed``; a test checks they agree).

Why this file is long: escaping, truncation, the template type with its load-time validation, the two built-in
templates and the three builders are one contract (what a reformulated prompt may contain and look like);
splitting them would put the escaping rules and the templates that rely on them in different files.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from jinja2 import StrictUndefined, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from zppo_core.types import Question

__all__ = [
    "Candidate",
    "NO_FINAL_ANSWER",
    "PromptTemplate",
    "STRUCTURAL_TAGS",
    "TEMPLATES",
    "TEMPLATE_VARIABLES",
    "TemplateError",
    "boxed_answer",
    "build_bcq",
    "build_hint",
    "clean_hint",
    "hint_from_solution",
    "HINT_PROMPT",
    "prefix_length",
    "build_ncq",
    "escape_candidate",
    "load_template",
    "plain_prompt",
    "strip_directives",
    "truncate_candidate",
]

# ------------------------------------------------------------------------------------------ plain prompt

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


# ------------------------------------------------------------------------------------------ escaping

# Tags that structure a reformulated prompt. Any spelling a reader could take for one of them (any case,
# whitespace inside, closing slash, attributes, or a partial tag at the very end of the text) gets a "_"
# before the name: "<candidate>" -> "<_candidate>", "</CANDIDATE >" -> "</_CANDIDATE >". `<think>` is not
# escaped: candidates are rollouts and legitimately contain their own think blocks.
STRUCTURAL_TAGS = ("candidate", "hint")
_TAG_RE = re.compile(r"(<\s*/?\s*)(?=" + "|".join(STRUCTURAL_TAGS) + ")", re.IGNORECASE)
_PARTIAL_RE = re.compile(
    r"(<\s*/?\s*)(?=(?:" + "|".join(re.escape(t[:i]) for t in STRUCTURAL_TAGS for i in range(1, len(t))) + r")\Z)",
    re.IGNORECASE,
)
# Chat-template special tokens would be re-encoded as specials (the tiny tokenizer's <eos>/<bos>/<pad>/<unk>,
# and <|...|> markers such as <|user|> or <|im_end|>): "<eos>" -> "<_eos>", "<|user|>" -> "<_|user|>".
_SPECIAL_RE = re.compile(r"<(?=(?:eos|bos|pad|unk)>|\|[A-Za-z_][\w.\-]*\|>)")


def escape_candidate(text: str) -> str:
    """Make `text` unable to open/close a structural tag or inject a chat special token.

    Only a printable "_" is inserted (the tiny vocabulary is printable ASCII), never anything removed, so
    the final ``\\boxed{}`` answer survives (its content changes only if it itself contains a tag).
    Idempotent: ``escape_candidate(escape_candidate(t)) == escape_candidate(t)``.
    """
    out = _TAG_RE.sub(r"\1_", text)
    out = _PARTIAL_RE.sub(r"\1_", out)
    return _SPECIAL_RE.sub("<_", out)


# ------------------------------------------------------------------------------------------ boxed answers

_BOX = "\\boxed{"
NO_FINAL_ANSWER = "(no final answer)"


def _last_box_span(text: str) -> tuple[int, int] | None:
    """(start, end) of the LAST ``\\boxed{...}`` (end just past its closing brace), or None when absent/unclosed.

    Same rule as ``tasks.graders.extract_boxed``: escaped characters (``\\{``, ``\\}``) do not group.
    """
    start = text.rfind(_BOX)
    if start < 0:
        return None
    i, depth, n = start + len(_BOX), 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return start, i + 1
            depth -= 1
        i += 1
    return None


def boxed_answer(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` in `text`, stripped; None when there is none or it is unclosed."""
    span = _last_box_span(text)
    return None if span is None else text[span[0] + len(_BOX) : span[1] - 1].strip()


_ELLIPSIS = " ... "


def truncate_candidate(text: str, max_chars: int | None) -> str:
    """Cap a raw candidate at `max_chars` characters (compression mode ``none``), keeping its final answer.

    Text within the cap is returned unchanged. Otherwise, if the last ``\\boxed{...}`` ends within the cap the
    head ``text[:max_chars]`` is kept; else the head is cut short and joined to that box with " ... ". A box
    longer than the cap by itself is returned alone (the answer matters more than the cap). Text without a
    closed box is simply cut. ``max_chars=None`` means no cap.
    """
    if max_chars is None or len(text) <= max_chars:
        return text
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1 (or None for no cap), got {max_chars}")
    span = _last_box_span(text)
    if span is None or span[1] <= max_chars:
        return text[:max_chars]
    tail = text[span[0] : span[1]]
    room = max_chars - len(_ELLIPSIS) - len(tail)
    if room <= 0:
        return tail
    return text[:room] + _ELLIPSIS + tail


# ------------------------------------------------------------------------------------------ templates


class TemplateError(ValueError):
    """A prompt template that cannot be used; the message is one line naming the file, key, line and fix."""


# variables each template kind receives; the first ones listed are required placeholders
TEMPLATE_VARIABLES: dict[str, tuple[str, ...]] = {
    "bcq": ("question", "candidates", "closer"),
    "ncq": ("question", "candidates", "wrong_answers", "closer"),
    "hint": ("question", "hint", "closer"),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "bcq": ("question", "candidates", "closer"),
    "ncq": ("question", "candidates", "closer"),
    "hint": ("question", "hint", "closer"),
}
_KINDS = tuple(TEMPLATE_VARIABLES)
_SAMPLE_CLOSER = " Think in <think></think>, answer in \\boxed{}."
_SAMPLES: dict[str, dict[str, object]] = {
    "bcq": {
        "question": "What is 2+3?",
        "candidates": ["<think>2+3=5</think>\\boxed{5}", "<think>2+3=6</think>\\boxed{6}"],
        "closer": _SAMPLE_CLOSER,
    },
    "ncq": {
        "question": "What is 2+3?",
        "candidates": ["<think>2+3=6</think>\\boxed{6}", "<think>2+3=7</think>\\boxed{7}", "<think>2+3"],
        "wrong_answers": ["\\boxed{6}", "\\boxed{7}", NO_FINAL_ANSWER],
        "closer": _SAMPLE_CLOSER,
    },
    "hint": {"question": "What is 2+3?", "hint": "Count on from 2.", "closer": _SAMPLE_CLOSER},
}

_ENV = ImmutableSandboxedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
_TEMPLATE_FILENAME = "<template>"  # jinja's filename for from_string templates (used to find render-error lines)


def _one_line(msg: object) -> str:
    return " ".join(str(msg).split())


def _render_lineno(exc: BaseException) -> int | None:
    """The template line a render error came from (jinja rewrites template frames to template line numbers)."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class PromptTemplate:
    """Compiled, validated Jinja2 templates for the ``bcq``, ``ncq`` and ``hint`` prompts.

    `sources` maps each kind to its Jinja text (all three are required here; :func:`load_template` fills a user
    file's missing kinds from a built-in). `origin` names where they came from (a built-in name or a file
    path) and `lines` optionally maps a kind to the file line of its template's first line, so errors can
    point into the file. Construction validates every template (:class:`TemplateError` on failure).
    """

    def __init__(self, sources: Mapping[str, str], *, origin: str = "<string>", lines: Mapping[str, int] | None = None):
        self.origin = origin
        self.sources = dict(sources)
        self._lines = dict(lines or {})
        unknown = sorted(set(self.sources) - set(_KINDS))
        if unknown:
            raise TemplateError(
                f"prompt template {origin}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"fix: use only {', '.join(_KINDS)}"
            )
        missing = [k for k in _KINDS if k not in self.sources]
        if missing:
            raise TemplateError(
                f"prompt template {origin}: missing key(s) {', '.join(map(repr, missing))}; "
                f"fix: define {', '.join(_KINDS)}"
            )
        self._compiled = {kind: self._compile(kind, self.sources[kind]) for kind in _KINDS}

    # -- validation

    def _where(self, kind: str, lineno: int | None) -> str:
        if lineno is None:
            return ""
        if kind in self._lines:
            return f", line {self._lines[kind] + lineno - 1}"
        return f", template line {lineno}"

    def _fail(self, kind: str, lineno: int | None, what: str, fix: str) -> TemplateError:
        return TemplateError(
            f"prompt template {self.origin}, key '{kind}'{self._where(kind, lineno)}: {_one_line(what)}; fix: {fix}"
        )

    def _compile(self, kind: str, source: str):
        if not isinstance(source, str):
            raise self._fail(
                kind, None, f"expected a string, got {type(source).__name__}", "give the Jinja text as a string"
            )
        allowed = TEMPLATE_VARIABLES[kind]
        try:
            tree = _ENV.parse(source)
        except TemplateSyntaxError as e:
            raise self._fail(kind, e.lineno, f"Jinja syntax error: {e.message}", "correct the Jinja syntax") from None
        used = meta.find_undeclared_variables(tree)
        undefined = sorted(used - set(allowed))
        if undefined:
            line = next((n.lineno for n in tree.find_all(nodes.Name) if n.name in undefined), None)
            raise self._fail(
                kind, line, f"undefined variable(s) {', '.join(undefined)}",
                f"use only the variables {', '.join(allowed)}",
            )
        lacking = [v for v in _REQUIRED[kind] if v not in used]
        if lacking:
            raise self._fail(
                kind, None, f"the template never uses {', '.join('{{ ' + v + ' }}' for v in lacking)}",
                f"add {' and '.join(lacking)} to the template"
                + (f" (e.g. {_CANDIDATE_LOOP_COMPACT})" if "candidates" in lacking else ""),
            )
        try:
            template = _ENV.from_string(source)
        except TemplateSyntaxError as e:  # pragma: no cover - parse() above already caught these
            raise self._fail(kind, e.lineno, f"Jinja syntax error: {e.message}", "correct the Jinja syntax") from None
        sample = _SAMPLES[kind]
        try:
            out = template.render(**sample)
        except Exception as e:  # noqa: BLE001 - any render failure (undefined, sandbox, type) is a bad template
            raise self._fail(
                kind, _render_lineno(e), f"fails to render a sample ({type(e).__name__}: {e})",
                "use only plain variable output, loops and filters on the documented variables",
            ) from None
        if "candidates" in allowed:
            absent = [c for c in sample["candidates"] if c not in out]  # type: ignore[union-attr]
            if absent:
                raise self._fail(
                    kind, None, "the rendered sample does not contain every candidate's text",
                    f"output each candidate, e.g. {_CANDIDATE_LOOP_COMPACT}",
                )
        return template

    # -- rendering

    def render(self, kind: str, **variables: object) -> str:
        """Render template `kind` with exactly its documented variables (see :data:`TEMPLATE_VARIABLES`)."""
        if kind not in self._compiled:
            raise KeyError(f"unknown template kind {kind!r} (known: {', '.join(_KINDS)})")
        try:
            return self._compiled[kind].render(**variables)
        except Exception as e:  # noqa: BLE001
            raise self._fail(kind, _render_lineno(e), f"failed to render ({type(e).__name__}: {e})",
                             "check the template against the variables it receives") from None

    def __repr__(self) -> str:
        return f"PromptTemplate(origin={self.origin!r})"


_CANDIDATE_LOOP_COMPACT = "{% for c in candidates %}<candidate>{{ c }}</candidate>{% endfor %}"
_CANDIDATE_LOOP_FULL = "{% for c in candidates %}<candidate>\n{{ c }}\n</candidate>\n\n{% endfor %}"

_COMPACT = {
    "bcq": "{{ question }} Two answers, one right:" + _CANDIDATE_LOOP_COMPACT + "{{ closer }}",
    "ncq": (
        "{{ question }} Wrong: {{ wrong_answers | join(', ') }}. Their work:" + _CANDIDATE_LOOP_COMPACT + "{{ closer }}"
    ),
    "hint": "{{ question }} <hint>{{ hint }}</hint>{{ closer }}",
}
# The explanatory sentences say "candidate tags" in words, never as literal tags, so the prompt holds exactly
# one <candidate> block per candidate.
_FULL = {
    "bcq": (
        "{{ question }}\n\n"
        "Two candidate responses to this question follow, each wrapped in candidate tags. One of them is correct "
        "and the other is wrong, and you are not told which. You may use them as references, but write your own "
        "complete solution.\n\n" + _CANDIDATE_LOOP_FULL + "{{ closer.lstrip() }}"
    ),
    "ncq": (
        "{{ question }}\n\n"
        "The following final answers are all wrong: {{ wrong_answers | join(', ') }}.\n"
        "The incorrect reasoning that led to them follows, each attempt wrapped in candidate tags. Avoid their "
        "mistakes and write your own complete solution.\n\n" + _CANDIDATE_LOOP_FULL + "{{ closer.lstrip() }}"
    ),
    "hint": (
        "{{ question }}\n\n"
        "Here is a hint that may help, wrapped in hint tags:\n<hint>\n{{ hint }}\n</hint>\n\n{{ closer.lstrip() }}"
    ),
}

TEMPLATES: dict[str, PromptTemplate] = {
    "compact": PromptTemplate(_COMPACT, origin="compact"),
    "full": PromptTemplate(_FULL, origin="full"),
}


def load_template(spec: str | None, default: str) -> PromptTemplate:
    """The prompt templates to use: a built-in name (``compact``/``full``), a YAML file path, or None -> `default`.

    A YAML file maps any of ``bcq``/``ncq``/``hint`` to Jinja text (best as block scalars, ``bcq: |-``); kinds
    it leaves out come from the built-in `default`. Everything is validated here, before any compute: a bad
    file raises :class:`TemplateError` with one line naming the file, key, line and fix.
    """
    if default not in TEMPLATES:
        raise TemplateError(f"unknown default prompt template {default!r}; fix: use one of {', '.join(TEMPLATES)}")
    if spec is None or spec == "":
        return TEMPLATES[default]
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    path = Path(spec).expanduser()
    if not path.is_file():
        raise TemplateError(
            f"prompt template {spec!r} is neither a built-in nor an existing file; "
            f"fix: use {' or '.join(TEMPLATES)}, or the path of a YAML file with bcq/ncq/hint keys"
        )
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise TemplateError(
            f"prompt template file {path}: expected a .yaml/.yml file; "
            "fix: put the Jinja templates in a YAML mapping with keys bcq, ncq, hint"
        )
    return _load_yaml(path, TEMPLATES[default])


def _load_yaml(path: Path, base: PromptTemplate) -> PromptTemplate:
    import yaml

    origin = f"file {path}"
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as e:
        raise TemplateError(f"prompt template {origin}: cannot read it ({_one_line(e)}); fix: check the path") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or e
        raise TemplateError(
            f"prompt template {origin}{where}: invalid YAML ({_one_line(problem)}); "
            "fix: write each template as a block scalar, 'bcq: |-' followed by indented Jinja text"
        ) from None
    if not isinstance(data, dict) or not data:
        raise TemplateError(
            f"prompt template {origin}: expected a YAML mapping with keys {', '.join(_KINDS)}; "
            "fix: write e.g. 'bcq: |-' followed by indented Jinja text"
        )
    # file line of each template's first line: exact for literal block scalars ("bcq: |", text starts on the
    # next line) and single-line scalars; folded or multi-line flow scalars get template-relative lines only
    lines: dict[str, int] = {}
    if isinstance(root, yaml.MappingNode):
        for key_node, value_node in root.value:
            if not isinstance(value_node, yaml.ScalarNode):
                continue
            if value_node.style == "|":
                lines[str(key_node.value)] = value_node.start_mark.line + 2
            elif value_node.style != ">" and value_node.start_mark.line == value_node.end_mark.line:
                lines[str(key_node.value)] = value_node.start_mark.line + 1
    sources = dict(base.sources)
    for key, value in data.items():
        if key not in _KINDS:
            raise TemplateError(
                f"prompt template {origin}: unknown key {key!r}; fix: use only {', '.join(_KINDS)}"
            )
        if not isinstance(value, str):
            raise TemplateError(
                f"prompt template {origin}, key '{key}': expected Jinja text, got {type(value).__name__}; "
                f"fix: quote the template or write it as a block scalar ('{key}: |-')"
            )
        sources[key] = value
    # only the file's own kinds carry file lines (the others are the validated built-in's)
    return PromptTemplate(sources, origin=origin, lines={k: v for k, v in lines.items() if k in data})


# ------------------------------------------------------------------------------------------ builders


@dataclass
class Candidate:
    """One candidate shown in a reformulated prompt; `source` ("teacher" | "student") is never rendered."""

    text: str
    source: str


def _prepare(text: str) -> str:
    """Candidate text as it goes into a prompt: surrounding whitespace stripped, then escaped."""
    return escape_candidate(text.strip())


def build_bcq(
    question_text: str, correct: str, wrong: str, rng: random.Random, closer: str, template: PromptTemplate
) -> tuple[str, dict]:
    """The BCQ prompt: question, one correct teacher candidate and one wrong student candidate in random order.

    The order uses exactly one draw of `rng` (``rng.random() < 0.5`` puts the student first). Returns the prompt
    text and ``meta = {"order": [sources in prompt order], "candidate_answers": [their final answers]}``
    (answers from the raw, unescaped texts; None where a candidate has no closed box).
    """
    pair = [Candidate(correct, "teacher"), Candidate(wrong, "student")]
    if rng.random() < 0.5:
        pair.reverse()
    text = template.render(
        "bcq",
        question=strip_directives(question_text),
        candidates=[_prepare(c.text) for c in pair],
        closer=closer,
    )
    meta = {"order": [c.source for c in pair], "candidate_answers": [boxed_answer(c.text) for c in pair]}
    return text, meta


def build_ncq(
    question_text: str, wrong_responses: Sequence[str], closer: str, template: PromptTemplate
) -> tuple[str, dict]:
    """The NCQ prompt: question, the deduplicated wrong final answers, then every wrong rollout as a candidate.

    Answers are deduplicated by exact (stripped) string in first-occurrence order; every rollout without a
    parseable answer contributes one shared "(no final answer)" entry. Returns the prompt text and
    ``meta = {"wrong_answers": [deduplicated answers, None for "no final answer"]}``.
    """
    if not wrong_responses:
        raise ValueError("build_ncq needs at least one wrong response")
    answers: list[str | None] = []
    for response in wrong_responses:
        a = boxed_answer(response)
        if a not in answers:
            answers.append(a)
    shown = [NO_FINAL_ANSWER if a is None else escape_candidate(_BOX + a + "}") for a in answers]
    text = template.render(
        "ncq",
        question=strip_directives(question_text),
        candidates=[_prepare(r) for r in wrong_responses],
        wrong_answers=shown,
        closer=closer,
    )
    return text, {"wrong_answers": answers}


def build_hint(question_text: str, hint: str, closer: str, template: PromptTemplate) -> str:
    """The Hint-baseline prompt: question, the teacher's hint (escaped) in ``<hint>`` tags, the closer."""
    return template.render("hint", question=strip_directives(question_text), hint=_prepare(hint), closer=closer)


# ------------------------------------------------------------------------------------------ hint and prefix

HINT_PROMPT = (
    "Here is a question and a correct solution. Write a short hint (at most 3 sentences, at most {max_tokens} "
    "tokens) that would help a student solve it alone: point at the key idea or the first step. Do not give the "
    "final answer and do not use \\boxed{{}}. Put the hint inside <hint></hint>.\n\n"
    "Question: {question}\n\nSolution:\n{solution}"
)
_HINT_RE = re.compile(r"<hint>(.*?)(?:</hint>|$)", re.DOTALL)
_THINK_RE = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)


def _without_boxes(text: str) -> str:
    """`text` with every closed ``\\boxed{...}`` removed (an unclosed one from its start)."""
    while True:
        span = _last_box_span(text)
        if span is None:
            cut = text.rfind(_BOX)
            return text if cut < 0 else text[:cut]
        text = text[: span[0]] + text[span[1] :]


def clean_hint(text: str) -> str:
    """A teacher-written hint as it goes into the prompt: the ``<hint>`` wrapper's content (or the whole text),
    every ``\\boxed{}`` removed, whitespace stripped."""
    m = _HINT_RE.search(text)
    return _without_boxes(m.group(1) if m else text).strip()


def hint_from_solution(solution: str, fraction: float) -> str:
    """The tiny-scale hint: the first `fraction` of a solution's reasoning characters (the ``<think>`` content, or the
    text before the final box), boxes removed. "7+8=5;5+4=9" at 0.5 -> "7+8=5" (int(0.5 * 11) = 5 characters)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"hint fraction must be in (0, 1], got {fraction}")
    m = _THINK_RE.search(solution)
    if m:
        reasoning = m.group(1)
    else:
        span = _last_box_span(solution)
        reasoning = solution[: span[0]] if span is not None else solution
    reasoning = _without_boxes(reasoning).strip()
    return reasoning[: int(fraction * len(reasoning))].strip()


def prefix_length(n_tokens: int, fraction: float) -> int:
    """Leading tokens of an n-token teacher response forced as the student's prefix: floor(fraction * n)
    (paper: the first 40 %; 12 tokens -> 4)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"prefix fraction must be in (0, 1), got {fraction}")
    return int(fraction * n_tokens)
