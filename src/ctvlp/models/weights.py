"""The pretrained model folder (``model.weights_dir``): released SPECTRE/RadFinder files converted once.

``import_weights`` reads the released ``.pt`` state dicts with ``torch.load(weights_only=True)`` (no
pickled code runs), converts names and shapes (patch-kernel fold, loralib -> peft), checks every tensor
against the configured architecture (strict: what is missing, left over or of another shape), and only
then writes one safetensors file per part plus ``manifest.json`` (source names, sha256, architecture).
The workflow only ever reads this folder, never a pickle. Why a folder and not the files themselves:
the fold and the renaming happen once, and the manifest lets a run check before any job starts that
the configured dims fit the weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from ctvlp.models.spectre import WeightFileError, convert_backbone, load_strict, read_state
from ctvlp.models.weights_manifest import FORMAT, MANIFEST, architecture

PARTS = ("window_encoder", "combiner", "image_head", "text_head", "text")
RELEASED = {  # the names SPECTRE publishes its weights under
    "window_encoder": "spectre_backbone_vit_large_patch16_128.pt",
    "combiner": "spectre_combiner_feature_vit_large.pt",
    "image_head": "SigLIP_projection_head_image.pt",
    "text_head": "SigLIP_projection_head_text.pt",
    "text": "spectre_qwen3_embedding_0.6B_lora.pt",
}


def part_file(weights_dir: str | Path, part: str) -> Path:
    return Path(weights_dir) / f"{part}.safetensors"


def load_part(module: nn.Module, weights_dir: str | Path, part: str) -> None:
    """Load one imported part into ``module`` (strict; the combiner's depth projection and feature
    statistics are RadFinder's additions, derived rather than stored)."""
    path = part_file(weights_dir, part)
    if not path.is_file():
        raise WeightFileError(f"{path}: missing from model.weights_dir (run `ctvlp import-weights`)")
    optional = ("axis_patch_proj.", "scan_", "depth_") if part == "combiner" else ()
    load_strict(module, read_state(path), path, optional)
    if part == "combiner":
        module.init_axis_patch_proj()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_parts(model, window: nn.Module, sources: dict[str, Path],
                  text_base: Path | None = None) -> dict[str, dict[str, torch.Tensor]]:
    """Converted, verified state dicts per part for ``model`` (a CTVLPModel built from the config) and
    ``window`` (its window encoder)."""
    from ctvlp.models.text_encoder import loralib_to_peft, merged_lora

    out: dict[str, dict[str, torch.Tensor]] = {}
    targets = {"window_encoder": window, "combiner": model.combiner,
               "image_head": model.image_head, "text_head": model.text_head}
    for part, path in sources.items():
        state = read_state(path)
        if part == "window_encoder":
            state = convert_backbone(state, targets[part].spec.patch[2], path)
        if part == "text":
            spec = model.text.spec
            if spec.finetune != "lora":
                raise WeightFileError(f"{path}: a LoRA file needs model.text_encoder.finetune: lora")
            if text_base is not None:
                base = _base_state(text_base)
                verdict = merged_lora(state, base, spec.lora_alpha / spec.lora_r)
                if verdict == "merged":
                    raise WeightFileError(f"{path}: its base weights already contain the merged LoRA update (saved "
                                          "after eval()); export the state dict in train mode")
                if verdict == "other base":
                    raise WeightFileError(f"{path}: its base weights are neither {text_base} nor that plus the LoRA "
                                          "update (another base model)")
            state = loralib_to_peft(state, list(spec.target_modules))
            load_strict(model.text.model, state, path)
        else:
            load_strict(targets[part], state, path, ("axis_patch_proj.", "scan_", "depth_") if part == "combiner" else ())
        out[part] = {k: v.contiguous() for k, v in state.items()}
    return out


def _base_state(folder: Path) -> dict[str, torch.Tensor]:
    """Base text-model tensors of a local HF folder (safetensors shards), in the model's own names."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise WeightFileError(f"{folder}: no safetensors weights to compare the LoRA file's base with")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(read_state(f))
    return {k.removeprefix("model."): v for k, v in state.items()}


def import_weights(config: dict, sources: dict[str, Path], out_dir: Path, preset: str,
                   text_base: Path | None = None) -> Path:
    """Convert and check everything first; write the folder atomically (nothing written on any error)."""
    from ctvlp.models.ctvlp_model import CTVLPModel
    from ctvlp.models.window_encoder import WindowEncoder, WindowEncoderSpec

    unknown = set(sources) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)} (known: {', '.join(PARTS)})")
    cfg = json.loads(json.dumps(config))
    cfg["model"]["weights_dir"] = None
    model = CTVLPModel.from_config(cfg, load_window_weights=False)
    parts = convert_parts(model, WindowEncoder(WindowEncoderSpec.from_config(cfg)), sources, text_base)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for part, state in parts.items():
            save_file(state, str(part_file(tmp, part)))
        manifest = {"format": FORMAT, "preset": preset, "architecture": architecture(config),
                    "sources": {part: {"file": Path(p).name, "sha256": sha256(Path(p))} for part, p in sources.items()},
                    "parts": {part: part_file(tmp, part).name for part in parts},
                    "licence": "SPECTRE weights: CC-BY-NC-SA 4.0 (non-commercial, share alike)"}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
