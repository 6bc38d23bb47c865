#!/usr/bin/env bash
# Run by Snakemake inside envs/ctvlp.yaml right after it creates the environment (--sdm conda): installs the
# ctvlp package itself (the YAML holds only the pinned third-party packages of requirements.lock).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python -m pip install --no-deps --no-build-isolation "$REPO"
