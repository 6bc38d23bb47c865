"""Run the preprocessing over one shard of the manifest and write the cache.

A shard is a list of volume ids (the manifest's ``shard`` column), so 100k volumes are a few
hundred jobs, not 100k. A volume that fails to read or check is recorded with its reason and
the shard goes on.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm import tqdm

from ctvlp.io import ctrate, inspect_ct, merlin, radchestct
from ctvlp.io.dicom import GeometryRules, read_series
from ctvlp.io.volume import Volume, check_values
from ctvlp.preprocess.cache import cache_file, write_cached
from ctvlp.preprocess.transform import PreprocessSpec, preprocess


def load_source(row: pd.Series, sources: dict, index: pd.DataFrame | None, rules: GeometryRules,
                ctrate_meta: pd.DataFrame | None = None) -> Volume:
    """The HU volume of one manifest row, whatever its source format."""
    if row.source_kind == "dicom_series":
        root = Path(sources["hospital"]["dicom_root"])
        files = [root / p for p in index.loc[index.series_key == row.source, "path"]]
        return read_series(files, rules, name=row.source)
    if row.source_kind == "merlin_nifti":
        return merlin.load_volume(sources["merlin"]["root"], row.source)
    if row.source_kind == "inspect_nifti":
        return inspect_ct.load_volume(sources["inspect"]["root"], row.source)
    if row.source_kind.startswith("nifti_"):
        return ctrate.load_volume(sources["ct_rate"]["root"], row.source, row.source_kind[len("nifti_"):],
                                  ctrate_meta)
    if row.source_kind == "npz":
        return radchestct.load_volume(sources["rad_chestct"]["root"], row.source)
    raise ValueError(f"{row.volume_id}: unknown source kind {row.source_kind}")


def process_shard(manifest: pd.DataFrame, shard: int, sources: dict, index: pd.DataFrame | None,
                  spec: PreprocessSpec, cache_dir: str | Path, rules: GeometryRules) -> pd.DataFrame:
    """Preprocess every volume of the shard; one result row each (ok with geometry, or the reason)."""
    rows = []
    part = manifest[manifest.shard == shard]
    meta = ctrate.load_metadata(Path(sources["ct_rate"]["root"])) if "ct_rate" in sources else None
    for _, row in tqdm(part.iterrows(), total=len(part), desc=f"preprocess shard {shard}"):
        result = {"volume_id": row.volume_id, "status": "ok", "reason": ""}
        try:
            volume = load_source(row, sources, index, rules, meta)
            check_values(volume, row.volume_id)
            data, affine = preprocess(volume, spec)
        except (ValueError, OSError) as err:
            result.update(status="rejected", reason=str(err).split(": ", 1)[-1])
            rows.append(result)
            continue
        write_cached(cache_file(cache_dir, row.volume_id), data)
        result.update({
            "source_shape": list(volume.shape), "source_spacing": [round(float(s), 4) for s in volume.spacing],
            "source_orientation": "".join(nib.orientations.aff2axcodes(volume.affine)),
            "shape": list(data.shape), "affine": [float(v) for v in np.asarray(affine).ravel()],
            "hu_min": float(volume.hu.min()), "hu_max": float(volume.hu.max()), "hu_checked": True,
        })
        rows.append(result)
    return pd.DataFrame(rows)
