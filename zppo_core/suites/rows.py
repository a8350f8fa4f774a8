"""One row of a benchmark's public schema -> the question(s) it holds (the fields of an EvalItem).

How options are laid out, what the gold looks like and which rows count are declared per benchmark in
:mod:`zppo_core.suites.benchmarks`; the prompt is built by :mod:`zppo_core.suites.prompts`. Special rows:

* BabyVision has no ``answer`` column: the gold is ``chr(65 + int(choiceAns))`` when ``ansType == "choice"``
  (options in ``options``), else ``blankAns`` (lmms-eval ``tasks/babyvision/utils.py`` ``babyvision_doc_to_target``;
  VLMEvalKit ``dataset/babyvision.py``);
* CharXiv rows expand into one reasoning and four descriptive questions (:mod:`zppo_core.suites.charxiv`);
* MultiChallenge rows carry a conversation: the model answers it as chat messages, the judge gets
  ``TARGET_QUESTION`` and ``PASS_CRITERIA``.
"""

from __future__ import annotations

import ast
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

from zppo_core.suites import charxiv
from zppo_core.suites.benchmarks import Benchmark
from zppo_core.suites.files import Source
from zppo_core.suites.media import decode_images, find_video, srt_text
from zppo_core.suites.prompts import build_prompt
from zppo_core.tasks.jsonl_data import DataError

__all__ = ["row_items"]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_QUESTION_ALTS = ("question", "Question", "problem", "Problem", "prompt", "query")
_ANSWER_ALTS = ("answer", "Answer", "answers", "ground_truth", "groundtruth", "gt", "label")
_ID_ALTS = ("id", "ID", "question_id", "questionId", "pid", "problem_idx", "Problem ID", "Record ID")
_LETTER_PREFIX = re.compile(r"^\s*\(?([A-Z])[.):：]\s*")
_INLINE_OPTION = re.compile(r"(?:^|[;；\n])\s*\(?([A-Z])[.．:：、)]\s*")


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
    if options and all(m and m.group(1) == LETTERS[i] for i, m in enumerate(ms)):
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
            raise DataError(f"{where}: missing option column(s) {', '.join(missing)} ({bench.name} schema of "
                            f"{bench.dataset_id})")
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
        for letter in LETTERS:
            v = value.get(letter)
            if v is None or not str(v).strip():
                break
            opts.append(str(v).strip())
        return (opts or None), None
    if layout == "inline":
        parts = _INLINE_OPTION.split(str(value))
        letters, texts = parts[1::2], [t.strip() for t in parts[2::2]]
        if not letters or "".join(letters) != LETTERS[: len(letters)]:
            return None, None
        return texts, None
    opts = [str(o).strip() for o in _parse_list(value, where, bench.choices_field)]
    return (_strip_prefixes(opts) or None), None


def _gold_letter(bench: Benchmark, raw, choices: list[str], where: str) -> str:
    valid = LETTERS[: len(choices)]
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
    raise DataError(f"{where}: gold answer {s[:60]!r} is not one of the {len(choices)} options "
                    f"({bench.name} expects {bench.answer_format}); fix the row")


def _babyvision_gold(row: dict, where: str) -> tuple[str, list[str] | None]:
    """(gold, options) of a BabyVision row: a letter from ``choiceAns`` for choice rows, else ``blankAns``."""
    kind = row.get("ansType")
    if kind is None:
        raise DataError(f"{where}: no field 'ansType' (BabyVision's schema: ansType, choiceAns, blankAns, options)")
    if kind == "choice":
        opts = [str(o).strip() for o in _parse_list(row.get("options") or [], where, "options")]
        try:
            i = int(row.get("choiceAns"))
        except (TypeError, ValueError):
            i = -1
        if not 0 <= i < len(opts):
            raise DataError(f"{where}: choiceAns {row.get('choiceAns')!r} is not an index into the "
                            f"{len(opts)} options; fix the row")
        return LETTERS[i], opts
    gold = row.get("blankAns")
    if gold is None or not str(gold).strip():
        raise DataError(f"{where}: a fill-in row (ansType {kind!r}) needs blankAns")
    return str(gold).strip(), None


def _short_scalars(row: dict, skip: set[str]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in skip and
            (isinstance(v, (bool, int, float)) or (isinstance(v, str) and len(v) <= 200))}


def _messages(value) -> list[dict] | None:
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, list) and value and all(isinstance(m, dict) and "content" in m for m in value):
        return [{"role": str(m.get("role", "user")), "content": str(m["content"])} for m in value]
    return None


def _item(bench: Benchmark, item_id: str, question: str, gold, images: list, video: str | None,
          choices: list[str] | None, meta: dict, prefix: str = "", prompt: str | None = None) -> dict:
    answers = None
    if bench.answer_format == "list" and not choices:
        answers = [str(a) for a in (gold if isinstance(gold, (list, tuple)) else [gold])]
        gold = answers[0] if answers else ""
    meta = dict(meta, question=question)
    if answers is not None:
        meta["answers"] = answers
    if prompt is None:
        prompt = question if "messages" in meta else build_prompt(bench, question, choices, meta, prefix)
    return dict(id=item_id, prompt=prompt, answer=str(gold), choices=choices, images=images, video=video, meta=meta)


