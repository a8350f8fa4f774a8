"""Where a benchmark's rows are on disk, and reading them (parquet, CSV, JSON, JSONL, saved datasets).

A benchmark folder holds its data the way the public dataset ships it or the way `datasets` saves it:

* ``Dataset.save_to_disk`` (state.json + arrow files) or ``DatasetDict.save_to_disk`` (dataset_dict.json +
  one folder per split);
* raw hub copies: *.parquet, *.csv, *.jsonl, *.json anywhere below. A config is found as a sub-folder named
  after it (``MMMU-Pro/vision/``) or as files named after it (``GPQA-Diamond/gpqa_diamond.csv``,
  ``MVBench/json/action_sequence.json``, ``MathVerse/testmini.parquet`` beside
  ``testmini_text_only.parquet``); a split as a folder named after it or files named ``<split>.*``,
  ``<split>-00000-of-00002.*`` or ``<split>_3.*`` (``val`` stands for ``validation`` and back, as CharXiv
  ships ``val.parquet``). Files that name none of the benchmark's splits are all read.

Errors are :class:`~zppo_core.tasks.jsonl_data.DataError`: one line naming the file (and row) and the fix.
Heavy imports (datasets, pyarrow) happen inside functions.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from zppo_core.suites.benchmarks import Benchmark
from zppo_core.tasks.jsonl_data import DataError, iter_jsonl_rows

__all__ = ["DATA_SUFFIXES", "Source", "has_data", "layout", "read_rows"]

DATA_SUFFIXES = (".parquet", ".csv", ".jsonl", ".json")
_META_FILES = {"dataset_info.json", "state.json", "dataset_dict.json"}
# hub copies name some splits differently from the dataset card (CharXiv: val.parquet for "validation")
_SPLIT_ALIASES = {"validation": ("val",), "val": ("validation",)}


@dataclass(frozen=True)
class Source:
    """One config's rows: a directory (``files`` None: everything below it, or a saved dataset) or the given
    files. ``root`` is also the base for relative image paths."""

    config: str | None
    root: Path
    files: tuple[Path, ...] | None = None


def _is_saved(d: Path) -> bool:
    return (d / "dataset_dict.json").is_file() or (d / "state.json").is_file()


def _data_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in DATA_SUFFIXES and p.name not in _META_FILES)


def has_data(d: Path) -> bool:
    """True when `d` is a directory holding a saved dataset or any data file."""
    return d.is_dir() and (_is_saved(d) or bool(_data_files(d)))


def _stem(p: Path) -> str:
    return p.name[: -len(p.suffix)] if p.suffix else p.name


def _named(files: list[Path], name: str) -> list[Path]:
    """Files whose name (without suffix) is `name`, ignoring case (config files: ``gpqa_diamond.csv``,
    ``json/action_sequence.json``, AIME2025's ``aime2025-I.jsonl`` for config ``AIME2025-I``)."""
    return [f for f in files if _stem(f).casefold() == name.casefold()]


def layout(bench: Benchmark, folder: Path) -> tuple[list[Source], list[str]]:
    """The sources to read for `bench` in its `folder`, and the configs that are missing (multi-config only)."""
    files = _data_files(folder) if folder.is_dir() else []
    if bench.configs:
        found: dict[str, Source] = {}
        for c in bench.configs:
            if has_data(folder / c):
                found[c] = Source(c, folder / c)
            elif named := _named(files, c):
                found[c] = Source(c, folder, tuple(named))
        if not found:  # flat layout: all configs together in the folder
            return ([Source(None, folder)] if has_data(folder) else []), []
        return [found[c] for c in bench.configs if c in found], [c for c in bench.configs if c not in found]
    if bench.config:
        if has_data(folder / bench.config):
            return [Source(bench.config, folder / bench.config)], []
        if named := _named(files, bench.config):
            return [Source(bench.config, folder, tuple(named))], []
    return ([Source(bench.config, folder)] if has_data(folder) else []), []


def _split_names(split: str) -> tuple[str, ...]:
    return (split, *_SPLIT_ALIASES.get(split, ()))


def _names_split(path: Path, root: Path, split: str) -> bool:
    """True when the file is in a ``<split>/`` folder or named ``<split>``, ``<split>-00000-of-00002`` or
    ``<split>_3`` (a shard), never merely starting with the split's name (``testmini_text_only``)."""
    names = _split_names(split)
    if any(n in path.relative_to(root).parts[:-1] for n in names):
        return True
    stem = _stem(path)
    return any(stem == n or re.fullmatch(rf"{re.escape(n)}[-_]\d+(?:-of-\d+)?", stem) for n in names)


def _files_by_split(src: Source, splits: tuple[str, ...]) -> list[tuple[str, list[Path]]]:
    files = list(src.files) if src.files is not None else _data_files(src.root)
    chosen = [(s, [f for f in files if _names_split(f, src.root, s)]) for s in splits]
    chosen = [(s, fs) for s, fs in chosen if fs]
    return chosen or [(splits[0], files)]


# ------------------------------------------------------------------------------------------ row readers
def _rows_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    for n, row in iter_jsonl_rows(path):
        yield f"{path}:{n}", row


def _rows_json(path: Path, split: str) -> Iterator[tuple[str, dict]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: invalid JSON ({err}); re-export it (a list of row objects) or use .jsonl") from None
    if isinstance(data, dict):
        data = next((data[k] for k in (*_split_names(split), "data", "rows") if isinstance(data.get(k), list)), data)
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of row objects (or {{'data': [...]}}); "
                        f"got {type(data).__name__}")
    for n, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataError(f"{path}: row {n}: expected a JSON object, got {type(row).__name__}")
        yield f"{path} row {n}", row


def _rows_csv(path: Path) -> Iterator[tuple[str, dict]]:
    """CSV with a header row (GPQA's gpqa_diamond.csv, IMO-AnswerBench's answerbench.csv); quoted fields may span
    lines. Empty cells are None, like missing values in the hub's parquet copies."""
    csv.field_size_limit(1 << 30)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames:
                raise DataError(f"{path}: no header row; a CSV needs its column names on the first line")
            for n, row in enumerate(reader):
                if None in row:  # more cells than columns
                    raise DataError(f"{path}: row {n} (line {reader.line_num}): more cells than the "
                                    f"{len(reader.fieldnames)} columns of the header; fix the quoting")
                yield f"{path} row {n}", {k: (v if v != "" else None) for k, v in row.items()}
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason}); re-save it as UTF-8") from None
    except csv.Error as err:
        raise DataError(f"{path}: malformed CSV ({err}); re-export it") from None


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


