#!/usr/bin/env bash
# Make rootful podman usable for genobatch on Debian 12 (run as root; idempotent; ~1 min the first time).
# After ../shared/recipes/podman, verified with podman 4.3.1 / crun 1.8.1 on machines with no Docker engine,
# no systemd, no CAP_SYS_RESOURCE and no reachable container registry.
set -euo pipefail
if [ "$(id -u)" -ne 0 ]; then echo "setup-podman: run as root" >&2; exit 1; fi
need=()
command -v podman >/dev/null || need+=(podman)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# 1) crun refuses "hybrid" cgroups while the cgroup2 mount still owns a controller (here: hugetlb):
#    "crun: cgroups in hybrid mode not supported, drop all controllers from cgroupv2". Binding hugetlb to a
#    v1 hierarchy empties cgroup2's controller list. Not kept across reboots: this script runs every time.
if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
  mkdir -p /sys/fs/cgroup/hugetlb
  mountpoint -q /sys/fs/cgroup/hugetlb || mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
fi
# 2) podman's default rlimits (nofile/nproc 1048576) exceed the hard limits here: EPERM from setrlimit.
mkdir -p /etc/containers
if ! grep -qs default_ulimits /etc/containers/containers.conf; then
  cat >> /etc/containers/containers.conf <<'CONF'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]
CONF
fi
# 3) No registry: the base image is Debian bookworm from Debian's archive (debootstrap), imported into podman
#    as localhost/debian-base:bookworm (~25 s + ~5 s, ~200 MB). `genobatch images build` starts from it.
ROOTFS=${ROOTFS:-/var/tmp/genobatch-rootfs}
if ! podman image exists localhost/debian-base:bookworm; then
  [ -x "$ROOTFS/bin/sh" ] || debootstrap --variant=minbase bookworm "$ROOTFS" >/dev/null
  tar -C "$ROOTFS" -c . | podman import --quiet - localhost/debian-base:bookworm >/dev/null
fi
podman run --rm --network=none localhost/debian-base:bookworm true
echo "setup-podman: podman $(podman version --format '{{.Client.Version}}') works"
