"""Prompt builders (ZPPO.md §3): escaping, truncation, BCQ/NCQ/hint renderings and user templates."""

from __future__ import annotations

import random
import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zppo_core.algo.reformulate import (
    NO_FINAL_ANSWER,
    TEMPLATES,
    PromptTemplate,
    TemplateError,
    boxed_answer,
    build_bcq,
    build_hint,
    build_ncq,
    escape_candidate,
    load_template,
    plain_prompt,
    strip_directives,
    truncate_candidate,
)
from zppo_core.tasks.graders import extract_boxed
from zppo_core.types import Question

CLOSER = " Think in <think></think>, answer in \\boxed{}."
QUESTION = "What is 2+3? Let's think step by step. Put your final answer in \\boxed{}."
BARE = "What is 2+3?"

# adversarial pieces: real and look-alike tags, partial tags, braces, boxes, chat specials
FRAGMENTS = [
    "<candidate>", "</candidate>", "<CANDIDATE>", "< candidate >", "</CANDIDATE >", "< / Candidate>",
    "<candidate id=1>", "<cand", "</candid", "candidate>", "/candidate>", "<", "</", ">", "<_candidate>",
    "<hint>", "</hint>", "<HINT >", "<think>", "</think>", "\\boxed{", "{", "}", "\\", "\\{", "<eos>",
    "<|user|>", "<|assistant|>", " ", "\n", "5", "x", "_",
]
texts = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(alphabet=string.printable, max_size=4)), max_size=12
).map("".join)

OPEN_RE = re.compile(r"<\s*candidate", re.IGNORECASE)  # lenient: any spelling that looks like a tag
CLOSE_RE = re.compile(r"<\s*/\s*candidate", re.IGNORECASE)
BLOCK_RE = re.compile(r"<candidate>(.*?)</candidate>", re.DOTALL)  # the real tags (single tokens at tiny scale)


def _blocks(prompt: str, name: str) -> list[str]:
    blocks = BLOCK_RE.findall(prompt)
    if name == "full":  # the full wording puts each candidate on its own lines
        assert all(b.startswith("\n") and b.endswith("\n") for b in blocks)
        blocks = [b[1:-1] for b in blocks]
    return blocks


def _closer_end(name: str) -> str:
    return CLOSER if name == "compact" else CLOSER.lstrip()


def _assert_structure(prompt: str, n: int) -> None:
    assert prompt.count("<candidate>") == n and prompt.count("</candidate>") == n
    assert len(OPEN_RE.findall(prompt)) == n and len(CLOSE_RE.findall(prompt)) == n
    assert not re.search(r"<\s*/?\s*hint", prompt, re.IGNORECASE)
    assert "<eos>" not in prompt and "<|user|>" not in prompt


# ------------------------------------------------------------------------------------------ escaping


@pytest.mark.parametrize(
    "raw, escaped",
    [
        ("<candidate>", "<_candidate>"),
        ("</candidate>", "</_candidate>"),
        ("< candidate >", "< _candidate >"),
        ("</CANDIDATE >", "</_CANDIDATE >"),
        ("a <hint>b</hint>", "a <_hint>b</_hint>"),
        ("x </cand", "x </_cand"),  # partial tag at the very end
        ("<think>1<2</think>\\boxed{3}", "<think>1<2</think>\\boxed{3}"),  # think blocks and math untouched
        ("<eos><|user|>", "<_eos><_|user|>"),
        ("<_candidate>", "<_candidate>"),  # already escaped
    ],
)
def test_escape_cases(raw, escaped):
    assert escape_candidate(raw) == escaped


def _is_underscore_insertion(src: str, out: str) -> bool:
    i = 0
    for ch in out:
        if i < len(src) and ch == src[i]:
            i += 1
        elif ch != "_":
            return False
    return i == len(src)


@settings(max_examples=200, deadline=None)
@given(texts)
def test_escape_properties(t):
    e = escape_candidate(t)
    assert escape_candidate(e) == e  # idempotent
    assert _is_underscore_insertion(t, e)  # only "_" inserted, nothing removed
    assert not OPEN_RE.search(e) and not CLOSE_RE.search(e)
    assert not re.search(r"<\s*/?\s*hint", e, re.IGNORECASE)
    assert (extract_boxed(e) is None) == (extract_boxed(t) is None)
    if extract_boxed(t) is not None and "<" not in extract_boxed(t):
        assert extract_boxed(e) == extract_boxed(t)  # the final answer survives


