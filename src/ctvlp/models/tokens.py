"""The token batch the combiner reads, from one volume's window features: scan tokens (one per window) and depth
tokens (one per window column and depth step), padded to the longest in a batch with masks. In ``models`` (not
``features``) because the model API (``ctvlp.models.release``) builds it too, and ``models`` sits below ``features``."""

from __future__ import annotations

import torch


def volume_tokens(feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scan tokens (windows) and depth tokens (x, y, global depth index) with integer coordinates, and the
    window grid (the coordinate divisor)."""
    nx, ny, nz, dim = feats["cls"].shape
    gz = feats["depth"].shape[3]
    grid = torch.stack(torch.meshgrid(torch.arange(nx), torch.arange(ny), torch.arange(nz), indexing="ij"), -1)
    scan_tokens = torch.cat([feats["cls"], feats["mean"]], dim=-1).reshape(-1, 2 * dim)
    depth = feats["depth"].reshape(nx, ny, nz * gz, dim)
    dgrid = torch.stack(torch.meshgrid(torch.arange(nx), torch.arange(ny), torch.arange(nz * gz), indexing="ij"), -1)
    return {"scan_tokens": scan_tokens, "scan_coords": grid.reshape(-1, 3), "depth_tokens": depth.reshape(-1, dim),
            "depth_coords": dgrid.reshape(-1, 3), "n_bins": torch.tensor(nz * gz), "grid": torch.tensor([nx, ny, nz])}


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad token lists to the longest in the batch; masks mark real tokens."""
    out = {}
    for kind in ("scan", "depth"):
        n = max(len(it[f"{kind}_tokens"]) for it in items)
        dim = items[0][f"{kind}_tokens"].shape[1]
        device = items[0][f"{kind}_tokens"].device  # live (end-to-end) tokens may already be on the GPU
        tokens = torch.zeros(len(items), n, dim, device=device)
        coords = torch.zeros(len(items), n, 3, dtype=torch.long, device=device)
        mask = torch.zeros(len(items), n, dtype=torch.bool, device=device)
        for i, it in enumerate(items):
            m = len(it[f"{kind}_tokens"])
            tokens[i, :m], coords[i, :m], mask[i, :m] = it[f"{kind}_tokens"], it[f"{kind}_coords"], True
        out.update({f"{kind}_tokens": tokens, f"{kind}_coords": coords, f"{kind}_mask": mask})
    out["n_bins"] = torch.stack([it["n_bins"] for it in items])
    out["grid"] = torch.stack([it["grid"] for it in items])
    return out
