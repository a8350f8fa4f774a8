"""Scoring: rule (boxed + equivalence), multiple-choice letters, exact match, undecided -> judge, judge verdict
parsing, and the judge path end to end with a tiny real model (untrained: its output is malformed -> wrong)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zppo_core.suites.benchmarks import BY_NAME
from zppo_core.suites.data import EvalItem
from zppo_core.suites.scoring import (
    LETTERS,
    Verdict,
    extract_choice,
    extract_short_answer,
    final_text,
    judge_prompt,
    judge_verdicts,
    parse_verdict,
    score,
)
from zppo_core.types import Completion

AIME = BY_NAME["AIME25"]  # rule then judge
MMLU = BY_NAME["MMLU"]  # multiple choice then judge
INFO = BY_NAME["InfoVQA"]  # exact, no judge
HLE = BY_NAME["HLE"]  # official judge


def item(answer, choices=None, **meta):
    return EvalItem(id="q1", prompt="Q?", answer=answer, choices=choices, meta=dict(meta))


# ------------------------------------------------------------------------------------------ rule
@pytest.mark.parametrize(
    "response, gold",
    [
        ("so \\boxed{0.5}", "\\frac{1}{2}"),
        ("\\boxed{\\frac{1}{2}}", "0.5"),
        ("the angle is \\boxed{90^\\circ}", "90"),
        ("\\boxed{90}", "90^{\\circ}"),
        ("\\boxed{50\\%}", "50"),
        ("\\boxed{1,000}", "1000"),
        ("first \\boxed{3} then fixed: \\boxed{7}", "7"),
    ],
)
def test_rule_accepts_equivalent_forms(response, gold):
    v = score(AIME, item(gold), response)
    assert v.correct is True and v.how == "rule"


@pytest.mark.parametrize("response, gold", [("\\boxed{0.6}", "\\frac{1}{2}"), ("\\boxed{7} \\boxed{3}", "7"),
                                            ("\\boxed{91}", "90^\\circ"), ("\\boxed{x+1}", "x+2")])
def test_rule_rejects_wrong_answers(response, gold):
    v = score(AIME, item(gold), response)
    assert v.correct is False and v.how == "rule" and v.extracted is not None


@pytest.mark.parametrize("response", ["the answer is 7", "\\boxed{7", "", "\\boxed{}", "<think>\\boxed{7}"])
def test_rule_without_a_box_is_undecided_then_judged(response):
    v = score(AIME, item("7"), response)
    assert v.correct is None and v.needs_judge and v.how == "no-answer"


def test_no_box_is_wrong_when_the_benchmark_has_no_judge_fallback():
    from dataclasses import replace

    strict = replace(AIME, judge_fallback=False)
    assert score(strict, item("7"), "7").correct is False


def test_thinking_is_ignored_and_any_accepted_answer_counts():
    assert score(AIME, item("7"), "<think>maybe \\boxed{8}</think> \\boxed{7}").correct is True
    assert score(AIME, item("7"), "<think>\\boxed{7}</think> no idea").correct is None
    assert final_text("<think>a</think>b") == "b" and final_text("<think>cut") == ""
    assert score(AIME, item("2", answers=["2", "two"]), "\\boxed{two}").correct is True


# ------------------------------------------------------------------------------------------ multiple choice
CH = ["Paris", "London", "Rome", "Berlin"]


@pytest.mark.parametrize(
    "response, letter",
    [
        ("\\boxed{C}", "C"),
        ("\\boxed{(C)}", "C"),
        ("\\boxed{\\text{C}}", "C"),
        ("\\boxed{c}", "C"),
        ("\\boxed{C. Rome}", "C"),
        ("\\boxed{Rome}", "C"),
        ("Answer: C", "C"),
        ("**Final answer:** (B)", "B"),
        ("I think the answer is D because ...", "D"),
        ("Between (A) and (C), I pick (C).", "C"),
        ("A cat sat. It must be B", "B"),
        ("Rome", "C"),
        ("The answer: London", "B"),
    ],
)
def test_choice_letter_forms(response, letter):
    assert extract_choice(response, 4, CH) == letter
    v = score(MMLU, item("C", CH), response)
    assert v.how == "choice" and v.extracted == letter and v.correct is (letter == "C")


@pytest.mark.parametrize("response", ["\\boxed{E}", "Answer: F", "I am not sure", "", "Madrid"])
def test_choice_out_of_range_or_absent_is_undecided(response):
    assert extract_choice(response, 4, CH) is None
    v = score(MMLU, item("C", CH), response)
    assert v.correct is None and v.how == "no-answer"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefgh()[].:\\{}*\n")) | st.characters(),
               max_size=60), st.integers(1, 12))
def test_choice_extraction_never_leaves_the_range(text, n):
    got = extract_choice(text, n)
    assert got is None or got in LETTERS[:n]
    boxed = extract_choice(f"\\boxed{{{text}}}", n)
    assert boxed is None or boxed in LETTERS[:n]


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10), st.data())
def test_choice_extraction_finds_any_boxed_letter_in_range(n, data):
    letter = data.draw(st.sampled_from(LETTERS[:n]))
    noise = data.draw(st.text(alphabet="abc xyz.,", max_size=30))
    assert extract_choice(f"{noise} \\boxed{{{letter}}}", n) == letter


# ------------------------------------------------------------------------------------------ exact (InfoVQA: ANLS)
@pytest.mark.parametrize(
    "response, golds, anls",
    [
        ("\\boxed{ New York }", ["new york"], 1.0),
        ("Answer: NEW  york", ["Boston", "New York"], 1.0),  # case and spaces normalised; the best answer counts
        ("\\boxed{1,200}", ["1200"], 0.8),  # one edit in five characters
        ("It shows a chart.\n**Blue**", ["blue"], 0.0),  # NL = 4/8 is not below the 0.5 threshold
        ("\\boxed{Boston}", ["New York"], 0.0),
    ],
)
def test_exact_benchmarks_score_with_anls(response, golds, anls):
    v = score(INFO, item(golds[0], answers=golds), response)
    assert v.how == "anls" and v.score == pytest.approx(anls) and v.correct is (anls == 1.0)


def test_exact_empty_response_is_wrong_not_judged():
    v = score(INFO, item("x", answers=["x"]), "   ")
    assert v.correct is False and v.how == "no-answer"
    assert extract_short_answer("") is None


def test_official_judge_is_always_undecided():
    v = score(HLE, item("42"), "\\boxed{42}")
    assert v.correct is None and v.how == "official_judge" and v.extracted == "42"


# ------------------------------------------------------------------------------------------ judge verdicts
@pytest.mark.parametrize(
    "text, verdict",
    [
        ('{"correct": true}', True),
        ('  {"correct": false}\n', False),
        ('```json\n{"correct": true}\n```', True),
        ('```\n{"correct": true, "reason": "same value"}\n```', True),
        ('<think>compare 1/2 and 0.5</think>\n{"correct": true}', True),
    ],
)
def test_parse_verdict_valid(text, verdict):
    assert parse_verdict(text) is verdict


@pytest.mark.parametrize(
    "text",
    [
        "yes", "", '{"correct": "true"}', '{"correct": 1}', '{"verdict": true}', '[{"correct": true}]',
        'The answer is correct. {"correct": true}', '{"correct": true', "```json\n{\"correct\": true}",
        '<think>{"correct": true}', None, "true",
    ],
)
def test_parse_verdict_malformed_or_missing_key_is_wrong(text):
    assert parse_verdict(text) is False


def test_judge_prompt_carries_question_gold_response_and_official_template():
    it = EvalItem(id="1", prompt="What is {x}? Please reason...", answer="C", choices=CH,
                  meta={"question": "Capital of Italy {x}?"})
    p = judge_prompt(it, "<think>hmm</think>I say \\boxed{C} {response}")
    assert "Capital of Italy {x}?" in p and "C. Rome" in p and "I say \\boxed{C} {response}" in p
    assert "hmm" not in p and '{"correct": true}' in p
    official = judge_prompt(item("42"), "\\boxed{41}", HLE)  # HLE's own judge prompt
    assert official.startswith("Judge whether the following [response] to [question] is correct")
    assert "[correct_answer]: 42" in official and "[response]: \\boxed{41}" in official
    long = judge_prompt(item("1"), "x" * 20000 + "END")
    assert long.count("x") < 9000 and "END" in long


class FakeEngine:
    """Records what it is asked and answers with scripted texts (the protocol of rollout/base.py)."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.calls = []

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        return [[Completion(token_ids=[], logprobs=[], text=self.replies[i], finished=True)] for i in range(len(prompts))]

    def sync_weights(self, model):  # pragma: no cover - protocol completeness
        pass