# ------------------------------------------------------------------------------------------ boxes, truncation


@settings(max_examples=200, deadline=None)
@given(texts)
def test_boxed_answer_agrees_with_grader(t):
    assert boxed_answer(t) == extract_boxed(t)


@settings(max_examples=200, deadline=None)
@given(texts, st.integers(min_value=1, max_value=60))
def test_truncate_keeps_final_answer(t, cap):
    out = truncate_candidate(t, cap)
    answer = extract_boxed(t)
    if len(t) <= cap:
        assert out == t
    elif answer is not None:
        assert extract_boxed(out) == answer
        assert len(out) <= cap or out.startswith("\\boxed{")  # over the cap only when the box alone is longer
    else:
        assert out == t[:cap]


def test_truncate_cases():
    text = "<think>" + "a" * 50 + "</think>\\boxed{42}"
    assert truncate_candidate(text, None) == text
    assert truncate_candidate(text, 1000) == text
    assert truncate_candidate(text, 30) == "<think>" + "a" * 8 + " ... \\boxed{42}"  # exactly 30 chars
    assert truncate_candidate("\\boxed{1} tail tail tail", 12) == "\\boxed{1} ta"  # box already in the head
    assert truncate_candidate("abc \\boxed{123456}", 8) == "\\boxed{123456}"  # box alone beats the cap
    with pytest.raises(ValueError):
        truncate_candidate("abc", 0)


# ------------------------------------------------------------------------------------------ BCQ


@pytest.mark.parametrize("name", ["compact", "full"])
@settings(max_examples=150, deadline=None)
@given(correct=texts, wrong=texts, seed=st.integers(0, 2**32 - 1))
def test_bcq_structure(name, correct, wrong, seed):
    prompt, meta = build_bcq(QUESTION, correct, wrong, random.Random(seed), CLOSER, TEMPLATES[name])
    _assert_structure(prompt, 2)
    assert prompt.endswith(_closer_end(name))
    assert prompt.startswith(BARE) and "step by step" not in prompt.lower()
    assert sorted(meta["order"]) == ["student", "teacher"]
    by_source = {"teacher": correct, "student": wrong}
    assert _blocks(prompt, name) == [escape_candidate(by_source[s].strip()) for s in meta["order"]]
    assert meta["candidate_answers"] == [extract_boxed(by_source[s]) for s in meta["order"]]
    # the order depends only on the rng: other texts, same seed -> same order
    _, meta2 = build_bcq("Q?", "a", "b", random.Random(seed), CLOSER, TEMPLATES[name])
    assert meta2["order"] == meta["order"]


def test_bcq_order_varies_with_seed():
    orders = {tuple(build_bcq("Q?", "a", "b", random.Random(s), CLOSER, TEMPLATES["compact"])[1]["order"])
              for s in range(32)}
    assert orders == {("teacher", "student"), ("student", "teacher")}


def test_bcq_compact_exact():
    rng = random.Random(0)
    assert rng.random() >= 0.5  # seed 0: teacher first
    prompt, meta = build_bcq(
        QUESTION, "<think>2+3=5</think>\\boxed{5}", " <think>2+3=6</candidate></think>\\boxed{6}\n",
        random.Random(0), CLOSER, TEMPLATES["compact"],
    )
    assert prompt == (
        "What is 2+3? Two answers, one right:<candidate><think>2+3=5</think>\\boxed{5}</candidate>"
        "<candidate><think>2+3=6</_candidate></think>\\boxed{6}</candidate>"
        " Think in <think></think>, answer in \\boxed{}."
    )
    assert meta == {"order": ["teacher", "student"], "candidate_answers": ["5", "6"]}


def test_bcq_full_exact():
    prompt, _ = build_bcq(BARE, "A \\boxed{5}", "B \\boxed{6}", random.Random(0), CLOSER, TEMPLATES["full"])
    assert prompt == (
        "What is 2+3?\n\n"
        "Two candidate responses to this question follow, each wrapped in candidate tags. One of them is correct "
        "and the other is wrong, and you are not told which. You may use them as references, but write your own "
        "complete solution.\n\n"
        "<candidate>\nA \\boxed{5}\n</candidate>\n\n<candidate>\nB \\boxed{6}\n</candidate>\n\n"
        "Think in <think></think>, answer in \\boxed{}."
    )


