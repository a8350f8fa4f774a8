"""Hand-written fixtures of all 31 benchmarks in their real public schemas and hub layouts.

Each writer puts a few rows, with the real column names and types, where a copy of the hub dataset (or a
``save_to_disk`` of it) would put them: MathVerse's ``testmini.parquet`` beside ``testmini_text_only.parquet``,
CharXiv's ``val.parquet`` beside a ``test.parquet`` with null answers, GPQA's ``gpqa_diamond.csv`` beside
``gpqa_main.csv``, IMO-AnswerBench's ``answerbench.csv``, MVBench's ``json/<task>.json`` + per-task clip folders
(a frames folder for episodic_reasoning), MMVU's ``videos/<Subject>/<n>.mp4`` named by URL, Video-MMMU's
per-discipline folders ... Images are generated here; videos are placeholder files (no engine reads video).

:func:`right_response` is a reply the benchmark's own scorer counts as right; a reply containing ``WRONG`` is
wrong. :func:`judge_reply` is what a judge following the benchmark's judge protocol answers.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from zppo_core.suites.benchmarks import BY_NAME, CEVAL_CONFIGS, MMLU_SUBJECTS, MVBENCH_CONFIGS

LETTERS = "ABCDEFGHIJ"


def png(color="red", size=(24, 16)):
    from PIL import Image

    return Image.new("RGB", size, color)


def png_bytes(color="red") -> bytes:
    buf = io.BytesIO()
    png(color).save(buf, format="PNG")
    return buf.getvalue()


def _parquet(path: Path, rows: list[dict], features=None) -> None:
    from datasets import Dataset

    path.parent.mkdir(parents=True, exist_ok=True)
    Dataset.from_list(rows, features=features).to_parquet(str(path))


def _json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42")


def _img_features(**cols):
    from datasets import Features, Image, Sequence, Value

    kinds = {"str": Value("string"), "int": Value("int64"), "float": Value("float64"), "img": Image(),
             "strs": Sequence(Value("string")), "ints": Sequence(Value("int32"))}
    return Features({k: kinds[v] for k, v in cols.items()})


# ------------------------------------------------------------------------------------------ VLM
def ai2d(root: Path) -> int:
    f = _img_features(question="str", options="strs", answer="str", image="img")
    _parquet(root / "AI2D" / "data" / "test-00000-of-00001.parquet", [
        {"question": "Which part is the leaf?", "options": ["A", "B", "C", "D"], "answer": "2", "image": png()},
        {"question": "What eats grass?", "options": ["cow", "lion", "hawk", "snake"], "answer": "0", "image": png()}],
        f)
    return 2


def babyvision(root: Path) -> int:
    f = _img_features(taskId="int", question="str", image="img", ansType="str", choiceAns="int", blankAns="str",
                      options="strs", type="str", subtype="str")
    _parquet(root / "BabyVision" / "data" / "train-00000-of-00001.parquet", [
        {"taskId": 1, "question": "Which shape is different?", "image": png(), "ansType": "choice", "choiceAns": 2,
         "blankAns": None, "options": ["circle", "circle", "square", "circle"], "type": "Fine-grained",
         "subtype": "odd one"},
        {"taskId": 2, "question": "How many dots?", "image": png("blue"), "ansType": "blank", "choiceAns": None,
         "blankAns": "7", "options": [], "type": "Counting", "subtype": "dots"}], f)
    return 2


def charxiv(root: Path) -> int:
    f = _img_features(image="img", category="str", year="str", figure_path="str", num_subplots="int",
                      subplot_loc="ints", subplot_row="int", subplot_col="int", descriptive_q1="int",
                      descriptive_q2="int", descriptive_q3="int", descriptive_q4="int", descriptive_a1="str",
                      descriptive_a2="str", descriptive_a3="str", descriptive_a4="str", reasoning_q="str",
                      reasoning_q_source="int", reasoning_a="str")
    val = [
        {"image": png(), "category": "cs", "year": "20", "figure_path": "images/0.jpg", "num_subplots": 2,
         "subplot_loc": None, "subplot_row": 1, "subplot_col": 2, "descriptive_q1": 7, "descriptive_q2": 13,
         "descriptive_q3": 11, "descriptive_q4": 19, "descriptive_a1": "60", "descriptive_a2": "Ours, Joint-CNN",
         "descriptive_a3": "Yes", "descriptive_a4": "2",
         "reasoning_q": "Which model shows a greater decline?", "reasoning_q_source": 1, "reasoning_a": "Joint-CNN"},
        {"image": png("green"), "category": "math", "year": "22", "figure_path": "images/2.jpg", "num_subplots": 1,
         "subplot_loc": [0, 0], "subplot_row": None, "subplot_col": None, "descriptive_q1": 2, "descriptive_q2": 8,
         "descriptive_q3": 1, "descriptive_q4": 18, "descriptive_a1": "W_H", "descriptive_a2": "0.1",
         "descriptive_a3": "Not Applicable", "descriptive_a4": "1 by 1",
         "reasoning_q": "What is the value at t=10?", "reasoning_q_source": 4, "reasoning_a": "0.25"}]
    _parquet(root / "CharXiv" / "val.parquet", val, f)
    test = [dict(val[0], descriptive_a1=None, descriptive_a2=None, descriptive_a3=None, descriptive_a4=None,
                 reasoning_a=None)]
    _parquet(root / "CharXiv" / "test.parquet", test, f)
    return 10


def dynamath(root: Path) -> int:
    from datasets import Dataset, DatasetDict

    f = _img_features(id="str", question="str", image="str", decoded_image="img", ground_truth="str",
                      answer_type="str", subject="str", knowledge_level="str")
    splits = {}
    for v in range(1, 11):
        splits[f"sample_variant{v}"] = Dataset.from_list([
            {"id": "1", "question": f"What is {v} + 1?", "image": f"images/1_{v}.png", "decoded_image": png(),
             "ground_truth": str(v + 1), "answer_type": "float", "subject": "arithmetic", "knowledge_level": "elem"},
            {"id": "2", "question": "Which is larger? A: 1 B: 2", "image": f"images/2_{v}.png",
             "decoded_image": png("blue"), "ground_truth": "B", "answer_type": "multiple choice",
             "subject": "arithmetic", "knowledge_level": "elem"}], features=f)
    DatasetDict(splits).save_to_disk(str(root / "DynaMath"))
    return 20


def embspatial(root: Path) -> int:
    f = _img_features(question_id="str", image="img", question="str", answer_options="strs", answer="int",
                      relation="str", data_source="str")
    _parquet(root / "EmbSpatial" / "data" / "test-00000-of-00001.parquet", [
        {"question_id": "mp3d_0", "image": png(), "question": "Where is the chair relative to the table?",
         "answer_options": ["left", "right", "above", "below"], "answer": 1, "relation": "right",
         "data_source": "mp3d"}], f)
    return 1


def infovqa(root: Path) -> int:
    f = _img_features(questionId="str", question="str", answers="strs", answer_type="strs", image="img",
                      image_url="str", operation_type="strs", ocr="str", data_split="str")
    d = root / "InfoVQA" / "InfographicVQA"
    rows = [{"questionId": "98313", "question": "What is the title?", "answers": ["annual report", "the annual report"],
             "answer_type": ["single span"], "image": png(), "image_url": "x.jpeg", "operation_type": [],
             "ocr": "[]", "data_split": "val"},
            {"questionId": "98314", "question": "Which year?", "answers": ["2019"], "answer_type": ["single span"],
             "image": png("blue"), "image_url": "y.jpeg", "operation_type": [], "ocr": "[]", "data_split": "val"}]
    _parquet(d / "validation-00000-of-00001.parquet", rows, f)
    _parquet(d / "test-00000-of-00001.parquet", [dict(rows[0], answers=None, questionId="1")], f)
    return 2


def mathverse(root: Path) -> int:
    f = _img_features(sample_index="str", problem_index="str", problem_version="str", question="str", image="img",
                      answer="str", question_type="str", metadata="str", query_wo="str", query_cot="str",
                      question_for_eval="str")
    row = {"sample_index": "1", "problem_index": "1", "problem_version": "Text Dominant",
           "question": "In the figure, angle A is 40°. Find angle B.", "image": png(), "answer": "50",
           "question_type": "free-form", "metadata": "{}", "query_wo": "q", "query_cot": "q", "question_for_eval": "q"}
    _parquet(root / "MathVerse" / "testmini.parquet", [row, dict(row, sample_index="2", answer="B",
             question="Choices: A:30 B:60", question_type="multi-choice")], f)
    # the hub copy's other configs share the "testmini_" prefix: they must not be read
    _parquet(root / "MathVerse" / "testmini_text_only.parquet", [dict(row, sample_index="3")], f)
    _parquet(root / "MathVerse" / "testmini_version_split.parquet", [dict(row, sample_index="4")], f)
    return 2


def mathvision(root: Path) -> int:
    f = _img_features(id="str", question="str", options="strs", image="str", decoded_image="img", answer="str",
                      solution="str", level="int", subject="str")
    _parquet(root / "MathVision" / "data" / "test-00000-of-00001.parquet", [
        {"id": "1", "question": "Which figure?", "options": ["A", "B", "C", "D", "E"], "image": "images/1.jpg",
         "decoded_image": png(), "answer": "C", "solution": None, "level": 3, "subject": "metric geometry"},
        {"id": "2", "question": "How many?", "options": [], "image": "images/2.jpg", "decoded_image": png(),
         "answer": "12", "solution": None, "level": 2, "subject": "counting"}], f)
    return 2


def mathvista(root: Path) -> int:
    f = _img_features(pid="str", question="str", image="str", decoded_image="img", choices="strs", unit="str",
                      precision="float", answer="str", question_type="str", answer_type="str", query="str")
    rows = [
        {"pid": "1", "question": "Which color?", "image": "images/1.jpg", "decoded_image": png(),
         "choices": ["blue", "red", "green"], "unit": None, "precision": None, "answer": "red",
         "question_type": "multi_choice", "answer_type": "text",
         "query": "Hint: Please answer the question and provide the correct option letter, e.g., A, B, C, D, at "
                  "the end.\nQuestion: Which color?\nChoices:\n(A) blue\n(B) red\n(C) green"},
        {"pid": "2", "question": "How long is it?", "image": "images/2.jpg", "decoded_image": png(), "choices": None,
         "unit": "cm", "precision": 1.0, "answer": "1.5", "question_type": "free_form", "answer_type": "float",
         "query": "Hint: Please answer the question requiring a floating-point number with one decimal place and "
                  "provide the final value, e.g., 1.2, 1.3, 1.4, at the end.\nQuestion: How long is it? (Unit: cm)"},
        {"pid": "3", "question": "How many?", "image": "images/3.jpg", "decoded_image": png(), "choices": None,
         "unit": None, "precision": None, "answer": "3", "question_type": "free_form", "answer_type": "integer",
         "query": "Hint: Please answer the question requiring an integer answer and provide the final value, e.g., "
                  "1, 2, 3, at the end.\nQuestion: How many?"}]
    _parquet(root / "MathVista" / "data" / "testmini-00000-of-00001.parquet", rows, f)
    return 3


def mmmu_pro(root: Path) -> int:
    std = _img_features(id="str", question="str", options="str", explanation="str", image_1="img", image_2="img",
                        img_type="str", answer="str", topic_difficulty="str", subject="str")
    vis = _img_features(id="str", image="img", options="str", answer="str", subject="str")
    d = root / "MMMU-Pro"
    opts10 = str([f"{i} cm" for i in range(10)])
    _parquet(d / "standard (10 options)" / "test-00000-of-00001.parquet", [
        {"id": "test_Art_1", "question": "<image 1> How long?", "options": opts10, "explanation": "",
         "image_1": png(), "image_2": None, "img_type": "['Diagrams']", "answer": "C", "topic_difficulty": "Easy",
         "subject": "Art"},
        {"id": "test_Art_2", "question": "<image 1> <image 2> Which?", "options": opts10, "explanation": "",
         "image_1": png(), "image_2": png("blue"), "img_type": "['Diagrams']", "answer": "A",
         "topic_difficulty": "Easy", "subject": "Art"}], std)
    _parquet(d / "standard (4 options)" / "test-00000-of-00001.parquet", [
        {"id": "test_Art_1", "question": "<image 1> How long?", "options": "['1 cm', '2 cm', '3 cm', '4 cm']",
         "explanation": "", "image_1": png(), "image_2": None, "img_type": "['Diagrams']", "answer": "C",
         "topic_difficulty": "Easy", "subject": "Art"}], std)
    _parquet(d / "vision" / "test-00000-of-00001.parquet", [
        {"id": "test_Art_1", "image": png(), "options": opts10, "answer": "C", "subject": "Art"}], vis)
    return 4


def mmvet(root: Path) -> int:
    f = _img_features(question_id="str", image="img", question="str", answer="str", image_source="str",
                      capability="strs")
    _parquet(root / "MM-Vet" / "data" / "test-00000-of-00001.parquet", [
        {"question_id": "v1_0", "image": png(), "question": "What is x in the equation?", "answer": "-1<AND>-5",
         "image_source": "x", "capability": ["ocr", "math"]},
        {"question_id": "v1_1", "image": png(), "question": "Which is larger?", "answer": "6<OR>six",
         "image_source": "x", "capability": ["math"]}], f)
    return 2


OCR_ROWS = [  # (type, eval, question, answers, bbox): scored types in both languages and one without a metric here
    ("text recognition en", "None", "What is written in the image?", ["STOP"], None),
    ("VQA with position en", "None", "What is the price? Output a dict with answer and bbox.", ["$5"], [10, 10, 50, 30]),
    ("text counting en", "regression", "How many words?", ["4"], None),
    ("key information extraction en", "None", "Extract the company.", ['{"company": "ACME"}'], None),
    ("table parsing en", "None", "Convert the table to HTML.", ["<table></table>"], None),
    ("cognition VQA cn", "None", "图中写的是什么？", ["北京"], None),
    ("reasoning VQA cn", "multiple choice", "选择正确答案", ["B"], None),
]


def ocrbench_v2(root: Path) -> int:
    f = _img_features(id="int", dataset_name="str", question="str", type="str", answers="strs", image="img",
                      eval="str", bbox="ints")
    rows = [{"id": i, "dataset_name": "x", "question": q, "type": t, "answers": a, "image": png(), "eval": e,
             "bbox": b} for i, (t, e, q, a, b) in enumerate(OCR_ROWS)]
    _parquet(root / "OCRBench-v2" / "data" / "test-00000-of-00001.parquet", rows, f)
    return len(rows)


def visualpuzzles(root: Path) -> int:
    f = _img_features(id="int", category="str", image="img", question="str", options="strs", answer="str")
    _parquet(root / "VisualPuzzles" / "data" / "train-00000-of-00001.parquet", [
        {"id": 1, "category": "algorithmic", "image": png(), "question": "Which comes next?",
         "options": ["1", "2", "3", "4"], "answer": "D"}], f)
    return 1


def vlms_blind(root: Path) -> int:
    f = _img_features(image="img", prompt="str", groundtruth="str", task="str")
    _parquet(root / "VLMs-are-Blind" / "data" / "valid-00000-of-00001.parquet", [
        {"image": png(), "prompt": "How many circles are there? Answer with a number in curly brackets e.g., {3}.",
         "groundtruth": "5", "task": "Olympic Counting - Circles"},
        {"image": png(), "prompt": "Are the two circles touching each other? Answer with Yes/No.",
         "groundtruth": "No", "task": "Touching Circles"},
        {"image": png(), "prompt": "Count the rows and columns. Answer with {rows}{columns}.",
         "groundtruth": "3,4", "task": "Counting Grid - Blank Grids"}], f)
    return 3


WEMATH_PROBLEMS = {"2steps_1": 2, "3steps_7": 3}


def wemath(root: Path) -> int:
    f = _img_features(**{"ID": "str", "split": "str", "knowledge concept": "str", "question": "str", "option": "str",
                         "answer": "str", "image_path": "img", "key": "str", "question number": "int",
                         "knowledge concept description": "str"})
    rows, n = [], 0
    for pid, steps in WEMATH_PROBLEMS.items():
        for key in [f"{steps}steps_{i}" for i in range(1, steps + 1)] + [f"{steps}steps_multi"]:
            n += 1
            rows.append({"ID": pid, "split": "testmini", "knowledge concept": "Angles", "question": f"{key}: angle?",
                         "option": "A. 30°;B. 45°;C. 60°;D. 90°; E. No correct answer", "answer": "B",
                         "image_path": png(), "key": key, "question number": n, "knowledge concept description": "."})
    _parquet(root / "WeMath" / "data" / "testmini-00000-of-00001.parquet", rows, f)
    return len(rows)


# ------------------------------------------------------------------------------------------ LLM
def aime25(root: Path) -> int:
    _jsonl(root / "AIME25" / "aime2025-I.jsonl", [{"question": "Find 6*7.", "answer": "42"},
                                                  {"question": "Find 1/2.", "answer": "0.5"}])
    _jsonl(root / "AIME25" / "aime2025-II.jsonl", [{"question": "Find 2+2.", "answer": "4"}])
    return 3


def aime26(root: Path) -> int:
    _parquet(root / "AIME26" / "data" / "train-00000-of-00001.parquet", [
        {"problem_idx": 1, "problem": "Find 3*3.", "answer": 9, "problem_type": ["Algebra"]}])
    return 1


def ceval(root: Path) -> int:
    """All 52 subjects: accountant with 3 questions, the others with 1; ids restart at 0 in every subject."""
    sizes = {s: 3 if s == "accountant" else 1 for s in CEVAL_CONFIGS}
    for subject, n in sizes.items():
        rows = [{"id": i, "question": f"{subject} q{i}", "A": "1", "B": "2", "C": "3", "D": "4", "answer": "B",
                 "explanation": ""} for i in range(n)]  # ids restart at 0 in every subject
        _parquet(root / "C-Eval" / subject / "val-00000-of-00001.parquet", rows)
        _parquet(root / "C-Eval" / subject / "dev-00000-of-00001.parquet", rows[:1])
    return sum(sizes.values())


GPQA_HEADER = ["Pre-Revision Question", "Pre-Revision Correct Answer", "Question", "Correct Answer",
               "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3", "Explanation", "Record ID",
               "High-level domain", "Subdomain"]


def gpqa(root: Path) -> int:
    rows = [["old", "old", f"Which particle, case {i}?\nPick one.", f"photon {i}", "gluon", "quark, up", "muon",
             "because", f"rec{i}", "Physics", "Particle"] for i in range(3)]
    _csv(root / "GPQA-Diamond" / "gpqa_diamond.csv", GPQA_HEADER, rows)
    _csv(root / "GPQA-Diamond" / "gpqa_main.csv", GPQA_HEADER, rows + rows)  # another config: not read
    return 3


def hle(root: Path) -> int:
    uri = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    f = _img_features(id="str", question="str", image="str", answer="str", answer_type="str", author_name="str",
                      rationale="str", raw_subject="str", category="str", canary="str")
    _parquet(root / "HLE" / "data" / "test-00000-of-00001.parquet", [
        {"id": "h1", "question": "What is 6*7?", "image": "", "answer": "42", "answer_type": "exactMatch",
         "author_name": "a", "rationale": "", "raw_subject": "Math", "category": "Math", "canary": "x"},
        {"id": "h2", "question": "Pick: A. 1 B. 2", "image": "", "answer": "B", "answer_type": "multipleChoice",
         "author_name": "a", "rationale": "", "raw_subject": "Math", "category": "Math", "canary": "x"},
        {"id": "h3", "question": "What is shown?", "image": uri, "answer": "red square", "answer_type": "exactMatch",
         "author_name": "a", "rationale": "", "raw_subject": "Art", "category": "Other", "canary": "x"}], f)
    return 3


def imo_answerbench(root: Path) -> int:
    _csv(root / "IMO-AnswerBench" / "answerbench.csv",
         ["Problem ID", "Problem", "Short Answer", "Category", "Subcategory", "Source"],
         [["imo-bench-algebra-001", "Find all $n$ with $n^2 = 4$, $n > 0$.", "$2$", "Algebra", "Equations",
           "IMO 2020"],
          ["imo-bench-combinatorics-002", 'Count the "words"\nof length 2 over {a, b}.', "4", "Combinatorics",
           "Counting", "ISL 2019"]])
    return 2


def mmlu(root: Path) -> int:
    _parquet(root / "MMLU" / "all" / "test-00000-of-00001.parquet", [
        {"question": "2 + 2 = ?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "22"], "answer": 1}])
    _parquet(root / "MMLU" / "all" / "dev-00000-of-00001.parquet", [
        {"question": "dev", "subject": "x", "choices": ["a", "b", "c", "d"], "answer": 0}])
    return 1


def mmlu_pro(root: Path) -> int:
    _parquet(root / "MMLU-Pro" / "data" / "test-00000-of-00001.parquet", [
        {"question_id": 70, "question": "Which is prime?", "options": [str(i) for i in range(4, 14)], "answer": "D",
         "answer_index": 3, "cot_content": "", "category": "math", "src": "x"}])
    return 1


REDUX_ROWS = [("ok", 1), ("ok", 2), ("wrong_groundtruth", 0), ("bad_question_clarity", 3)]


def mmlu_redux(root: Path) -> int:
    for s in MMLU_SUBJECTS:
        rows = [{"question": f"{s} {k}", "choices": ["w", "x", "y", "z"], "answer": a, "error_type": e,
                 "source": None, "correct_answer": None, "potential_reason": None} for k, (e, a) in enumerate(REDUX_ROWS)]
        _parquet(root / "MMLU-Redux" / s / "test-00000-of-00001.parquet", rows[:2] if s != "anatomy" else rows)
    return len(MMLU_SUBJECTS) * 2  # the "ok" rows


def multichallenge(root: Path) -> int:
    _jsonl(root / "MultiChallenge" / "benchmark_questions.jsonl", [
        {"QUESTION_ID": "q1", "AXIS": "INSTRUCTION_RETENTION", "CONVERSATION": [
            {"role": "user", "content": "I am vegan."}, {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "Suggest a dinner."}],
         "TARGET_QUESTION": "Does the suggested dinner contain any animal products?", "PASS_CRITERIA": "NO"}])
    return 1


# ------------------------------------------------------------------------------------------ Video
def mmvu(root: Path) -> int:
    rows = [{"id": "validation_0", "video": "https://huggingface.co/datasets/yale-nlp/MMVU/resolve/main/videos/Art/0.mp4",
             "youtube_url": "x", "question_type": "open-ended", "metadata": {"subject": "Art", "textbook": "t",
             "knowledge": [], "rationale": "r"}, "question": "Which technique?", "choices": dict.fromkeys("ABCDE", ""),
             "answer": "Dolly Zoom"},
            {"id": "validation_1", "video": "https://huggingface.co/datasets/yale-nlp/MMVU/resolve/main/videos/Chemistry/0.mp4",
             "youtube_url": "x", "question_type": "multiple-choice", "metadata": {"subject": "Chemistry"},
             "question": "What forms?", "choices": {"A": "gas", "B": "precipitate", "C": "flame", "D": "ice", "E": ""},
             "answer": "B"}]
    _json(root / "MMVU" / "validation.json", rows)
    for sub in ("Art", "Chemistry"):
        _touch(root / "MMVU" / "videos" / sub / "0.mp4")
    return 2


def mvbench(root: Path) -> int:
    from zppo_core.suites.media import MVBENCH_FOLDERS

    for task in MVBENCH_CONFIGS:
        clip = "ep1" if task == "episodic_reasoning" else f"{task}_1.mp4"
        row = {"video": clip, "question": f"{task}?", "candidates": ["left", "right", "up"], "answer": "right"}
        if task in ("action_sequence", "episodic_reasoning"):
            row.update(start=1.0, end=5.0)
        _json(root / "MVBench" / "json" / f"{task}.json", [row])
        where = root / "MVBench" / "video" / MVBENCH_FOLDERS[task][0] / clip
        if task == "episodic_reasoning":  # a folder of frames
            where.mkdir(parents=True, exist_ok=True)
            png().save(where / "00001.jpg")
        else:
            _touch(where)
    return len(MVBENCH_CONFIGS)


def video_mme(root: Path) -> int:
    _parquet(root / "Video-MME" / "videomme" / "test-00000-of-00001.parquet", [
        {"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity", "url": "x",
         "videoID": "fFjv93ACGo8", "question_id": "001-1", "task_type": "Counting Problem",
         "question": "How many people?", "options": ["A. 1.", "B. 2.", "C. 3.", "D. 4."], "answer": "C"}])
    _touch(root / "Video-MME" / "data" / "fFjv93ACGo8.mp4")
    (root / "Video-MME" / "subtitle").mkdir(parents=True, exist_ok=True)
    (root / "Video-MME" / "subtitle" / "fFjv93ACGo8.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nThree friends <i>meet</i>.\n", encoding="utf-8")
    return 1


def video_mmmu(root: Path) -> int:
    f = _img_features(id="str", question="str", options="strs", answer="str", link_selected="str", image="img",
                      question_type="str")
    for cfg, vid in (("Perception", "test_Art_Theory_1"), ("Comprehension", "test_Clinical_Medicine_2"),
                     ("Adaptation", "test_Computer_Science_3")):
        _parquet(root / "Video-MMMU" / cfg / "test-00000-of-00001.parquet", [
            {"id": vid, "question": "What is shown?", "options": ["a", "b", "c", "d"], "answer": "B", "link_selected": "x",
             "image": png() if cfg == "Adaptation" else None, "question_type": "multiple-choice"}], f)
    _touch(root / "Video-MMMU" / "Art" / "test_Art_Theory_1.mp4")
    _touch(root / "Video-MMMU" / "Medicine" / "test_Clinical_Medicine_2.mp4")
    _touch(root / "Video-MMMU" / "Engineering" / "test_Computer_Science_3.mp4")
    return 3


WRITERS = {
    "AI2D": ai2d, "BabyVision": babyvision, "CharXiv": charxiv, "DynaMath": dynamath, "EmbSpatial": embspatial,
    "InfoVQA": infovqa, "MathVerse": mathverse, "MathVision": mathvision, "MathVista": mathvista,
    "MMMU-Pro": mmmu_pro, "MM-Vet": mmvet, "OCRBench-v2-EN": ocrbench_v2, "OCRBench-v2-ZH": ocrbench_v2,
    "VisualPuzzles": visualpuzzles, "VLMs-are-Blind": vlms_blind, "WeMath": wemath, "AIME25": aime25,
    "AIME26": aime26, "C-Eval": ceval, "GPQA-Diamond": gpqa, "HLE": hle, "IMO-AnswerBench": imo_answerbench,
    "MMLU": mmlu, "MMLU-Pro": mmlu_pro, "MMLU-Redux": mmlu_redux, "MultiChallenge": multichallenge, "MMVU": mmvu,
    "MVBench": mvbench, "Video-MME": video_mme, "Video-MME-sub": video_mme, "Video-MMMU": video_mmmu,
}
assert set(WRITERS) == set(BY_NAME)


# ------------------------------------------------------------------------------------------ responses
def right_response(bench, item) -> str:
    """A reply the benchmark's own scorer counts as right (for official-judge benchmarks: the judge is asked)."""
    meta = item.meta
    if bench.scoring == "official_judge":
        return f"<think>hmm</think>Explanation: worked it out. Final answer: RIGHT {item.answer}"
    if bench.metric == "ocrbench_v2":
        if meta.get("type") == "VQA with position en":
            return '{"answer": "$5", "bbox": [10, 10, 50, 30]}'
        if meta.get("type", "").startswith("key information"):
            return '```json\n{"company": "ACME"}\n```'
        return str(item.answer)
    if bench.metric == "vlms_blind":
        task = meta["task"].lower()
        if task.startswith("counting grid"):
            r, c = str(item.answer).split(",")
            return f"<think>count</think>There are {{{r}}}{{{c}}}"
        return f"The answer is {{{item.answer}}}" if task != "touching circles" else str(item.answer)
    if bench.prompt == "mmmu_pro":
        return f"Let me think.\nAnswer: {item.answer}"
    return f"<think>work</think>So the answer is \\boxed{{{item.answer}}}."


