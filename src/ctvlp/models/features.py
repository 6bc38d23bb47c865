"""Window features on disk: one safetensors file per volume (no pickle), and batch collation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ctvlp.models.window_encoder import WindowEncoder, encode_volume
from ctvlp.preprocess.cache import read_cached


def feature_file(feature_dir: str | Path, volume_id: str) -> Path:
    return Path(feature_dir) / f"{volume_id}.safetensors"


def extract_features(model: WindowEncoder, cache_path: Path, out_path: Path, dtype=torch.float16) -> dict:
    volume = torch.from_numpy(np.asarray(read_cached(cache_path), dtype=np.float32))
    feats = encode_volume(model, volume)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + f".tmp{os.getpid()}")
    save_file({k: v.to(dtype).contiguous() for k, v in feats.items()}, str(tmp))
    os.replace(tmp, out_path)
    return {"grid": list(feats["cls"].shape[:3]), "n_bins": int(feats["depth"].shape[2] * feats["depth"].shape[3])}


def load_features(path: str | Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(str(path)).items()}


def volume_tokens(feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scan tokens (windows) and depth tokens (x, y, global depth index) with integer coordinates."""
    nx, ny, nz, dim = feats["cls"].shape
    gz = feats["depth"].shape[3]
    grid = torch.stack(torch.meshgrid(torch.arange(nx), torch.arange(ny), torch.arange(nz), indexing="ij"), -1)
    scan_tokens = torch.cat([feats["cls"], feats["mean"]], dim=-1).reshape(-1, 2 * dim)
    depth = feats["depth"].reshape(nx, ny, nz * gz, dim)
    dgrid = torch.stack(torch.meshgrid(torch.arange(nx), torch.arange(ny), torch.arange(nz * gz), indexing="ij"), -1)
    return {"scan_tokens": scan_tokens, "scan_coords": grid.reshape(-1, 3), "depth_tokens": depth.reshape(-1, dim),
            "depth_coords": dgrid.reshape(-1, 3), "n_bins": torch.tensor(nz * gz)}


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad token lists to the longest in the batch; masks mark real tokens."""
    out = {}
    for kind in ("scan", "depth"):
        n = max(len(it[f"{kind}_tokens"]) for it in items)
        dim = items[0][f"{kind}_tokens"].shape[1]
        tokens = torch.zeros(len(items), n, dim)
        coords = torch.zeros(len(items), n, 3, dtype=torch.long)
        mask = torch.zeros(len(items), n, dtype=torch.bool)
        for i, it in enumerate(items):
            m = len(it[f"{kind}_tokens"])
            tokens[i, :m], coords[i, :m], mask[i, :m] = it[f"{kind}_tokens"], it[f"{kind}_coords"], True
        out.update({f"{kind}_tokens": tokens, f"{kind}_coords": coords, f"{kind}_mask": mask})
    out["n_bins"] = torch.stack([it["n_bins"] for it in items])
    return out
