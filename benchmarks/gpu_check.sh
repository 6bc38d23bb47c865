#!/usr/bin/env bash
# One prepared GPU check (make gpu-check): what only a GPU run exercises, in at most 8 minutes on one
# H100/H200-class GPU, each part under its own time limit within that budget:
#   1. the gpu-marked tests (tests/test_gpu_*.py -m gpu): bf16 autocast paths (MAE pretraining, training),
#      the padded 90-d attention on CUDA's memory-efficient SDPA kernel, NCCL with one process per GPU the
#      machine has, and a resumed CUDA run (CUDA RNG restored) equal to an uninterrupted one;
#   2. benchmarks/bench_gpu.py at paper dims: windows/s, the trainer's own step (pairs/s), peak memory, MFU;
#   3. 3 optimiser steps of the paper preset's training at paper dims, gradient caching over 4,096 pairs.
# Without CUDA it runs what a CPU can (the CPU tests of tests/test_gpu_*.py, bench_gpu.py at toy size) and
# lists what it skipped. The exit status is the first failing part's (124: a part ran out of its time).
# PY (default .venv/bin/python) picks the interpreter, e.g. PY=python in the gpu container.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
BUDGET=${GPU_CHECK_BUDGET_S:-480}
T0=$(date +%s)
STATUS=0
SUMMARY=()

# part NAME SECONDS CMD...: run CMD with at most SECONDS (or what is left of the budget), recording the outcome
part() {
  local name=$1 limit=$2 left start rc
  shift 2
  left=$(( BUDGET - ($(date +%s) - T0) ))
  if (( left < 20 )); then
    SUMMARY+=("NOT RUN  $name (the ${BUDGET} s budget is spent)")
    [[ $STATUS == 0 ]] && STATUS=124
    return
  fi
  (( limit > left )) && limit=$left
  echo "gpu-check: == $name (limit ${limit} s)"
  start=$(date +%s)
  timeout --kill-after=10 "$limit" "$@"
  rc=$?
  local took=$(( $(date +%s) - start ))
  if [[ $rc == 0 ]]; then SUMMARY+=("ok       $name (${took} s)"); else SUMMARY+=("FAILED   $name (exit $rc, ${took} s)"); fi
  if [[ $rc != 0 && $STATUS == 0 ]]; then STATUS=$rc; fi
}

$PY - <<'PY'
import platform
import torch
from ctvlp.core.compute import nvidia_driver
print(f"gpu-check: python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"NVIDIA driver {nvidia_driver() or 'none found'}, CUDA available: {torch.cuda.is_available()}, "
      f"GPUs: {[torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]}")
PY
CUDA=$($PY -c "import torch; print(int(torch.cuda.is_available()))")

if [[ $CUDA == 1 ]]; then
  part "gpu-marked tests (bf16 autocast, padded attention kernel, NCCL, resumed CUDA RNG)" 120 \
    env CUBLAS_WORKSPACE_CONFIG=:4096:8 $PY -m pytest -q -rs -p no:cacheprovider -m gpu tests/test_gpu_attention.py \
    tests/test_gpu_memory.py tests/test_gpu_nccl.py
  part "bench_gpu.py at paper dims (windows/s, trainer step pairs/s, peak memory, MFU)" 90 \
    $PY benchmarks/bench_gpu.py --paper
  part "3 optimiser steps of the paper preset, gradient caching over 4,096 pairs" 260 \
    $PY benchmarks/bench_gpu.py --paper --train-steps 3 --batch 4096
else
  echo "gpu-check: NO CUDA on this machine: running the CPU-possible part only"
  part "tests/test_gpu_*.py on CPU (the gpu-marked ones are skipped, listed below)" 300 \
    $PY -m pytest -q -rs -p no:cacheprovider tests/test_gpu_attention.py tests/test_gpu_compute.py \
    tests/test_gpu_dtype.py tests/test_gpu_memory.py tests/test_gpu_nccl.py
  part "bench_gpu.py at toy size on CPU (no MFU; the numbers mean nothing)" 300 \
    $PY benchmarks/bench_gpu.py --tiny --steps 1
  SUMMARY+=("SKIPPED  gpu-marked tests: bf16 autocast in pretraining and training, the padded attention on the"
            "         memory-efficient kernel, NCCL, a resumed CUDA run (no CUDA here)"
            "SKIPPED  bench_gpu.py at paper dims (no CUDA here)"
            "SKIPPED  3 optimiser steps of the paper preset over 4,096 pairs (no CUDA here)")
fi

echo "gpu-check: summary ($(( $(date +%s) - T0 )) s of a ${BUDGET} s budget):"
printf '  %s\n' "${SUMMARY[@]}"
exit $STATUS
