"""Every benchmark of `--suite all` against a fixture in its real public schema and hub layout
(tests/unit/eval_fixtures.py): it loads, and its own metric scores it (a right reply 100, a wrong one 0), with
the headline the benchmark defines; the cases the issue names are checked with hand-computed numbers."""

from __future__ import annotations

import pytest

from tests.unit import eval_fixtures as fx
from zppo_core.suites.aggregate import aggregate
from zppo_core.suites.benchmarks import BY_NAME
from zppo_core.suites.data import data_path, load_items, missing_message
from zppo_core.suites.evaluate import evaluate_benchmark
from zppo_core.suites.scoring import judge_spec, judge_verdicts, score
from zppo_core.rollout.base import SamplingParams
from zppo_core.types import Completion


class ScriptedJudge:
    """A judge that answers in the benchmark's protocol (eval_fixtures.judge_reply); records its prompts."""

    def __init__(self, protocol: str):
        self.protocol, self.prompts = protocol, []

    def generate(self, prompts, params):
        self.prompts += prompts
        return [[Completion(token_ids=[], logprobs=[], text=fx.judge_reply(self.protocol, p), finished=True)]
                for p in prompts]


class ScriptedModel:
    """Stands in for the model under test: replies with a scripted text per item prompt (the scorer is what is
    tested here; real generation is tested with tiny models in tests/cli). `supports_images` like a VLM engine."""

    def __init__(self, replies: dict[str, list[str]], supports_images: bool = True):
        self.replies, self.supports_images = replies, supports_images

    def _answer(self, prompt, params):
        return [Completion(token_ids=[], logprobs=[], text=t, finished=True) for t in self.replies[prompt]][: params.n]

    def generate(self, prompts, params):
        return [self._answer(p, params) for p in prompts]

    def generate_multimodal(self, requests, params):
        return [self._answer(msgs[0]["content"][-1]["text"], params) for msgs, _ in requests]


def grade(bench, items, responses):
    """Score -> official/fallback judge -> the benchmark's headline, as evaluate_benchmark does (usable on video
    benchmarks, which no engine can sample yet)."""
    verdicts = [score(bench, it, r) for it, r in zip(items, responses)]
    undecided = [k for k, v in enumerate(verdicts) if v.needs_judge]
    judge = ScriptedJudge(bench.judge)
    for k, v in zip(undecided, judge_verdicts(judge, lambda t: t, [(items[k], responses[k], bench) for k in undecided])):
        verdicts[k] = v
    return aggregate(bench, [(it, [v.value]) for it, v in zip(items, verdicts)]), judge


def _expected_n(name: str, written: int) -> int:
    """Items of the fixture: every row (CharXiv: 5 questions a row; MMLU-Redux: its "ok" rows), OCRBench's
    rows of the benchmark's language."""
    if name.startswith("OCRBench"):
        cn = sum(t.endswith(" cn") for t, *_ in fx.OCR_ROWS)
        return cn if name.endswith("ZH") else len(fx.OCR_ROWS) - cn
    return written


@pytest.mark.parametrize("name", list(BY_NAME))
def test_every_benchmark_loads_its_fixture_and_scores_with_its_own_metric(tmp_path, name):
    bench = BY_NAME[name]
    n = fx.WRITERS[name](tmp_path)
    assert data_path(bench, tmp_path) == tmp_path / bench.folder
    items = load_items(bench, tmp_path)
    assert len(items) == _expected_n(name, n), [it.key for it in items]
    assert len({it.key for it in items}) == len(items)  # (config, split, id) tells every question apart
    if bench.metric == "ocrbench_v2":  # types without a metric here are left out by the evaluator
        from zppo_core.suites.metrics import ocrbench_v2_unsupported

        items = [it for it in items if not ocrbench_v2_unsupported(it)]
    (right, _, complete), judge = grade(bench, items, [fx.right_response(bench, it) for it in items])
    assert complete and right == pytest.approx(100.0), name
    if bench.scoring == "official_judge":  # the official judge saw every answer, in its own template
        assert len(judge.prompts) == len(items)
    (wrong, _, _), _ = grade(bench, items, [fx.wrong_response(bench, it) for it in items])
    assert wrong == pytest.approx(0.0), name


