"""RAS, resample, clip and scale, centre-crop/pad to whole windows: one function for every consumer.

Peers trained and evaluated with different HU windows; here training, evaluation and the CLI all
call ``preprocess`` with the config's ``PreprocessSpec``. Reorientation and resampling are one
torch ``grid_sample`` onto a RAS grid whose spacing is exactly the target, and the affine follows
every step so a depth bin maps back to patient z. Resampling follows MONAI's ``Spacing`` grid
convention, and a benchmark checks the output against a MONAI transform chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from ctvlp.io.volume import Volume


@dataclass(frozen=True)
class PreprocessSpec:
    """Config ``preprocess``: target spacing (mm, RAS x/y/z), HU range and window size (voxels)."""

    spacing_mm: tuple[float, float, float]
    hu_range: tuple[float, float]
    window_voxels: tuple[int, int, int]
    # The depth-token cap (model.scan_encoder.max_depth_tokens) and the patch depth it counts with: None = no cap
    # (the CLI on one scan). Preprocessing rejects a longer scan with a QC reason (``depth_token_problem``).
    max_depth_tokens: int | None = None
    patch_depth: int | None = None

    @classmethod
    def from_config(cls, cfg: dict, model: dict | None = None) -> "PreprocessSpec":
        """``cfg``: the ``preprocess`` section; ``model``: the ``model`` section when the cap applies (the
        workflow's preprocessing)."""
        cap = (model or {}).get("scan_encoder", {}).get("max_depth_tokens") if model else None
        return cls(tuple(float(v) for v in cfg["spacing_mm"]), tuple(float(v) for v in cfg["hu_range"]),
                   tuple(int(v) for v in cfg["window_voxels"]), None if cap is None else int(cap),
                   int(model["window_encoder"]["patch_voxels"][2]) if cap is not None else None)

    def depth_token_problem(self, shape: tuple[int, int, int]) -> str | None:
        """The QC reason when a preprocessed volume of ``shape`` has more depth tokens than the cap, else None.

        Why reject rather than crop: a crop would cut away depth bins that report sentences are localised
        in, and silently change what the localisation task measures; the cap exists because the depth path
        attends over all of a scan's depth tokens at once (memory grows with their number)."""
        if self.max_depth_tokens is None:
            return None
        n = depth_token_count(shape, self.window_voxels, self.patch_depth)
        if n <= self.max_depth_tokens:
            return None
        return (f"scan too long for the depth path ({n} depth tokens > model.scan_encoder.max_depth_tokens = "
                f"{self.max_depth_tokens}; shape {tuple(int(s) for s in shape)} after preprocessing)")


def depth_token_count(shape: tuple[int, int, int], window: tuple[int, int, int], patch_depth: int) -> int:
    """Depth tokens of a preprocessed volume (sides whole windows): one per in-plane window and depth patch
    (``ctvlp.features.window.volume_tokens``' layout: windows x * windows y * depth patches), what the combiner's depth path attends over."""
    nx, ny = (int(s) // w for s, w in zip(shape[:2], window[:2]))
    return nx * ny * (int(shape[2]) // int(patch_depth))


def to_ras(volume: Volume) -> Volume:
    """Permute/flip axes so index axes run along +R, +A, +S (no interpolation)."""
    ornt = nib.orientations.io_orientation(volume.affine)
    data = nib.orientations.apply_orientation(volume.hu, ornt)
    affine = volume.affine @ nib.orientations.inv_ornt_aff(ornt, volume.hu.shape)
    return Volume(hu=np.ascontiguousarray(data), affine=affine)


def ras_grid(volume: Volume, spacing: tuple[float, float, float]) -> tuple[tuple[int, int, int], np.ndarray]:
    """Output shape and affine of the RAS grid with exactly ``spacing`` (MONAI's Spacing convention:
    voxel 0 keeps its world position, n_out = round((n - 1) * old / new) + 1)."""
    ornt = nib.orientations.io_orientation(volume.affine)
    shape_ras = tuple(int(volume.shape[int(ax)]) for ax in ornt[:, 0].argsort())
    ras = volume.affine @ nib.orientations.inv_ornt_aff(ornt, volume.shape)
    old = np.sqrt((ras[:3, :3] ** 2).sum(axis=0))
    ratio = np.asarray(spacing, dtype=float) / old
    shape = tuple(int(round((n - 1) / q)) + 1 for n, q in zip(shape_ras, ratio))
    affine = ras.copy()
    affine[:3, :3] = ras[:3, :3] * ratio
    return shape, affine


def resample_to_ras(volume: Volume, spacing: tuple[float, float, float]) -> Volume:
    """Reorient to RAS and resample trilinearly (MONAI ``Orientation`` + ``Spacing`` semantics).

    The flip/permutation is folded into the sampling positions instead of copying the large
    source first. Axis-aligned grids (every CT reader here) take two small ``grid_sample`` passes
    (trilinear is separable: depth first, then in-plane with the slices as channels), which is
    several times faster than one 3D pass with a full-size grid; oblique grids take the 3D pass.
    """
    shape, affine = ras_grid(volume, spacing)
    to_source = np.linalg.inv(volume.affine) @ affine  # output index -> source index
    hu = np.asarray(volume.hu, dtype=np.float32)
    if hu.flags.f_contiguous and not hu.flags.c_contiguous:
        # NIfTI arrays arrive column-major: read the transpose (a free view) and reverse the
        # source axes in the mapping, instead of a full-volume transposing copy
        hu, to_source = hu.T, to_source[[2, 1, 0, 3]]
    source = torch.from_numpy(np.ascontiguousarray(hu))
    linear = to_source[:3, :3]
    axis_aligned = (np.abs(linear) > 1e-9).sum(axis=0).tolist() == [1, 1, 1]
    resample = _separable if axis_aligned else _full_grid
    return Volume(hu=resample(source, to_source, shape).numpy(), affine=affine)


def _positions(to_source: np.ndarray, out_axis: int, n: int) -> tuple[int, torch.Tensor]:
    """Source axis feeding an output axis, and the source coordinates of its n samples."""
    k = int(np.argmax(np.abs(to_source[:3, out_axis])))
    coords = to_source[k, 3] + to_source[k, out_axis] * np.arange(n, dtype=np.float64)
    return k, torch.from_numpy(coords)


def _normalized(coords: torch.Tensor, size: int) -> torch.Tensor:
    return (2.0 * coords / max(size - 1, 1) - 1.0).to(torch.float32)


def _separable(source: torch.Tensor, to_source: np.ndarray, shape: tuple[int, int, int]) -> torch.Tensor:
    (kx, px), (ky, py), (kz, pz) = (_positions(to_source, d, n) for d, n in enumerate(shape))
    # pass 1: along the source axis that becomes z (channels = all other voxels, one row of samples)
    moved = source.movedim(kz, -1)
    lead = moved.shape[:-1]
    grid = torch.zeros(1, 1, len(pz), 2)
    grid[0, 0, :, 0] = _normalized(pz, source.shape[kz])
    deep = F.grid_sample(moved.reshape(1, -1, 1, source.shape[kz]), grid, mode="bilinear",
                         padding_mode="border", align_corners=True).reshape(*lead, len(pz))
    deep = deep.movedim(-1, kz)
    # pass 2: in-plane, the resampled slices as channels: input (1, z, y, x)
    planes = deep.permute(kz, ky, kx).contiguous()[None]
    gy, gx = torch.meshgrid(_normalized(py, source.shape[ky]), _normalized(px, source.shape[kx]), indexing="ij")
    grid = torch.stack([gx, gy], dim=-1)[None]
    out = F.grid_sample(planes, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0].permute(2, 1, 0).contiguous()  # (z, y, x) -> (x, y, z)


def _full_grid(source: torch.Tensor, to_source: np.ndarray, shape: tuple[int, int, int]) -> torch.Tensor:
    axes = [torch.arange(n, dtype=torch.float64) for n in shape]
    o0, o1, o2 = axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]
    coords = []
    for k in (2, 1, 0):  # grid_sample wants (W, H, D) = source axes 2, 1, 0
        m = to_source[k]
        coords.append(_normalized(m[0] * o0 + m[1] * o1 + m[2] * o2 + m[3], source.shape[k]).expand(*shape))
    grid = torch.stack(coords, dim=-1)[None]
    out = F.grid_sample(source[None, None], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[0, 0]


def scale_intensity(hu: np.ndarray, hu_range: tuple[float, float], inplace: bool = False) -> np.ndarray:
    """Clip to ``hu_range`` and scale to [0, 1] (in place when the caller owns a float32 array)."""
    lo, hi = hu_range
    out = hu if inplace and hu.dtype == np.float32 else np.array(hu, dtype=np.float32)
    np.clip(out, lo, hi, out=out)
    out -= lo
    out *= 1.0 / (hi - lo)
    return out


def crop_or_pad(data: np.ndarray, affine: np.ndarray, window: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop each axis to the largest multiple of the window; pad (with 0 = air) below one window."""
    starts, pads = [], []
    for n, w in zip(data.shape, window):
        target = max(w, (n // w) * w)
        if n >= target:
            starts.append((n - target) // 2)
            pads.append((0, 0))
        else:
            starts.append(0)
            before = (target - n) // 2
            pads.append((before, target - n - before))
    slices = tuple(slice(s, s + max(w, (n // w) * w)) for s, n, w in zip(starts, data.shape, window))
    out = np.pad(data[slices], pads, constant_values=0.0)
    shift = np.array(starts, dtype=float) - np.array([p[0] for p in pads], dtype=float)
    new_affine = affine.copy()
    new_affine[:3, 3] = affine[:3, :3] @ shift + affine[:3, 3]
    return np.ascontiguousarray(out), new_affine


def preprocess(volume: Volume, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """The model input in [0, 1] (x, y, z, RAS) and its voxel-to-RAS affine."""
    ras = resample_to_ras(volume, spec.spacing_mm)
    scaled = scale_intensity(ras.hu, spec.hu_range, inplace=True)
    return crop_or_pad(scaled, ras.affine, spec.window_voxels)
