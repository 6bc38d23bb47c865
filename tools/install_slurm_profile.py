"""Install profiles/slurm as the user's global Snakemake profile with the site's values.

    python tools/install_slurm_profile.py --cpu-partition cpu --gpu-partition gpu --cpu-account mylab \\
        --gpu-model a100 [--dest DIR] [--force]

Snakemake looks for `--profile slurm` in ./slurm, ~/.config/snakemake/slurm and /etc/xdg/snakemake/slurm
(not in ./profiles/slurm), so `snakemake --profile slurm` works as typed only once the profile is there.
The values are written into the template's SITE table; environment variables still override them.
An earlier profile is kept as config.yaml.bak-<time>; a profile this tool did not write is left alone
unless --force is given (a user's own global `slurm` profile serves their other workflows too).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import time
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / "profiles" / "slurm" / "config.yaml"
MARK = "# written by tools/install_slurm_profile.py"
KEYS = {"cpu_partition": "CTVLP_SLURM_CPU_PARTITION", "gpu_partition": "CTVLP_SLURM_GPU_PARTITION",
        "cpu_account": "CTVLP_SLURM_CPU_ACCOUNT", "gpu_account": "CTVLP_SLURM_GPU_ACCOUNT",
        "gpu_model": "CTVLP_GPU_MODEL", "cpus_per_gpu": "CTVLP_CPUS_PER_GPU",
        "status_command": "CTVLP_SLURM_STATUS", "jobs": "CTVLP_SLURM_JOBS",
        "init_seconds": "CTVLP_SLURM_INIT_SECONDS"}


def render(values: dict[str, str | None]) -> str:
    site = {KEYS[k]: str(v) for k, v in values.items() if v not in (None, "")}
    text = TEMPLATE.read_text()
    line = f'  - "SITE = {site!r}  {MARK}"'
    rendered, n = re.subn(r'^  - "SITE = \{\}.*"$', line.replace("\\", "\\\\"), text, flags=re.MULTILINE)
    if n != 1:
        raise SystemExit(f"{TEMPLATE}: no SITE line to fill in")
    return rendered


def install(dest: Path, text: str, force: bool = False) -> Path | None:
    """Write dest/config.yaml; returns the backup of the file it replaced (None if there was none)."""
    target = dest / "config.yaml"
    backup = None
    if target.exists():
        old = target.read_text()
        if old == text:
            return None
        if MARK not in old and not force:
            raise SystemExit(f"{target}: a profile this tool did not write is there; it is left unchanged "
                             "(move it away, install elsewhere with --dest, or replace it with --force)")
        backup = target.with_name(f"config.yaml.bak-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.copy2(target, backup)
    dest.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return backup


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key in KEYS:
        parser.add_argument(f"--{key.replace('_', '-')}", dest=key, default=None)
    parser.add_argument("--dest", type=Path, default=Path.home() / ".config" / "snakemake" / "slurm")
    parser.add_argument("--force", action="store_true", help="replace a profile this tool did not write")
    args = vars(parser.parse_args(argv))
    dest, force = args.pop("dest"), args.pop("force")
    backup = install(dest, render(args), force)
    if backup:
        print(f"kept the previous profile as {backup}", file=sys.stderr)
    print(f"installed {dest / 'config.yaml'}: snakemake --profile slurm now uses it")


if __name__ == "__main__":
    main()