def test_judge_verdicts_uses_greedy_decoding_and_parses_each_reply():
    engine = FakeEngine(['{"correct": true}', "garbage", '```json\n{"correct": false}\n```'])
    rendered = []

    def render(text):
        rendered.append(text)
        return [len(text) % 7, 1, 2]

    pairs = [(item("7"), "seven"), (item("8"), "\\boxed{8}"), (item("42"), "\\boxed{41}", HLE)]
    out = judge_verdicts(engine, render, pairs, max_new_tokens=33)
    assert [v.correct for v in out] == [True, False, False]
    assert all(v.how == "judge" for v in out) and out[1].extracted == "8" and out[1].judge_output == "garbage"
    (prompts, params), = engine.calls
    # greedy; the budget is the larger of the caller's and the protocol's (HLE's judge reasons first: 1024)
    assert params.temperature == 0.0 and params.greedy and params.n == 1 and params.max_new_tokens == 1024
    assert len(prompts) == 3 and "[correct_answer]: 42" in rendered[2] and "[correct_answer]" not in rendered[0]
    assert judge_verdicts(engine, render, pairs[:1], max_new_tokens=33) and engine.calls[-1][1].max_new_tokens == 256
    assert judge_verdicts(engine, render, []) == [] and len(engine.calls) == 2