def _rows_saved(bench: Benchmark, d: Path) -> Iterator[tuple[str, str, dict]]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(d))
    except (OSError, ValueError) as err:
        raise DataError(f"{d}: cannot load the saved dataset ({err}); save it again with save_to_disk") from None
    if not isinstance(ds, DatasetDict):
        for n, row in enumerate(ds):
            yield bench.split, f"{d} row {n}", row
        return
    splits = [s for s in bench.splits if s in ds] or [a for a in _split_names(bench.split) if a in ds][:1]
    if not splits:
        if len(ds) == 1 and not bench.extra_splits:
            splits = list(ds)  # one split under another name: it is the benchmark
        else:
            raise DataError(f"{d}: no split {'/'.join(bench.splits)} (has {', '.join(ds)}); "
                            f"save split={bench.split!r} of {bench.dataset_id}")
    for s in splits:
        for n, row in enumerate(ds[s]):
            yield (s if s in bench.splits else bench.split), f"{d}/{s} row {n}", row


def read_rows(bench: Benchmark, src: Source) -> Iterator[tuple[str, str, dict]]:
    """(split, where, row) for the benchmark's split(s) in one source; `where` names the file and row."""
    if src.files is None and _is_saved(src.root):
        yield from _rows_saved(bench, src.root)
        return
    for split, files in _files_by_split(src, bench.splits):
        for f in files:
            if f.suffix == ".jsonl":
                rows = _rows_jsonl(f)
            elif f.suffix == ".json":
                rows = _rows_json(f, split)
            elif f.suffix == ".csv":
                rows = _rows_csv(f)
            else:
                rows = _rows_parquet(f)
            for where, row in rows:
                yield split, where, row
