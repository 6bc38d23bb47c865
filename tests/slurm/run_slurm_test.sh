#!/usr/bin/env bash
# A real single-node Slurm on localhost, the profile installed as the user's global `slurm` profile, and a real
# part of the demo workflow (ingest, preprocess, window features, text, one short training run) through the
# literal `snakemake --profile slurm`. Checks that every job went through sbatch and that the outputs equal a
# local run's. Root on Debian only; every wait is bounded; the daemons it starts are stopped by PID.
#
#   tests/slurm/run_slurm_test.sh WORKDIR        (exit 0 = passed; prints its reasons)
set -euo pipefail
WORK=$(realpath -m "${1:?usage: run_slurm_test.sh WORKDIR}")
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-$REPO/.venv/bin/python}
BIN=$(dirname "$PY")
mkdir -p "$WORK"
STARTED=()

log() { echo "[slurm-test $(date +%T)] $*"; }
stop_daemons() {
  for pidfile in "${STARTED[@]}"; do
    if [[ -f $pidfile ]]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
}
trap stop_daemons EXIT

# ---- 1. packages (Debian) --------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurmctld slurmd slurm-client munge from Debian"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null 2>&1 \
    || { timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq --no-install-recommends \
           slurmctld slurmd slurm-client munge >/dev/null; }
fi

# ---- 2. munge and a single-node slurm.conf ----------------------------------------------------------------
install -d -o munge -g munge -m 0755 /run/munge
[[ -s /etc/munge/munge.key ]] || { mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
if ! pgrep -x munged >/dev/null; then
  runuser -u munge -- /usr/sbin/munged
  STARTED+=(/run/munge/munged.pid)
fi
HOST=$(hostname -s)
NODE=$(slurmd -C | head -1 | sed -E 's/ UpTime=.*//')
install -d -o slurm -g slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ctvlp-test
SlurmctldHost=$HOST
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MinJobAge=300
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
if ! pgrep -x slurmctld >/dev/null; then
  : > /var/log/slurm/slurmctld.log   # the checks read job ids from this run only
  /usr/sbin/slurmctld -c   # -c: no jobs left over from an earlier run
  STARTED+=(/run/slurmctld.pid)
fi
if ! pgrep -x slurmd >/dev/null; then
  /usr/sbin/slurmd
  STARTED+=(/run/slurmd.pid)
fi
log "waiting for node $HOST"
timeout 60 bash -c "until sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; do sleep 1; done"
sinfo

# ---- 3. the profile, installed as the user's global profile (HOME points into WORK) -------------------------
export HOME=$WORK/home
"$PY" "$REPO/tools/install_slurm_profile.py" --partition debug --status-command squeue --init-seconds 2 \
  --features-gpus 0 --train-gpus 0 --embed-gpus 0 --jobs 4

# ---- 4. the same targets through Slurm and locally -----------------------------------------------------------
cat > "$WORK/ablations.tsv" <<TSV
run	train.weights.localization	description
full	1.0	all three objectives
TSV
override() {  # $1 = folder of this run's results
  cat > "$1.yaml" <<YAML
results: $1/results
logs: $1/logs
demo: {root: $1/demo_data, n_patients: 12, minis: {ctrate_train_patients: 3, ctrate_valid_patients: 3, radchest_scans: 3}}
train: {ablations: $WORK/ablations.tsv, epochs: 2, checkpoint_every: 2}
YAML
}
export PATH=$BIN:$PATH HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
override "$WORK/local"
log "local run"
(cd "$REPO" && timeout 900 snakemake "$WORK/local/results/runs/full/final.json" "$WORK/local/results/qc/summary.md" \
   --cores 2 -s "$REPO/Snakefile" -d "$WORK/local" --configfile "$REPO/config/config.yaml" "$WORK/local.yaml" \
   >"$WORK/local.log" 2>&1) \
   || { tail -50 "$WORK/local.log"; exit 1; }
override "$WORK/slurm"
# The profile asks for GPU-node sizes (8 CPUs, 32-128 GB per job); this node has 2 CPUs: scale those down.
SMALL_NODE=()
for rule in preprocess window_features train embed; do
  SMALL_NODE+=("$rule:cpus_per_task=1" "$rule:mem_mb=3000" "$rule:runtime=30")
done
log "snakemake --profile slurm"
(cd "$REPO" && timeout 1200 snakemake "$WORK/slurm/results/runs/full/final.json" "$WORK/slurm/results/qc/summary.md" \
   --profile slurm -s "$REPO/Snakefile" -d "$WORK/slurm" --configfile "$REPO/config/config.yaml" "$WORK/slurm.yaml" \
   --set-resources "${SMALL_NODE[@]}" \
   >"$WORK/slurm.log" 2>&1) \
   || { tail -80 "$WORK/slurm.log"; exit 1; }

# ---- 5. checks ---------------------------------------------------------------------------------------------
"$PY" "$REPO/tests/slurm/check_slurm_run.py" "$WORK/slurm" "$WORK/local" "$WORK/slurm.log" /var/log/slurm/slurmctld.log
log "passed"
