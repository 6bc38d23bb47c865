#!/usr/bin/env bash
# A real single-node Slurm on localhost shaped like a GPU cluster: partitions `cpu` (default) and `gpu`, accounts
# `lab-cpu` and `lab-gpu` in slurmdbd (MariaDB), and 4 fake GPUs (GRES gpu:fake:4 over dummy device files; the
# jobs see no CUDA, so the GPU rules run with compute.allow_cpu). The node claims 32 CPUs and 256 GB
# (SlurmdParameters=config_overrides) so the profile's shipped requests (8 CPUs per GPU, 128 GB) are submitted
# as they are. Sourced by run_slurm_test.sh; stop_test_cluster undoes everything: daemons stopped by PID, the
# system files it replaced restored, the ones it created removed.
#
# It changes system files (/etc/slurm, /etc/munge, /dev, MariaDB) only when CTVLP_SLURM_TEST=1 (.ci/run sets it).
[[ ${CTVLP_SLURM_TEST:-} == 1 ]] || { echo "start_test_cluster: set CTVLP_SLURM_TEST=1 to let it change /etc/slurm" >&2; return 2; }
CLUSTER_STATE=$(mktemp -d /tmp/ctvlp-slurm-state.XXXXXX)
STARTED=()
FAKE_GPUS=(/dev/ctvlp-fake-gpu0 /dev/ctvlp-fake-gpu1 /dev/ctvlp-fake-gpu2 /dev/ctvlp-fake-gpu3)
SYSTEM_FILES=(/etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf /etc/munge/munge.key)

clog() { echo "[slurm-cluster $(date +%T)] $*"; }

backup_system_files() {
  for f in "${SYSTEM_FILES[@]}"; do
    if [[ -e $f ]]; then cp -a "$f" "$CLUSTER_STATE/$(echo "$f" | tr / _)"; else echo "$f" >> "$CLUSTER_STATE/created"; fi
  done
}

stop_test_cluster() {
  local pidfile
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
    pidfile=${STARTED[$i]}
    if [[ $pidfile == /run/mysqld/mysqld.pid ]]; then  # slurmdbd is stopped by now: drop what it stored
      sleep 1
      mariadb -e "DROP DATABASE IF EXISTS ctvlp_slurm_acct; DROP USER IF EXISTS 'slurm'@'localhost';" 2>/dev/null || true
    fi
    if [[ -f $pidfile ]]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  sleep 1
  for f in "${SYSTEM_FILES[@]}"; do
    local saved="$CLUSTER_STATE/$(echo "$f" | tr / _)"
    if [[ -e $saved ]]; then cp -a "$saved" "$f"; fi
  done
  if [[ -f $CLUSTER_STATE/created ]]; then xargs -r rm -f < "$CLUSTER_STATE/created"; fi
  rm -f "${FAKE_GPUS[@]}"
  rm -rf "$CLUSTER_STATE"
}

start_test_cluster() {
  # ---- packages (Debian) ----
  local pkgs=(slurmctld slurmd slurm-client slurmdbd munge mariadb-server)
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null || ! command -v slurmdbd >/dev/null \
      || ! command -v mariadbd >/dev/null; then
    clog "installing ${pkgs[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 \
      || { timeout 300 apt-get update -qq && timeout 300 apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null; }
  fi
  backup_system_files
  # ---- munge ----
  install -d -o munge -g munge -m 0755 /run/munge
  [[ -s /etc/munge/munge.key ]] || { mungekey --create --force 2>/dev/null || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none; }
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
    STARTED+=(/run/munge/munged.pid)
  fi
  # ---- MariaDB + slurmdbd (accounts) ----
  install -d -o mysql -g mysql /run/mysqld
  if ! pgrep -x mariadbd >/dev/null; then
    [[ -d /var/lib/mysql/mysql ]] || mariadb-install-db --user=mysql >/dev/null 2>&1
    mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid --skip-networking=0 --bind-address=127.0.0.1 \
      >"$CLUSTER_STATE/mariadb.log" 2>&1 &
    STARTED+=(/run/mysqld/mysqld.pid)
    timeout 60 bash -c "until mariadb -e 'select 1' >/dev/null 2>&1; do sleep 1; done"
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS ctvlp_slurm_acct; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'ctvlp-test';
              GRANT ALL ON ctvlp_slurm_acct.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  local host
  host=$(hostname -s)
  install -d -o slurm -g slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
  cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=/var/log/slurm/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=ctvlp-test
StorageLoc=ctvlp_slurm_acct
CONF
  chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf
  if ! pgrep -x slurmdbd >/dev/null; then
    /usr/sbin/slurmdbd
    STARTED+=(/run/slurmdbd.pid)
  fi
  # ---- fake GPUs and slurm.conf ----
  for ((i = 0; i < ${#FAKE_GPUS[@]}; i++)); do [[ -e ${FAKE_GPUS[$i]} ]] || mknod "${FAKE_GPUS[$i]}" c 1 3; done
  echo "Name=gpu Type=fake File=/dev/ctvlp-fake-gpu[0-3]" > /etc/slurm/gres.conf
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ctvlp-test
SlurmctldHost=$host
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
AccountingStorageTRES=gres/gpu
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=32 Boards=1 SocketsPerBoard=1 CoresPerSocket=32 ThreadsPerCore=1 RealMemory=262144 Gres=gpu:fake:4 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
CONF
  timeout 60 bash -c "until sacctmgr -n list cluster >/dev/null 2>&1; do sleep 1; done"
  sacctmgr -i add cluster ctvlp-test >/dev/null 2>&1 || true
  sacctmgr -i add account lab-cpu,lab-gpu Cluster=ctvlp-test >/dev/null 2>&1 || true
  sacctmgr -i add user "$(id -un)" Account=lab-cpu,lab-gpu DefaultAccount=lab-cpu >/dev/null 2>&1 || true
  if ! pgrep -x slurmctld >/dev/null; then
    : > /var/log/slurm/slurmctld.log   # the checks read job ids from this run only
    /usr/sbin/slurmctld -c   # -c: no jobs left over from an earlier run
    STARTED+=(/run/slurmctld.pid)
  fi
  if ! pgrep -x slurmd >/dev/null; then
    /usr/sbin/slurmd
    STARTED+=(/run/slurmd.pid)
  fi
  clog "waiting for node $host"
  timeout 60 bash -c "until sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; do sleep 1; done"
  sinfo -o "%P %D %c %m %G %t"
  sacctmgr -n list assoc format=account,user
}
