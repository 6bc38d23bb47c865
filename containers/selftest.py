"""%test of the ctvlp images: every module the kind's rules import, and for the gpu image one batch of window
features through the demo's window encoder on CPU (a build machine has no GPU)."""
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
    import yaml

    from ctvlp.models.window_encoder import WindowEncoderSpec, build_window_encoder, encode_volume

    config = yaml.safe_load(Path("/opt/ctvlp/config.yaml").read_text())
    spec = WindowEncoderSpec.from_config(config)
    model = build_window_encoder(spec, config["seed"])
    volume = torch.rand(*(2 * w for w in spec.window))
    out = encode_volume(model, volume)
    assert out["cls"].shape[:3] == (2, 2, 2) and torch.isfinite(out["depth"]).all()
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda}), one window-feature batch on CPU: "
          f"{tuple(out['depth'].shape)}")
