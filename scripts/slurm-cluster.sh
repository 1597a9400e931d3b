#!/usr/bin/env bash
# A real single-host Slurm cluster on 127.0.0.1, for genobatch's tests, CI and benchmarks (root only):
# munged, MariaDB, slurmdbd (so that sacct works as on real sites), slurmctld and slurmd, all kept in DIR.
#
#   scripts/slurm-cluster.sh install       apt-get the packages (idempotent; bootstrap runs it)
#   scripts/slurm-cluster.sh start DIR     start everything; prints `export SLURM_CONF=DIR/slurm.conf`
#   scripts/slurm-cluster.sh stop DIR      stop everything it started in DIR
#
# After ../shared/recipes/slurm (verified on these machines), plus accounting (slurmdbd + MariaDB) and memory
# enforcement (cgroup v1): a job over its memory ends OUT_OF_MEMORY, as on real clusters. One node,
# `localhost`, with this machine's CPUs; partition `debug` (default) and `short` (1 h, for refusal tests).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

install() {
  local need=()
  for package in slurm-wlm slurmdbd munge mariadb-server; do
    dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

wait_for() {  # wait_for SECONDS WHAT COMMAND...
  local seconds=$1 what=$2
  shift 2
  for _ in $(seq "$((seconds * 5))"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "slurm-cluster: $what did not come up in ${seconds} s" >&2
  return 1
}

start() {
  local dir=$1
  mkdir -p "$dir"/{ctld,d,mysql,log}
  dir=$(cd "$dir" && pwd)
  # munge: the host's own daemon (its socket is where every Slurm command looks for it)
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
    [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
    chmod 600 /etc/munge/munge.key
    runuser -u munge -- /usr/sbin/munged
    echo started > "$dir/munged.ours"
    wait_for 10 munged sh -c 'munge -n | unmunge'
  fi
  # MariaDB for slurmdbd, in DIR, on loopback only
  if [ ! -d "$dir/mysql/mysql" ]; then
    mariadb-install-db --datadir="$dir/mysql" --user=root --auth-root-authentication-method=normal \
      --skip-test-db >"$dir/log/mariadb-install.log" 2>&1
  fi
  mariadbd --datadir="$dir/mysql" --socket="$dir/mysql.sock" --pid-file="$dir/mariadb.pid" --port=3307 \
    --bind-address=127.0.0.1 --user=root --skip-name-resolve >"$dir/log/mariadb.log" 2>&1 &
  wait_for 30 MariaDB mariadb --socket="$dir/mysql.sock" -uroot -e 'select 1'
  mariadb --socket="$dir/mysql.sock" -uroot -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'genobatch';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; FLUSH PRIVILEGES;"
  local cpus memory
  cpus=$(nproc)
  memory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
  sed -e "s|@RUN@|$dir|g" -e "s|@CPUS@|$cpus|g" -e "s|@MEMORY@|$memory|g" "$here/slurm/slurm.conf" >"$dir/slurm.conf"
  sed -e "s|@RUN@|$dir|g" "$here/slurm/slurmdbd.conf" >"$dir/slurmdbd.conf"
  cp "$here/slurm/cgroup.conf" "$dir/cgroup.conf"
  chmod 600 "$dir/slurmdbd.conf"
  export SLURM_CONF=$dir/slurm.conf
  /usr/sbin/slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
  wait_for 30 slurmdbd sacctmgr -i show cluster
  sacctmgr -i add cluster genobatch >/dev/null 2>&1 || true
  /usr/sbin/slurmctld -f "$dir/slurm.conf"
  /usr/sbin/slurmd -f "$dir/slurm.conf" -N localhost
  wait_for 60 "the node" sh -c '[ "$(sinfo -h -n localhost -o %t | head -1)" = idle ]'
  echo "export SLURM_CONF=$dir/slurm.conf"
}

stop() {
  local dir
  dir=$(cd "$1" && pwd)
  for daemon in slurmd slurmctld slurmdbd mariadb; do
    local pidfile="$dir/$daemon.pid"
    [ -s "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true  # slurmd once ignored SIGTERM with its controller gone
    rm -f "$pidfile"
  done
  if [ -f "$dir/munged.ours" ]; then
    pkill -x munged || true
    rm -f "$dir/munged.ours"
  fi
}

case "${1:-}" in
  install) install ;;
  start) start "${2:?start DIR}" ;;
  stop) stop "${2:?stop DIR}" ;;
  *) echo "usage: $0 install | start DIR | stop DIR" >&2; exit 2 ;;
esac
