"""Scale benchmark: the ingest steps on a synthetic index of a 10 M instance / 100k series export.

`python benchmarks/bench_scale.py [--instances 10000000] [--series 100000] [--small 1000000] [--header-slices 150]`

Writes (headers only, realistic column widths: 17-character salted keys, kernels, image types, geometry)
a partitioned index of ``--instances`` rows as the ``dicom_index_part`` jobs would (``--parts`` parts x
``--buckets`` buckets), and the same at ``--small`` rows, then runs every step in its own process and
prints its peak RSS and wall time at both sizes: index merge (the summary from parquet metadata), manifest
(series classification + selection, one bucket at a time), series selection alone, one preprocessing
shard's index read (paper preset: 256 shards) and snippet resolution's index read plus resolving one
reference per study. Target: every step <= 8 GB peak and growing with its own share, not the whole export
(the shard read stays flat from the small to the large index). Then header-reading throughput (files/s on
one core) on real DICOM files written by the demo writer. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ctvlp.io import index_store

STEPS = ("merge", "manifest", "selection", "shard_read", "resolve")


def _keys(prefix: str, ids: np.ndarray) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill(np.char.mod("%x", ids.astype(np.int64) * 2654435761 % (1 << 60)), 16))


def write_synthetic(root: Path, instances: int, series: int, parts: int, buckets: int, seed: int = 0) -> None:
    """A partitioned index like the part jobs write; per-series geometry is consistent (valid series)."""
    per_series = instances // series
    for part in range(parts):
        lo, hi = part * series // parts, (part + 1) * series // parts
        s_ids = np.arange(lo, hi)
        st_ids = s_ids // 2
        n = len(s_ids) * per_series
        s = np.repeat(s_ids, per_series)
        st = np.repeat(st_ids, per_series)
        k = np.tile(np.arange(per_series), len(s_ids))
        rep = lambda values: np.repeat(values, per_series)  # noqa: E731 (per-series values, one per instance)
        study_key = _keys("S", st_ids)
        bucket = rep(np.array([int(x[1:9], 16) % buckets for x in study_key]))
        thick = np.where(s % 2 == 0, 5.0, 1.0)
        image = np.char.mod("IM%06d", np.arange(per_series))
        cols = {
            "path": np.char.add(rep(np.char.add(_keys("D", st_ids), "/")), np.tile(image, len(s_ids))),
            "path_key": _keys("X", s * per_series + k), "reason": np.full(n, ""),
            "patient_key": rep(_keys("P", st_ids // 2)), "study_key": rep(study_key),
            "accession_key": rep(_keys("A", st_ids)), "series_key": rep(_keys("R", s_ids)),
            "frame_key": rep(_keys("F", st_ids)),
            "image_type": np.full(n, "ORIGINAL\\PRIMARY\\AXIAL"), "series_kind": np.full(n, ""),
            "transfer_syntax": np.full(n, "1.2.840.10008.1.2.4.70"), "patient_age": np.full(n, "063Y"),
            "patient_sex": np.where(st % 2 == 0, "F", "M"), "Modality": np.full(n, "CT"),
            "ConvolutionKernel": np.where(s % 2 == 0, "B31f", "B70f"), "BodyPartExamined": np.full(n, "CHEST"),
            "SeriesNumber": (2 + s % 2).astype(float), "InstanceNumber": (k + 1).astype(float),
            "SliceThickness": thick, "Rows": np.full(n, 512.0), "Columns": np.full(n, 512.0),
            "NumberOfFrames": np.full(n, np.nan), "GantryDetectorTilt": np.zeros(n), "ipp0": np.full(n, -180.0),
            "ipp1": np.full(n, -180.0), "ipp2": -k * thick, "iop0": np.ones(n), "iop1": np.zeros(n),
            "iop2": np.zeros(n), "iop3": np.zeros(n), "iop4": np.ones(n), "iop5": np.zeros(n),
            "pixel_spacing_row": np.full(n, 0.7), "pixel_spacing_col": np.full(n, 0.7),
            "has_pixels": np.ones(n, bool), "frame": np.zeros(n, np.int32),
            "size": np.full(n, 526_000, np.int64), "mtime_ns": np.full(n, 1_700_000_000_000_000_000, np.int64),
        }
        table = pa.table({name: cols[name] for name in index_store.SCHEMA.names}, schema=index_store.SCHEMA)
        for b in np.unique(bucket):
            out = root / f"part={part}" / f"bucket={b}"
            out.mkdir(parents=True, exist_ok=True)
            pq.write_table(table.filter(pa.array(bucket == b)), out / "data.parquet")
        (root.parent / "counts").mkdir(exist_ok=True)
        (root.parent / "counts" / "series.json").write_text(json.dumps({"series": series}))
        index_store.write_counts(root.parent / "counts" / f"part_{part}.json",
                                 {"part": part, "files": n, "rows": n, "read": n, "reused": 0})


def run_step(step: str, root: Path, buckets: int) -> dict:
    """One step, in this (fresh) process."""
    import pandas as pd

    from ctvlp.io.dicom import GeometryRules
    from ctvlp.io.selection import SelectionRules, classify_series, select_per_study

    t0 = time.perf_counter()
    info: dict = {}
    if step == "merge":
        counts = [json.loads(p.read_text()) for p in sorted((root.parent / "counts").glob("part_*.json"))]
        info = index_store.summarize(root, counts)
    elif step in ("manifest", "selection"):
        series = []
        for part in index_store.iter_buckets(root, index_store.CLASSIFY_COLUMNS):
            series.append(classify_series(part, GeometryRules()))
        series = pd.concat(series, ignore_index=True)
        if step == "selection":
            t0 = time.perf_counter()  # selection alone, on the series table the manifest made
        chosen = select_per_study(series, SelectionRules(prefer_kernels=("B31",)))
        info = {"series": len(chosen), "volumes": int(chosen.selected.sum())}
    elif step == "shard_read":
        # one of the paper's 256 shards: 1/256 of the export's series (taken from part 0, which holds 1/parts)
        import pyarrow.dataset as pads

        one = pads.dataset(str(root / "part=0"), format="parquet").to_table(columns=["series_key", "study_key"])
        n_series = int(json.loads(Path(root.parent / "counts" / "series.json").read_text())["series"])
        keys = sorted(set(one.column("series_key").to_pylist()))[: max(1, n_series // 256)]
        studies = {s for s, r in zip(one.column("study_key").to_pylist(), one.column("series_key").to_pylist())
                   if r in set(keys)}
        t0 = time.perf_counter()
        files = index_store.series_files(root, keys, studies, buckets)
        info = {"series": len(keys), "files": len(files)}
    elif step == "resolve":
        from ctvlp.text.resolve import StudyResolver
        import pyarrow.dataset as pads

        index = index_store.read_index(root, index_store.RESOLVE_COLUMNS, pads.field("reason") == "")
        info["index_rows_read"] = len(index)
        info["read_seconds"] = round(time.perf_counter() - t0, 2)
        resolved, t1 = 0, time.perf_counter()
        for accession, rows in index.groupby("accession_key", sort=False):
            if resolved == 2000:  # resolution is per study: time a sample, the read above is the whole index
                break
            numbers = sorted(rows.SeriesNumber.unique())
            volume = pd.Series({"frame_key": rows.frame_key.iloc[0], "affine": np.eye(4).ravel(),
                                "shape": [512, 512, 400]})
            resolver = StudyResolver(rows, pd.DataFrame({"series_number": numbers}), volume, 4)
            resolver.resolve(int(numbers[0]), 10)
            resolved += 1
        info["ms_per_study"] = round(1000 * (time.perf_counter() - t1) / max(resolved, 1), 2)
    info["seconds"] = round(time.perf_counter() - t0, 2)
    info["peak_rss_gb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    return info


def header_throughput(folder: Path, slices: int = 150, matrix: int = 512) -> float:
    from ctvlp.demo.dicom_writer import SeriesSpec, StudyInfo, write_series
    from ctvlp.demo.findings import sample_anatomy
    from ctvlp.demo.phantom import Phantom
    from ctvlp.io.dicom import list_files, read_headers

    rng = np.random.default_rng(0)
    study = StudyInfo("Bench^Pat", "B0", "19700101", "F", "050Y", "ACC", "20200101", "I", "D", "1.2.9", "1.2.9.1", "X")
    for n in range(4):
        write_series(Phantom(sample_anatomy(rng)), study, SeriesSpec(n + 2, "Thorax", "B31f", 1.0, slices, 60.0, matrix,
                                                                     0.7 * 512 / matrix),
                     folder / f"SE{n}", rng, 0.0, f"bench{n}")
    files = list_files(folder)
    t0 = time.perf_counter()
    rows = sum(len(r) for r in read_headers(files, folder, b"salt", workers=1, desc="headers"))
    assert rows == len(files)
    return len(files) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10_000_000)
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=1_000_000, help="instances of the small index (linearity)")
    parser.add_argument("--parts", type=int, default=64)
    parser.add_argument("--buckets", type=int, default=64)
    parser.add_argument("--header-slices", type=int, default=150, help="slices of each of the 4 header-read series")
    parser.add_argument("--header-matrix", type=int, default=512, help="in-plane pixels of those slices")
    parser.add_argument("--step", choices=STEPS)
    parser.add_argument("--root")
    args = parser.parse_args()
    if args.step:
        print(json.dumps(run_step(args.step, Path(args.root), args.buckets)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for label, instances in (("small", args.small), ("large", args.instances)):
            series = max(2, args.series * instances // args.instances)
            root = Path(tmp) / label / "dicom_index"
            t0 = time.perf_counter()
            write_synthetic(root, instances, series, args.parts, args.buckets)
            size = sum(p.stat().st_size for p in root.rglob("*.parquet"))
            print(f"{label}: {instances:,} instances / {series:,} series written in {time.perf_counter() - t0:.0f} s, "
                  f"{size / 2**20:.0f} MiB of parquet", flush=True)
            for step in STEPS:
                out = subprocess.run([sys.executable, __file__, "--step", step, "--root", str(root),
                                      "--buckets", str(args.buckets)], capture_output=True, text=True, check=True)
                results[(label, step)] = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"  {step:<11} {results[(label, step)]}", flush=True)
        print("\n| step | peak RSS small | peak RSS large | ratio | wall small | wall large |")
        print("|---|---:|---:|---:|---:|---:|")
        for step in STEPS:
            a, b = results[("small", step)], results[("large", step)]
            print(f"| {step} | {a['peak_rss_gb']:.2f} GB | {b['peak_rss_gb']:.2f} GB | "
                  f"{b['peak_rss_gb'] / a['peak_rss_gb']:.2f}x | {a['seconds']:.1f} s | {b['seconds']:.1f} s |")
        print(f"(index {args.instances / args.small:.0f}x larger; target: every step <= 8 GB)")
        rate = header_throughput(Path(tmp) / "dicom", args.header_slices, args.header_matrix)
        print(f"header reading: {rate:.0f} files/s on one core ({args.header_matrix} x {args.header_matrix} CT slices "
              "written by the demo writer)")


if __name__ == "__main__":
    main()
