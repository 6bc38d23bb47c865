#!/usr/bin/env bash
# The real Slurm test: a single-node cluster with CPU and GPU partitions, accounts and 4 fake GPUs
# (start_test_cluster.sh), the profile installed as the user's global `slurm` profile, and part of the demo
# workflow (ingest, preprocess, window features, text, one training run on two "GPUs": the train rule's torchrun
# launch with two gloo processes on CPU, embedding, evaluation) through the literal `snakemake --profile slurm`.
# Checks what Slurm was asked for (every sbatch line and Slurm's own job records against the profile's requests)
# and that the outputs equal a local run's. Root on Debian only, and only with CTVLP_SLURM_TEST=1 (it changes
# /etc/slurm; everything is restored).
#
#   CTVLP_SLURM_TEST=1 tests/slurm/run_slurm_test.sh WORKDIR [apptainer]   (exit 0 = passed; prints its reasons)
#
# With `apptainer` (Apptainer installed, tests/slurm/setup_apptainer.sh) it also builds the data image and the gpu
# image (a sandbox folder) and runs the ingest and text rules, then rule window_features in the gpu image, with
# --sdm apptainer through Slurm, comparing their outputs with the local run.
set -euo pipefail
WORK=$(realpath -m "${1:?usage: run_slurm_test.sh WORKDIR [apptainer]}")
MODE=${2:-}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
BIN=$(dirname "$PY")
mkdir -p "$WORK"
log() { echo "[slurm-test $(date +%T)] $*"; }

source "$REPO/tests/slurm/start_test_cluster.sh"
trap stop_test_cluster EXIT
start_test_cluster

# ---- the profile, installed as the user's global profile (HOME points into WORK) -------------------------
export HOME=$WORK/home
"$PY" "$REPO/tools/install_slurm_profile.py" --cpu-partition cpu --gpu-partition gpu --cpu-account lab-cpu \
  --gpu-account lab-gpu --gpu-model fake --status-command sacct --init-seconds 2 --jobs 6
"$PY" "$REPO/tools/install_slurm_profile.py" --cpu-partition cpu --gpu-partition gpu --cpu-account lab-cpu \
  --gpu-account lab-gpu --gpu-model fake --status-command sacct --init-seconds 2 --jobs 4 2>"$WORK/reinstall.err"
grep -q "kept the previous profile" "$WORK/reinstall.err" || { echo "installer kept no backup"; exit 1; }

# ---- the data image, built in the background while the runs below take the CPUs (its debootstrap and pip
# downloads mostly wait on the network); apptainer_part.sh waits for it -------------------------------------
IMAGE=${CTVLP_DATA_IMAGE:-$WORK/ctvlp-data.sif}
if [[ $MODE == apptainer && ! -s $IMAGE ]]; then
  log "building the data image in the background (tools/build_image.sh data, what make container-data runs)"
  START_BUILD=$(date +%s)
  # its own session, so that a failing test stops the whole build (trap below), and its own output file, so that
  # the caller's pipe closes when this script ends
  APPTAINER_BUILD_ARGS=${APPTAINER_BUILD_ARGS:---fakeroot} PYTHON=$PY \
    setsid "$REPO/tools/build_image.sh" data "$IMAGE" >"$WORK/build_data.log" 2>&1 </dev/null &
  BUILD_PID=$!
  trap 'kill -- -$BUILD_PID 2>/dev/null || true; stop_test_cluster' EXIT
fi
# the gpu image beside it, as a sandbox folder (apptainer build --sandbox: no squashfs step, which would take most
# of its build time); apptainer_part.sh runs rule window_features in it
GPU_IMAGE=${CTVLP_GPU_IMAGE:-$WORK/ctvlp-gpu}
if [[ $MODE == apptainer && ! -e $GPU_IMAGE/opt/venv ]]; then
  log "building the gpu image in the background (tools/build_image.sh gpu with --sandbox: make container-gpu's build)"
  START_GPU_BUILD=$(date +%s)
  APPTAINER_BUILD_ARGS="${APPTAINER_BUILD_ARGS:---fakeroot} --sandbox" PYTHON=$PY \
    setsid "$REPO/tools/build_image.sh" gpu "$GPU_IMAGE" >"$WORK/build_gpu.log" 2>&1 </dev/null &
  GPU_BUILD_PID=$!
  trap 'kill -- -${BUILD_PID:-$GPU_BUILD_PID} -$GPU_BUILD_PID 2>/dev/null || true; stop_test_cluster' EXIT
fi

# ---- the same targets through Slurm and locally -----------------------------------------------------------
cat > "$WORK/ablations.tsv" <<TSV
run	train.weights.localization	description
full	1.0	all three objectives
TSV
override() {  # $1 = folder of this run's results; the demo data lie outside it (bound into containers)
  cat > "$1.yaml" <<YAML
results: $1/results
logs: $1/logs
demo: {root: $1-data, n_patients: 12, minis: {ctrate_train_patients: 3, ctrate_valid_patients: 3, radchest_scans: 3}}
train: {ablations: $WORK/ablations.tsv, epochs: 2, checkpoint_every: 2, micro_batch: 8}
pretrain: {steps: 4, batch_size: 8, warmup_steps: 1, checkpoint_every: 2}
evaluate: {bootstrap_resamples: 50}
compute: {features_gpus: 1, train_gpus: 2, embed_gpus: 1, allow_cpu: true}
YAML
}
TARGETS=(results/runs/full/final.json results/qc/summary.md results/runs/full/metrics.json)
targets() { for t in "${TARGETS[@]}"; do echo "$1/$t"; done; }
export PATH=$BIN:$PATH HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
override "$WORK/local"
if [[ -n ${CTVLP_SLURM_REUSE_LOCAL:-} && -f $WORK/local/results/runs/full/metrics.json ]]; then
  log "local run: reusing $WORK/local (CTVLP_SLURM_REUSE_LOCAL)"
else
  log "local run"
  (cd "$REPO" && timeout 2400 snakemake $(targets "$WORK/local") --cores 2 -s "$REPO/Snakefile" -d "$WORK/local" \
     --configfile "$REPO/config/config.yaml" "$WORK/local.yaml" >"$WORK/local.log" 2>&1) \
     || { tail -50 "$WORK/local.log"; exit 1; }
fi
rm -rf "$WORK/slurm" "$WORK/slurm-data"
override "$WORK/slurm"
log "snakemake --profile slurm (shipped requests, fake GPUs; umask 077: the workflow keeps outputs group-readable)"
(umask 077 && cd "$REPO" && timeout 2400 snakemake $(targets "$WORK/slurm") --profile slurm -s "$REPO/Snakefile" \
   -d "$WORK/slurm" --configfile "$REPO/config/config.yaml" "$WORK/slurm.yaml" --verbose --slurm-keep-successful-logs \
   >"$WORK/slurm.log" 2>&1) \
   || { grep -v "^DEBUG\|^\s*$" "$WORK/slurm.log" | tail -80; exit 1; }

# ---- checks ---------------------------------------------------------------------------------------------
"$PY" "$REPO/tests/slurm/check_slurm_run.py" "$WORK/slurm" "$WORK/local" "$WORK/slurm.log" \
  "$HOME/.config/snakemake/slurm/config.yaml"

source "$REPO/tests/slurm/readme_part.sh"
if [[ $MODE == apptainer ]]; then
  source "$REPO/tests/slurm/apptainer_part.sh"
fi
log "passed"
