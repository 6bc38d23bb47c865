"""%test of the ctvlp images: every module the kind's rules import (for the gpu image also the command line's),
and for the gpu image one batch of window features through a small, randomly initialised window encoder on CPU
(a build machine has no GPU). Independent of any config: the image must pass its test whatever the demo or
paper preset asks for (weights files, pretraining), which only exist where the workflow runs."""
import importlib
import sys
from pathlib import Path

kind = sys.argv[1]
modules = Path(f"/opt/ctvlp/modules-{kind}.txt").read_text().split()
for name in modules:
    importlib.import_module(name)
print(f"ctvlp-{kind}: {len(modules)} modules import")
if kind == "gpu":
    import torch

    from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder, encode_volume

    spec = WindowEncoderSpec(window=(16, 16, 8), patch=(8, 8, 4), dim=48, depth=2, heads=4)
    model = build_window_encoder(spec, seed=0)
    volume = torch.rand(*(2 * w for w in spec.window))
    out = encode_volume(model, volume)
    assert out["cls"].shape[:3] == (2, 2, 2) and torch.isfinite(out["depth"]).all()
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}), one window-feature batch on CPU: "
          f"{tuple(out['depth'].shape)}")
