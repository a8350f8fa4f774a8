"""Video benchmarks are evaluated, not skipped: frames sampled uniformly from a real (generated) mp4 with PyAV, given
to a vision-language model as images with their times; a frames folder works the same; an undecodable clip is a
one-line error. End to end: `zppo eval --suite Video-MME` on a tiny vision-language model directory."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from zppo_cli.app import app

runner = CliRunner()
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]


def make_video(path, frames_per_colour: int = 3, fps: int = 4, size: int = 32):
    """An mp4 (MPEG-4 part 2) of solid colour blocks: red, green, blue, yellow, `frames_per_colour` frames each."""
    import av
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for rgb in COLOURS:
            for _ in range(frames_per_colour):
                frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), rgb, dtype=np.uint8), format="rgb24")
                for packet in stream.encode(frame):
                    out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _dominant(img) -> tuple[int, int, int]:
    r, g, b = img.convert("RGB").getpixel((img.size[0] // 2, img.size[1] // 2))
    return tuple(255 if c > 128 else 0 for c in (r, g, b))


def test_frames_are_sampled_uniformly_with_their_times(tmp_path):
    from zppo_core.suites.media import MAX_PIXELS, MIN_PIXELS, sample_frames

    video = make_video(tmp_path / "clip.mp4")
    frames, times = sample_frames(video, 4)
    assert len(frames) == 4 and [_dominant(f) for f in frames] == COLOURS  # one frame from each colour block
    assert times == sorted(times) and times[0] < 0.75 and 2.25 <= times[-1] < 3.0  # 12 frames at 4 fps
    assert all(f.mode == "RGB" and MIN_PIXELS // 4 <= f.size[0] * f.size[1] <= MAX_PIXELS // 4 for f in frames)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(sample_frames(video, 8)[0]):
        f.save(folder / f"{i:05d}.png")
    picked, no_times = sample_frames(folder, 2)
    assert len(picked) == 2 and no_times is None and [_dominant(f) for f in picked] == [COLOURS[1], COLOURS[3]]  # frames 2, 6 of 8


def test_an_undecodable_clip_is_a_one_line_error(tmp_path):
    from zppo_core.suites.media import sample_frames
    from zppo_core.tasks.jsonl_data import DataError

    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    with pytest.raises(DataError, match=r"Video-MME/test/1: video .*x.mp4 cannot be decoded"):
        sample_frames(bad, 4, where="Video-MME/test/1")


def test_a_video_item_becomes_frames_then_the_question(tmp_path):
    from zppo_core.suites.data import EvalItem
    from zppo_core.suites.evaluate import request_for as _request

    video = make_video(tmp_path / "clip.mp4")
    item = EvalItem(id="1", prompt="What colour comes last?", answer="D", video=str(video),
                    meta={"config": None, "split": "test"})
    messages, images = _request(item, 4)
    content = messages[0]["content"]
    assert [c["type"] for c in content] == ["text", "image", "image", "image", "image", "text"]
    assert content[0]["text"].startswith("The video, as 4 frames sampled uniformly (0.") and "s, " in content[0]["text"]
    assert content[-1]["text"] == item.prompt and [_dominant(im) for im in images] == COLOURS


def test_eval_video_benchmark_on_a_vision_language_model(tmp_path, monkeypatch):
    from datasets import Dataset

    from tests.unit.test_vlm_engine import build_tiny_vlm

    monkeypatch.chdir(tmp_path)
    model = build_tiny_vlm(tmp_path / "vlm")
    folder = tmp_path / "data" / "Video-MME"
    (folder / "videomme").mkdir(parents=True)
    Dataset.from_list([{"video_id": "001", "duration": "short", "domain": "Knowledge", "sub_category": "Humanity",
                        "url": "x", "videoID": "clip1", "question_id": "001-1", "task_type": "Counting Problem",
                        "question": "Which colour is last?", "options": ["A. red", "B. green", "C. blue", "D. yellow"],
                        "answer": "D"}]).to_parquet(str(folder / "videomme" / "test-00000-of-00001.parquet"))
    make_video(folder / "videos" / "clip1.mp4")
    r = runner.invoke(app, ["eval", "--suite", "Video-MME", "--model", str(model), "--data-dir", str(tmp_path / "data"),
                            "--judge", "none", "--out", str(tmp_path / "out"), "--set", "eval.samples=1",
                            "--set", "eval.max_new_tokens=6", "--set", "eval.video_frames=4",
                            "--set", "tracking.enabled=false"], terminal_width=250)
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["skipped"] == {}
    assert [(b["benchmark"], b["family"], b["n"]) for b in res["benchmarks"]] == [("Video-MME", "Video", 1)]
    assert "4 sampled frames" in res["benchmarks"][0]["not_comparable"] and not res["benchmarks"][0]["comparable"]
    [sample] = [json.loads(x) for x in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert sample["benchmark"] == "Video-MME" and sample["id"] == "001-1" and isinstance(sample["response"], str)