def test_ceval_items_are_subject_and_id_so_the_score_is_flat_accuracy(tmp_path):
    """ids restart at 0 in every subject: 54 questions (accountant 3, the 51 others 1), all right but accountant's
    ids 1 and 2 -> 52/54 = 96.3 (grouping by id alone gave mean(100, 0, 0) = 33.3)."""
    bench = BY_NAME["C-Eval"]
    fx.ceval(tmp_path)
    items = load_items(bench, tmp_path)
    assert len(items) == 54 and len({it.id for it in items}) == 3 and len({it.key for it in items}) == 54
    assert [it.key for it in items[:4]] == [("accountant", "val", "0"), ("accountant", "val", "1"),
                                            ("accountant", "val", "2"), ("advanced_mathematics", "val", "0")]
    wrong = {("accountant", "val", "1"), ("accountant", "val", "2")}
    replies = {it.prompt: ["\\boxed{A}" if it.key in wrong else "\\boxed{B}"] for it in items}
    res = evaluate_benchmark(ScriptedModel(replies), lambda t: t, bench, items, SamplingParams(n=1), scale="2b")
    assert res.score == pytest.approx(100 * 52 / 54) and res.comparable
    assert res.delta == pytest.approx(100 * 52 / 54 - 74.0)
    assert sorted((r.config, r.split, r.id) for r in res.records) == sorted(it.key for it in items)


def test_wemath_official_score_strict_and_loose(tmp_path):
    """Problem 2steps_1: sub 1 right, sub 2 wrong, composite right (rote memorization: strict, not loose);
    3steps_7: all subs right, composite wrong (inadequate generalization). N = 2:
    strict (2 - 0.5*1 - 1 - 0)/2 = 25 %, loose (2 - 0.5*1 - 0 - 0)/2 = 75 %; 5 of 7 answers right."""
    bench = BY_NAME["WeMath"]
    fx.wemath(tmp_path)
    items = load_items(bench, tmp_path)
    assert {it.id for it in items} >= {"2steps_1/2steps_1", "2steps_1/2steps_multi", "3steps_7/3steps_multi"}
    wrong = {"2steps_1/2steps_2", "3steps_7/3steps_multi"}
    (headline, parts, complete), _ = grade(bench, items, ["\\boxed{A}" if it.id in wrong else "\\boxed{B}"
                                                          for it in items])
    assert complete and headline == pytest.approx(25.0)
    assert parts["score_strict"] == pytest.approx(25.0) and parts["score_loose"] == pytest.approx(75.0)
    assert parts["accuracy"] == pytest.approx(100 * 5 / 7) and parts["problems"] == 2


def test_mmmu_pro_vision_protocol_and_headline(tmp_path):
    bench = BY_NAME["MMMU-Pro"]
    fx.mmmu_pro(tmp_path)
    items = load_items(bench, tmp_path)
    vision = [it for it in items if it.meta["config"] == "vision"]
    (v,) = vision
    assert v.prompt.startswith("Write out the multiple-choice question in the image") and "0 cm" not in v.prompt
    assert len(v.choices) == 10 and v.answer == "C" and len(v.images) == 1  # options only for scoring
    std = next(it for it in items if it.id == "test_Art_2" and it.meta["config"] == "standard (10 options)")
    assert "A. 0 cm" in std.prompt and "J. 9 cm" in std.prompt and len(std.images) == 2
    assert std.prompt.endswith("Think step by step before answering.") and "\\boxed" not in std.prompt
    # standard-10: 1 of 2 right (50), vision right (100), standard-4 wrong (0): headline mean(50, 100) = 75
    responses = [("Answer: C" if it.id == "test_Art_1" and it.meta["config"] != "standard (4 options)" else "Answer: B")
                 for it in items]
    (headline, parts, complete), _ = grade(bench, items, responses)
    assert complete and headline == pytest.approx(75.0)
    assert parts == pytest.approx({"standard (10 options)": 50.0, "standard (4 options)": 0.0, "vision": 100.0})
    only_std = [it for it in items if it.meta["config"] != "vision"]
    (_, _, complete), _ = grade(bench, only_std, ["Answer: C"] * len(only_std))
    assert not complete


