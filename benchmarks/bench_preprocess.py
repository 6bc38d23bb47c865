"""Preprocessing benchmarks (issue: ingestion). Run on demand: `make bench` or
`python benchmarks/bench_preprocess.py [--volumes N] [--slices N] [--matrix N] [--dry-volumes N]`.

Prints, measured in the same run on the same files:
  1. ctvlp.preprocess vs a plain MONAI dictionary chain (LoadImaged, EnsureChannelFirstd, Orientationd,
     Spacingd, ScaleIntensityRanged, centre crop / pad): speed ratio (target >= 1.5x) and max abs diff (<= 1e-3);
     and decode + preprocess against only decoding the same files (target <= 1.3x);
  2. reading the float16 cache vs decoding the source .nii.gz, both from a cold page cache: every file's pages
     are dropped first (fsync + posix_fadvise DONTNEED; no root needed), so the read is not served from RAM
     just because the file was just written (target >= 10x);
  3. `snakemake -n` on a synthetic 100,000-volume manifest with the paper preset (target <= 30 s).
Volumes are realistic: 512 x 512 x N phantom chests from the demo generator at full matrix.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import yaml

from ctvlp.demo.findings import sample_anatomy, sample_lesions
from ctvlp.demo.phantom import Phantom
from ctvlp.demo.public_minis import LPS_TO_RAS
from ctvlp.io.volume import Volume
from ctvlp.features.cache import read_cached, write_cached
from ctvlp.preprocess.transform import PreprocessSpec, preprocess

REPO = Path(__file__).resolve().parents[1]
SPEC = PreprocessSpec((0.75, 0.75, 3.0), (-1000.0, 1000.0), (128, 128, 32))  # the paper preset


def make_volume(path: Path, seed: int, slices: int, matrix: int = 512) -> None:
    """A matrix x matrix x slices phantom chest over the same 358 mm field (0.7 x 0.7 x 1 mm at 512), written
    slab by slab (bounded memory). A smaller matrix is the smoke run's toy size (`run_all.py --smoke`)."""
    rng = np.random.default_rng(seed)
    anatomy = sample_anatomy(rng)
    phantom = Phantom(anatomy, sample_lesions(rng, anatomy, 0.5))
    step = 0.7 * 512 / matrix
    xs = -179.0 + step * np.arange(matrix)
    z0 = anatomy.z_apex + 10 - slices * 1.0
    out = np.empty((matrix, matrix, slices), dtype=np.int16)
    yy, xx = np.meshgrid(xs, xs, indexing="xy")
    for k in range(slices):
        hu = phantom.render(xx.T, yy.T, np.full(xx.shape, z0 + k)) + rng.normal(0, 12, xx.shape)
        out[:, :, k] = np.clip(hu, -1024, 3071)
    lps = np.diag([step, step, 1.0, 1.0])
    lps[:3, 3] = [xs[0], xs[0], z0]
    nib.save(nib.Nifti1Image(out, LPS_TO_RAS @ lps), path)


