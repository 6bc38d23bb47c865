"""``ctvlp import-weights``: released SPECTRE/RadFinder files converted once into the pretrained model folder
(``model.weights_dir``).

``import_weights`` reads the released ``.pt`` state dicts with ``torch.load(weights_only=True)`` (no
pickled code runs), converts names and shapes (patch-kernel fold, loralib -> peft), checks every tensor
against the configured architecture (strict: what is missing, left over or of another shape), and only
then writes one safetensors file per part plus ``manifest.json`` (source names, sha256, architecture).
The workflow only ever reads this folder, never a pickle. Why a folder and not the files themselves:
the fold and the renaming happen once, and the manifest lets a run check before any job starts that
the configured dims fit the weights.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ctvlp.convert.loralib import base_state, merged_lora
from ctvlp.convert.radfinder import read_radfinder
from ctvlp.core.provenance import sha256_file as sha256
from ctvlp.core.state_dict import WeightFileError, as_umask_allows, load_strict, read_state, save_tensors
from ctvlp.models.ctvlp_model import CTVLPModel
from ctvlp.models.radfinder_release import head_names, weight_files
from ctvlp.models.weights_dir import FORMAT, MANIFEST, architecture
from ctvlp.models.spectre import convert_backbone, loralib_to_peft
from ctvlp.models.weights import PARTS, part_file
from ctvlp.models.window_encoder import WindowEncoder, WindowEncoderSpec

RELEASED = {  # the names SPECTRE publishes its weights under
    "window_encoder": "spectre_backbone_vit_large_patch16_128.pt",
    "combiner": "spectre_combiner_feature_vit_large.pt",
    "image_head": "SigLIP_projection_head_image.pt",
    "text_head": "SigLIP_projection_head_text.pt",
    "text": "spectre_qwen3_embedding_0.6B_lora.pt",
}


@contextmanager
def atomic_folder(out_dir: Path):
    """A temporary sibling folder to fill; it replaces ``out_dir`` only when the block ends without an error
    (nothing written otherwise), with the mode the umask allows (mkdtemp's 0700 would hide it from the lab's group)."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    as_umask_allows(tmp)
    try:
        yield tmp
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def convert_parts(model, window: nn.Module, states: dict[str, tuple[Path, dict[str, torch.Tensor]]],
                  text_base: Path | None = None, merged_text: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """Converted, verified state dicts per part for ``model`` (a CTVLPModel built from the config) and
    ``window`` (its window encoder); each checked strictly against its module. ``merged_text``: the text part is a
    release's LoRA-merged tower (plain names; ``model``'s text tower built frozen to check it)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    targets = {"window_encoder": window, "combiner": model.combiner, "image_head": model.image_head,
               "text_head": model.text_head, "image_copy_head": model.image_copy_head,
               "text_copy_head": model.text_copy_head, "scale": model.scale}
    for part, (path, state) in states.items():
        if part.endswith("copy_head") and not model.copy_heads:
            raise WeightFileError(f"{path}: holds {part} but the config shares the main heads "
                                  "(model.separate_depth_heads: false)")
        if part == "window_encoder":
            state = convert_backbone(state, targets[part].spec.patch[2], path)
        if part.endswith("head"):
            state = head_names(state)
        if part == "text" and merged_text:
            load_strict(model.text.model, state, path)
        elif part == "text":
            spec = model.text.spec
            if spec.finetune != "lora":
                raise WeightFileError(f"{path}: a LoRA file needs model.text_encoder.finetune: lora")
            if text_base is not None:
                base = base_state(text_base)
                verdict = merged_lora(state, base, spec.lora_alpha / spec.lora_r)
                if verdict == "merged":
                    raise WeightFileError(f"{path}: its base weights already contain the merged LoRA update (saved "
                                          "after eval()); export the state dict in train mode")
                if verdict == "other base":
                    raise WeightFileError(f"{path}: its base weights are neither {text_base} nor that plus the LoRA "
                                          "update (another base model)")
            state = loralib_to_peft(state)
            load_strict(model.text.model, state, path)
        elif part == "combiner":
            targets[part].load_weights(state, path)
        else:
            load_strict(targets[part], state, path)
        out[part] = {k: v.contiguous() for k, v in state.items()}
    return out


def import_weights(config: dict, sources: dict[str, Path], out_dir: Path, preset: str,
                   text_base: Path | None = None, radfinder: Path | None = None) -> Path:
    """Convert and check everything first; write the folder atomically (nothing written on any error).

    ``sources``: one SPECTRE file per part; ``radfinder``: RadFinder's trained model (all parts in one file,
    including its trained copy heads, depth projection and logit scale), which the files in ``sources``
    may override part by part."""
    unknown = set(sources) - set(PARTS)
    if unknown:
        raise ValueError(f"unknown parts {sorted(unknown)} (known: {', '.join(PARTS)})")
    cfg = json.loads(json.dumps(config))
    cfg["model"]["weights_dir"] = None
    states, release = {}, None
    if radfinder is not None:
        parts_found, release = read_radfinder(Path(radfinder))
        states = {part: (Path(radfinder), state) for part, state in parts_found.items()}
    merged_text = release is not None and "text" in states and "text" not in sources
    if merged_text:
        cfg["model"]["text_encoder"]["finetune"] = "frozen"  # checked as plain weights
    model = CTVLPModel.from_config(cfg, load_window_weights=False)
    states.update({part: (Path(path), read_state(path)) for part, path in sources.items()})
    parts = convert_parts(model, WindowEncoder(WindowEncoderSpec.from_config(cfg)), states, text_base, merged_text)
    files = {f for p, _ in states.values() for f in ([p / "config.json", *weight_files(p)] if p.is_dir() else [p])}
    out_dir = Path(out_dir)
    with atomic_folder(out_dir) as tmp:
        for part, state in parts.items():
            save_tensors(state, part_file(tmp, part))
        manifest = {"format": FORMAT, "preset": preset, "architecture": architecture(config),
                    "sources": {f.name: sha256(f) for f in sorted(files)},
                    "parts": {part: {"file": part_file(tmp, part).name, "from": path.name}
                              for part, (path, _) in states.items()},
                    "text_base_checked": (str(text_base) if text_base is not None and "text" in states
                                          and not merged_text else None),
                    # a release's tower holds merged LoRA: it evaluates (finetune: frozen), it cannot be fine-tuned
                    "text_merged_lora": merged_text,
                    "text_max_tokens": (release["radfinder_model_config"].get("text_backbone_kwargs") or {}).get(
                        "tokenizer_max_length") if release is not None else None,
                    "licence": "SPECTRE weights: CC-BY-NC-SA 4.0 (non-commercial, share alike)"}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return out_dir
