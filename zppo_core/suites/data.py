"""Benchmark data from a local directory only (nothing is ever downloaded): rows of the public schema -> EvalItems.

Layout of the data directory (``--data-dir`` or ``$ZPPO_DATA_DIR``, default ``~/.cache/zppo/data``)::

    <data_dir>/<folder>/            folder = Benchmark.folder (its name; OCRBench-v2-EN/ZH share "OCRBench-v2",
                                    Video-MME and Video-MME-sub share "Video-MME")
        one of, in the public dataset's own schema:
        - `Dataset.save_to_disk` output (state.json + dataset_info.json + *.arrow): the split itself;
        - `DatasetDict.save_to_disk` output (dataset_dict.json + <split>/...): the split(s) are picked;
        - *.parquet, *.jsonl, *.json files anywhere below (a hub snapshot works): files named after the split
          (``test-00000-of-00001.parquet``, ``testmini.jsonl``, or inside a ``<split>/`` folder) are used when
          any file names a split of the benchmark, else all files;
        <config>/                   benchmarks with several configs (MMMU-Pro, MVBench, C-Eval, AIME25,
                                    MMLU-Redux, Video-MMMU): one such folder per config, each as above;
                                    alternatively all configs together directly in <folder>/. A benchmark
                                    with one config (InfoVQA, GPQA-Diamond, MMLU, MathVerse) may also keep it
                                    in <folder>/<config>/.
        videos/ (or data/, video/)  video benchmarks: the video files named by the row's video field
                                    (``<value>`` or ``<value>.mp4``);
        subtitle/<videoID>.srt      Video-MME-sub.

Images are decoded from a datasets Image feature, ``{"bytes", "path"}`` dicts, raw bytes, data URIs, base64
strings or paths (relative to the benchmark folder), converted to RGB and resized, keeping the aspect ratio,
into the paper's pixel bounds 256×32×32 .. 1280×32×32.

Errors are :class:`~zppo_core.tasks.jsonl_data.DataError` (the CLI maps them to exit 2): one line naming the
file (and line or row) and the fix. Heavy imports (datasets, pyarrow, PIL) happen inside functions.
"""

from __future__ import annotations

import ast
import base64
import binascii
import hashlib
import io
import json
import os
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zppo_core.suites.benchmarks import Benchmark
from zppo_core.tasks.jsonl_data import DataError, iter_jsonl_rows

__all__ = [
    "DEFAULT_DATA_DIR",
    "ENV_VAR",
    "MAX_PIXELS",
    "MIN_PIXELS",
    "DataError",
    "EvalItem",
    "data_path",
    "default_data_dir",
    "fit_pixels",
    "iter_items",
    "load_items",
    "missing_message",
]

ENV_VAR = "ZPPO_DATA_DIR"
DEFAULT_DATA_DIR = Path("~/.cache/zppo/data")
MIN_PIXELS = 256 * 32 * 32
MAX_PIXELS = 1280 * 32 * 32

LETTERS_RANGE = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_META_FILES = {"dataset_info.json", "state.json", "dataset_dict.json"}
_DATA_SUFFIXES = (".parquet", ".jsonl", ".json")
_QUESTION_ALTS = ("question", "Question", "problem", "Problem", "prompt", "query")
_ANSWER_ALTS = ("answer", "Answer", "answers", "ground_truth", "groundtruth", "gt", "label")
_ID_ALTS = ("id", "ID", "question_id", "questionId", "pid", "problem_idx", "Problem ID", "Record ID")
_VIDEO_DIRS = (".", "videos", "data", "video")
_LETTER_PREFIX = re.compile(r"^\s*\(?([A-Z])[.):：]\s*")
_INLINE_OPTION = re.compile(r"(?:^|[;；\n])\s*\(?([A-Z])[.．:：、)]\s*")

INSTRUCTION_CHOICE = "Answer with the letter of the correct option inside \\boxed{}, e.g. \\boxed{A}."
INSTRUCTION_EXACT = "Answer with a single word or phrase, written inside \\boxed{}."
INSTRUCTION_RULE = "Please reason step by step, and put your final answer within \\boxed{}."
IMAGE_ONLY_QUESTION = "Answer the question shown in the image."