def test_charxiv_questions_from_templates_and_official_instructions(tmp_path):
    bench = BY_NAME["CharXiv"]
    fx.charxiv(tmp_path)
    items = load_items(bench, tmp_path)  # val.parquet only: test.parquet has null answers
    by_id = {it.id: it for it in items}
    d1 = by_id["0-descriptive1"]  # template 7 at subplot_row 1, subplot_col 2 (subplot_loc null)
    assert d1.prompt.startswith("For the subplot at row 1 and column 2, what is the spatially highest labeled tick")
    assert by_id["1-descriptive1"].prompt.startswith("For the current plot, what is the label of the x-axis?")
    assert by_id["1-descriptive4"].prompt.startswith("What is the layout of the subplots?")  # 18: no prefix
    assert by_id["0-reasoning"].prompt.startswith("Which model shows a greater decline?\n    * Your final answer must "
                                                  "be grounded to some text")
    assert "* Your final answer must be a number with 2 decimal places." in by_id["1-reasoning"].prompt
    assert (d1.answer, by_id["1-reasoning"].answer) == ("60", "0.25")
    # reasoning 1 of 2 right, descriptive 8 of 8: (50 + 100) / 2 = 75
    responses = ["WRONG" if it.id == "1-reasoning" else "RIGHT" for it in items]
    (headline, parts, _), judge = grade(bench, items, responses)
    assert parts == pytest.approx({"reasoning": 50.0, "descriptive": 100.0}) and headline == pytest.approx(75.0)
    reasoning_prompt = next(p for p in judge.prompts if "Which model shows" in p)
    assert "* Ground Truth: Joint-CNN" in reasoning_prompt and "[extract_answer, score]" in reasoning_prompt
    assert any("Overarching Question: What is the spatially highest labeled tick on the y-axis?" in p and
               "Ground Truth 1: 60" in p for p in judge.prompts)


def test_mmvet_partial_credit_from_the_official_few_shot_judge(tmp_path):
    bench = BY_NAME["MM-Vet"]
    fx.mmvet(tmp_path)
    items = load_items(bench, tmp_path)
    (headline, _, _), judge = grade(bench, items, ["x = -1, so HALF", "six RIGHT"])
    assert headline == pytest.approx(75.0)
    assert "What is x in the equation? | -1 <AND> -5 | x = -1, so HALF | " in judge.prompts[0]
    assert judge.prompts[0].startswith("Compare the ground truth and prediction from AI models")


def test_dynamath_average_and_worst_case(tmp_path):
    bench = BY_NAME["DynaMath"]
    fx.dynamath(tmp_path)
    items = load_items(bench, tmp_path)
    responses = ["\\boxed{A}" if it.id == "2" and it.meta["split"] == "sample_variant3" else
                 fx.right_response(bench, it) for it in items]
    (headline, parts, _), _ = grade(bench, items, responses)
    assert headline == pytest.approx(95.0) and parts["worst_case"] == pytest.approx(50.0)


def test_infovqa_anls_partial_credit_and_threshold(tmp_path):
    bench = BY_NAME["InfoVQA"]
    fx.infovqa(tmp_path)
    items = load_items(bench, tmp_path)  # the validation parquet only (test answers are null)
    assert [it.id for it in items] == ["98313", "98314"]
    # "annual reprt": one edit from "annual report" (13 characters) -> 12/13; "2091" vs "2019": 2 edits of 4 -> 0
    (headline, _, _), _ = grade(bench, items, ["\\boxed{Annual reprt}", "\\boxed{2091}"])
    assert headline == pytest.approx(100 * (12 / 13) / 2)


def test_ocrbench_v2_metrics_by_type_and_category_mean(tmp_path):
    bench = BY_NAME["OCRBench-v2-EN"]
    fx.ocrbench_v2(tmp_path)
    items = load_items(bench, tmp_path)
    replies = {it.prompt: [fx.right_response(bench, it)] for it in items}
    pos = next(it for it in items if it.meta["type"] == "VQA with position en")
    replies[pos.prompt] = ['{"answer": "$5", "bbox": [30, 10, 70, 30]}']  # content right, IoU 20*20/(60*20) = 1/3
    res = evaluate_benchmark(ScriptedModel(replies), None, bench, items, SamplingParams(n=1), scale="2b")
    assert res.n == 4 and res.skipped_items == {"no metric here for table parsing en (TEDS)": 1}
    # categories: text recognition 1, text detection 0.5 + 0.5/3, mathematical calculation 1, relationship 1
    assert res.parts["text detection"] == pytest.approx(100 * (0.5 + 0.5 / 3))
    assert res.score == pytest.approx(100 * (3 + 0.5 + 0.5 / 3) / 4)
    assert not res.comparable and "TEDS" in res.not_comparable and res.delta is None and res.reference == 48.8