# ------------------------------------------------------------------------------------------ NCQ


@pytest.mark.parametrize("name", ["compact", "full"])
@settings(max_examples=150, deadline=None)
@given(wrong=st.lists(st.one_of(texts, st.sampled_from(["\\boxed{6}", "\\boxed{7}", "no box", "\\boxed{"])),
                      min_size=1, max_size=6))
def test_ncq_structure(name, wrong):
    prompt, meta = build_ncq(QUESTION, wrong, CLOSER, TEMPLATES[name])
    _assert_structure(prompt, len(wrong))  # every wrong rollout, not deduplicated
    assert _blocks(prompt, name) == [escape_candidate(w.strip()) for w in wrong]
    assert prompt.endswith(_closer_end(name))
    assert prompt.startswith(BARE) and "step by step" not in prompt.lower()
    expected = list(dict.fromkeys(extract_boxed(w) for w in wrong))  # first-occurrence order
    assert meta["wrong_answers"] == expected
    assert meta["wrong_answers"].count(None) <= 1
    shown = ", ".join(NO_FINAL_ANSWER if a is None else escape_candidate("\\boxed{" + a + "}") for a in expected)
    assert shown in prompt
    assert prompt.count(NO_FINAL_ANSWER) >= (1 if None in expected else 0)


def test_ncq_compact_exact():
    wrong = ["<think>6</think>\\boxed{6}", "<think>7</think>\\boxed{7}", "<think>2+", "<think>six</think>\\boxed{6}",
             "cut"]
    prompt, meta = build_ncq(QUESTION, wrong, CLOSER, TEMPLATES["compact"])
    assert prompt == (
        "What is 2+3? Wrong: \\boxed{6}, \\boxed{7}, (no final answer). Their work:"
        "<candidate><think>6</think>\\boxed{6}</candidate><candidate><think>7</think>\\boxed{7}</candidate>"
        "<candidate><think>2+</candidate><candidate><think>six</think>\\boxed{6}</candidate><candidate>cut</candidate>"
        " Think in <think></think>, answer in \\boxed{}."
    )
    assert meta == {"wrong_answers": ["6", "7", None]}


def test_ncq_full_exact():
    prompt, _ = build_ncq(BARE, ["A \\boxed{6}", "B"], CLOSER, TEMPLATES["full"])
    assert prompt == (
        "What is 2+3?\n\n"
        "The following final answers are all wrong: \\boxed{6}, (no final answer).\n"
        "The incorrect reasoning that led to them follows, each attempt wrapped in candidate tags. Avoid their "
        "mistakes and write your own complete solution.\n\n"
        "<candidate>\nA \\boxed{6}\n</candidate>\n\n<candidate>\nB\n</candidate>\n\n"
        "Think in <think></think>, answer in \\boxed{}."
    )


def test_ncq_escapes_answers_and_needs_responses():
    prompt, meta = build_ncq(BARE, ["\\boxed{<candidate>}"], CLOSER, TEMPLATES["compact"])
    assert prompt.count("<candidate>") == 1 and "\\boxed{<_candidate>}" in prompt
    assert meta == {"wrong_answers": ["<candidate>"]}
    with pytest.raises(ValueError):
        build_ncq(BARE, [], CLOSER, TEMPLATES["compact"])


# ------------------------------------------------------------------------------------------ hint, plain


def test_hint_renderings():
    assert build_hint(QUESTION, "Count on </hint> from 2.", CLOSER, TEMPLATES["compact"]) == (
        "What is 2+3? <hint>Count on </_hint> from 2.</hint> Think in <think></think>, answer in \\boxed{}."
    )
    full = build_hint(BARE, "Count on from 2.", CLOSER, TEMPLATES["full"])
    assert full == (
        "What is 2+3?\n\nHere is a hint that may help, wrapped in hint tags:\n<hint>\nCount on from 2.\n</hint>\n\n"
        "Think in <think></think>, answer in \\boxed{}."
    )


def test_plain_prompt_unchanged():
    assert strip_directives(QUESTION) == BARE
    assert plain_prompt(Question(id="q", prompt=QUESTION, answer="5"), CLOSER) == BARE + CLOSER


# ------------------------------------------------------------------------------------------ templates


