# Sourced by run_slurm_test.sh while its test cluster runs: the command block of docs/cluster.md's "On a Slurm cluster"
# section, line by line, with this cluster's values for the site's (partitions, accounts, GPU model) and the
# paper preset pointed at empty data roots. The installer line and the image line run for real (images: the data
# image only, the gpu image needs 3 GB of CUDA wheels: `make -n` checks its target); the snakemake lines run as
# dry runs (-n) through the installed profile: the paper preset has no data here. --sdm conda stops at
# `conda info` where no conda is installed (as here: no conda channel is reachable), which is the expected end.
README_LINES=$("$PY" - "$REPO/docs/cluster.md" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
section = text.split("## On a Slurm cluster", 1)[1]
block = re.search(r"<!-- slurm-test.*?-->\n```bash\n(.*?)```", section, re.S).group(1)
print(block.strip())
PY
)
[[ $(wc -l <<<"$README_LINES") -ge 4 ]] || { echo "README cluster block not found"; exit 1; }
"$PY" "$REPO/tests/paper_roots.py" "$WORK/paper" "$WORK/paper_roots.yaml"  # empty roots, the shipped layouts
while IFS= read -r line; do
  [[ -z $line ]] && continue
  cmd=${line%%#*}
  cmd=${cmd//CPU_PARTITION=cpu/CPU_PARTITION=cpu}
  cmd=${cmd//ACCOUNT=mylab/ACCOUNT=lab-cpu GPU_ACCOUNT=lab-gpu STATUS=sacct FORCE=1}
  cmd=${cmd//GPU_MODEL=a100/GPU_MODEL=fake}
  log "README: $line"
  case $cmd in
    make\ slurm-profile*)
      (cd "$REPO" && eval "make -o install ${cmd#make }") || exit 1
      grep -q "lab-gpu" "$HOME/.config/snakemake/slurm/config.yaml" || { echo "profile not installed"; exit 1; } ;;
    make\ container-*)
      (cd "$REPO" && make -n -o install ${cmd#make } >/dev/null) || { echo "make targets missing: $cmd"; exit 1; } ;;
    snakemake*)
      out="$WORK/readme-$(echo "$cmd" | tr -c 'a-z0-9' _ | cut -c1-60).log"
      set +e
      (cd "$REPO" && eval "timeout 600 $cmd $WORK/paper_roots.yaml -n -d $WORK/paper" >"$out" 2>&1)
      rc=$?
      set -e
      if [[ $cmd == *"--sdm conda"* && $rc != 0 ]]; then
        grep -q "Error running conda info" "$out" || { tail -30 "$out"; exit 1; }
        log "  dry run reached the conda check (no conda here)"
      else
        [[ $rc == 0 ]] || { tail -30 "$out"; exit 1; }
        grep -q "slurm_partition=gpu" "$out" && grep -q "slurm_partition=cpu" "$out" \
          || { echo "no CPU/GPU partitions in the dry run"; exit 1; }
        log "  dry run: $(grep -c '^rule ' "$out") Slurm jobs, partitions cpu and gpu"
      fi ;;
    *) echo "README line not covered by the test: $line"; exit 1 ;;
  esac
done <<<"$README_LINES"
