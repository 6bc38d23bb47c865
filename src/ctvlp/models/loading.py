"""Rebuild a trained model from its run folder: the run's config (JSON) and best weights (safetensors).

Nothing here unpickles: the weights are safetensors and the configuration is JSON, so a checkpoint
from an untrusted source can be inspected and loaded without executing code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from ctvlp.models.ctvlp_model import CTVLPModel
from ctvlp.core.runs import CheckpointError, load_run_config  # noqa: F401 (re-exported for callers)

WEIGHT_FILES = ("best.safetensors",)


def load_trained_model(run_dir: str | Path, device: str = "cpu") -> tuple[CTVLPModel, dict]:
    """(model in eval mode, run config). The weights must fit the run's own configuration exactly."""
    run_dir = Path(run_dir)
    config = load_run_config(run_dir)
    weights = run_dir / WEIGHT_FILES[0]
    if not weights.is_file():
        raise CheckpointError(f"{run_dir}: no {weights.name} (training has not finished a dev evaluation)")
    model = CTVLPModel.from_config(config, load_window_weights=False)  # a trained window encoder is in the weights
    state = load_file(str(weights))
    expected = set(model.trainable_state())
    # beyond what training changes, a released model's run (ctvlp.convert.released_run) also carries its frozen
    # tensors (text tower, weight-norm g): any tensor of the model may be present, every trained one must be
    known = set(model.state_dict())
    if not expected <= set(state) or not set(state) <= known:
        extra, missing = sorted(set(state) - known), sorted(expected - set(state))
        raise CheckpointError(f"{weights}: weights from another configuration ({len(missing)} tensors missing, "
                              f"{len(extra)} unexpected, e.g. {(missing + extra)[:2]})")
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f"{weights}: tensor shapes differ from the run's configuration: "
                              f"{str(err).splitlines()[1] if len(str(err).splitlines()) > 1 else err}") from None
    return model.to(device).eval(), config


def device_for(prefer_gpu: bool = True) -> torch.device:
    return torch.device("cuda" if prefer_gpu and torch.cuda.is_available() else "cpu")
