#!/bin/bash
# The whole driver over real NVMe/TCP: the simulator exports through nvmet, the controller
# manages it over SSH, the node connects with the kernel's initiator, and csi-e2e drives the
# CO's flow for a filesystem and a block volume (write, restage, verify, raw I/O, expand,
# delete), then prints step timings and the NodeStageVolume breakdown.
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
overhead=$(awk '/^stage-overhead-ms:/ {print $2}' "$W/e2e.out")
say "NodeStageVolume driver overhead ${overhead} ms (target <= 20 ms)"
