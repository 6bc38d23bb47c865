"""Window features on disk: one safetensors file per volume (no pickle), and batch collation.

A batch (``collate``) holds, per scan, padded token lists with integer grid indices and masks:
``scan_tokens`` (B, N, 2D) [CLS; mean] per window at ``scan_coords`` (B, N, 3) window indices,
``depth_tokens`` (B, M, D) at ``depth_coords`` (x, y window index, global depth index), ``*_mask``
(True = real), ``grid`` (B, 3) each scan's window grid (the RoPE divisor of both paths) and
``n_bins`` (B,) its number of depth bins. The combiner normalises the indices per scan, so padding
never changes a scan's angles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from ctvlp.core.state_dict import save_tensors
from ctvlp.features.cache import cache_file, read_cached
from ctvlp.models.tokens import collate, volume_tokens  # noqa: F401  (the token batch: models holds it, below us)
from ctvlp.models.window_encoder import WindowEncoder, encode_volume, window_grid_features


def fits_in_memory(folder: Path, pattern: str, limit_bytes: float) -> bool:
    """Whether the files matching ``pattern`` in ``folder`` total at most ``limit_bytes`` (the demo's do)."""
    return sum(p.stat().st_size for p in folder.glob(pattern)) <= limit_bytes


def feature_file(feature_dir: str | Path, volume_id: str) -> Path:
    return Path(feature_dir) / f"{volume_id}.safetensors"


def extract_features(model: WindowEncoder, cache_path: Path, out_path: Path, dtype=torch.float16) -> dict:
    """Window features of one cached volume, on the encoder's device (bf16 autocast on a GPU), saved as float16."""
    device = next(model.parameters()).device
    volume = torch.from_numpy(np.asarray(read_cached(cache_path), dtype=np.float32)).to(device)
    feats = {k: v.cpu() for k, v in encode_volume(model, volume).items()}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_tensors({k: v.to(dtype) for k, v in feats.items()}, out_path)
    return {"grid": list(feats["cls"].shape[:3]), "n_bins": int(feats["depth"].shape[2] * feats["depth"].shape[3])}


def load_features(path: str | Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(str(path)).items()}


class LiveFeatures:
    """Tokens of a trainable window encoder, computed from the cached voxels at every call (the
    end-to-end option): gradients reach the encoder. Voxels stay in memory when the cache is small."""

    def __init__(self, cache_dir: str | Path, encoder: WindowEncoder | None = None, keep_in_memory: bool | None = None,
                 limit_bytes: float = 2e9):
        self.cache_dir = Path(cache_dir)
        self.encoder = encoder
        self.keep = fits_in_memory(self.cache_dir, "**/*.npy", limit_bytes) if keep_in_memory is None else keep_in_memory
        self._voxels: dict[str, torch.Tensor] = {}

    def for_model(self, model) -> "LiveFeatures":
        """The same cache, read through ``model``'s own window encoder."""
        if model.window is None:
            raise ValueError("the model has no trainable window encoder (model.window_encoder.trainable is false)")
        bound = LiveFeatures(self.cache_dir, model.window, self.keep)
        bound._voxels = self._voxels
        return bound

    def voxels(self, volume_id: str) -> torch.Tensor:
        if volume_id in self._voxels:
            return self._voxels[volume_id]
        data = torch.from_numpy(np.asarray(read_cached(cache_file(self.cache_dir, volume_id)), dtype=np.float32))
        if self.keep:
            self._voxels[volume_id] = data
        return data

    def tokens(self, volume_id: str) -> dict[str, torch.Tensor]:
        if self.encoder is None:
            raise ValueError("LiveFeatures needs a window encoder: call for_model(model) first")
        device = next(self.encoder.parameters()).device
        return volume_tokens(window_grid_features(self.encoder, self.voxels(volume_id).to(device)))
