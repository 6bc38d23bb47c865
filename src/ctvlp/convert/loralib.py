"""The check of a loralib LoRA file against its base model: saved in train mode (base weights unchanged), after
``eval()`` (loralib merged the update into them) or over another base. Only the importer needs it; the renaming
of loralib's keys to peft's is ``ctvlp.models.spectre.loralib_to_peft`` (``load_component`` needs it too)."""

from __future__ import annotations

from pathlib import Path

import torch

from ctvlp.core.state_dict import WeightFileError, read_state


def merged_lora(file_state: dict[str, torch.Tensor], base_state: dict[str, torch.Tensor], scaling: float,
                atol: float = 1e-4) -> str:
    """'unmerged' | 'merged' | 'other base': whether the file's adapted weights equal the base's (as saved
    in train mode) or the base plus scaling * B @ A (loralib merges the update when a module goes to eval)."""
    for key in file_state:
        if not key.endswith(".lora_A"):
            continue
        module = key[: -len(".lora_A")]
        w, base = file_state[f"{module}.weight"].float(), base_state.get(f"{module}.weight")
        if base is None:
            continue
        update = scaling * file_state[f"{module}.lora_B"].float() @ file_state[key].float()
        if update.abs().max() < atol:  # adapters still at their zero start: merged or not looks the same
            continue
        if torch.allclose(w, base.float(), atol=atol):
            return "unmerged"
        if torch.allclose(w, base.float() + update, atol=atol):
            return "merged"
        return "other base"
    return "unmerged"


def base_state(folder: Path) -> dict[str, torch.Tensor]:
    """Base text-model tensors of a local HF folder (safetensors shards), in the model's own names."""
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise WeightFileError(f"{folder}: no safetensors weights to compare the LoRA file's base with")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(read_state(f))
    return {k.removeprefix("model."): v for k, v in state.items()}