def test_load_builtins_and_default():
    assert load_template(None, "compact") is TEMPLATES["compact"]
    assert load_template("", "full") is TEMPLATES["full"]
    assert load_template("full", "compact") is TEMPLATES["full"]
    with pytest.raises(TemplateError, match="neither a built-in nor an existing file"):
        load_template("nope", "compact")
    with pytest.raises(TemplateError):
        load_template(None, "nope")


def _write(tmp_path, text, name="t.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_user_yaml_renders_and_fills_missing_keys(tmp_path):
    path = _write(tmp_path, (
        "# my wording\n"
        "bcq: |-\n"
        "  Q: {{ question }}\n"
        "  {% for c in candidates %}[{{ loop.index }}]<candidate>{{ c }}</candidate>{% endfor %}{{ closer }}\n"
        "ncq: '{{ question }} not {{ wrong_answers | join(\"/\") }}"
        "{% for c in candidates %}<candidate>{{ c }}</candidate>{% endfor %}{{ closer }}'\n"
    ))
    t = load_template(path, "compact")
    prompt, meta = build_bcq(QUESTION, "\\boxed{5}", "\\boxed{6}", random.Random(0), CLOSER, t)
    assert prompt == f"Q: {BARE}\n[1]<candidate>\\boxed{{5}}</candidate>[2]<candidate>\\boxed{{6}}</candidate>{CLOSER}"
    prompt, _ = build_ncq(BARE, ["\\boxed{6}", "x"], CLOSER, t)
    assert prompt.startswith(f"{BARE} not \\boxed{{6}}/(no final answer)<candidate>")
    # hint was not in the file: the default built-in's
    assert build_hint(BARE, "h", CLOSER, t) == build_hint(BARE, "h", CLOSER, TEMPLATES["compact"])


def _error(tmp_path, text, name="t.yaml") -> str:
    path = _write(tmp_path, text, name)
    with pytest.raises(TemplateError) as info:
        load_template(path, "compact")
    msg = str(info.value)
    assert "\n" not in msg and path in msg and "fix:" in msg
    return msg


def test_missing_candidates_placeholder(tmp_path):
    msg = _error(tmp_path, "bcq: '{{ question }} pick one{{ closer }}'\n")
    assert "'bcq'" in msg and "candidates" in msg


def test_syntax_error_names_file_line(tmp_path):
    msg = _error(tmp_path, (
        "hint: '{{ question }}{{ hint }}{{ closer }}'\n"
        "ncq: |-\n"
        "  {{ question }}\n"
        "  {% for c in candidates %}\n"
        "  {{ c }\n"  # file line 5: unclosed expression
        "  {{ closer }}\n"
    ))
    assert "'ncq'" in msg and "line 5" in msg and "syntax" in msg


def test_undefined_variable(tmp_path):
    msg = _error(
        tmp_path, "bcq: |-\n  {{ question }}\n  {{ hint }}{% for c in candidates %}{{ c }}{% endfor %}{{ closer }}\n"
    )
    assert "'bcq'" in msg and "hint" in msg and "line 3" in msg and "undefined" in msg


def test_sandbox_escape_raises(tmp_path):
    msg = _error(tmp_path, "hint: \"{{ question }}{{ hint }}{{ closer }}{{ ''.__class__.__mro__ }}\"\n")
    assert "'hint'" in msg and "SecurityError" in msg
    with pytest.raises(TemplateError, match="SecurityError"):
        PromptTemplate({**TEMPLATES["compact"].sources,
                        "bcq": "{{ question }}{{ candidates.__class__.__subclasses__() }}{{ candidates }}{{ closer }}"})


def test_other_bad_files(tmp_path):
    assert "invalid YAML" in _error(tmp_path, "bcq: {{ question }}\n")  # unquoted Jinja is a YAML flow mapping
    assert "unknown key" in _error(tmp_path, "bqc: x\n")
    assert "mapping" in _error(tmp_path, "- a\n- b\n")
    assert ".yaml" in _error(tmp_path, "{{ question }}", name="t.j2")
    msg = _error(tmp_path, "ncq: '{{ question }}{{ candidates | length }}{{ closer }}'\n")
    assert "every candidate" in msg  # candidates referenced but never output


@pytest.mark.parametrize("name", ["compact", "full"])
def test_builtins_are_valid(name):
    t = TEMPLATES[name]
    assert PromptTemplate(t.sources, origin=name).sources == t.sources
