"""One scan through a trained run, with exactly the workflow's code path.

The scan is read by content (DICOM series folder, NIfTI, Rad-ChestCT npz), preprocessed with the
run's ``preprocess`` settings, stored and re-read at the cache's precision (float16), encoded by the
same frozen window encoder (``model.weights_dir`` or seeded init from the run's config), its features rounded as the
feature files are (or by the run's own encoder when it trained end to end), and embedded by the run's
best weights: the answers equal the evaluation's.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from ctvlp.features.window import collate, volume_tokens
from ctvlp.io import radchestct
from ctvlp.io.dicom import SeriesVolume, read_series
from ctvlp.io.volume import Volume, check_values
from ctvlp.models.loading import CheckpointError, load_trained_model
from ctvlp.models.window_encoder import PRETRAINED_FILE, WindowEncoderSpec, build_window_encoder, encode_volume
from ctvlp.preprocess.transform import PreprocessSpec, preprocess
from ctvlp.text.labels import load_label_set


class ScanError(ValueError):
    """A scan the command line cannot read, with the path and the reason."""


def sniff(path: Path) -> str:
    """'dicom' (a folder), 'nifti' or 'npz', decided from the bytes, not the file name."""
    if path.is_dir():
        return "dicom"
    if not path.is_file():
        raise ScanError(f"{path}: no such file or folder")
    head = path.read_bytes()[:352] if path.stat().st_size < 1 << 20 else open(path, "rb").read(352)
    if head[:2] == b"\x1f\x8b":
        head = gzip.open(path).read(352)
    if head[:4] == b"PK\x03\x04":
        return "npz"
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
        return "nifti"
    if head[128:132] == b"DICM":
        raise ScanError(f"{path}: a single DICOM file; pass the folder of its series")
    raise ScanError(f"{path}: not a DICOM folder, NIfTI or npz file")


def read_scan(path: str | Path) -> Volume:
    """HU volume with its voxel-to-RAS affine; errors name the file and the reason."""
    path = Path(path)
    kind = sniff(path)
    try:
        if kind == "dicom":
            volume = read_series(path)
        elif kind == "npz":
            volume = radchestct.load_volume(path.parent, path.name)
        else:
            img = nib.load(str(path))
            volume = Volume(hu=np.asarray(img.get_fdata(dtype=np.float32)), affine=img.affine)
            if volume.hu.ndim != 3:
                raise ScanError(f"{path}: expected a 3D image, got shape {volume.hu.shape}")
        check_values(volume, str(path))
    except ScanError:
        raise
    except Exception as exc:  # every reader's own error, reported on one line
        raise ScanError(f"{path}: {exc}") from None
    return volume


@dataclass
class Prepared:
    volume: Volume               # the source scan (HU)
    data: np.ndarray             # the model input as cached (float16 values, x, y, z RAS)
    affine: np.ndarray           # voxel-to-RAS of ``data``
    tokens: dict[str, torch.Tensor]


class ScanModel:
    """A trained run ready for single scans."""

    def __init__(self, run_dir: str | Path, device: str = "cpu"):
        self.model, self.config = load_trained_model(run_dir, device)
        self.spec = PreprocessSpec.from_config(self.config["preprocess"])
        self.window = self.model.window  # trained end to end: the run's own encoder
        if self.window is None:
            spec = WindowEncoderSpec.from_config(self.config)
            if spec.pretrained:  # the run's own results folder (results/runs/<run>), wherever the command runs
                spec = replace(spec, pretrained=str(Path(run_dir).resolve().parents[1] / PRETRAINED_FILE))
            self.window = build_window_encoder(spec, self.config["seed"]).to(device)
        self.bin_voxels = int(self.config["model"]["window_encoder"]["patch_voxels"][2])
        self.max_tokens = int(self.config["model"]["text_encoder"]["max_tokens"])

    def prepare(self, path: str | Path) -> Prepared:
        volume = read_scan(path)
        data, affine = preprocess(volume, self.spec)
        data = data.astype(np.float16)  # the cache's precision
        feats = encode_volume(self.window, torch.from_numpy(data.astype(np.float32)))
        if self.model.window is None:  # frozen: the feature files' precision (end-to-end runs never round)
            feats = {k: v.to(torch.float16).float() for k, v in feats.items()}
        return Prepared(volume, data, affine, volume_tokens(feats))

    @torch.no_grad()
    def embed(self, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
        """(scan embedding (E,), depth-bin embeddings (n_bins, E))."""
        batch = collate([prepared.tokens])
        scan, depth = self.model.encode_scans(batch)
        n = int(batch["n_bins"][0])
        return scan[0].numpy(), depth[0, :n].numpy()

    @torch.no_grad()
    def classify(self, prepared: Prepared, labels_yaml: str | None = None) -> dict[str, float]:
        """p(label) with the label set's prompt ensemble (the run's shipped set by default)."""
        label_set = load_label_set(labels_yaml or self.config["text"]["label_set"])
        prompts = {pol: [label_set.prompts[name][pol] for name in label_set.labels]
                   for pol in ("positive", "negative")}
        pos, neg = self.model.encode_prompts(prompts)
        img = F.normalize(self.model.encode_prompt_scans(collate([prepared.tokens])), dim=-1)  # image copy head
        logit = self.config["train"]["prompt_scale"] * (img @ F.normalize(pos, dim=-1).T - img @ F.normalize(neg, dim=-1).T)
        return dict(zip(label_set.labels, torch.sigmoid(logit)[0].tolist()))

    @torch.no_grad()
    def localize(self, prepared: Prepared, text: str) -> dict:
        """Cosine of the sentence with every depth bin, the best bin, its depth in mm and source slice."""
        if self.model.text.too_long(text):
            raise ScanError(f"text is longer than the model's {self.max_tokens} tokens; pass one sentence")
        _, depth = self.embed(prepared)
        snippet = self.model.encode_snippets([text])[0].numpy()
        profile = (depth / np.linalg.norm(depth, axis=1, keepdims=True)) @ (snippet / np.linalg.norm(snippet))
        best = int(np.argmax(profile))
        top = np.argsort(-profile)[:3]
        result = {"bin": best, "n_bins": int(len(profile)), "z_mm": self.bin_z_mm(prepared, best),
                  "top3": [{"bin": int(b), "score": float(profile[b]), "z_mm": self.bin_z_mm(prepared, int(b))}
                           for b in top], "profile": profile.tolist()}
        if isinstance(prepared.volume, SeriesVolume):
            result["source_slice"] = self.source_slice(prepared.volume, result["z_mm"])
        return result

    def bin_z_mm(self, prepared: Prepared, b: int) -> float:
        """Patient z (mm, superior positive, the same in RAS and LPS) at the centre of depth bin b."""
        k = (b + 0.5) * self.bin_voxels - 0.5
        return float((prepared.affine @ np.array([0, 0, k, 1.0]))[2])

    @staticmethod
    def source_slice(series: SeriesVolume, z_mm: float) -> dict:
        """The source series' slice nearest to z: its index along the sorted stack and InstanceNumber."""
        k = int(np.argmin(np.abs(series.slice_positions[:, 2] - z_mm)))
        return {"index": k, "instance_number": int(series.instance_numbers[k]),
                "z_mm": float(series.slice_positions[k, 2])}


__all__ = ["CheckpointError", "ScanError", "ScanModel", "read_scan", "sniff"]