def test_judge_path_with_a_tiny_real_model_malformed_output_is_wrong():
    """An untrained tiny Qwen3 through the transformers engine at temperature 0: its reply is not a JSON verdict,
    so every judged answer counts as wrong; greedy decoding makes two runs identical."""
    import torch

    from zppo_core.config.schema import TinyModelSpec
    from zppo_core.models.tiny import build_char_tokenizer, build_tiny_model
    from zppo_core.rollout.hf import TransformersEngine
    from zppo_core.models.load import render

    tok = build_char_tokenizer()
    spec = TinyModelSpec(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                         num_key_value_heads=1, head_dim=16, max_position_embeddings=4096)
    model = build_tiny_model(spec, tok, seed=0)
    engine = TransformersEngine(model, tok)
    pairs = [(item("7"), "no box here"), (item("C", CH), "hmm")]
    undecided = [score(AIME, pairs[0][0], pairs[0][1]), score(MMLU, pairs[1][0], pairs[1][1])]
    assert all(v.needs_judge for v in undecided)
    torch.manual_seed(1)
    first = judge_verdicts(engine, lambda t: render(tok, t), pairs, max_new_tokens=12)
    torch.manual_seed(2)
    second = judge_verdicts(engine, lambda t: render(tok, t), pairs, max_new_tokens=12)
    assert [v.judge_output for v in first] == [v.judge_output for v in second]  # greedy: seed-independent
    for v in first:
        assert isinstance(v, Verdict) and v.how == "judge"
        assert v.correct is parse_verdict(v.judge_output)
        try:
            is_json = isinstance(json.loads(v.judge_output.strip()), dict)
        except ValueError:
            is_json = False
        if not is_json:
            assert v.correct is False
