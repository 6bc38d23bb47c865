#!/usr/bin/env bash
# Build the Apptainer image of one kind of rule (data, gpu, report) from containers/<kind>.def.
#
#   tools/build_image.sh KIND [OUT.sif]        (make container-KIND; default OUT: containers/ctvlp-KIND.sif)
#
# The build folder gets: the kind's pins (the pip part of envs/KIND.yaml), the modules its rules import (the
# image's %test imports them all), a wheel of this checkout's ctvlp package, and for the CPU kinds the torch
# wheel pip finds through this machine's own configuration (a local CPU build if there is one; set
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu to get it from PyTorch, else PyPI's CUDA build is
# used). Where pip goes through a TLS-intercepting proxy ($PIP_CERT), that CA bundle is handed to the build.
# Environment: APPTAINER (default apptainer), MIRROR (Debian mirror; default: this machine's apt source),
# APPTAINER_BUILD_ARGS (e.g. --fakeroot, which root without full capabilities needs; --sandbox with OUT a
# folder skips the squashfs step), GPU_LOCK (gpu kind: the lock its pins come from, default requirements-gpu.lock).
set -euo pipefail
KIND=${1:?usage: build_image.sh data|gpu|report [OUT.sif]}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${2:-$REPO/containers/ctvlp-$KIND.sif}")
PY=${PYTHON:-$REPO/.venv/bin/python}
CTX=$(mktemp -d "${TMPDIR:-/tmp}/ctvlp-image-$KIND.XXXXXX")
trap 'rm -rf "$CTX"' EXIT
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

cp "$REPO/containers/$KIND.def" "$REPO/containers/install.sh" "$REPO/containers/selftest.py" "$CTX/"
cp "$REPO/config/config.yaml" "$CTX/config.yaml"
GPU_LOCK=${GPU_LOCK:-requirements-gpu.lock}
if [[ $KIND == gpu && $(basename "$GPU_LOCK") != requirements-gpu.lock ]]; then
  # another GPU lock (make container-gpu GPU_LOCK=requirements-gpu-cu12.lock): the gpu kind's slice of it, as
  # make envs would write envs/gpu.yaml from it
  (cd "$REPO" && "$PY" -c "
import sys; sys.path.insert(0, 'tools')
from pathlib import Path
from lock_to_env import kind_pins, lock_pins
print('\n'.join(kind_pins('gpu', lock_pins(Path('requirements.lock')), lock_pins(Path('$GPU_LOCK')))))") \
    > "$CTX/requirements-$KIND.txt"
else
  sed -n 's/^      - //p' "$REPO/envs/$KIND.yaml" > "$CTX/requirements-$KIND.txt"
fi
(cd "$REPO" && "$PY" -c "
import sys; sys.path.insert(0, 'tools')
from lock_to_env import CLI_KINDS, KINDS, kind_modules
scripts = [f'workflow/scripts/{r}.py' for r in KINDS['$KIND']]
ctvlp = {l.split()[1] for s in scripts for l in open(s) if l.startswith('from ctvlp')}
ctvlp |= {'ctvlp.cli'} if '$KIND' in CLI_KINDS else set()
print('\n'.join(sorted(kind_modules('$KIND') | ctvlp)))") > "$CTX/modules-$KIND.txt"
mkdir -p "$CTX/wheels"
# The wheel is built from a copy of the package's sources: setuptools writes build/ and *.egg-info into the
# folder it builds, and two images built at once from the checkout itself (the Slurm test builds data and gpu
# side by side) overwrite each other's build/lib, which once gave a wheel without the ctvlp package.
mkdir -p "$CTX/pkg"
cp "$REPO/pyproject.toml" "$REPO/README.md" "$CTX/pkg/"
(cd "$REPO" && tar --exclude=__pycache__ --exclude='*.egg-info' -cf - src) | tar -xf - -C "$CTX/pkg"
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$CTX/wheels" "$CTX/pkg"
rm -rf "$CTX/pkg"
TORCH=$(grep -E '^torch==' "$CTX/requirements-$KIND.txt" || true)
if [[ -n $TORCH && $KIND != gpu ]]; then
  "$PY" -m pip download --quiet --no-deps --only-binary :all: -d "$CTX/wheels" "$TORCH"
fi
if [[ -n ${PIP_CERT:-} && -s $PIP_CERT ]]; then cp "$PIP_CERT" "$CTX/host-ca.crt"; else : > "$CTX/host-ca.crt"; fi
mkdir -p "$(dirname "$OUT")"
START=$(date +%s)
(cd "$CTX" && ${APPTAINER:-apptainer} build --force ${APPTAINER_BUILD_ARGS:-} --build-arg "MIRROR=$MIRROR" "$OUT" "$KIND.def")
echo "built $OUT: $(du -sh "$OUT" | cut -f1) in $(( $(date +%s) - START )) s"
