"""The user message a model sees for one benchmark question (``Benchmark.prompt``).

* ``default`` (ours, the paper's protocol of a parsable final answer): the question, the options lettered
  "A. …", then "Answer with the letter of the correct option inside \\boxed{}" / "Please reason step by step,
  and put your final answer within \\boxed{}" / "Answer with a single word or phrase, written inside \\boxed{}";
* ``query``: the row's question field already lists the options and says the answer's form (MathVista
  ``query``: "Hint: Please answer the question requiring a floating-point number with one decimal place …
  Choices: (A) …"); only the boxed-answer instruction is added;
* ``as_is``: the row's text unchanged (VLMs are Blind: its prompt sets the answer format, "{n}" or Yes/No, and a
  \\boxed instruction would contradict it; OCRBench v2: the question says the output form, as in lmms-eval;
  MM-Vet: the question alone, as its own inference scripts send it);
* ``babyvision``: question, "Choices:" and "(A) option" lines, then "Think about the question and give your
  final answer in \\boxed{Answer} format." (lmms-eval ``tasks/babyvision``);
* ``charxiv``: the official question texts (:mod:`zppo_core.suites.charxiv`);
* ``mmmu_pro``: MMMU-Pro's CoT prompts (MMMU-Benchmark/MMMU ``mmmu-pro/prompts.yaml``): the standard configs
  show question, "A. option" lines and "Answer the preceding multiple choice question. …"; the vision config
  shows the screenshot alone with "Write out the multiple-choice question in the image and then solve it. …";
* ``hle``: HLE's answer format (centerforaisafety/hle ``hle_eval/run_model_predictions.py``: Explanation / Exact
  Answer or Answer / Confidence) before the question;
* ``mmvu``: MMVU's CoT prompts (yale-nlp/MMVU ``utils/constant.py``), options as "A: text".

A multi-turn row (MultiChallenge) is answered as its conversation, with no instruction added.
"""

from __future__ import annotations

from zppo_core.suites.benchmarks import Benchmark

__all__ = ["IMAGE_ONLY_QUESTION", "INSTRUCTION_CHOICE", "INSTRUCTION_EXACT", "INSTRUCTION_RULE", "build_prompt"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
INSTRUCTION_CHOICE = "Answer with the letter of the correct option inside \\boxed{}, e.g. \\boxed{A}."
INSTRUCTION_EXACT = "Answer with a single word or phrase, written inside \\boxed{}."
INSTRUCTION_RULE = "Please reason step by step, and put your final answer within \\boxed{}."
IMAGE_ONLY_QUESTION = "Answer the question shown in the image."

BABYVISION_POST = "\nThink about the question and give your final answer in \\boxed{Answer} format."
MMMU_PRO_STANDARD = ("Answer the preceding multiple choice question. The last line of your response should be of the "
                     "following format: 'Answer: $LETTER' (without quotes) where LETTER is one of options. Think step "
                     "by step before answering.")
MMMU_PRO_VISION = ("Write out the multiple-choice question in the image and then solve it. The last line of your "
                   "response should be of the following format: 'Answer: $LETTER' (without quotes) where LETTER is "
                   "one of options. Think step by step before answering.")
HLE_EXACT = ("Your response should be in the following format:\nExplanation: {your explanation for your final answer}"
             "\nExact Answer: {your succinct, final answer}\nConfidence: {your confidence score between 0% and 100% "
             "for your answer}")
HLE_CHOICE = ("Your response should be in the following format:\nExplanation: {your explanation for your answer "
              "choice}\nAnswer: {your chosen answer}\nConfidence: {your confidence score between 0% and 100% for "
              "your answer}")
MMVU_CHOICE = ("\nQuestion: {question}\n{options}\n\nAnswer the given multiple-choice question step by step. Begin by "
               "explaining your reasoning process clearly. Conclude by stating the final answer using the following "
               "format: 'Therefore, the final answer is: $LETTER' (without quotes), where $LETTER is one of the "
               "options. Think step by\nstep before answering.")
MMVU_OPEN = ("\nQuestion: {question}\n\nAnswer the given question step by step. Begin by explaining your reasoning "
             "process clearly. Conclude by stating the final answer using the following format: 'Therefore, the "
             "final answer is: 'Answer: $ANSWER' (without quotes), where $ANSWER is the final answer of the "
             "question. Think step by step\nbefore answering.")


def _lettered(choices: list[str], fmt: str = "{l}. {c}") -> str:
    return "\n".join(fmt.format(l=LETTERS[i], c=c) for i, c in enumerate(choices))


def build_prompt(bench: Benchmark, question: str, choices: list[str] | None, meta: dict, prefix: str = "") -> str:
    """The user message for one question of `bench` (see the module docstring). `prefix` (Video-MME subtitles)
    goes before the question."""
    q = (prefix + question).strip()
    style = bench.prompt
    if style == "as_is":
        return q or IMAGE_ONLY_QUESTION
    if style == "babyvision":
        if choices:
            return f"{q}\nChoices:\n{_lettered(choices, '({l}) {c}')}{BABYVISION_POST}"
        return q + BABYVISION_POST
    if style == "mmmu_pro":
        if meta.get("config") == "vision" or not q:
            return MMMU_PRO_VISION
        return f"{q}\n{_lettered(choices or [])}\n\n{MMMU_PRO_STANDARD}"
    if style == "hle":
        fmt = HLE_CHOICE if str(meta.get("answer_type")) == "multipleChoice" else HLE_EXACT
        return f"{fmt}\n\n{q}"
    if style == "mmvu":
        if choices:
            return MMVU_CHOICE.replace("{question}", q).replace("{options}", _lettered(choices, "{l}: {c}"))
        return MMVU_OPEN.replace("{question}", q)
    if style == "charxiv":
        return q  # built by zppo_core.suites.charxiv with its official instructions
    body = q or IMAGE_ONLY_QUESTION
    if style == "query":
        return body + "\n\n" + (INSTRUCTION_CHOICE if choices else INSTRUCTION_RULE)
    if choices:
        return body + "\n\n" + _lettered(choices) + "\n\n" + INSTRUCTION_CHOICE
    if bench.scoring == "exact":
        return body + "\n\n" + INSTRUCTION_EXACT
    return body + "\n\n" + INSTRUCTION_RULE
