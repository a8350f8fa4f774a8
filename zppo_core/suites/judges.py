"""Judge prompts and verdict parsers, one per benchmark protocol (``Benchmark.judge`` names one).

The judge is the teacher at temperature 0 (paper App. B.2). Each :class:`JudgeSpec` says how to ask it about one
(item, response) and how to read its reply as a credit in [0, 1]; a reply that cannot be read is 0 (wrong).
Where a benchmark publishes its judge, its text is used as published; the source of each:

========================  ==================================================================================
``default``               ours (the paper's protocol: a strict JSON verdict ``{"correct": true|false}``) — used
                          as the fallback judge of every "rule/choice then judge" benchmark without its own
``babyvision``            UnipatAI BabyVision judge prompt, as lmms-eval ``tasks/babyvision/prompt.py``
                          (reply True/False); the judged answer is the boxed answer or the response's first
                          500 characters, as there
``charxiv``               princeton-nlp/CharXiv ``src/constants.py`` grading prompts (JSON score 0/1): reasoning by
                          ``reasoning_q_source``, descriptive by template rubric (one response per query instead
                          of five: see :mod:`zppo_core.suites.charxiv`)
``mmvet``                 yuweihao/MM-Vet ``mm-vet_evaluator.py`` few-shot table; the reply's first token is a
                          correctness score 0.0–1.0 (partial credit)
``hle``                   centerforaisafety/hle ``hle_eval/run_judge_results.py`` JUDGE_PROMPT, as public ports
                          of that script quote it (with its ``0|\\%|`` LaTeX residue; the repository itself was not
                          reachable from here); the official
                          run asks for structured output, here the reply's ``correct: yes|no`` line (or a JSON
                          object with ``correct``) is read
``multichallenge``        ScaleAI MultiChallenge ``src/evaluator.py`` JUDGE_PROMPT (criteria = TARGET_QUESTION;
                          the sample passes when the YES/NO verdict equals PASS_CRITERIA)
``mmvu``                  yale-nlp/MMVU ``utils/eval_utils.py`` instructions (multiple-choice / open-ended),
                          system and user text joined into one message; JSON ``correct``
========================  ==================================================================================

Paraphrases that remain: ``default`` (ours by design). Every official text above is verbatim apart from the
placeholders filled in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zppo_core.suites import charxiv

if TYPE_CHECKING:  # pragma: no cover
    from zppo_core.suites.data import EvalItem

__all__ = ["JUDGES", "JudgeSpec", "gold_for_judge", "parse_json_verdict", "question_for_judge"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass(frozen=True)
class JudgeSpec:
    """How to ask the judge about one response and how to read its reply.

    build(item, response) -> the judge's user message (`response` is the answer part of the model's reply,
    reasoning dropped); parse(reply, item) -> credit in [0, 1] (unreadable: 0); source: where the text comes from.
    """

    name: str
    build: Callable[[EvalItem, str], str]
    parse: Callable[[str, EvalItem], float]
    source: str
    official: bool = True
    max_new_tokens: int = 256


# ------------------------------------------------------------------------------------------ shared helpers
def _meta(item: EvalItem) -> dict:
    return item.meta if isinstance(item.meta, dict) else {}


def gold_for_judge(item: EvalItem) -> str:
    """The gold as the judge should see it: ``judge_answer`` when set, "C. <text>" for options, else all accepted
    answers joined by " | "."""
    meta = _meta(item)
    if meta.get("judge_answer"):
        return str(meta["judge_answer"])
    if item.choices:
        letter = str(item.answer).strip().upper()
        idx = LETTERS.find(letter) if len(letter) == 1 else -1
        if 0 <= idx < len(item.choices):
            return f"{letter}. {item.choices[idx]}"
    answers = [str(a) for a in meta.get("answers") or [] if str(a).strip()]
    return " | ".join(answers) if answers else str(item.answer)


def question_for_judge(item: EvalItem) -> str:
    """The raw question (without answer instructions) followed by lettered options when the item has them."""
    q = _meta(item).get("question")
    q = str(q) if q else item.prompt
    if item.choices and _meta(item).get("question"):
        q += "\n" + "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item.choices))
    return q


def _fill(template: str, values: dict[str, str]) -> str:
    """Replace the ``{name}`` placeholders in one pass (braces inside the values are never re-substituted)."""
    pattern = "|".join(re.escape("{" + k + "}") for k in values)
    return re.sub(pattern, lambda m: values[m.group(0)[1:-1]], template)


_FENCE = re.compile(r"```(?:json)?[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL | re.IGNORECASE)


def _answer_part(text: str) -> str:
    """A reply without a leading closed ``<think>`` block (an unclosed one leaves nothing)."""
    if not isinstance(text, str):
        return ""
    if "</think>" in text:
        return text.rsplit("</think>", 1)[1]
    return "" if "<think>" in text else text


def parse_json_verdict(text: str, strict: bool = True) -> dict | None:
    """The JSON object of a reply: the whole reply (surrounding whitespace, a ```json fence and a leading closed
    ``<think>`` allowed); with ``strict=False`` also the last JSON object inside other text. None otherwise."""
    s = _answer_part(text).strip()
    m = _FENCE.fullmatch(s)
    if m:
        s = m.group(1).strip()
    try:
        obj = json.loads(s)
        return obj if isinstance(obj, dict) else None
    except (ValueError, RecursionError):
        pass
    if strict:
        return None
    dec, found = json.JSONDecoder(), None
    for i in (k for k, ch in enumerate(s) if ch == "{"):
        try:
            obj, _ = dec.raw_decode(s, i)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            found = obj
    return found


def _truthy(v) -> float | None:
    """A verdict value as credit: booleans, 0/1, "yes"/"no", "true"/"false"; None when it is none of those."""
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and v in (0, 1):
        return float(v)
    if isinstance(v, str) and v.strip().lower() in ("yes", "true", "1", "no", "false", "0"):
        return float(v.strip().lower() in ("yes", "true", "1"))
    return None


# ------------------------------------------------------------------------------------------ default (ours)
DEFAULT_TEMPLATE = (
    "You are a strict grader. Decide whether the response below answers the question correctly. Judge only "
    "its final answer against the reference answer: equivalent forms (fractions vs decimals, units, option "
    "letter vs option text) count as correct; a missing, hedged or different final answer is incorrect.\n\n"
    "Question: {question}\n\nReference answer: {answer}\n\nResponse: {response}\n\n"
    'Reply with only a JSON object and nothing else: {"correct": true} if the response is correct, '
    'otherwise {"correct": false}.'
)


def _default_parse(text: str, item: EvalItem) -> float:
    obj = parse_json_verdict(text, strict=True)
    v = obj.get("correct") if obj else None
    return float(v) if isinstance(v, bool) else 0.0


def _default_build(item: EvalItem, response: str) -> str:
    return _fill(DEFAULT_TEMPLATE, {"question": question_for_judge(item), "answer": gold_for_judge(item),
                                    "response": response})


# ------------------------------------------------------------------------------------------ BabyVision
BABYVISION_TEMPLATE = """You are a careful and strict evaluator. You will be given:

1. **Question**
2. **Ground Truth Answer** (correct answer)
3. **Model Output** (answer from another model)

**Your goal:** Determine if the Model Output **accurately matches** the Ground Truth Answer in meaning.

* Matching means: the facts, entities, and key details are equivalent, even if phrasing differs.
* Not matching means: the Model Output is wrong, incomplete, contains extra incorrect facts, or changes the meaning.

**Process (internal reasoning):**

1. Read and understand the Question, Ground Truth Answer, and Model Output.
2. Ignore small wording differences, formatting, or synonyms.
3. If all factual content matches, conclude `1`. Otherwise, conclude `0`.

**Important:**

* Think through your decision step-by-step **internally** before responding.
* In your final output, return **only** True or False, with no extra text or explanation.

**Output format:**

True

or

False

**Input:**

Question: {question},
Ground Truth Answer: {groundtruth},
Model Output: {modeloutput}"""


def _babyvision_build(item: EvalItem, response: str) -> str:
    from zppo_core.tasks.graders import extract_boxed

    pred = extract_boxed(response) or response[:500]
    return _fill(BABYVISION_TEMPLATE, {"question": str(_meta(item).get("question") or item.prompt),
                                       "groundtruth": str(item.answer), "modeloutput": pred or "(No answer provided)"})


def _babyvision_parse(text: str, item: EvalItem) -> float:
    t = _answer_part(text).strip().lower()  # lmms-eval parse_bool_response: "true" first, then "false"
    return 1.0 if "true" in t else 0.0


# ------------------------------------------------------------------------------------------ CharXiv
def _charxiv_build(item: EvalItem, response: str) -> str:
    meta = _meta(item)
    if meta.get("kind") == "reasoning":
        return charxiv.reasoning_judge_prompt(str(meta.get("raw_question", "")), str(item.answer), response,
                                              int(meta["inst_category"]))
    return charxiv.descriptive_judge_prompt(int(meta["qid"]), str(item.answer), response)


def _charxiv_parse(text: str, item: EvalItem) -> float:
    obj = parse_json_verdict(text, strict=False) or {}
    v = obj.get("score", obj.get("score_T1"))
    return 1.0 if _truthy(v) == 1.0 else 0.0


# ------------------------------------------------------------------------------------------ MM-Vet
MMVET_TEMPLATE = """Compare the ground truth and prediction from AI models, to give a correctness score for the prediction. <AND> in the ground truth means it is totally right only when all elements in the ground truth are present in the prediction, and <OR> means it is totally right when any one element in the ground truth is present in the prediction. The correctness score is 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, or 1.0 (totally right). Just complete the last space of the correctness score.

Question | Ground truth | Prediction | Correctness
--- | --- | --- | ---
What is x in the equation? | -1 <AND> -5 | x = 3 | 0.0
What is x in the equation? | -1 <AND> -5 | x = -1 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -5 or 5 | 0.5
What is x in the equation? | -1 <AND> -5 | x = -1 or x = -5 | 1.0
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme talks about Iceland and Greenland. It's pointing out that despite their names, Iceland is not very icy and Greenland isn't very green. | 0.4
Can you explain this meme? | This meme is poking fun at the fact that the names of the countries Iceland and Greenland are misleading. Despite its name, Iceland is known for its beautiful green landscapes, while Greenland is mostly covered in ice and snow. The meme is saying that the person has trust issues because the names of these countries do not accurately represent their landscapes. | The meme is using humor to point out the misleading nature of Iceland's and Greenland's names. Iceland, despite its name, has lush green landscapes while Greenland is mostly covered in ice and snow. The text 'This is why I have trust issues' is a playful way to suggest that these contradictions can lead to distrust or confusion. The humor in this meme is derived from the unexpected contrast between the names of the countries and their actual physical characteristics. | 1.0
"""


def _mmvet_build(item: EvalItem, response: str) -> str:
    gold = str(item.answer).replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    question = str(_meta(item).get("question") or item.prompt)
    return MMVET_TEMPLATE + "\n" + " | ".join([question, gold, response, ""])


def _mmvet_parse(text: str, item: EvalItem) -> float:
    s = _answer_part(text).strip()  # the official grader reads the first space-separated token as a float
    token = s.split(" ")[0].strip().rstrip(".,;") if s else ""
    try:
        v = float(token)
    except ValueError:
        return 0.0
    return v if 0.0 <= v <= 1.0 else 0.0


# ------------------------------------------------------------------------------------------ HLE
HLE_TEMPLATE = """Judge whether the following [response] to [question] is correct or not based on the precise and unambiguous [correct_answer] below.

[question]: {question}

[response]: {response}

Your judgement must be in the format and criteria specified below:

extracted_final_answer: The final exact answer extracted from the [response]. Put the extracted answer as 'None' if there is no exact, final answer to extract from the response.

[correct_answer]: {correct_answer}

reasoning: Explain why the extracted_final_answer is correct or incorrect based on [correct_answer], focusing only on if there are meaningful differences between [correct_answer] and the extracted_final_answer. Do not comment on any background to the problem, do not attempt to solve the problem, do not argue for any answer different than [correct_answer], focus only on whether the answers match.

correct: Answer 'yes' if extracted_final_answer matches the [correct_answer] given above, or is within a small margin of error for numerical problems. Answer 'no' otherwise, i.e. if there if there is any inconsistency, ambiguity, non-equivalency, or if the extracted answer is incorrect.


confidence: The extracted confidence score between 0|\\%| and 100|\\%| from [response]. Put 100 if there is no confidence score available."""
_HLE_CORRECT = re.compile(r"(?i)\*{0,2}correct\*{0,2}\s*:\s*\*{0,2}\s*(no|yes)\b")


def _hle_build(item: EvalItem, response: str) -> str:
    return _fill(HLE_TEMPLATE, {"question": str(_meta(item).get("question") or item.prompt),
                                "correct_answer": str(item.answer), "response": response})


def _hle_parse(text: str, item: EvalItem) -> float:
    obj = parse_json_verdict(text, strict=False)
    if obj and _truthy(obj.get("correct")) is not None:
        return _truthy(obj["correct"])
    hits = _HLE_CORRECT.findall(_answer_part(text))
    return 1.0 if hits and hits[-1].lower() == "yes" else 0.0


# ------------------------------------------------------------------------------------------ MultiChallenge
MULTICHALLENGE_TEMPLATE = """You are tasked with evaluating a model response to see if it meets a specific criteria.
The criteria will always be YES/NO evaluation.

The model response is as follows:
<MODEL_RESPONSE>
{response}
</MODEL_RESPONSE>

The criteria that the model response must meet is as follows. Be VERY STRICT!:
<CRITERIA>
{criteria}
</CRITERIA>

Print your reasoning followed by your verdict, either "YES" or "NO"."""
_YES_NO = re.compile(r"\b(YES|NO)\b")


def _multichallenge_build(item: EvalItem, response: str) -> str:
    meta = _meta(item)
    return _fill(MULTICHALLENGE_TEMPLATE, {"response": response,
                                           "criteria": str(meta.get("target_question") or item.answer)})


def _multichallenge_parse(text: str, item: EvalItem) -> float:
    obj = parse_json_verdict(text, strict=False)
    verdict = str(obj.get("verdict", "")).strip().upper() if obj else ""
    if verdict not in ("YES", "NO"):
        hits = _YES_NO.findall(_answer_part(text))
        verdict = hits[-1] if hits else ""
    want = str(_meta(item).get("pass_criteria", item.answer)).strip().upper()
    return 1.0 if verdict and verdict == want else 0.0


# ------------------------------------------------------------------------------------------ MMVU
_MMVU_INSTRUCTION = """Evaluate whether the model's final answer is correct by comparing it to the ground-truth answer provided for the given question.

You should first extract the final answer from the model's response, and then compare the extracted answer with the ground-truth answer to determine its accuracy.
"""
MMVU_MC_INSTRUCTION = _MMVU_INSTRUCTION + "Output your response in the following structured format:\n" + """{
    "extracted_answer": // str value "A" "B" "C" "D" "E", should be a single character
    "correct": // boolean value, True if the answer is correct, False otherwise
}
"""
MMVU_OPEN_INSTRUCTION = _MMVU_INSTRUCTION + """The final answer generated by the model does not need to match the ground-truth answer word-for-word. However, it should only be considered correct if it demonstrates the exact same technique or concept explicitly and unambiguously equivalent to the ground-truth answer.
Output your response in the following structured format:
{
    "extracted_answer": // str value, the short final answer extracted from the model's response, do not hallucinate one that is not present in the response
    "correct": // boolean value, True if the answer is correct, False otherwise
}
"""


def _mmvu_build(item: EvalItem, response: str) -> str:
    question = str(_meta(item).get("question") or item.prompt)
    if item.choices:
        options = "\n".join(f"{LETTERS[i]}: {c}" for i, c in enumerate(item.choices))
        context, instruction = f"Question: {question}\n\nOptions:\n{options}", MMVU_MC_INSTRUCTION
    else:
        context, instruction = f"Question: {question}", MMVU_OPEN_INSTRUCTION
    user = f"{context}\n\nGround Truth Answer: {item.answer}\n\nModel Response to the Question: {response}"
    return f"{instruction}\n{user}"


def _mmvu_parse(text: str, item: EvalItem) -> float:
    s = re.sub(r":\s*(True|False)\b", lambda m: ": " + m.group(1).lower(), _answer_part(text))  # Python-style
    obj = parse_json_verdict(s, strict=False)
    return 1.0 if obj and _truthy(obj.get("correct")) == 1.0 else 0.0


JUDGES: dict[str, JudgeSpec] = {
    "default": JudgeSpec("default", _default_build, _default_parse, "ours: the paper's strict JSON verdict",
                         official=False),
    "babyvision": JudgeSpec("babyvision", _babyvision_build, _babyvision_parse,
                            "lmms-eval tasks/babyvision/prompt.py (BabyVision's judge prompt)", max_new_tokens=64),
    "charxiv": JudgeSpec("charxiv", _charxiv_build, _charxiv_parse, "princeton-nlp/CharXiv src/constants.py"),
    "mmvet": JudgeSpec("mmvet", _mmvet_build, _mmvet_parse, "yuweihao/MM-Vet mm-vet_evaluator.py", max_new_tokens=16),
    "hle": JudgeSpec("hle", _hle_build, _hle_parse, "centerforaisafety/hle hle_eval/run_judge_results.py",
                     max_new_tokens=1024),
    "multichallenge": JudgeSpec("multichallenge", _multichallenge_build, _multichallenge_parse,
                                "ScaleAI MultiChallenge src/evaluator.py", max_new_tokens=1024),
    "mmvu": JudgeSpec("mmvu", _mmvu_build, _mmvu_parse, "yale-nlp/MMVU utils/eval_utils.py"),
}