def monai_chain():
    from monai.transforms import (CenterSpatialCropd, Compose, EnsureChannelFirstd, Lambdad, LoadImaged,
                                  Orientationd, ScaleIntensityRanged, Spacingd, SpatialPadd)

    def crop_pad(img):
        size = [max(w, (n // w) * w) for n, w in zip(img.shape[1:], SPEC.window_voxels)]
        return SpatialPadd("img", size)(CenterSpatialCropd("img", size)({"img": img}))["img"]

    return Compose([LoadImaged("img", image_only=True), EnsureChannelFirstd("img"),
                    Orientationd("img", axcodes="RAS"), Spacingd("img", pixdim=SPEC.spacing_mm, mode="bilinear"),
                    ScaleIntensityRanged("img", *SPEC.hu_range, 0.0, 1.0, clip=True),
                    Lambdad("img", crop_pad)])


def decode(path: Path) -> Volume:
    img = nib.load(path)
    return Volume(np.asarray(img.dataobj, dtype=np.float32), img.affine)


def drop_pages(path: Path) -> None:
    """Evict a file's pages from the page cache (Linux honours DONTNEED for clean pages)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def bench_preprocess(paths: list[Path], cache: Path) -> dict:
    chain = monai_chain()
    t_decode = t_ours = t_monai = t_cache = t_cold_decode = 0.0
    max_diff = 0.0
    for path in paths:
        drop_pages(path)
        _, t = timed(decode, path)
        t_cold_decode += t
        _, t = timed(decode, path)
        t_decode += t
        (ours, _), t = timed(lambda p: preprocess(decode(p), SPEC), path)
        t_ours += t
        theirs, t = timed(lambda p: chain({"img": str(p)})["img"], path)
        t_monai += t
        max_diff = max(max_diff, float(np.abs(theirs[0].numpy() - ours).max()))
        target = cache / (path.name + ".npy")
        write_cached(target, ours)
        drop_pages(target)  # cold: not the pages the write just left in memory
        _, t = timed(lambda p: np.asarray(read_cached(p)).sum(), target)  # force every page in
        t_cache += t
    return {"decode_s": t_decode, "cold_decode_s": t_cold_decode, "ours_s": t_ours, "monai_s": t_monai,
            "cache_read_s": t_cache, "max_abs_diff": max_diff,
            "cache_bytes": sum(p.stat().st_size for p in cache.rglob("*.npy")) / len(paths)}


def bench_dryrun(work: Path, n_volumes: int = 100_000) -> float:
    """`snakemake -n` with the paper preset over a synthetic manifest of n volumes (the empty data roots and the
    weights manifest the preset requires come from tests/paper_roots.py, as the pytest dry runs use them)."""
    sys.path.insert(0, str(REPO / "tests"))
    from paper_roots import fake_paper_roots

    (work / "roots.yaml").write_text(yaml.safe_dump(fake_paper_roots(work)))
    manifest = pd.DataFrame({"volume_id": [f"V{i:016x}" for i in range(n_volumes)], "split": "train",
                             "dataset": "ct_rate", "shard": np.arange(n_volumes) % 256})
    (work / "results" / "manifest").mkdir(parents=True, exist_ok=True)
    manifest.to_parquet(work / "results" / "manifest" / "manifest.parquet")
    snakemake = Path(sys.executable).parent / "snakemake"
    cmd = [str(snakemake), "-s", str(REPO / "Snakefile"), "-d", str(work), "-n", "--quiet", "--cores", "1",
           "--configfile", str(REPO / "config/config.yaml"), str(REPO / "config/paper.yaml"), str(work / "roots.yaml")]
    start = time.perf_counter()
    # the paper preset takes its salt from the environment only (a dry run stops without one); a dry run
    # pseudonymizes nothing, so a stand-in serves where the benchmark's caller has not exported one
    env = {**os.environ, "CTVLP_SALT": os.environ.get("CTVLP_SALT") or "bench-dry-run-salt"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"snakemake -n failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=3)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--matrix", type=int, default=512, help="in-plane voxels of each volume")
    parser.add_argument("--dry-volumes", type=int, default=100_000, help="volumes of the dry run's manifest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = []
        for i in range(args.volumes):
            path = tmp / f"vol{i}.nii.gz"
            make_volume(path, i, args.slices, args.matrix)
            paths.append(path)
        r = bench_preprocess(paths, tmp / "cache")
        dry = bench_dryrun(tmp / "dry", args.dry_volumes)
    print(f"volumes: {args.volumes} x {args.matrix}x{args.matrix}x{args.slices} (.nii.gz), paper spacing {SPEC.spacing_mm} mm")
    print(f"decode only           {r['decode_s']:8.2f} s")
    print(f"decode + preprocess   {r['ours_s']:8.2f} s   ({r['ours_s'] / r['decode_s']:.2f}x decode; target <= 1.3x)")
    print(f"MONAI dict chain      {r['monai_s']:8.2f} s   (ctvlp is {r['monai_s'] / r['ours_s']:.2f}x faster; "
          f"target >= 1.5x)")
    print(f"max |ctvlp - MONAI|   {r['max_abs_diff']:.2e}     (target <= 1e-3)")
    print(f"cold cache read       {r['cache_read_s']:8.3f} s   ({r['cold_decode_s'] / r['cache_read_s']:.1f}x faster than "
          f"decoding the cold sources, {r['cold_decode_s']:.2f} s; target >= 10x)")
    per = r["cache_bytes"]
    print(f"cache: {per / 2**20:.1f} MiB per volume (float16, {args.slices} source slices at paper spacing), "
          f"{per * 1e5 / 2**40:.2f} TiB for 100k volumes")
    print(f"snakemake -n, {args.dry_volumes:,}-volume manifest, paper preset: {dry:.1f} s (target <= 30 s)")


if __name__ == "__main__":
    main()
