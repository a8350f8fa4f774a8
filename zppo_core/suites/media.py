"""Images, videos and subtitles of benchmark rows, from local files only.

Videos reach a model as frames (`sample_frames`): `frames` frames sampled uniformly over the clip (decoded with
PyAV through `transformers.video_utils.load_video`, or read from a folder of frame images), each fitted into the
image pixel bounds divided by the frame count (so a clip costs about one large image's tokens), with their times.
The Qwen-VL processors' own video path needs torchvision, which a CPU environment cannot have beside CPU torch, so
frames go to the model as images; the prompt names their times (as the Qwen3-VL video placeholders do).

Images are decoded from a datasets Image feature, ``{"bytes", "path"}`` dicts, raw bytes, data URIs, base64
strings or paths (relative to the benchmark folder), converted to RGB and resized, keeping the aspect ratio,
into the paper's pixel bounds 256×32×32 .. 1280×32×32 (`zppo_core.tasks.images.fit_pixels`, shared with training).

Videos are located where each benchmark's own tooling puts them (``Benchmark.video_layout``):

* ``flat``: ``<folder>/{.,videos,data,video}/<value>[.mp4]`` (Video-MME: ``videos/<videoID>.mp4``);
* ``url`` (MMVU): the row holds the hub URL ``…/resolve/main/videos/Art/0.mp4``; the local file is the URL's path
  below the folder, ``videos/Art/0.mp4`` (yale-nlp/MMVU ``data/validation.json``);
* ``mvbench``: ``<folder>/{video/,videos/,}<task folder>/<video>``, the task folder from MVBench's ``DATA_LIST``
  (lmms-eval ``tasks/mvbench/utils.py``; VLMEvalKit ``dataset/mvbench.py`` names a few differently and is
  accepted too). A task whose clips are frame folders (episodic_reasoning) resolves to the directory;
* ``videommmu``: ``<folder>/{videos/,}<discipline>/<id>.mp4``, the discipline (Art, Science, Humanities,
  Engineering, Medicine, Business) from the subject inside the id (lmms-eval ``tasks/videommmu/utils.py``).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from zppo_core.tasks.images import MAX_PIXELS, MIN_PIXELS, fit_pixels
from zppo_core.tasks.jsonl_data import DataError

__all__ = ["MAX_PIXELS", "MIN_PIXELS", "MVBENCH_FOLDERS", "decode_images", "find_video", "fit_pixels", "sample_frames",
           "srt_text", "videommmu_discipline"]

_VIDEO_DIRS = (".", "videos", "data", "video")

# MVBench task -> folder of its clips (lmms-eval DATA_LIST first, then VLMEvalKit's names for the same clips)
MVBENCH_FOLDERS: dict[str, tuple[str, ...]] = {
    "object_interaction": ("star/Charades_segment", "star/Charades_v1_480"),
    "action_sequence": ("star/Charades_segment", "star/Charades_v1_480"),
    "action_prediction": ("star/Charades_segment", "star/Charades_v1_480"),
    "action_localization": ("sta/sta_video_segment", "sta/sta_video"),
    "moving_count": ("clevrer/video_validation",),
    "fine_grained_pose": ("nturgbd_convert", "nturgbd"),
    "character_order": ("perception/videos",),
    "object_shuffle": ("perception/videos",),
    "egocentric_navigation": ("vlnqa",),
    "moving_direction": ("clevrer/video_validation",),
    "episodic_reasoning": ("tvqa/video_fps3_hq_segment", "tvqa/frames_fps3_hq"),
    "fine_grained_action": ("Moments_in_Time_Raw/videos",),
    "scene_transition": ("scene_qa/video",),
    "state_change": ("perception/videos",),
    "moving_attribute": ("clevrer/video_validation",),
    "action_antonym": ("ssv2_video_mp4", "ssv2_video"),
    "unexpected_action": ("FunQA_test/test",),
    "counterfactual_inference": ("clevrer/video_validation",),
    "object_existence": ("clevrer/video_validation",),
    "action_count": ("perception/videos",),
}

# Video-MMMU subject -> discipline folder (lmms-eval tasks/videommmu/utils.py get_cache_dir)
_VIDEOMMMU_DISCIPLINES = {
    "Art": ("Art", "Art_Theory", "Design", "Music"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Humanities": ("History", "Literature", "Sociology", "Psychology"),
    "Engineering": ("Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                    "Energy_and_Power", "Materials", "Mechanical_Engineering"),
    "Medicine": ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine", "Pharmacy",
                 "Public_Health"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
}
_SUBJECT_TO_DISCIPLINE = {s: d for d, subjects in _VIDEOMMMU_DISCIPLINES.items() for s in subjects}


# ------------------------------------------------------------------------------------------ images
def _open_image(data: bytes):
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def decode_images(value, base: Path, where: str, fld: str) -> list:
    """The image(s) a field holds (one or a list), fitted into the pixel bounds; [] for an empty field."""
    from PIL import Image

    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, (list, tuple)):
        return [img for v in value for img in decode_images(v, base, where, fld)]
    try:
        if isinstance(value, Image.Image):
            return [fit_pixels(value)]
        if isinstance(value, dict):
            if value.get("bytes"):
                return [fit_pixels(_open_image(value["bytes"]))]
            return decode_images(value.get("path"), base, where, fld)
        if isinstance(value, (bytes, bytearray)):
            return [fit_pixels(_open_image(bytes(value)))]
        if isinstance(value, str):
            s = value.strip()
            if s.startswith("data:"):
                return [fit_pixels(_open_image(base64.b64decode(s.split(",", 1)[1])))]
            p = Path(s).expanduser()
            for cand in (p, base / s, base / "images" / s):
                if cand.is_file():
                    img = Image.open(cand)
                    img.load()
                    return [fit_pixels(img)]
            if len(s) > 200 and re.fullmatch(r"[A-Za-z0-9+/=\s]+", s):
                return [fit_pixels(_open_image(base64.b64decode(s)))]
            raise DataError(f"{where}: image {fld!r} = {s[:80]!r} is no file under {base}; copy the images there")
    except DataError:
        raise
    except (OSError, ValueError, binascii.Error) as err:
        raise DataError(f"{where}: field {fld!r} is not a decodable image ({err}); re-save the data") from None
    raise DataError(f"{where}: field {fld!r} holds a {type(value).__name__}, not an image")


# ------------------------------------------------------------------------------------------ videos
def videommmu_discipline(video_id: str) -> str | None:
    """Video-MMMU's discipline folder for an id ``<split>_<Subject>_<n>`` (subject between the first and last
    underscore), or None for an unknown subject."""
    return _SUBJECT_TO_DISCIPLINE.get("_".join(str(video_id).split("_")[1:-1]))


def _url_path(value: str) -> str:
    """``https://…/datasets/<org>/<name>/resolve/<rev>/videos/Art/0.mp4`` -> ``videos/Art/0.mp4``."""
    path = unquote(urlparse(value).path)
    m = re.search(r"/resolve/[^/]+/(.+)$", path)
    return m.group(1) if m else path.lstrip("/")


