"""Benchmark data from a local directory only (nothing is ever downloaded): rows of the public schema -> EvalItems.

Layout of the data directory (``--data-dir`` or ``$ZPPO_DATA_DIR``, default ``~/.cache/zppo/data``)::

    <data_dir>/<folder>/            folder = Benchmark.folder (its name; OCRBench-v2-EN/ZH share "OCRBench-v2",
                                    Video-MME and Video-MME-sub share "Video-MME")
        the public dataset in its own schema, as `datasets` saves it (save_to_disk) or as the hub ships it
        (parquet, CSV, JSON, JSONL files; see zppo_core.suites.files for how configs and splits are found);
        <config>/                   multi-config benchmarks (MMMU-Pro, MVBench, C-Eval, AIME25, MMLU-Redux,
                                    Video-MMMU): one folder (or file) per config, or all configs together;
        videos ...                  video benchmarks: the clips in the benchmark's own layout (zppo_core.suites.media);
        subtitle/<videoID>.srt      Video-MME-sub.

An item is keyed by (config, split, id) (:attr:`EvalItem.key`): ids restart per C-Eval subject and repeat
across DynaMath's variant splits; WeMath's shared ``ID`` gets its ``key`` appended. Errors are
:class:`~zppo_core.tasks.jsonl_data.DataError` (the CLI maps them to exit 2): one line naming the file (and
row) and the fix. Heavy imports (datasets, pyarrow, PIL) happen inside functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zppo_core.suites.benchmarks import Benchmark
from zppo_core.suites.files import layout
from zppo_core.suites.media import MAX_PIXELS, MIN_PIXELS, fit_pixels
from zppo_core.suites.rows import row_items
from zppo_core.tasks.jsonl_data import DataError

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


@dataclass
class EvalItem:
    """One evaluation question, ready for a model.

    id: the row's id (or its row index within its config and split); prompt: the user message; answer: the
    gold, normalised (a letter when `choices` is set); choices: option texts or None; images: PIL images, RGB,
    within the pixel bounds; video: a local video path (or frames folder) or None; meta: the raw question
    (``question``), all accepted answers (``answers``), ``config``, ``split``, ``source`` (file and row),
    chat ``messages`` for multi-turn rows, ``judge_answer`` when the judge needs more than the gold, and the
    row's short scalar fields (subject, category ...).
    """

    id: str
    prompt: str
    answer: str
    choices: list[str] | None = None
    images: list = field(default_factory=list)
    video: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str | None, str | None, str]:
        """(config, split, id): what tells two questions of one benchmark apart."""
        meta = self.meta if isinstance(self.meta, dict) else {}
        return meta.get("config"), meta.get("split"), str(self.id)


# ------------------------------------------------------------------------------------------ where the data is
def default_data_dir() -> Path:
    """``$ZPPO_DATA_DIR`` when set, else ``~/.cache/zppo/data`` (expanded)."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_DATA_DIR.expanduser()


def _root(data_dir: str | Path | None) -> Path:
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def data_path(bench: Benchmark, data_dir: str | Path | None = None) -> Path | None:
    """The benchmark's folder under the data dir when its data is complete there, else None."""
    folder = _root(data_dir) / bench.folder
    sources, missing = layout(bench, folder)
    return folder if sources and not missing else None


def _py(s: str) -> str:
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def missing_message(bench: Benchmark, data_dir: str | Path | None = None) -> str:
    """One line: where the benchmark's data should be and the command that makes it on a machine with hub access
    (naming the hub ids the same data has moved to, when it has)."""
    folder = _root(data_dir) / bench.folder
    sources, missing = layout(bench, folder)
    ds = _py(bench.dataset_id)
    if bench.configs:
        wanted = missing if sources and missing else list(bench.configs)
        if len(wanted) == len(bench.configs) and len(wanted) > 5:
            names = f"get_dataset_config_names({ds})"
        else:
            names = "[" + ", ".join(_py(c) for c in wanted) + "]"
        code = (
            "from datasets import load_dataset, get_dataset_config_names; "
            f"[load_dataset({ds}, c, split={_py(bench.split)}).save_to_disk(f'{folder}/{{c}}') for c in {names}]"
        )
        where = f"no data for config(s) {', '.join(wanted)} in {folder}/<config>/" if sources and missing else \
            f"no data in {folder}"
    else:
        args = ds + (f", {_py(bench.config)}" if bench.config else "")
        if bench.extra_splits:  # several splits: save the whole DatasetDict
            code = f"from datasets import load_dataset; load_dataset({args}).save_to_disk({_py(str(folder))})"
        else:
            code = (f"from datasets import load_dataset; load_dataset({args}, split={_py(bench.split)})"
                    f".save_to_disk({_py(str(folder))})")
        where = f"no data in {folder}"
    msg = f'{bench.name}: {where}; on a machine with hub access run: python -c "{code}" and copy it here'
    if bench.hub_aliases:
        msg += f" (the same data is also published as {' and '.join(bench.hub_aliases)}: either id works)"
    if bench.video_field:
        msg += f"; also copy the benchmark's video files into {folder}/ in its own layout (e.g. videos/)"
    if bench.subtitles:
        msg += f" and its subtitles into {folder}/subtitle/<videoID>.srt"
    return msg


# ------------------------------------------------------------------------------------------ items
def _offline() -> None:
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"


def iter_items(bench: Benchmark, data_dir: str | Path | None = None, limit: int | None = None,
               subset: str | None = None) -> Iterator[EvalItem]:
    """Like :func:`load_items`, one item at a time (images are decoded as rows are read, so a large VLM
    benchmark never has to sit in memory at once). The missing-data check happens on the first ``next``."""
    from zppo_core.suites.files import read_rows

    _offline()
    row_filter = bench.subset_filter(subset)
    folder = _root(data_dir) / bench.folder
    sources, missing = layout(bench, folder)
    if not sources or missing:
        raise DataError(missing_message(bench, data_dir))
    produced = 0
    for src in sources:
        counts: dict[str, int] = {}
        for split, where, row in read_rows(bench, src):
            index = counts.get(split, 0)
            counts[split] = index + 1
            for kw in row_items(bench, row, where, folder, src, split, index, row_filter):
                if limit is not None and produced >= limit:
                    return
                produced += 1
                yield EvalItem(**kw)
            if limit is not None and produced >= limit:
                return
        if not counts:
            raise DataError(f"{src.root}: no rows for {bench.name}; the files are empty")


def load_items(bench: Benchmark, data_dir: str | Path | None = None, limit: int | None = None,
               subset: str | None = None) -> list[EvalItem]:
    """The benchmark's questions from the local data dir (the first `limit` only, when given; `subset` picks one
    of ``bench.subsets``, default the first). Never downloads.

    Raises DataError with :func:`missing_message` when the data is not there, or naming the file, row and
    fix when a row does not fit the public schema.
    """
    return list(iter_items(bench, data_dir, limit, subset))
