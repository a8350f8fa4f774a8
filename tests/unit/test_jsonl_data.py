"""Training questions from a local JSONL file (GPU scales): parsing, one-line errors, a resumable stream."""

from __future__ import annotations

import json

import pytest

from zppo_core.tasks.jsonl_data import DataError, JsonlStream, read_jsonl_questions


def _write(path, lines):
    path.write_text("".join(lines))
    return path


def test_reads_accepted_field_names_ids_and_meta(tmp_path):
    f = _write(tmp_path / "train.jsonl", [json.dumps({"question": "1+1?", "answer": 2, "id": "a", "src": "x"}) + "\n",
                                          "\n",
                                          json.dumps({"problem": "2+2?", "solution": "4"}) + "\n"])
    qs = read_jsonl_questions(f)
    assert [(q.id, q.prompt, q.answer) for q in qs] == [("a", "1+1?", "2"), ("train-3", "2+2?", "4")]
    assert qs[0].meta["src"] == "x" and qs[0].family == "train"


@pytest.mark.parametrize("lines, needle", [
    (['{"question": "q", "answer": 1}\n', '{"question": oops}\n'], ":2: invalid JSON"),
    (['[1, 2]\n'], ":1: each line must be a JSON object"),
    (['{"question": "q"}\n'], ":1: needs a question field"),
    (["\n"], "no questions; the file is empty"),
    (['{"question": "q", "answer": 1, "answer_type": "ocr"}\n'], ":1: answer_type='ocr'; use one of math, free_form"),
])
def test_bad_files_name_the_file_and_line(tmp_path, lines, needle):
    f = _write(tmp_path / "d.jsonl", lines)
    with pytest.raises(DataError, match=needle) as err:
        read_jsonl_questions(f)
    assert str(f) in str(err.value)


def test_missing_file_says_how_to_point_at_one(tmp_path):
    with pytest.raises(DataError, match="--set data.path="):
        read_jsonl_questions(tmp_path / "nope.jsonl")


def test_stream_is_seeded_reshuffles_per_epoch_and_resumes(tmp_path):
    f = _write(tmp_path / "d.jsonl", [json.dumps({"question": f"q{i}", "answer": i}) + "\n" for i in range(5)])
    a, b = JsonlStream(f, seed=3), JsonlStream(f, seed=3)
    first = [q.id for q in a.next(5)]
    assert sorted(first) == sorted(q.id for q in read_jsonl_questions(f))  # one pass covers every question once
    assert first == [q.id for q in b.next(5)]
    state = a.state_dict()
    nxt = [q.id for q in a.next(7)]  # crosses into epoch 2
    c = JsonlStream(f, seed=3)
    c.load_state_dict(state)
    assert [q.id for q in c.next(7)] == nxt
    assert first != [q.id for q in JsonlStream(f, seed=4).next(5)]  # the seed matters


def test_answer_type_is_kept_for_the_reward(tmp_path):
    f = _write(tmp_path / "d.jsonl", [json.dumps({"question": "Read it.", "answer": "STOP", "answer_type": "free_form"})
                                      + "\n", json.dumps({"question": "1+1?", "answer": 2}) + "\n"])
    qs = read_jsonl_questions(f)
    assert qs[0].meta["answer_type"] == "free_form" and "answer_type" not in qs[1].meta


# ------------------------------------------------------------------------------------------------ images


def _png(path, size=(20, 10), colour="red"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def test_image_fields_resolve_relative_to_the_file_then_image_dir(tmp_path):
    from zppo_core.tasks.images import load_image, to_data_uri

    data = tmp_path / "data"
    _png(data / "img" / "a.png")
    _png(tmp_path / "shared" / "datasets" / "b.png", colour="blue")
    uri = to_data_uri(__import__("PIL.Image", fromlist=["Image"]).new("RGB", (8, 8), "green"))
    f = _write(data / "train.jsonl", [
        json.dumps({"question": "What colour?", "answer": "red", "image": "img/a.png"}) + "\n",
        json.dumps({"question": "Both?", "answer": "2", "image": "img/a.png", "images": ["datasets/b.png", uri]})
        + "\n",
        json.dumps({"question": "No image", "answer": "1"}) + "\n",
    ])
    qs = read_jsonl_questions(f, image_dir=tmp_path / "shared")
    assert qs[0].images == (str((data / "img" / "a.png").resolve()),)
    assert qs[1].images == (str((data / "img" / "a.png").resolve()),
                            str((tmp_path / "shared" / "datasets" / "b.png").resolve()), uri)
    assert qs[2].images == () and "image" not in qs[0].meta and "images" not in qs[1].meta
    # decoded into the pixel bounds, aspect ratio kept
    img = load_image(qs[1].images[1], min_pixels=800, max_pixels=1000)
    assert img.mode == "RGB" and 800 <= img.size[0] * img.size[1] <= 1000 and img.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("row, needle", [
    ({"question": "q", "answer": 1, "image": "nope.png"}, r":2: image 'nope.png' \(field 'image'\) not found"),
    ({"question": "q", "answer": 1, "images": ["ok.png", "broken.png"]}, r":2: field 'images': .*broken.png is not a "
                                                                          r"readable image"),
    ({"question": "q", "answer": 1, "image": 7}, r":2: field 'image' must be an image path \(a string\) or a list of "
                                                 r"paths, not int"),
    ({"question": "q", "answer": 1, "images": ["ok.png", {"path": "ok.png"}]}, r":2: field 'images' must be an image "
                                                                              r"path .* not dict"),
    ({"question": "q", "answer": 1, "image": "data:image/png;base64,!!!"}, r":2: field 'image': .*not a valid base64"),
])
def test_bad_images_name_the_file_line_and_field(tmp_path, row, needle):
    _png(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    f = _write(tmp_path / "d.jsonl", [json.dumps({"question": "fine", "answer": 1, "image": "ok.png"}) + "\n",
                                      json.dumps(row) + "\n"])
    with pytest.raises(DataError, match=needle) as err:
        read_jsonl_questions(f)
    assert str(err.value).startswith(f"{f}:2: ")
