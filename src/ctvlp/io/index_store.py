"""The DICOM index as a partitioned parquet dataset, written in chunks by parallel jobs, read in pieces.

Why: a PACS export of 50,000 patients is ~10 M files; one process holding the whole index as Python
rows needs ~25 GB, and every consumer loading it whole needs ~5 GB. Here each ``dicom_index_part`` job
reads the headers of one share of the tree (the directories whose relative path hashes to its part, or
one share of a file list) and appends them, a chunk at a time, to one parquet file per bucket:
``<root>/part=P/bucket=B/data.parquet``. The bucket is a hash of the study, so every file of a study
(and so of its series) lands in one bucket, and consumers read one bucket at a time (``manifest``), or
only the rows and columns they need through pyarrow dataset filters (a preprocessing shard: the paths of
its own series; snippet mining: the geometry columns of readable files).

Incremental mode: a part job keeps a copy of what it wrote (``state``); the next run takes a file's rows
from that copy when its size and modification time are unchanged and re-reads only new or changed files.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ctvlp.io.dicom import HEADER_FIELDS, read_headers
from ctvlp.core.salt import CHECK_KEY, merged_check

_STR = ["path", "path_key", "reason", "patient_key", "study_key", "accession_key", "series_key", "frame_key",
        "image_type", "series_kind", "transfer_syntax", "patient_age", "patient_sex", "Modality",
        "ConvolutionKernel", "BodyPartExamined"]
_FLOAT = [n for n in HEADER_FIELDS if n not in ("Modality", "ConvolutionKernel", "BodyPartExamined")] + [
    *(f"ipp{i}" for i in range(3)), *(f"iop{i}" for i in range(6)), "pixel_spacing_row", "pixel_spacing_col"]
SCHEMA = pa.schema([*(pa.field(n, pa.string()) for n in _STR), *(pa.field(n, pa.float64()) for n in _FLOAT),
                    pa.field("has_pixels", pa.bool_()), pa.field("frame", pa.int32()),
                    pa.field("size", pa.int64()), pa.field("mtime_ns", pa.int64())])
# What each consumer reads (never the whole table).
CLASSIFY_COLUMNS = ["path", "path_key", "reason", "patient_key", "study_key", "accession_key", "series_key",
                    "frame_key", "image_type", "series_kind", "transfer_syntax", "patient_age", "patient_sex",
                    "Modality", "SeriesNumber", "ConvolutionKernel", "SliceThickness", "Rows", "Columns",
                    "NumberOfFrames", "GantryDetectorTilt", "has_pixels", "frame", *(f"ipp{i}" for i in range(3)),
                    *(f"iop{i}" for i in range(6)), "pixel_spacing_row", "pixel_spacing_col"]
SHARD_COLUMNS = ["series_key", "path", "frame"]
RESOLVE_COLUMNS = ["reason", "accession_key", "series_key", "frame_key", "SeriesNumber", "InstanceNumber",
                   "SliceThickness", "Rows", "Columns", "pixel_spacing_row", "pixel_spacing_col",
                   *(f"ipp{i}" for i in range(3)), *(f"iop{i}" for i in range(6))]


def bucket_of(study_key: str, buckets: int) -> int:
    """The bucket of a study (its key is a salted hex HMAC, so buckets are uniform); '' -> 0."""
    return int(study_key[1:9], 16) % buckets if study_key else 0


def part_of(rel_dir: str, parts: int) -> int:
    return zlib.crc32(rel_dir.encode()) % parts


def part_files(root: str | Path, part: int, parts: int, file_list: str | Path | None = None) -> Iterator[str]:
    """The files of one part, streamed (never the whole export in memory): directories of the tree whose
    relative path hashes to ``part``, or every ``parts``-th line of a file list (paths relative to root)."""
    root = str(root)
    if file_list:
        with open(file_list) as f:
            for n, line in enumerate(f):
                if n % parts == part and line.strip():
                    yield os.path.join(root, line.strip())
        return
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        if part_of(os.path.relpath(dirpath, root), parts) == part:
            yield from (os.path.join(dirpath, f) for f in sorted(files))


def _table(rows: list[dict]) -> pa.Table:
    frame = pd.DataFrame(rows)
    for name in SCHEMA.names:
        if name not in frame:
            frame[name] = None
    frame["frame"] = frame["frame"].fillna(0)
    return pa.Table.from_pandas(frame[SCHEMA.names], schema=SCHEMA, preserve_index=False)


def _previous_rows(state: Path | None, part: int) -> dict[str, pd.DataFrame]:
    """Rows of the last run of this part, by relative path (incremental mode)."""
    folder = state / f"part={part}" if state else None
    if folder is None or not folder.is_dir():
        return {}
    old = pads.dataset(str(folder), schema=SCHEMA, format="parquet").to_table().to_pandas()
    return {path_key: rows for path_key, rows in old.groupby("path_key", sort=False)}


def write_part(root: str | Path, salt: bytes, part: int, parts: int, out_dir: str | Path, buckets: int,
               workers: int = 1, chunk_files: int = 20_000, file_list: str | Path | None = None,
               state: str | Path | None = None) -> dict:
    """Index one part of the export into ``out_dir`` (one parquet file per bucket, appended chunk by
    chunk); returns its counts. With ``state``, unchanged files are taken from the previous run."""
    from ctvlp.core.ids import Pseudonymizer

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = _previous_rows(Path(state) if state else None, part)
    pseudo = Pseudonymizer(salt)
    writers: dict[int, pq.ParquetWriter] = {}
    counts = {"part": part, "files": 0, "rows": 0, "reused": 0, "read": 0}

    def flush(rows: list[dict]) -> None:
        if not rows:
            return
        table = _table(rows)
        keys = table.column("study_key").to_pylist()
        path_keys = table.column("path_key").to_pylist()
        ids = np.array([bucket_of(k or p, buckets) for k, p in zip(keys, path_keys)])
        for b in np.unique(ids):
            if b not in writers:
                (out_dir / f"bucket={b}").mkdir(exist_ok=True)
                writers[b] = pq.ParquetWriter(out_dir / f"bucket={b}" / "data.parquet", SCHEMA)
            writers[b].write_table(table.filter(pa.array(ids == b)))
        counts["rows"] += len(rows)

    def chunks(files: Iterable[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        for f in files:
            batch.append(f)
            if len(batch) == chunk_files:
                yield batch
                batch = []
        if batch:
            yield batch

    for batch in chunks(part_files(root, part, parts, file_list)):
        rows, todo = [], []
        for f in batch:
            rel = os.path.relpath(f, root)
            old = previous.get(pseudo("hospital", "path", rel))
            if old is not None:
                stat = os.stat(f)
                if int(old["size"].iloc[0]) == stat.st_size and int(old["mtime_ns"].iloc[0]) == stat.st_mtime_ns:
                    rows += old.to_dict("records")
                    counts["reused"] += 1
                    continue
            todo.append(f)
        for file_rows in read_headers(todo, root, salt, workers, desc=f"DICOM headers part {part}"):
            rows += file_rows
        counts["files"] += len(batch)
        counts["read"] += len(todo)
        flush(rows)
    for writer in writers.values():
        writer.close()
    if state:
        keep = Path(state) / f"part={part}"
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(out_dir, keep, copy_function=_link_or_copy)
    return counts


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def dataset(root: str | Path) -> pads.Dataset:
    """The whole index as one pyarrow dataset (``part`` and ``bucket`` as hive partition columns)."""
    return pads.dataset(str(root), format="parquet", partitioning="hive", schema=SCHEMA.append(
        pa.field("part", pa.int32())).append(pa.field("bucket", pa.int32())))


def read_index(root: str | Path, columns: list[str] | None = None, filter=None) -> pd.DataFrame:
    """Only the rows (pyarrow expression ``filter``) and columns asked for."""
    return dataset(root).to_table(columns=columns, filter=filter).to_pandas()


def iter_buckets(root: str | Path, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """One bucket (every part's rows of it) at a time: whole studies, a 1/buckets share of the export."""
    buckets = sorted({int(d.name.split("=", 1)[1]) for d in Path(root).glob("part=*/bucket=*")})
    if not buckets:
        return
    ds = dataset(root)
    for b in buckets:
        yield ds.to_table(columns=columns, filter=pads.field("bucket") == b).to_pandas()


def series_files(root: str | Path, series_keys: Iterable[str], study_keys: Iterable[str], buckets: int) -> pd.DataFrame:
    """Paths of the given series (a preprocessing shard's candidates), from their studies' buckets only."""
    keys = sorted(set(series_keys))
    wanted = sorted({bucket_of(k, buckets) for k in study_keys})
    expr = pads.field("bucket").isin(wanted) & pads.field("series_key").isin(keys) & (pads.field("reason") == "")
    return read_index(root, SHARD_COLUMNS, expr)


def summarize(root: str | Path, part_counts: list[dict]) -> dict:
    """The merge step: per-part counts (files walked: the QC's hospital input count) and row totals, read
    from parquet metadata, not from the rows."""
    files = sorted(Path(root).rglob("*.parquet"))
    rows = sum(pq.read_metadata(f).num_rows for f in files)  # footers only
    return {"parts": len(part_counts), "files_walked": sum(c["files"] for c in part_counts),
            "files_read": sum(c["read"] for c in part_counts), "files_reused": sum(c["reused"] for c in part_counts),
            "rows": rows, "parquet_files": len(files),
            # the fingerprint of the salt the parts were made with (ctvlp.core.salt): compared before text jobs
            CHECK_KEY: merged_check(part_counts)}


def dataset_dir(summary_path: str | Path) -> Path:
    """The dataset folder beside the merge summary (``dicom_index.json`` -> ``dicom_index/``)."""
    path = Path(summary_path)
    return path.with_name(path.name[: -len(".json")] if path.name.endswith(".json") else path.stem)


def files_walked(summary_path: str | Path) -> int:
    return int(json.loads(Path(summary_path).read_text())["files_walked"])


def write_counts(path: str | Path, counts: dict) -> None:
    Path(path).write_text(json.dumps(counts, indent=1, sort_keys=True))
