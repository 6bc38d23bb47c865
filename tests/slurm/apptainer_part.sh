# Sourced by run_slurm_test.sh (mode `apptainer`) while its test cluster runs: the data image (which that script
# builds in the background unless CTVLP_DATA_IMAGE names one), then the ingest, preprocessing and text rules
# through Slurm with --sdm apptainer, their outputs compared with the local run's. The demo data lie outside the
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
