"""Local benchmark data: fixture files written here in the public schemas (MMLU via save_to_disk and parquet,
AIME jsonl per config, MathVista with a generated PNG in a datasets Image feature, GPQA shuffling, C-Eval
columns, InfoVQA exact answers, OCRBench EN/ZH filtering, Video-MME videos and subtitles), missing data,
malformed data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from zppo_core.suites.benchmarks import BY_NAME
from zppo_core.suites.data import (
    ENV_VAR,
    MAX_PIXELS,
    MIN_PIXELS,
    DataError,
    data_path,
    default_data_dir,
    fit_pixels,
    load_items,
    missing_message,
)
from zppo_core.suites.scoring import score

MMLU_ROWS = [
    {"question": "2 + 2 = ?", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "22"], "answer": 1},
    {"question": "Capital of France?", "subject": "geography", "choices": ["Rome", "Oslo", "Paris", "Bern"], "answer": 2},
    {"question": "H2O is?", "subject": "chemistry", "choices": ["water", "salt", "iron", "gold"], "answer": 0},
]


def _png(path: Path, size=(40, 20), color="red") -> Path:
    from PIL import Image

    Image.new("RGB", size, color).save(path)
    return path


def _jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _letter(i: int) -> str:
    return "ABCD"[i]


# ------------------------------------------------------------------------------------------ MMLU (choice)
def _check_mmlu(items):
    assert [it.answer for it in items] == [_letter(r["answer"]) for r in MMLU_ROWS]
    for it, row in zip(items, MMLU_ROWS):
        assert it.choices == row["choices"]
        assert row["question"] in it.prompt and "\\boxed{" in it.prompt
        for i, c in enumerate(row["choices"]):
            assert f"{_letter(i)}. {c}" in it.prompt
        assert it.meta["subject"] == row["subject"] and it.images == [] and it.video is None
    # the loaded gold works with the scorer: a boxed right letter is correct, a wrong one is not
    mmlu = BY_NAME["MMLU"]
    assert all(score(mmlu, it, f"\\boxed{{{it.answer}}}").correct for it in items)
    assert not any(score(mmlu, it, "\\boxed{D}").correct for it in items if it.answer != "D")


def test_mmlu_from_save_to_disk(tmp_path):
    from datasets import Dataset

    Dataset.from_list(MMLU_ROWS).save_to_disk(str(tmp_path / "MMLU"))
    mmlu = BY_NAME["MMLU"]
    assert data_path(mmlu, tmp_path) == tmp_path / "MMLU"
    items = load_items(mmlu, tmp_path)
    _check_mmlu(items)
    assert len({it.id for it in items}) == 3
    assert [it.id for it in load_items(mmlu, tmp_path, limit=2)] == [it.id for it in items[:2]]
    assert os.environ["HF_DATASETS_OFFLINE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"


def test_mmlu_from_parquet_in_a_config_folder_and_datasetdict_split(tmp_path):
    from datasets import Dataset, DatasetDict

    mmlu = BY_NAME["MMLU"]
    d = tmp_path / "a" / "MMLU" / "all"
    d.mkdir(parents=True)
    Dataset.from_list(MMLU_ROWS).to_parquet(str(d / "test-00000-of-00001.parquet"))
    Dataset.from_list(MMLU_ROWS[:1]).to_parquet(str(d / "dev-00000-of-00001.parquet"))  # another split: ignored
    _check_mmlu(load_items(mmlu, tmp_path / "a"))
    # a DatasetDict holding several splits: the benchmark's split is picked
    DatasetDict({"test": Dataset.from_list(MMLU_ROWS), "validation": Dataset.from_list(MMLU_ROWS[:1])}).save_to_disk(
        str(tmp_path / "b" / "MMLU"))
    _check_mmlu(load_items(mmlu, tmp_path / "b"))


# ------------------------------------------------------------------------------------------ AIME (rule, jsonl, configs)
def test_aime_jsonl_per_config_and_a_missing_config(tmp_path):
    aime = BY_NAME["AIME25"]
    _jsonl(tmp_path / "AIME25" / "AIME2025-I" / "test.jsonl",
           [{"question": "Find 6*7.", "answer": "42"}, {"question": "Find 1/2 as a decimal.", "answer": "0.5"}])
    assert data_path(aime, tmp_path) is None  # AIME2025-II is missing
    msg = missing_message(aime, tmp_path)
    assert "AIME2025-II" in msg and "AIME2025-I," not in msg and str(tmp_path / "AIME25") in msg
    with pytest.raises(DataError, match="AIME2025-II"):
        load_items(aime, tmp_path)
    _jsonl(tmp_path / "AIME25" / "AIME2025-II" / "test.jsonl", [{"question": "Find 2+2.", "answer": "4"}])
    items = load_items(aime, tmp_path)
    assert [it.answer for it in items] == ["42", "0.5", "4"]
    assert [it.meta["config"] for it in items] == ["AIME2025-I", "AIME2025-I", "AIME2025-II"]
    assert len({it.key for it in items}) == 3 and items[0].choices is None  # row ids repeat across configs
    assert "Find 6*7." in items[0].prompt and "\\boxed{}" in items[0].prompt
    assert score(aime, items[1], "so \\boxed{\\frac{1}{2}}").correct is True
    assert score(aime, items[0], "\\boxed{41}").correct is False


def test_jsonl_errors_name_the_file_line_and_fix(tmp_path):
    aime26 = BY_NAME["AIME26"]
    f = tmp_path / "AIME26" / "train.jsonl"
    f.parent.mkdir(parents=True)
    f.write_text('{"problem_idx": 1, "problem": "p", "answer": 3}\n{"problem": oops}\n')
    with pytest.raises(DataError, match=rf"{f}:2: invalid JSON"):
        load_items(aime26, tmp_path)
    _jsonl(f, [{"problem_idx": 1, "problem": "p", "answer": 3}, {"problem_idx": 2, "problem": "q"}])
    with pytest.raises(DataError, match=rf"{f}:2: no answer field 'answer'"):
        load_items(aime26, tmp_path)
    _jsonl(f, [{"problem_idx": 7, "problem": "p", "answer": 3}])
    (it,) = load_items(aime26, tmp_path)
    assert (it.id, it.answer) == ("7", "3")


# ------------------------------------------------------------------------------------------ MathVista (image)
def test_mathvista_image_feature_choices_and_pixel_bounds(tmp_path):
    from datasets import Dataset, Features, Image, Sequence, Value
    from PIL import Image as PILImage

    small = _png(tmp_path / "small.png", (40, 20))
    big = PILImage.new("RGB", (3000, 1000), "blue")
    rows = [
        {"pid": "1", "question": "Which color?", "image": "images/1.png", "decoded_image": PILImage.open(small),
         "choices": ["blue", "red"], "answer": "red", "question_type": "multi_choice", "unit": None},
        {"pid": "2", "question": "How wide?", "image": "images/2.png", "decoded_image": big,
         "choices": None, "answer": "3000", "question_type": "free_form", "unit": "px"},
    ]
    features = Features({"pid": Value("string"), "question": Value("string"), "image": Value("string"),
                         "decoded_image": Image(), "choices": Sequence(Value("string")), "answer": Value("string"),
                         "question_type": Value("string"), "unit": Value("string")})
    Dataset.from_list(rows, features=features).save_to_disk(str(tmp_path / "data" / "MathVista"))
    mv = BY_NAME["MathVista"]
    a, b = load_items(mv, tmp_path / "data")
    assert (a.id, a.choices, a.answer) == ("1", ["blue", "red"], "B")  # gold text -> letter
    assert (b.choices, b.answer) == (None, "3000")
    (ia,), (ib,) = a.images, b.images
    assert ia.mode == "RGB" and MIN_PIXELS <= ia.size[0] * ia.size[1] <= MAX_PIXELS
    assert ia.size[0] / ia.size[1] == pytest.approx(2.0, rel=0.01)
    assert ia.getpixel((0, 0)) == (255, 0, 0)
    assert MIN_PIXELS <= ib.size[0] * ib.size[1] <= MAX_PIXELS and ib.size[0] / ib.size[1] == pytest.approx(3, rel=0.01)
    assert score(mv, a, "It is red, \\boxed{B}").correct and score(mv, b, "\\boxed{3000}").correct
    assert score(mv, b, "\\boxed{3001}").correct is False


@pytest.mark.parametrize("size", [(1, 1), (10, 700), (512, 512), (4000, 3000), (5000, 7)])
def test_fit_pixels_keeps_aspect_and_bounds(size):
    from PIL import Image

    w, h = size
    out = fit_pixels(Image.new("L", size))
    W, H = out.size
    assert out.mode == "RGB"
    assert MIN_PIXELS <= W * H <= MAX_PIXELS * 1.01
    if MIN_PIXELS <= w * h <= MAX_PIXELS:
        assert (W, H) == (w, h)
    elif min(w, h) > 10:
        assert W / H == pytest.approx(w / h, rel=0.02)


def test_image_from_a_path_relative_to_the_benchmark_folder_and_missing_image(tmp_path):
    info = BY_NAME["InfoVQA"]
    folder = tmp_path / "InfoVQA"
    (folder / "imgs").mkdir(parents=True)
    _png(folder / "imgs" / "a.png", (600, 600))
    rows = [{"questionId": 10, "question": "Title?", "answers": ["Annual Report", "annual report 2020"],
             "image": "imgs/a.png"}]
    _jsonl(folder / "validation.jsonl", rows)
    (it,) = load_items(info, tmp_path)
    assert it.answer == "Annual Report" and it.meta["answers"] == rows[0]["answers"] and it.images[0].size == (600, 600)
    assert score(info, it, "The title reads\n\\boxed{Annual Report 2020}").correct is True  # ANLS 1
    assert score(info, it, "\\boxed{Report}").score == 0.0  # NL 7/13 >= 0.5
    _jsonl(folder / "validation.jsonl", [dict(rows[0], image="imgs/nope.png")])
    with pytest.raises(DataError, match=r"validation\.jsonl:1: image 'image' = 'imgs/nope.png'"):
        load_items(info, tmp_path)


# ------------------------------------------------------------------------------------------ GPQA (shuffled options)
def _gpqa_rows(n):
    return [{"Record ID": f"rec{i}", "Question": f"Question {i}?", "Correct Answer": f"right {i}",
             "Incorrect Answer 1": f"wrong {i}a", "Incorrect Answer 2": f"wrong {i}b",
             "Incorrect Answer 3": f"wrong {i}c"} for i in range(n)]


def test_gpqa_shuffle_is_deterministic_and_tracks_the_correct_answer(tmp_path):
    gpqa = BY_NAME["GPQA-Diamond"]
    rows = _gpqa_rows(24)
    _jsonl(tmp_path / "GPQA-Diamond" / "gpqa_diamond" / "train.jsonl", rows)
    first = load_items(gpqa, tmp_path)
    again = load_items(gpqa, tmp_path)
    assert [(it.choices, it.answer) for it in first] == [(it.choices, it.answer) for it in again]
    for it, row in zip(first, rows):
        assert sorted(it.choices) == sorted(row[k] for k in gpqa.choice_columns)
        assert it.choices["ABCD".index(it.answer)] == row["Correct Answer"]
    assert len({it.answer for it in first}) > 1  # the correct answer is not always in the same place
    # the order depends on the record id only, not on the file's row order
    _jsonl(tmp_path / "GPQA-Diamond" / "gpqa_diamond" / "train.jsonl", rows[::-1])
    reordered = {it.id: it.choices for it in load_items(gpqa, tmp_path)}
    assert all(reordered[it.id] == it.choices for it in first)


# ------------------------------------------------------------------------------------------ C-Eval (columns, flat)
def test_ceval_columns_flat_layout_and_bad_gold(tmp_path):
    ceval = BY_NAME["C-Eval"]
    row = {"id": 0, "question": "1+1=?", "A": "1", "B": "2", "C": "3", "D": "4", "answer": "B", "explanation": ""}
    _jsonl(tmp_path / "C-Eval" / "val.jsonl", [row])
    assert data_path(ceval, tmp_path) == tmp_path / "C-Eval"  # all configs together, no sub-folders
    (it,) = load_items(ceval, tmp_path)
    assert (it.choices, it.answer) == (["1", "2", "3", "4"], "B")
    _jsonl(tmp_path / "C-Eval" / "val.jsonl", [dict(row, answer="E")])
    with pytest.raises(DataError, match=r"val\.jsonl:1: gold answer 'E' is not one of the 4 options"):
        load_items(ceval, tmp_path)


# ------------------------------------------------------------------------------------------ shared folders
def test_ocrbench_en_and_zh_split_one_folder_by_task_type(tmp_path):
    folder = tmp_path / "OCRBench-v2"
    folder.mkdir()
    _png(folder / "x.png")
    rows = [{"id": i, "question": f"q{i}", "answers": [f"a{i}"], "image": "x.png", "type": t}
            for i, t in enumerate(["text recognition en", "text recognition cn", "VQA with position en",
                                   "key information extraction cn", "cognition VQA cn"])]
    _jsonl(folder / "test.jsonl", rows)
    en = load_items(BY_NAME["OCRBench-v2-EN"], tmp_path)
    zh = load_items(BY_NAME["OCRBench-v2-ZH"], tmp_path)
    assert [it.id for it in en] == ["0", "2"] and [it.id for it in zh] == ["1", "3", "4"]
    _jsonl(folder / "test.jsonl", [{k: v for k, v in rows[0].items() if k != "type"}])
    with pytest.raises(DataError, match="no field 'type'"):
        load_items(BY_NAME["OCRBench-v2-ZH"], tmp_path)


def test_video_mme_videos_and_subtitles(tmp_path):
    folder = tmp_path / "Video-MME"
    row = {"video_id": "001", "videoID": "abc", "question_id": "001-1", "question": "What happens?",
           "options": ["A. a dog runs", "B. a cat sleeps", "C. rain", "D. snow"], "answer": "B", "duration": "short"}
    _jsonl(folder / "test.jsonl", [row])
    vm, vms = BY_NAME["Video-MME"], BY_NAME["Video-MME-sub"]
    with pytest.raises(DataError, match="video 'abc' not found"):
        load_items(vm, tmp_path)
    (folder / "videos").mkdir()
    (folder / "videos" / "abc.mp4").write_bytes(b"\x00")
    (folder / "subtitle").mkdir()
    (folder / "subtitle" / "abc.srt").write_text("1\n00:00:01,000 --> 00:00:02,000\nThe cat is <i>asleep</i>.\n")
    (plain,), (subbed,) = load_items(vm, tmp_path), load_items(vms, tmp_path)
    assert plain.video == str(folder / "videos" / "abc.mp4") == subbed.video
    assert plain.choices == ["a dog runs", "a cat sleeps", "rain", "snow"] and plain.answer == "B"
    assert "The cat is asleep." in subbed.prompt and "asleep" not in plain.prompt and "-->" not in subbed.prompt


def _charxiv_row(i: int) -> dict:
    """A CharXiv row in the hub schema: descriptive_qN are template ids, the location in subplot_row/col."""
    return {"figure_path": "fig.png", "image": "fig.png", "subplot_loc": None, "subplot_row": 0, "subplot_col": 0,
            "reasoning_q": f"r{i}?", "reasoning_a": "x", "reasoning_q_source": 2,
            "descriptive_q1": 1, "descriptive_a1": "Sales", "descriptive_q2": 19, "descriptive_a2": "1",
            "descriptive_q3": None, "descriptive_a3": None, "descriptive_q4": None, "descriptive_a4": None}


def test_charxiv_rows_expand_to_their_questions(tmp_path):
    folder = tmp_path / "CharXiv"
    folder.mkdir()
    _png(folder / "fig.png")
    _jsonl(folder / "validation.jsonl", [_charxiv_row(0)])
    items = load_items(BY_NAME["CharXiv"], tmp_path)
    assert [(it.meta["kind"], it.answer) for it in items] == [("reasoning", "x"), ("descriptive1", "Sales"),
                                                              ("descriptive2", "1")]
    assert items[1].prompt.startswith("For the current plot, what is its title?")
    assert items[2].prompt.startswith("What is the number of subplots?")
    assert all(len(it.images) == 1 for it in items) and len({it.id for it in items}) == 3
    _jsonl(folder / "validation.jsonl", [dict(_charxiv_row(0), descriptive_q1=42)])
    with pytest.raises(DataError, match=r"validation\.jsonl:1: descriptive_q1 = 42: descriptive template id 42"):
        load_items(BY_NAME["CharXiv"], tmp_path)


# ------------------------------------------------------------------------------------------ missing data
@pytest.mark.parametrize("name", ["AIME25", "MMLU", "InfoVQA", "MMMU-Pro", "DynaMath", "C-Eval", "Video-MME-sub"])
def test_missing_data_names_the_directory_and_the_dataset(tmp_path, name):
    bench = BY_NAME[name]
    assert data_path(bench, tmp_path) is None
    msg = missing_message(bench, tmp_path)
    assert msg.startswith(f"{name}: no data in {tmp_path / bench.folder}")
    assert f"'{bench.dataset_id}'" in msg and "save_to_disk" in msg and "\n" not in msg
    if bench.config:
        assert f"'{bench.config}'" in msg
    if not bench.extra_splits:
        assert f"split='{bench.split}'" in msg
    if bench.video_field:
        assert f"video files into {tmp_path / bench.folder}/" in msg
    with pytest.raises(DataError) as err:
        load_items(bench, tmp_path)
    assert str(err.value) == msg
    (tmp_path / bench.folder).mkdir()  # an empty folder is still missing data
    assert data_path(bench, tmp_path) is None


def test_missing_message_command_is_valid_python(tmp_path):
    import ast
    import re

    for bench in BY_NAME.values():
        code = re.search(r'python -c "(.*)" and copy', missing_message(bench, tmp_path)).group(1)
        ast.parse(code)


def test_default_data_dir_follows_the_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "d"))
    assert default_data_dir() == tmp_path / "d"
    _jsonl(tmp_path / "d" / "IMO-AnswerBench" / "train.jsonl",
           [{"Problem ID": "imo-1", "Problem": "p", "Short Answer": "$n=2$", "Category": "Algebra"}])
    (it,) = load_items(BY_NAME["IMO-AnswerBench"])
    assert (it.id, it.answer, it.meta["Category"]) == ("imo-1", "$n=2$", "Algebra")
    monkeypatch.delenv(ENV_VAR)
    assert default_data_dir() == Path("~/.cache/zppo/data").expanduser()


def test_iter_items_streams_and_limit_counts_expanded_items(tmp_path):
    folder = tmp_path / "CharXiv"
    folder.mkdir()
    _png(folder / "fig.png")
    _jsonl(folder / "validation.jsonl", [_charxiv_row(i) for i in range(3)])
    from zppo_core.suites.data import iter_items

    stream = iter_items(BY_NAME["CharXiv"], tmp_path)
    assert next(stream).meta["question"] == "r0?"
    assert len(load_items(BY_NAME["CharXiv"], tmp_path)) == 9
    got = [it.id for it in load_items(BY_NAME["CharXiv"], tmp_path, limit=4)]
    assert got == ["0-reasoning", "0-descriptive1", "0-descriptive2", "1-reasoning"]
    assert load_items(BY_NAME["CharXiv"], tmp_path, limit=0) == []


def test_damaged_parquet_and_saved_dataset_are_data_errors(tmp_path):
    mmlu = BY_NAME["MMLU"]
    (tmp_path / "a" / "MMLU").mkdir(parents=True)
    (tmp_path / "a" / "MMLU" / "test-00000-of-00001.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable parquet file"):
        load_items(mmlu, tmp_path / "a")
    (tmp_path / "b" / "MMLU").mkdir(parents=True)
    (tmp_path / "b" / "MMLU" / "state.json").write_text("{broken")
    with pytest.raises(DataError, match="cannot load the saved dataset"):
        load_items(mmlu, tmp_path / "b")


def test_other_option_layouts_and_multi_turn_rows(tmp_path):
    # MMMU-Pro: options as a string holding a Python list; the vision config has no question text
    pro = tmp_path / "MMMU-Pro"
    for cfg in BY_NAME["MMMU-Pro"].configs:
        (pro / cfg).mkdir(parents=True)
        _png(pro / cfg / "p.png")
        row = {"id": f"{cfg}-1", "options": "['1 cm', \"2 cm\", '3 cm']", "answer": "C", "image": "p.png"}
        if cfg != "vision":
            row.update(question="How long is it? <image 1>", image_1="p.png", image=None)
        _jsonl(pro / cfg / "test.jsonl", [row])
    items = load_items(BY_NAME["MMMU-Pro"], tmp_path)
    assert [it.choices for it in items] == [["1 cm", "2 cm", "3 cm"]] * 3 and {it.answer for it in items} == {"C"}
    assert all(len(it.images) == 1 for it in items)
    assert items[-1].prompt.startswith("Write out the multiple-choice question in the image")
    assert "How long" in items[0].prompt and "C. 3 cm" in items[0].prompt
    # WeMath: options inline in one string
    _jsonl(tmp_path / "WeMath" / "testmini.jsonl",
           [{"ID": "w1", "question": "Angle?", "option": "A. 30°; B. 45°; C. 60°", "answer": "B", "image_path": None}])
    (w,) = load_items(BY_NAME["WeMath"], tmp_path)
    assert (w.choices, w.answer) == (["30°", "45°", "60°"], "B")
    # MMVU: options as a letter -> text mapping (unused letters empty); open-ended rows have none
    mmvu = tmp_path / "MMVU"
    (mmvu / "videos").mkdir(parents=True)
    (mmvu / "videos" / "v1.mp4").write_bytes(b"\x00")
    _jsonl(mmvu / "validation.jsonl", [
        {"id": "m1", "question": "Which?", "choices": {"A": "x", "B": "y", "C": "", "D": None}, "answer": "B",
         "video": "v1.mp4", "question_type": "multiple-choice"},
        {"id": "m2", "question": "Name it.", "choices": {"A": "", "B": ""}, "answer": "osmosis", "video": "v1",
         "question_type": "open-ended"}])
    m1, m2 = load_items(BY_NAME["MMVU"], tmp_path)
    assert (m1.choices, m1.answer, m2.choices, m2.answer) == (["x", "y"], "B", None, "osmosis")
    assert m1.video == m2.video == str(mmvu / "videos" / "v1.mp4")
    # MultiChallenge: the conversation becomes chat messages; the judge sees the target question and criterion
    conv = [{"role": "user", "content": "I am vegan."}, {"role": "assistant", "content": "Noted."},
            {"role": "user", "content": "Suggest a dinner."}]
    _jsonl(tmp_path / "MultiChallenge" / "train.jsonl", [
        {"QUESTION_ID": "mc1", "AXIS": "INSTRUCTION_RETENTION", "CONVERSATION": conv,
         "TARGET_QUESTION": "Is the dinner vegan?", "PASS_CRITERIA": "YES"}])
    (mc,) = load_items(BY_NAME["MultiChallenge"], tmp_path)
    assert mc.meta["messages"] == conv and mc.prompt.endswith("Suggest a dinner.") and "boxed" not in mc.prompt
    assert "Is the dinner vegan?" in mc.meta["judge_answer"] and "YES" in mc.meta["judge_answer"]
    from zppo_core.suites.scoring import judge_prompt

    assert "Is the dinner vegan?" in judge_prompt(mc, "Tofu curry.", BY_NAME["MultiChallenge"])