@dataclass
class EvalItem:
    """One evaluation question, ready for a model.

    id: the row's id (or ``<config>/<split>/<row>``); prompt: the user message (question, lettered options,
    answer instruction); answer: the gold, normalised (a letter when `choices` is set); choices: option texts
    or None; images: PIL images, RGB, within the pixel bounds; video: a local video path or None; meta: the
    raw question (``question``), all accepted answers (``answers``), ``config``, ``split``, ``source``
    (file and row), chat ``messages`` for multi-turn rows, ``judge_answer`` when the judge needs more than the
    gold, and the row's short scalar fields (subject, category ...).
    """

    id: str
    prompt: str
    answer: str
    choices: list[str] | None = None
    images: list = field(default_factory=list)
    video: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ where the data is
def default_data_dir() -> Path:
    """``$ZPPO_DATA_DIR`` when set, else ``~/.cache/zppo/data`` (expanded)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR.expanduser()


def _root(data_dir: str | Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def _has_data(d: Path) -> bool:
    if not d.is_dir():
        return False
    if (d / "dataset_dict.json").is_file() or (d / "state.json").is_file():
        return True
    return any(p.is_file() and p.suffix in _DATA_SUFFIXES and p.name not in _META_FILES for p in d.rglob("*"))


def _layout(bench: Benchmark, folder: Path) -> tuple[list[tuple[str | None, Path]], list[str]]:
    """(config, directory) pairs to read, and the configs that are missing (multi-config benchmarks)."""
    if bench.configs:
        present = [c for c in bench.configs if (folder / c).is_dir()]
        if not present:  # flat layout: all configs together
            return ([(None, folder)] if _has_data(folder) else []), []
        pairs = [(c, folder / c) for c in bench.configs if _has_data(folder / c)]
        missing = [c for c in bench.configs if not _has_data(folder / c)]
        return pairs, missing
    if bench.config and _has_data(folder / bench.config):
        return [(bench.config, folder / bench.config)], []
    return ([(bench.config, folder)] if _has_data(folder) else []), []


def data_path(bench: Benchmark, data_dir: str | Path | None = None) -> Path | None:
    """The benchmark's folder under the data dir when its data is complete there, else None."""
    folder = _root(data_dir) / bench.folder
    pairs, missing = _layout(bench, folder)
    return folder if pairs and not missing else None


def _python_literal(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def missing_message(bench: Benchmark, data_dir: str | Path | None = None) -> str:
    """One line: where the benchmark's data should be and the command that makes it on a machine with hub access."""
    folder = _root(data_dir) / bench.folder
    pairs, missing = _layout(bench, folder)
    ds = _python_literal(bench.dataset_id)
    if bench.configs:
        wanted = missing if pairs and missing else list(bench.configs)
        if len(wanted) == len(bench.configs) and len(wanted) > 5:
            names = f"get_dataset_config_names({ds})"
        else:
            names = "[" + ", ".join(_python_literal(c) for c in wanted) + "]"
        code = (
            "from datasets import load_dataset, get_dataset_config_names; "
            f"[load_dataset({ds}, c, split={_python_literal(bench.split)}).save_to_disk(f'{folder}/{{c}}') "
            f"for c in {names}]"
        )
        where = f"no data for config(s) {', '.join(wanted)} in {folder}/<config>/" if pairs and missing else \
            f"no data in {folder}"
    else:
        args = ds + (f", {_python_literal(bench.config)}" if bench.config else "")
        if bench.extra_splits:  # several splits: save the whole DatasetDict
            code = f"from datasets import load_dataset; load_dataset({args}).save_to_disk({_python_literal(str(folder))})"
        else:
            code = (
                f"from datasets import load_dataset; load_dataset({args}, split={_python_literal(bench.split)})"
                f".save_to_disk({_python_literal(str(folder))})"
            )
        where = f"no data in {folder}"
    msg = f'{bench.name}: {where}; on a machine with hub access run: python -c "{code}" and copy it here'
    if bench.video_field:
        msg += f"; also copy the benchmark's video files into {folder}/videos/"
    if bench.subtitles:
        msg += f" and its subtitles into {folder}/subtitle/<videoID>.srt"
    return msg


# ------------------------------------------------------------------------------------------ reading rows
def _offline() -> None:
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"


def _data_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in _DATA_SUFFIXES and p.name not in _META_FILES)