def _candidates(layout: str, value: str, folder: Path, config: str | None) -> list[Path]:
    v = value
    bases = [folder / config, folder] if config else [folder]
    if layout == "url":
        rel = _url_path(v) if "://" in v else v
        rels = [rel] if Path(rel).suffix else [rel, f"{rel}.mp4"]
        return [b / sub / r for sub in (".", "videos") for b in bases for r in rels]
    if layout == "mvbench":
        tasks = [config] if config in MVBENCH_FOLDERS else list(MVBENCH_FOLDERS)
        subs = [s for t in tasks for s in MVBENCH_FOLDERS[t]]
        roots = [folder / r for r in ("video", "videos", ".", "video/data0613", "data0613")]
        return [r / s / v for s in dict.fromkeys(subs) for r in roots]
    names = [v] if Path(v).suffix else [v, f"{v}.mp4"]
    if layout == "videommmu":
        disc = videommmu_discipline(v)
        if disc:
            return [b / sub / disc / n for b in bases for sub in (".", "videos") for n in names]
    return [b / sub / n for b in bases for sub in _VIDEO_DIRS for n in names]


def find_video(layout: str, value, folder: Path, config: str | None, where: str) -> str:
    """The local path of a row's video (a file, or a folder of frames for MVBench's frame tasks)."""
    v = str(value).strip()
    if Path(v).is_absolute() and Path(v).exists():
        return v
    cands = _candidates(layout, v, folder, config)
    for cand in cands:
        if cand.is_file() or (layout == "mvbench" and cand.is_dir()):
            return str(cand)
    shown = cands[0].relative_to(folder) if cands and cands[0].is_relative_to(folder) else v
    raise DataError(f"{where}: video {v!r} not found under {folder} (expected e.g. {folder}/{shown}); copy the "
                    "benchmark's videos there in its own folder layout")


_FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def sample_frames(path: str | Path, frames: int, where: str = "") -> tuple[list, list[float] | None]:
    """(`frames` RGB frames sampled uniformly from a video file or a folder of frame images, their times in seconds
    or None when unknown (a frames folder)); DataError naming the file and the fix when it cannot be decoded."""
    from PIL import Image

    p = Path(path)
    budget = max(MIN_PIXELS // 4, MAX_PIXELS // max(frames, 1))
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() in _FRAME_SUFFIXES)
        if not files:
            raise DataError(f"{where}: frames folder {p} holds no images ({', '.join(_FRAME_SUFFIXES)})")
        idx = _uniform(len(files), frames)
        return [fit_pixels(Image.open(files[i]), MIN_PIXELS // 4, budget) for i in idx], None
    try:
        from transformers.video_utils import load_video

        video, meta = load_video(str(p), num_frames=frames, backend="pyav")  # [F, H, W, 3] uint8
    except ImportError:
        raise DataError(f"{where}: reading video needs PyAV (pip install av)") from None
    except Exception as err:  # noqa: BLE001 - any decoding failure is a bad file
        raise DataError(f"{where}: video {p} cannot be decoded ({type(err).__name__}: {err}); re-download it") from None
    images = [fit_pixels(Image.fromarray(f), MIN_PIXELS // 4, budget) for f in video]
    fps = getattr(meta, "fps", None)
    idx = getattr(meta, "frames_indices", None)
    times = [float(i) / fps for i in idx] if fps and idx is not None else None
    return images, times


def _uniform(total: int, n: int) -> list[int]:
    """`n` indices spread evenly over range(total) (all of them when total <= n)."""
    if total <= n:
        return list(range(total))
    return [int((i + 0.5) * total / n) for i in range(n)]


def srt_text(path: Path) -> str:
    """The spoken text of an .srt file (cue numbers, timings and markup dropped)."""
    lines = []
    for ln in path.read_text(encoding="utf-8", errors="replace").splitlines():
        ln = ln.strip()
        if not ln or ln.isdigit() or "-->" in ln:
            continue
        lines.append(re.sub(r"<[^>]+>", "", ln))
    return "\n".join(lines)
