# Sourced by run_slurm_test.sh (mode `apptainer`) while its test cluster runs: the data image (which that script
# builds in the background unless CTVLP_DATA_IMAGE names one), then the ingest, preprocessing and text rules
# through Slurm with --sdm apptainer, their outputs compared with the local run's; then the gpu image (a sandbox
# folder built in the background unless CTVLP_GPU_IMAGE names one) and rule window_features in it, on CPU
# (compute.allow_cpu: true), its features compared with the local run's. The demo data lie outside the
# working directory, so the run only works if the workflow binds them into the container.
if [[ -n ${BUILD_PID:-} ]]; then  # started by run_slurm_test.sh before the runs
  wait "$BUILD_PID" || { tail -40 "$WORK/build_data.log"; exit 1; }
  log "data image: $(du -h "$IMAGE" | cut -f1), built in $(( $(date +%s) - START_BUILD )) s (in the background)"
fi
[[ -s $IMAGE ]] || { echo "no data image at $IMAGE"; exit 1; }
override "$WORK/apptainer"
cat >> "$WORK/apptainer.yaml" <<YAML
software: {container: {data: $IMAGE, gpu: null, report: null}}
YAML
APPTAINER_TARGETS=(results/qc/summary.md results/text/labels.parquet results/text/snippets.parquet)
log "snakemake --profile slurm --sdm apptainer (data rules in $IMAGE)"
(cd "$REPO" && timeout 2400 snakemake "${APPTAINER_TARGETS[@]/#/$WORK/apptainer/}" --profile slurm --sdm apptainer \
   --slurm-keep-successful-logs -s "$REPO/Snakefile" -d "$WORK/apptainer" --configfile "$REPO/config/config.yaml" \
   "$WORK/apptainer.yaml" \
   >"$WORK/apptainer.log" 2>&1) || { tail -80 "$WORK/apptainer.log"; exit 1; }
"$PY" - "$WORK" "$IMAGE" <<'PY'
import re, sys
from pathlib import Path
import pandas as pd
work, image = Path(sys.argv[1]), sys.argv[2]
log = (work / "apptainer.log").read_text()
jobs = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)", log)
assert jobs, "no Slurm jobs"
for job, slurm_log in jobs:
    text = Path(slurm_log).read_text()
    assert f"Activating singularity image {image}" in text, f"job {job} did not run in the image:\n{text[-1500:]}"
for name in ("manifest/volumes.parquet", "manifest/manifest.parquet", "qc/qc.parquet", "text/labels.parquet",
             "text/snippets.parquet", "text/prompts.parquet"):
    a = pd.read_parquet(work / "apptainer/results" / name)
    b = pd.read_parquet(work / "local/results" / name)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-6, obj=name)
print(f"apptainer: {len(jobs)} Slurm jobs ran in {image}; 6 tables equal the local run's")
PY

# ---- the gpu image: rule window_features (the GPU partition, --nv, one node) run in it on CPU ---------------
if [[ -n ${GPU_BUILD_PID:-} ]]; then
  wait "$GPU_BUILD_PID" || { tail -40 "$WORK/build_gpu.log"; exit 1; }
  log "gpu image: $(du -sh "$GPU_IMAGE" | cut -f1) (sandbox folder), built in $(( $(date +%s) - START_GPU_BUILD )) s (in the background)"
fi
[[ -x $GPU_IMAGE/opt/venv/bin/python ]] || { echo "no gpu image at $GPU_IMAGE"; exit 1; }
grep -q "one window-feature batch on CPU" "$WORK/build_gpu.log" 2>/dev/null || [[ -n ${CTVLP_GPU_IMAGE:-} ]] \
  || { echo "the gpu image's %test did not pass"; tail -20 "$WORK/build_gpu.log"; exit 1; }
cp "$WORK/apptainer.yaml" "$WORK/apptainer-gpu.yaml"
cat >> "$WORK/apptainer-gpu.yaml" <<YAML
software: {container: {data: $IMAGE, gpu: $GPU_IMAGE, report: null}}
YAML
log "snakemake --profile slurm --sdm apptainer (window_features in $GPU_IMAGE)"
(cd "$REPO" && timeout 1800 snakemake "$WORK/apptainer/results/features/shard_0.parquet" --profile slurm \
   --sdm apptainer --slurm-keep-successful-logs -s "$REPO/Snakefile" -d "$WORK/apptainer" \
   --configfile "$REPO/config/config.yaml" "$WORK/apptainer-gpu.yaml" \
   >"$WORK/apptainer-gpu.log" 2>&1) || { tail -80 "$WORK/apptainer-gpu.log"; exit 1; }
"$PY" - "$WORK" "$GPU_IMAGE" <<'PY'
import re, sys
from pathlib import Path
import pandas as pd
work, image = Path(sys.argv[1]), sys.argv[2]
log = (work / "apptainer-gpu.log").read_text()
jobs = re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (\S+?)\)", log)
gpu_jobs = [(job, path) for job, path in jobs if "rule_window_features" in path]
assert gpu_jobs, f"no window_features job went to Slurm: {jobs}"
for job, slurm_log in gpu_jobs:
    text = Path(slurm_log).read_text()
    assert f"Activating singularity image {image}" in text, f"job {job} did not run in the gpu image:\n{text[-1500:]}"
a = pd.read_parquet(work / "apptainer/results/features/shard_0.parquet")
b = pd.read_parquet(work / "local/results/features/shard_0.parquet")
pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-3, atol=1e-4, obj="features/shard_0.parquet")
import torch
from safetensors.torch import load_file
from ctvlp.features.window import feature_file
ok = a[a.status == "ok"].volume_id.tolist()
assert ok, "no volume's features in shard 0"
# the features themselves: the image's CUDA build of torch on CPU against the local CPU build; the encoder they come
# from was pretrained in the image too (rule pretrain_window_encoder, 4 steps), so they agree to a few percent
# (seen: 0.045 on values up to 2.3), not to rounding
for vid in ok:
    mine = load_file(str(feature_file(work / "apptainer/results/features/volumes", vid)))
    local = load_file(str(feature_file(work / "local/results/features/volumes", vid)))
    assert mine.keys() == local.keys(), (vid, mine.keys(), local.keys())
    for key in mine:
        diff = (mine[key].float() - local[key].float()).abs().max().item()
        assert diff <= 0.05 * local[key].float().abs().max().item(), (vid, key, diff)
print(f"apptainer gpu: {len(gpu_jobs)} window_features Slurm job(s) ran in {image}; the features of {len(ok)} "
      "volumes equal the local run's")
PY