def _names_split(path: Path, root: Path, split: str) -> bool:
    rel = path.relative_to(root)
    if split in rel.parts[:-1]:
        return True
    stem = path.name.split(".")[0]
    return stem == split or stem.startswith((f"{split}-", f"{split}_"))


def _files_by_split(d: Path, splits: tuple[str, ...]) -> list[tuple[str, list[Path]]]:
    files = _data_files(d)
    chosen = [(s, [f for f in files if _names_split(f, d, s)]) for s in splits]
    chosen = [(s, fs) for s, fs in chosen if fs]
    return chosen or [(splits[0], files)]


def _rows_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    for n, row in iter_jsonl_rows(path):
        yield f"{path}:{n}", row


def _rows_json(path: Path, split: str) -> Iterator[tuple[str, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: invalid JSON ({err}); re-export it (a list of row objects) or use .jsonl") from None
    if isinstance(data, dict):
        data = next((data[k] for k in (split, "data", "rows") if isinstance(data.get(k), list)), data)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of row objects (or {{'data': [...]}}); got {type(data).__name__}")
    for n, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {n}: expected a JSON object, got {type(row).__name__}")
        yield f"{path} row {n}", row


def _rows_parquet(path: Path) -> Iterator[tuple[str, dict]]:
    import pyarrow.parquet as pq
    from datasets import Dataset
    from datasets.table import InMemoryTable

    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as err:  # ArrowInvalid is a ValueError, ArrowIOError an OSError
        raise DataError(f"{path}: not a readable parquet file ({err}); copy it again") from None
    ds = Dataset(InMemoryTable(table))  # keeps the Image/Sequence features stored in the schema metadata
    for n, row in enumerate(ds):
        yield f"{path} row {n}", row


def _rows_dataset(ds, where: str) -> Iterator[tuple[str, dict]]:
    for n, row in enumerate(ds):
        yield f"{where} row {n}", row


def _read(bench: Benchmark, d: Path) -> Iterator[tuple[str, str, dict]]:
    """(split, where, row) for the benchmark's split(s) in directory `d`."""
    if (d / "dataset_dict.json").is_file() or (d / "state.json").is_file():
        from datasets import DatasetDict, load_from_disk

        try:
            ds = load_from_disk(str(d))
        except (OSError, ValueError) as err:
            raise DataError(f"{d}: cannot load the saved dataset ({err}); save it again with save_to_disk") from None
        if isinstance(ds, DatasetDict):
            splits = [s for s in bench.splits if s in ds]
            if not splits:
                if len(ds) == 1 and not bench.extra_splits:
                    splits = list(ds)  # one split under another name: it is the benchmark
                else:
                    raise DataError(
                        f"{d}: no split {'/'.join(bench.splits)} (has {', '.join(ds)}); "
                        f"save split={bench.split!r} of {bench.dataset_id}"
                    )
            for s in splits:
                for where, row in _rows_dataset(ds[s], f"{d}/{s}"):
                    yield s, where, row
        else:
            for where, row in _rows_dataset(ds, str(d)):
                yield bench.split, where, row
        return
    for split, files in _files_by_split(d, bench.splits):
        for f in files:
            if f.suffix == ".jsonl":
                rows = _rows_jsonl(f)
            elif f.suffix == ".json":
                rows = _rows_json(f, split)
            else:
                rows = _rows_parquet(f)
            for where, row in rows:
                yield split, where, row


# ------------------------------------------------------------------------------------------ images and video
def fit_pixels(image, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS):
    """`image` as RGB, resized (aspect ratio kept) so that width × height lies in [min_pixels, max_pixels]."""
    from PIL import Image

    img = image.convert("RGB") if image.mode != "RGB" else image
    w, h = img.size
    area = w * h
    if area == 0 or min_pixels <= area <= max_pixels:
        return img
    scale = ((max_pixels if area > max_pixels else min_pixels) / area) ** 0.5
    nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
    if area < min_pixels:  # rounding down may leave it just below the floor
        while nw * nh < min_pixels:
            nw, nh = (nw + 1, nh) if nw * h <= nh * w else (nw, nh + 1)
    return img.resize((nw, nh), Image.Resampling.BICUBIC)


def _open_image(data: bytes):
    from PIL import Image

    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _decode_images(value, base: Path, where: str, fld: str) -> list:
    from PIL import Image

    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, (list, tuple)):
        return [img for v in value for img in _decode_images(v, base, where, fld)]
    try:
        if isinstance(value, Image.Image):
            return [fit_pixels(value)]
        if isinstance(value, dict):
            if value.get("bytes"):
                return [fit_pixels(_open_image(value["bytes"]))]
            return _decode_images(value.get("path"), base, where, fld)
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


def _find_video(value, folder: Path, config: str | None, where: str) -> str:
    v = str(value).strip()
    bases = [folder / config, folder] if config else [folder]
    names = [v] if Path(v).suffix else [v, f"{v}.mp4"]
    if Path(v).is_absolute() and Path(v).is_file():
        return v
    for b in bases:
        for sub in _VIDEO_DIRS:
            for name in names:
                cand = b / sub / name
                if cand.is_file():
                    return str(cand)
    raise DataError(f"{where}: video {v!r} not found under {folder}/{{.,videos,data,video}}; copy the videos there")


def _srt_text(path: Path) -> str:
    lines = []
    for ln in path.read_text(encoding="utf-8", errors="replace").splitlines():
        ln = ln.strip()
        if not ln or ln.isdigit() or "-->" in ln:
            continue
        lines.append(re.sub(r"<[^>]+>", "", ln))
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ row -> item
def _get(row: dict, name: str | None, alts: tuple[str, ...]) -> Any:
    if name is not None and name in row and row[name] is not None:
        return row[name]
    for a in alts:
        if a in row and row[a] is not None:
            return row[a]
    return None


def _parse_list(value, where: str, fld: str) -> list:
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return []
        try:
            value = json.loads(s)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(s)
            except (ValueError, SyntaxError):
                raise DataError(f"{where}: field {fld!r} should be a list of options, got {s[:80]!r}") from None
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{where}: field {fld!r} should be a list of options, got {type(value).__name__}")
    return list(value)


def _strip_prefixes(options: list[str]) -> list[str]:
    """Drop "A. " / "(B) " prefixes when every option carries its own letter in order."""
    ms = [_LETTER_PREFIX.match(o) for o in options]
    if options and all(m and m.group(1) == LETTERS_RANGE[i] for i, m in enumerate(ms)):
        return [o[m.end():].strip() for o, m in zip(options, ms)]
    return options


def _choices(bench: Benchmark, row: dict, item_id: str, where: str) -> tuple[list[str] | None, int | None]:
    """(options, index of the correct one when the layout fixes it (gpqa), else None)."""
    layout = bench.choices_layout
    if layout == "none":
        return None, None
    if layout in ("columns", "gpqa"):
        missing = [c for c in bench.choice_columns if c not in row]
        if missing:
            raise DataError(f"{where}: missing option column(s) {', '.join(missing)} ({bench.name} schema of {bench.dataset_id})")
        opts = [str(row[c]).strip() for c in bench.choice_columns if row[c] is not None and str(row[c]).strip()]
        if layout == "columns":
            return (opts or None), None
        if len(opts) != len(bench.choice_columns):
            raise DataError(f"{where}: {bench.name} needs all of {', '.join(bench.choice_columns)} filled")
        order = list(range(len(opts)))
        seed = int(hashlib.sha256(f"{bench.name}:{item_id}".encode()).hexdigest()[:16], 16)
        random.Random(seed).shuffle(order)
        return [opts[i] for i in order], order.index(0)
    value = row.get(bench.choices_field) if bench.choices_field else None
    if value is None:
        return None, None
    if layout == "dict":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise DataError(f"{where}: field {bench.choices_field!r} should map letters to options") from None
        if not isinstance(value, dict):
            raise DataError(f"{where}: field {bench.choices_field!r} should map letters to options")
        opts = []
        for i, letter in enumerate(LETTERS_RANGE):
            v = value.get(letter)
            if v is None or not str(v).strip():
                break
            opts.append(str(v).strip())
        return (opts or None), None
    if layout == "inline":
        text = str(value)
        parts = _INLINE_OPTION.split(text)
        letters, texts = parts[1::2], [t.strip() for t in parts[2::2]]
        if not letters or "".join(letters) != LETTERS_RANGE[: len(letters)]:
            return None, None
        return texts, None
    opts = [str(o).strip() for o in _parse_list(value, where, bench.choices_field)]
    return (_strip_prefixes(opts) or None), None


def _gold_letter(bench: Benchmark, raw, choices: list[str], where: str) -> str:
    valid = LETTERS_RANGE[: len(choices)]
    s = str(raw).strip()
    if bench.answer_format == "index":
        try:
            i = int(s)
        except ValueError:
            i = -1
        if 0 <= i < len(choices):
            return valid[i]
    if bench.answer_format in ("letter", "text", "index"):
        m = re.fullmatch(r"\(?([A-Za-z])\)?\.?", s)
        if m and m.group(1).upper() in valid:
            return m.group(1).upper()
    norm = " ".join(s.split()).casefold()
    for i, c in enumerate(choices):
        if " ".join(c.split()).casefold() == norm:
            return valid[i]
    raise DataError(
        f"{where}: gold answer {s[:60]!r} is not one of the {len(choices)} options "
        f"({bench.name} expects {bench.answer_format}); fix the row"
    )


def _short_scalars(row: dict, skip: set[str]) -> dict[str, Any]:
    out = {}
    for k, v in row.items():
        if k in skip:
            continue
        if isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 200):
            out[k] = v
    return out


