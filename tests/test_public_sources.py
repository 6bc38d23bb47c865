"""Merlin and INSPECT adapters (exact public layouts), the paper's CT-RATE dev list, the RATE label files."""

from __future__ import annotations

import pandas as pd

from ctvlp.ids import Pseudonymizer
from ctvlp.io import ctrate
from ctvlp.manifest import SplitSpec, ctrate_rows


def test_ctrate_dev_list_is_the_papers_1301_patients():
    ids = ctrate.traindev_patients()
    assert len(ids) == 1301 and {"train_11", "train_20", "train_19981"} <= ids and "train_1" not in ids
    found = pd.DataFrame([{"source": f"train_fixed/{p}/{p}_a/{p}_a_1.nii.gz", "name": f"{p}_a_1", "split": "train",
                           "release": "fixed", "status": "ok", "reason": ""} for p in ("train_11", "train_1")]
                         + [{"source": "valid_fixed/valid_1/valid_1_a/valid_1_a_1.nii.gz", "name": "valid_1_a_1",
                             "split": "valid", "release": "fixed", "status": "ok", "reason": ""}])
    salt = b"test"
    rows = ctrate_rows(found, Pseudonymizer(salt), salt, SplitSpec(ctrate_dev="radfinder"))
    assert rows.set_index("source").split.tolist() == ["dev", "train", "test"]