def test_hle_skips_and_counts_image_questions_on_a_text_only_model(tmp_path):
    bench = BY_NAME["HLE"]
    fx.hle(tmp_path)
    items = load_items(bench, tmp_path)
    assert [bool(it.images) for it in items] == [False, False, True]
    assert items[0].prompt.startswith("Your response should be in the following format:\nExplanation:")
    assert "Exact Answer:" in items[0].prompt and "Answer: {your chosen answer}" in items[1].prompt
    replies = {it.prompt: ["Exact Answer: RIGHT"] for it in items}
    res = evaluate_benchmark(ScriptedModel(replies, supports_images=False), lambda t: t, bench, items, SamplingParams(n=1),
                             judge=ScriptedJudge("hle"), judge_render=lambda t: t, scale="0.8b")
    assert res.n == 2 and res.score == pytest.approx(100.0) and res.judged == 2
    assert res.skipped_items == {"image questions on a text-only model": 1} and not res.comparable
    assert "1 item(s) skipped: image questions on a text-only model" in res.not_comparable


def test_mathvista_query_and_official_normalisation(tmp_path):
    bench = BY_NAME["MathVista"]
    fx.mathvista(tmp_path)
    mc, flt, integer = load_items(bench, tmp_path)
    assert mc.prompt.count("(B) red") == 1 and "B. red" not in mc.prompt and mc.prompt.startswith("Hint:")
    assert "one decimal place" in flt.prompt and mc.answer == "B"
    cases = [(mc, "\\boxed{(B) red}", True), (mc, "\\boxed{reed}", True), (mc, "\\boxed{blue}", False),
             (flt, "\\boxed{1.54}", True), (flt, "\\boxed{\\frac{3}{2}}", True), (flt, "\\boxed{1.6}", False),
             (integer, "\\boxed{3.0}", True), (integer, "\\boxed{4}", False)]
    for it, reply, ok in cases:
        v = score(bench, it, reply)
        assert (v.correct, v.how) == (ok, "mathvista"), reply
    assert score(bench, flt, "about one and a half").needs_judge


def test_vlms_are_blind_prompt_is_the_rows_own(tmp_path):
    bench = BY_NAME["VLMs-are-Blind"]
    fx.vlms_blind(tmp_path)
    items = load_items(bench, tmp_path)
    assert all("\\boxed" not in it.prompt for it in items)
    assert items[0].prompt == "How many circles are there? Answer with a number in curly brackets e.g., {3}."
    assert score(bench, items[0], "I count {4}... no, {5}").correct is True
    assert score(bench, items[2], "rows=(3, 4)").correct is True  # lmms-eval's "(r, c)" form
    assert score(bench, items[2], "three rows and four columns").needs_judge
    (_, parts, _), _ = grade(bench, items, [fx.right_response(bench, it) for it in items])
    assert parts == {"Olympic Counting - Circles": 100.0, "Touching Circles": 100.0,
                     "Counting Grid - Blank Grids": 100.0}


def test_mmlu_redux_ok_subset_by_default_all_rows_as_an_option(tmp_path):
    bench = BY_NAME["MMLU-Redux"]
    fx.mmlu_redux(tmp_path)
    ok = load_items(bench, tmp_path)
    everything = load_items(bench, tmp_path, subset="all")
    assert len(ok) == 2 * 57 and len(everything) == 2 * 57 + 2
    assert {it.meta["error_type"] for it in ok} == {"ok"}
    with pytest.raises(ValueError, match="unknown subset 'nope'; valid: ok, all"):
        load_items(bench, tmp_path, subset="nope")


def test_raw_hub_copies_pick_the_right_files(tmp_path):
    # MathVerse: testmini_text_only / testmini_version_split share the prefix and are not read
    fx.mathverse(tmp_path)
    assert [it.id for it in load_items(BY_NAME["MathVerse"], tmp_path)] == ["1", "2"]
    # GPQA: gpqa_diamond.csv only; quoted newlines and commas survive
    fx.gpqa(tmp_path)
    gp = load_items(BY_NAME["GPQA-Diamond"], tmp_path)
    assert len(gp) == 3 and gp[0].meta["question"] == "Which particle, case 0?\nPick one."
    assert sorted(gp[0].choices) == sorted(["photon 0", "gluon", "quark, up", "muon"])
    assert gp[0].choices["ABCD".index(gp[0].answer)] == "photon 0"
    # IMO-AnswerBench: answerbench.csv
    fx.imo_answerbench(tmp_path)
    imo = load_items(BY_NAME["IMO-AnswerBench"], tmp_path)
    assert [(it.id, it.answer) for it in imo] == [("imo-bench-algebra-001", "$2$"), ("imo-bench-combinatorics-002", "4")]
    assert 'Count the "words"\nof length 2' in imo[1].prompt
    # AIME 2025: configs AIME2025-I/-II ship as aime2025-I.jsonl / aime2025-II.jsonl
    fx.aime25(tmp_path)
    assert [it.meta["config"] for it in load_items(BY_NAME["AIME25"], tmp_path)] == ["AIME2025-I"] * 2 + ["AIME2025-II"]


