"""Install profiles/slurm as the user's global Snakemake profile with the site's values.

    python tools/install_slurm_profile.py --partition gpu --account mylab --gpu-model a100 [--dest DIR]

Snakemake looks for `--profile slurm` in ./slurm, ~/.config/snakemake/slurm and /etc/xdg/snakemake/slurm
(not in ./profiles/slurm), so `snakemake --profile slurm` works as typed only once the profile is there.
The values are written into the template's SITE table; environment variables still override them.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "profiles" / "slurm" / "config.yaml"
KEYS = {"partition": "CTVLP_SLURM_PARTITION", "account": "CTVLP_SLURM_ACCOUNT", "gpu_model": "CTVLP_GPU_MODEL",
        "status_command": "CTVLP_SLURM_STATUS", "jobs": "CTVLP_SLURM_JOBS", "init_seconds": "CTVLP_SLURM_INIT_SECONDS",
        "features_gpus": "CTVLP_FEATURES_GPUS", "train_gpus": "CTVLP_TRAIN_GPUS", "embed_gpus": "CTVLP_EMBED_GPUS"}


def render(values: dict[str, str]) -> str:
    site = {KEYS[k]: str(v) for k, v in values.items() if v not in (None, "")}
    text = TEMPLATE.read_text()
    line = f'  - "SITE = {site!r}  # written by tools/install_slurm_profile.py"'
    rendered, n = re.subn(r'^  - "SITE = \{\}.*"$', line.replace("\\", "\\\\"), text, flags=re.MULTILINE)
    if n != 1:
        raise SystemExit(f"{TEMPLATE}: no SITE line to fill in")
    return rendered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key in KEYS:
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None)
    parser.add_argument("--dest", type=Path, default=Path.home() / ".config" / "snakemake" / "slurm")
    args = vars(parser.parse_args())
    dest = args.pop("dest")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "config.yaml").write_text(render(args))
    print(f"installed {dest / 'config.yaml'}: snakemake --profile slurm now uses it")


if __name__ == "__main__":
    main()
