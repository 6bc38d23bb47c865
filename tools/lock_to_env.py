"""Write the conda environments from requirements.lock so they cannot drift from it.

envs/ctvlp.yaml is the whole lock (the `ctvlp` command line, interactive use). envs/{data,gpu,report}.yaml are
the per-kind rule environments: the distributions the kind's rule scripts actually import (measured by
importing each script's imports in a fresh interpreter), closed over their declared dependencies, at the
lock's exact versions. Run inside the project's .venv (make envs); a test re-measures and compares.

Usage: python tools/lock_to_env.py [requirements.lock] [envs]
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = """# Generated from requirements.lock by `make envs`; a test checks that the two agree.
# conda channels may be unreachable on a site: python comes from conda, everything else as pinned pip entries.
# {kind}.post-deploy.sh installs the ctvlp package itself after Snakemake creates the environment.
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
    "data": ["demo_cohort", "dicom_index", "manifest", "preprocess_shard", "qc_summary", "report_text",
             "mine_snippets"],
    "gpu": ["pretrain_window_encoder", "window_features", "train", "embed"],
    "report": ["evaluate", "compare", "tables", "figures", "claims"],
}
ALWAYS = {"data": ["pyyaml"], "gpu": ["pyyaml", "einops"], "report": ["pyyaml", "matplotlib", "seaborn"]}


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


def kind_pins(kind: str, pins: list[str]) -> list[str]:
    scripts = [REPO / "workflow" / "scripts" / f"{rule}.py" for rule in KINDS[kind]]
    wanted = closure(imported_distributions(scripts) | {canonical(n) for n in ALWAYS[kind]})
    return [pin for pin in pins if canonical(pin.split("==")[0]) in wanted]


def render(kind: str, pins: list[str]) -> str:
    name = "ctvlp" if kind == "ctvlp" else f"ctvlp-{kind}"
    return HEADER.format(kind=kind, name=name) + "".join(f"      - {pin}\n" for pin in pins)


def main(lock: str = "requirements.lock", envs: str = "envs") -> None:
    pins = lock_pins(Path(lock))
    out = Path(envs)
    (out / "ctvlp.yaml").write_text(render("ctvlp", pins))
    for kind in KINDS:
        (out / f"{kind}.yaml").write_text(render(kind, kind_pins(kind, pins)))
        deploy = out / f"{kind}.post-deploy.sh"
        deploy.write_text((out / "ctvlp.post-deploy.sh").read_text())
        deploy.chmod(0o755)


if __name__ == "__main__":
    main(*sys.argv[1:])