def wrong_response(bench, item) -> str:
    if bench.scoring == "official_judge":
        return "Final answer: WRONG"
    if bench.metric == "vlms_blind":
        return "{99}" if "grid" not in item.meta["task"].lower() else "{9}{9}"
    if bench.metric == "ocrbench_v2":
        return "WRONG"
    if item.choices:
        right = LETTERS.index(str(item.answer))
        return f"\\boxed{{{LETTERS[(right + 1) % len(item.choices)]}}}"
    return "\\boxed{WRONG}"


def judge_reply(judge: str, prompt: str) -> str:
    """What a judge following protocol `judge` answers: right when the judged response says RIGHT, half credit
    (MM-Vet only) when it says HALF."""
    ok = "RIGHT" in prompt
    if judge == "charxiv":
        key = "score_T1" if "score_T1" in prompt else "score"
        return json.dumps({"extracted_answer": "x", key: int(ok)})
    if judge == "mmvet":
        return "0.5" if "HALF" in prompt else ("1.0" if ok else "0.0")
    if judge == "hle":
        return f"extracted_final_answer: x\nreasoning: compared.\ncorrect: {'yes' if ok else 'no'}\nconfidence: 90"
    if judge == "multichallenge":  # the criterion asks whether the dinner has animal products: passing is NO
        return f"The response {'is vegan' if ok else 'has cheese'}. Verdict: {'NO' if ok else 'YES'}"
    if judge == "mmvu":
        return '{"extracted_answer": "x", "correct": %s}' % ("True" if ok else "False")
    if judge == "babyvision":
        return "True" if ok else "False"
    return json.dumps({"correct": ok})