def _messages(value) -> list[dict] | None:
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return [{"role": str(m.get("role", "user")), "content": str(m["content"])} for m in value]
    return None


def _build(bench: Benchmark, item_id: str, question: str, gold, images: list, video: str | None,
           choices: list[str] | None, meta: dict, prefix: str = "") -> EvalItem:
    answers = None
    if bench.answer_format == "list" and not choices:
        answers = [str(a) for a in (gold if isinstance(gold, (list, tuple)) else [gold])]
        gold = answers[0] if answers else ""
    body = (prefix + question).strip() or IMAGE_ONLY_QUESTION
    if "messages" in meta:
        pass  # a multi-turn conversation is answered as is (no answer instruction)
    elif choices:
        body += "\n\n" + "\n".join(f"{LETTERS_RANGE[i]}. {c}" for i, c in enumerate(choices))
        body += "\n\n" + INSTRUCTION_CHOICE
    elif bench.scoring == "exact":
        body += "\n\n" + INSTRUCTION_EXACT
    else:
        body += "\n\n" + INSTRUCTION_RULE
    meta = dict(meta, question=question)
    if answers is not None:
        meta["answers"] = answers
    return EvalItem(id=item_id, prompt=body, answer=str(gold), choices=choices, images=images, video=video, meta=meta)