def _charxiv_items(bench: Benchmark, row: dict, item_id: str, images: list, meta: dict, where: str) -> list[dict]:
    """One reasoning and four descriptive questions of a CharXiv row, built with the official texts."""
    need = ("reasoning_q", "reasoning_a", "reasoning_q_source", "descriptive_q1", "descriptive_a1")
    missing = [k for k in need if row.get(k) is None]
    if missing:
        raise DataError(f"{where}: no {', '.join(missing)}; use the public schema of {bench.dataset_id} "
                        "(the test split's answers are hidden: evaluate validation)")
    loc = charxiv.subplot_location(row)
    q, a, source = str(row["reasoning_q"]), str(row["reasoning_a"]), int(row["reasoning_q_source"])
    out = [_item(bench, f"{item_id}-reasoning", q, a, images, None, None,
                 dict(meta, kind="reasoning", raw_question=q, inst_category=source),
                 prompt=charxiv.reasoning_question(q, source, a))]
    for k in range(1, 5):
        qid, ans = row.get(f"descriptive_q{k}"), row.get(f"descriptive_a{k}")
        if qid is None or ans is None:
            continue
        try:
            text = charxiv.descriptive_question(int(qid), loc)
        except (TypeError, ValueError) as err:
            raise DataError(f"{where}: descriptive_q{k} = {qid!r}: {err}; use the public schema of "
                            f"{bench.dataset_id}") from None
        out.append(_item(bench, f"{item_id}-descriptive{k}", text, str(ans), images, None, None,
                         dict(meta, kind=f"descriptive{k}", qid=int(qid)), prompt=text))
    return out


def row_items(bench: Benchmark, row: dict, where: str, folder: Path, src: Source, split: str, index: int,
              row_filter: tuple[str, str, bool] | None = None) -> list[dict]:
    """The EvalItem fields of the question(s) in one row ([] when the row is filtered out)."""
    config = src.config
    for flt in (bench.row_filter, row_filter):
        if flt:
            fld, rx, keep = flt
            if fld not in row:
                raise DataError(f"{where}: no field {fld!r}, which {bench.name} needs to pick its rows; use the "
                                "public schema")
            if bool(re.search(rx, str(row[fld]))) != keep:
                return []
    raw_id = _get(row, bench.id_field, _ID_ALTS if bench.id_field else ())
    item_id = str(raw_id) if raw_id is not None else str(index)
    if bench.id_suffix_field and row.get(bench.id_suffix_field) is not None:
        item_id += f"/{row[bench.id_suffix_field]}"
    images = []
    for fld in bench.image_fields:
        if fld in row:
            images += decode_images(row[fld], src.root, where, fld)
    if bench.image_fields and not any(f in row for f in bench.image_fields):
        for fld in ("image", "images"):
            if fld in row:
                images += decode_images(row[fld], src.root, where, fld)
    video = None
    if bench.video_field:
        if row.get(bench.video_field) in (None, ""):
            raise DataError(f"{where}: no video field {bench.video_field!r}; use the public schema of "
                            f"{bench.dataset_id}")
        video = find_video(bench.video_layout, row[bench.video_field], folder, config, where)
    skip = {*bench.image_fields, "image", "images", "decoded_image"}
    meta = {"config": config, "split": split, "source": where, **_short_scalars(row, skip),
            **{f: row.get(f) for f in bench.meta_fields}}

    if bench.expand == "charxiv":
        return _charxiv_items(bench, row, item_id, images, meta, where)

    q_value = _get(row, bench.question_field, _QUESTION_ALTS) if bench.question_field else None
    if q_value is None and bench.question_field and not images:
        raise DataError(f"{where}: no question field {bench.question_field!r}; use the public schema of "
                        f"{bench.dataset_id}")
    messages = _messages(q_value)
    if messages is not None:
        question = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
        meta["messages"] = messages
    else:
        question = "" if q_value is None else str(q_value)
    if bench.answer_format == "babyvision":
        gold, choices = _babyvision_gold(row, where)
    else:
        choices, correct_index = _choices(bench, row, item_id, where)
        if correct_index is not None:
            gold = LETTERS[correct_index]
        else:
            gold = _get(row, bench.answer_field, _ANSWER_ALTS)
            if gold is None:
                raise DataError(f"{where}: no answer field {bench.answer_field!r} (or it is empty: hidden test "
                                f"answers?); use the public schema of {bench.dataset_id}")
            if choices:
                gold = _gold_letter(bench, gold, choices, where)
    if messages is not None:
        target = row.get("TARGET_QUESTION")
        meta.update(target_question=target, pass_criteria=str(gold).strip())
        meta["judge_answer"] = (f"Target question: {target}\n" if target else "") + f"Pass criterion: {gold}"
    prefix = ""
    if bench.subtitles:
        srt = folder / "subtitle" / f"{row.get(bench.video_field)}.srt"
        meta["subtitles"] = str(srt) if srt.is_file() else None
        if srt.is_file():
            prefix = f"Subtitles of the video:\n{srt_text(srt)}\n\n"
    return [_item(bench, item_id, question, gold, images, video, choices, meta, prefix)]
