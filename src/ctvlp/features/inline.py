"""``preprocess.keep_volumes: false``: window features extracted in the preprocessing job, no volume cache.

With a frozen window encoder the training only ever reads the window features; at the paper's spacing a
cached volume is 28-50 MB and 100k of them are terabytes. Here each preprocessed volume goes straight to the
feature extractor of ``ctvlp.features.window`` (the same ``extract_features`` the ``window_features`` rule
calls, through a scratch ``.npy`` that is deleted at once), and the job writes the same feature shard table
as ``window_features`` would.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ctvlp.features.cache import write_cached


class InlineFeatures:
    """Callable ``(volume_id, array)`` for ``process_shard(consume=...)``; ``table(results)`` afterwards."""

    def __init__(self, model, feature_dir: str | Path, scratch: str | Path | None = None):
        from ctvlp.features.window import extract_features, feature_file

        self._extract, self._file = extract_features, feature_file
        self.model, self.feature_dir = model, Path(feature_dir)
        self.scratch = Path(scratch or tempfile.gettempdir())
        self.info: dict[str, dict] = {}

    @classmethod
    def from_config(cls, config: dict, feature_dir: str | Path, scratch: str | Path | None = None) -> "InlineFeatures":
        """The configured frozen window encoder (its weights file, or the seeded init), on the GPU if any.
        Imported here, not at module level: the data environment runs preprocessing without the model stack."""
        import torch

        from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder

        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model = build_window_encoder(WindowEncoderSpec.from_config(config), config["seed"]).to(device)
        return cls(model.eval(), feature_dir, scratch)

    def __call__(self, volume_id: str, data: np.ndarray) -> None:
        tmp = self.scratch / f"{volume_id}.{os.getpid()}.npy"
        write_cached(tmp, data)  # the float16 the cache would hold: features equal the two-job path's
        try:
            self.info[volume_id] = self._extract(self.model, tmp, self._file(self.feature_dir, volume_id))
        finally:
            tmp.unlink(missing_ok=True)

    def table(self, results: pd.DataFrame) -> pd.DataFrame:
        """One row per volume of the shard, as the window_features rule writes it."""
        rows = []
        for r in results.itertuples():
            if r.volume_id in self.info:
                rows.append({"volume_id": r.volume_id, "status": "ok", "reason": "", **self.info[r.volume_id]})
            else:
                rows.append({"volume_id": r.volume_id, "status": "skipped", "reason": r.reason})
        return pd.DataFrame(rows)