def _row_items(bench: Benchmark, row: dict, where: str, folder: Path, config: str | None, split: str,
               index: int) -> list[EvalItem]:
    if bench.row_filter:
        fld, rx, keep = bench.row_filter
        if fld not in row:
            raise DataError(f"{where}: no field {fld!r}, which {bench.name} needs to pick its rows; use the public schema")
        if bool(re.search(rx, str(row[fld]))) != keep:
            return []
    raw_id = _get(row, bench.id_field, _ID_ALTS if bench.id_field else ())
    item_id = str(raw_id) if raw_id is not None else f"{config + '/' if config else ''}{split}/{index}"
    base = folder / config if config and (folder / config).is_dir() else folder
    images = []
    for fld in bench.image_fields:
        if fld in row:
            images += _decode_images(row[fld], base, where, fld)
    if bench.image_fields and not any(f in row for f in bench.image_fields):
        for fld in ("image", "images"):
            if fld in row:
                images += _decode_images(row[fld], base, where, fld)
    video = None
    if bench.video_field:
        if row.get(bench.video_field) in (None, ""):
            raise DataError(f"{where}: no video field {bench.video_field!r}; use the public schema of {bench.dataset_id}")
        video = _find_video(row[bench.video_field], folder, config, where)
    skip = {*bench.image_fields, "image", "images", "decoded_image"}
    meta = {"config": config, "split": split, "source": where, **_short_scalars(row, skip)}

    if bench.expand == "charxiv":
        return _charxiv_items(bench, row, item_id, images, meta, where)

    q_value = _get(row, bench.question_field, _QUESTION_ALTS) if bench.question_field else None
    if q_value is None and bench.question_field and not images:
        raise DataError(f"{where}: no question field {bench.question_field!r}; use the public schema of {bench.dataset_id}")
    messages = _messages(q_value)
    if messages is not None:
        question = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
        meta["messages"] = messages
    else:
        question = "" if q_value is None else str(q_value)
    choices, correct_index = _choices(bench, row, item_id, where)
    if correct_index is not None:
        gold = LETTERS_RANGE[correct_index]
    else:
        gold = _get(row, bench.answer_field, _ANSWER_ALTS)
        if gold is None:
            raise DataError(f"{where}: no answer field {bench.answer_field!r}; use the public schema of {bench.dataset_id}")
        if choices:
            gold = _gold_letter(bench, gold, choices, where)
    if messages is not None:
        target = row.get("TARGET_QUESTION")
        meta["judge_answer"] = (f"Target question: {target}\n" if target else "") + f"Pass criterion: {gold}"
    prefix = ""
    if bench.subtitles:
        srt = folder / "subtitle" / f"{row.get(bench.video_field)}.srt"
        meta["subtitles"] = str(srt) if srt.is_file() else None
        if srt.is_file():
            prefix = f"Subtitles of the video:\n{_srt_text(srt)}\n\n"
    return [_build(bench, item_id, question, gold, images, video, choices, meta, prefix)]


