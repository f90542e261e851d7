#!/bin/bash
# The whole driver over real NVMe/TCP: the simulator exports through nvmet, the controller
# manages it over SSH, the node connects with the kernel's initiator, and csi-e2e drives the
# CO's flow for a filesystem and a block volume (write, restage, verify, raw I/O, expand,
# delete), then prints step timings and the breakdown of every NodeStageVolume.
set -euo pipefail
W=/tmp/csi-nvme-tcp
mkdir -p "$W"
source "$ROOT/scripts/vm/lib/csi-lab.sh"

start_sim 127.0.0.1
start_controller 127.0.0.1
start_node
# shellcheck disable=SC2046
timeout --kill-after=5 240 "$E2E" run $(csi_flags) --node-log "$W/node.log" | tee "$W/e2e.out" ||
  fail "csi-e2e run failed"
assert_clean
# One line per NodeStageVolume: the driver's overhead (the node's handler total minus the
# kernel's and the tools' work) and its unnamed part, the node's total, gRPC and transport,
# and the CO's total. The target for the overhead is 20 ms.
grep -q '^stage-timing: fs-cold ' "$W/e2e.out" || fail "no NodeStageVolume breakdown"
cold_phases=$(sed -n '/^NodeStageVolume fs-cold/,/^stage-timing/p' "$W/e2e.out" | awk '{print $1}')
for phase in connect device blkid mkfs mount; do
  grep -qx "$phase" <<<"$cold_phases" || fail "the first stage's breakdown has no $phase phase"
done
# (A pipe, not process substitution: the VM's /dev has no /dev/fd.)
grep '^stage-timing:' "$W/e2e.out" | while read -r _ label rest; do
  say "NodeStageVolume $label: $rest (overhead target <= 20 ms)"
done