def test_babyvision_gold_from_choice_index_or_blank(tmp_path):
    bench = BY_NAME["BabyVision"]
    fx.babyvision(tmp_path)
    choice, blank = load_items(bench, tmp_path)
    assert (choice.id, choice.answer, choice.choices) == ("1", "C", ["circle", "circle", "square", "circle"])
    assert "Choices:\n(A) circle\n(B) circle\n(C) square" in choice.prompt
    assert choice.prompt.endswith("give your final answer in \\boxed{Answer} format.")
    assert (blank.answer, blank.choices) == ("7", None)
    assert score(bench, blank, "\\boxed{7}").correct and score(bench, choice, "\\boxed{C}").correct


def test_video_benchmarks_find_their_clips_in_the_official_layouts(tmp_path):
    fx.mmvu(tmp_path)
    m0, m1 = load_items(BY_NAME["MMVU"], tmp_path)
    assert m0.video == str(tmp_path / "MMVU" / "videos" / "Art" / "0.mp4")
    assert m1.video == str(tmp_path / "MMVU" / "videos" / "Chemistry" / "0.mp4")
    assert (m0.choices, m1.choices, m1.answer) == (None, ["gas", "precipitate", "flame", "ice"], "B")
    assert "Therefore, the final answer is: $LETTER" in m1.prompt and "B: precipitate" in m1.prompt
    fx.mvbench(tmp_path)
    mv = {it.meta["config"]: it for it in load_items(BY_NAME["MVBench"], tmp_path)}
    assert mv["action_sequence"].video == str(tmp_path / "MVBench/video/star/Charades_segment/action_sequence_1.mp4")
    assert mv["episodic_reasoning"].video == str(tmp_path / "MVBench/video/tvqa/video_fps3_hq_segment/ep1")
    assert mv["fine_grained_pose"].video.endswith("nturgbd_convert/fine_grained_pose_1.mp4")
    fx.video_mmmu(tmp_path)
    vm = {it.meta["config"]: it.video for it in load_items(BY_NAME["Video-MMMU"], tmp_path)}
    assert vm == {"Perception": str(tmp_path / "Video-MMMU/Art/test_Art_Theory_1.mp4"),
                  "Comprehension": str(tmp_path / "Video-MMMU/Medicine/test_Clinical_Medicine_2.mp4"),
                  "Adaptation": str(tmp_path / "Video-MMMU/Engineering/test_Computer_Science_3.mp4")}
    fx.video_mme(tmp_path)
    (sub,) = load_items(BY_NAME["Video-MME-sub"], tmp_path)
    assert sub.video == str(tmp_path / "Video-MME/data/fFjv93ACGo8.mp4") and "Three friends meet." in sub.prompt


def test_moved_hub_ids_are_named_in_the_fetch_hint(tmp_path):
    for name, alias in (("AI2D", "lmms-lab-encoder/ai2d"), ("InfoVQA", "lmms-lab-encoder/DocVQA"),
                        ("MM-Vet", "lmms-lab-encoder/MMVet"), ("Video-MME", "lmms-eval/Video-MME"),
                        ("Video-MMMU", "lmms-eval/VideoMMMU"), ("MMVU", "lmms-eval/MMVU")):
        msg = missing_message(BY_NAME[name], tmp_path)
        assert f"'{BY_NAME[name].dataset_id}'" in msg and alias in msg and "\n" not in msg


def test_no_judge_for_an_official_judge_benchmark_is_not_comparable(tmp_path):
    bench = BY_NAME["MultiChallenge"]
    fx.multichallenge(tmp_path)
    (item,) = load_items(bench, tmp_path)
    model = ScriptedModel({"conv": ["Try a lentil curry. RIGHT"]}, supports_images=False)
    res = evaluate_benchmark(model, lambda m: "conv", bench, [item], SamplingParams(n=1), scale="2b")
    assert res.score == 0.0 and not res.comparable and "no judge" in res.not_comparable
    res = evaluate_benchmark(model, lambda m: "conv", bench, [item], SamplingParams(n=1), scale="2b",
                             judge=ScriptedJudge("multichallenge"), judge_render=lambda t: t)
    assert res.score == 100.0 and res.comparable
    assert judge_spec(bench).build(item, "x").count("Does the suggested dinner contain any animal products?") == 1
