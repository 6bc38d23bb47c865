"""Write requirements-gpu.lock: the CPU lock with PyPI's CUDA build of torch and the nvidia-* wheels it needs.

    python tools/gpu_lock.py [requirements.lock] [requirements-gpu.lock]     (make lock runs it)
    python tools/gpu_lock.py requirements.lock requirements-gpu-cu12.lock 2.10.0   (the CUDA 12 lock)

The CPU lock pins torch 2.13.0, installed here as the local CPU wheel. On PyPI the Linux wheel of the same
version is the CUDA build, which declares the CUDA runtime (nvidia-*, cuda-*, triton) as dependencies. This
asks pip to resolve torch==<pin> against the public index only (--isolated: no local wheel folder, no
constraints; metadata is downloaded, no wheel), and adds every package of that resolution the CPU lock lacks,
at the resolved version. Everything else is the CPU lock, line for line, so the two stacks cannot drift.

With a torch version (third argument) it writes the lock for NVIDIA drivers older than CUDA 13 needs (>= 580):
PyPI's newest torch whose wheels use CUDA 12 is 2.10.0 (CUDA 12.8, drivers >= 525 through CUDA's minor-version
compatibility; 2.11 and later use CUDA 13). That torch replaces the CPU lock's, torch's own dependencies are
resolved at the CPU lock's versions, and everything else is again the CPU lock.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HEADER = """# ctvlp GPU lock: requirements.lock with PyPI's CUDA build of torch and its CUDA wheels (tools/gpu_lock.py,
# `make lock`). Used by the GPU rules' conda environment (envs/gpu.yaml) and image (containers/gpu.def).
# Install with 'pip install --no-deps -r requirements-gpu.lock' (about 3 GB of wheels).
"""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonical(name)] = line
    return pins


def pip_resolve(requirements: list[str], no_deps: bool = False) -> dict[str, str]:
    """{canonical name: version} pip would install from PyPI alone (metadata only, nothing installed)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed", "--quiet",
               "--report", str(report), "--disable-pip-version-check"]
        if os.environ.get("PIP_CERT"):  # a site's TLS proxy: --isolated would drop the CA bundle too
            cmd += ["--cert", os.environ["PIP_CERT"]]
        if no_deps:
            cmd.append("--no-deps")
        subprocess.run(cmd + requirements, check=True)
        items = json.loads(report.read_text())["install"]
    return {canonical(i["metadata"]["name"]): i["metadata"]["version"] for i in items}


def gpu_pins(cpu: dict[str, str], torch_version: str | None = None) -> list[str]:
    torch_pin = f"torch=={torch_version}" if torch_version else cpu["torch"]
    resolved = pip_resolve([torch_pin])
    if torch_version:  # torch's own dependencies at the CPU lock's versions, where it pins them
        cpu = {**cpu, "torch": torch_pin}
        resolved = pip_resolve([torch_pin] + [cpu[n] for n in resolved if n in cpu and n != "torch"])
    if "+" in resolved["torch"] or resolved["torch"] != torch_pin.split("==")[1]:
        raise SystemExit(f"PyPI resolved torch {resolved['torch']} for {torch_pin}")
    extra = {}
    for name, version in resolved.items():
        if name not in cpu:
            extra[name] = f"{name}=={version}"
        elif cpu[name].split("==")[1] != version:
            raise SystemExit(f"CUDA torch wants {name}=={version}, the CPU lock pins {cpu[name]}")
    if not any(name.startswith("nvidia-") for name in extra):
        raise SystemExit(f"no nvidia-* wheels in PyPI's resolution of {torch_pin}: {sorted(resolved)}")
    return sorted({**cpu, **extra}.values(), key=lambda pin: canonical(pin.split("==")[0]))


def main(cpu_lock: str = "requirements.lock", gpu_lock: str = "requirements-gpu.lock",
         torch_version: str | None = None) -> None:
    text = Path(cpu_lock).read_text()
    cpu = lock_pins(Path(cpu_lock))
    pins = gpu_pins(cpu, torch_version)
    # keep the CPU lock's comments next to the pins they explain (e.g. the no-deps wheel)
    comments = {}
    pending: list[str] = []
    for line in text.splitlines()[3:]:
        if line.startswith("#"):
            pending.append(line)
        elif line.strip():
            comments[canonical(line.split("==")[0])] = pending
            pending = []
    body = "".join("".join(f"{c}\n" for c in comments.get(canonical(p.split("==")[0]), [])) + p + "\n" for p in pins)
    header = HEADER if not torch_version else (
        f"# ctvlp GPU lock for NVIDIA drivers >= 525 (CUDA 12): requirements.lock with PyPI's CUDA 12 build of\n"
        f"# torch {torch_version} and its CUDA wheels (tools/gpu_lock.py, `make lock`). Select it with\n"
        f"# GPU_LOCK={gpu_lock} (make envs, make container-gpu); docs/cluster.md.\n")
    Path(gpu_lock).write_text(header + body)
    print(f"{gpu_lock}: {len(pins)} pins ({len(pins) - len(cpu)} CUDA packages added to {cpu_lock})")


if __name__ == "__main__":
    main(*sys.argv[1:])
