"""Rad-ChestCT: one ``<NoteAcc_DEID>.npz`` per scan, key ``ct``, int16 HU, 0.8 mm isotropic.

Array layout assumed (datasets.md: axis 0 = z, craniocaudal): ``ct[z, y, x]`` with z running
head to feet, y anterior to posterior and x from the patient's right to left, i.e. LPS steps
(0, 0, -0.8), (0, 0.8, 0), (0.8, 0, 0). The files carry no origin, so voxel (0,0,0) is put at 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ctvlp.io.volume import Volume, lps_affine

SPACING_MM = 0.8
SUMMARY = "Summary_3630.csv"
SETS = ("imgtrain", "imgvalid", "imgtest")
# The official assignment of Summary_3630.csv (Set_Assigned) as this project's split names.
OFFICIAL_SPLITS = {"imgtrain": "train", "imgvalid": "dev", "imgtest": "test"}


def split_of(set_assigned: str, mode: str) -> str:
    """``official``: the dataset's own train/valid/test; ``test``: every scan held out (external test)."""
    if mode == "test":
        return "test"
    if set_assigned not in OFFICIAL_SPLITS:
        raise ValueError(f"{SUMMARY}: Set_Assigned '{set_assigned}' is none of {', '.join(OFFICIAL_SPLITS)}")
    return OFFICIAL_SPLITS[set_assigned]


def discover(root: str | Path) -> pd.DataFrame:
    """Every scan of the summary and every npz on disk, each once, with status and reason."""
    root = Path(root)
    summary = pd.read_csv(root / SUMMARY)
    on_disk = {p.stem for p in root.glob("*.npz")}
    rows = []
    for _, r in summary.iterrows():
        acc = str(r.NoteAcc_DEID)
        ok = acc in on_disk
        rows.append({"source": f"{acc}.npz", "name": acc, "patient": str(r.MRN_DEID), "set": str(r.Set_Assigned),
                     "status": "ok" if ok else "rejected", "reason": "" if ok else "npz file missing"})
    for extra in sorted(on_disk - set(summary.NoteAcc_DEID.astype(str))):
        rows.append({"source": f"{extra}.npz", "name": extra, "patient": "", "set": "",
                     "status": "rejected", "reason": f"not listed in {SUMMARY}"})
    return pd.DataFrame(rows)


def count_inputs(root: str | Path) -> int:
    """Scans listed in the summary plus npz files on disk that it does not list (the QC input count)."""
    root = Path(root)
    listed = set(pd.read_csv(root / SUMMARY, usecols=["NoteAcc_DEID"]).NoteAcc_DEID.astype(str))
    return len(listed | {p.stem for p in root.glob("*.npz")})


def load_volume(root: str | Path, source: str) -> Volume:
    path = Path(root) / source
    with np.load(path, allow_pickle=False) as npz:
        if "ct" not in npz:
            raise ValueError(f"{source}: npz has no key 'ct' (keys: {', '.join(npz.keys())})")
        ct = npz["ct"]
    if ct.ndim != 3:
        raise ValueError(f"{source}: expected a 3D array, got shape {ct.shape}")
    hu = np.ascontiguousarray(ct.transpose(2, 1, 0), dtype=np.float32)  # (x, y, z)
    steps = np.array([[SPACING_MM, 0, 0], [0, SPACING_MM, 0], [0, 0, -SPACING_MM]]).T
    return Volume(hu=hu, affine=lps_affine(np.zeros(3), steps))