def _charxiv_items(bench: Benchmark, row: dict, item_id: str, images: list, meta: dict, where: str) -> list[EvalItem]:
    """CharXiv rows hold one reasoning question and up to four descriptive ones (text questions only)."""
    pairs = [("reasoning", row.get("reasoning_q"), row.get("reasoning_a"))]
    pairs += [(f"descriptive{k}", row.get(f"descriptive_q{k}"), row.get(f"descriptive_a{k}")) for k in range(1, 5)]
    out = []
    for tag, q, a in pairs:
        if isinstance(q, str) and q.strip() and a is not None and str(a).strip():
            out.append(_build(bench, f"{item_id}-{tag}", q, str(a), images, None, None, dict(meta, kind=tag)))
    if not out:
        raise DataError(f"{where}: no reasoning_q/reasoning_a or descriptive_qN/descriptive_aN text; use the public "
                        f"schema of {bench.dataset_id}")
    return out


def iter_items(bench: Benchmark, data_dir: str | Path | None = None, limit: int | None = None) -> Iterator[EvalItem]:
    """Like :func:`load_items`, one item at a time (images are decoded as rows are read, so a large VLM
    benchmark never has to sit in memory at once). The missing-data check happens on the first ``next``."""
    _offline()
    folder = _root(data_dir) / bench.folder
    pairs, missing = _layout(bench, folder)
    if not pairs or missing:
        raise DataError(missing_message(bench, data_dir))
    produced = 0
    for config, d in pairs:
        counts: dict[str, int] = {}
        for split, where, row in _read(bench, d):
            index = counts.get(split, 0)
            counts[split] = index + 1
            for item in _row_items(bench, row, where, folder, config, split, index):
                if limit is not None and produced >= limit:
                    return
                produced += 1
                yield item
            if limit is not None and produced >= limit:
                return
        if not counts:
            raise DataError(f"{d}: no rows for {bench.name}; the files are empty")


def load_items(bench: Benchmark, data_dir: str | Path | None = None, limit: int | None = None) -> list[EvalItem]:
    """The benchmark's questions from the local data dir (the first `limit` only, when given). Never downloads.

    Raises DataError with :func:`missing_message` when the data is not there, or naming the file, row and
    fix when a row does not fit the public schema.
    """
    return list(iter_items(bench, data_dir, limit))
