#!/bin/bash
# NodeStageVolume measured natively on this host: the csi-nvme-tcp flow of the QEMU lab
# (simulator, controller, node, csi-e2e), with the loop fabric (TEST AND DEMO ONLY) in place of
# NVMe/TCP, so no emulated CPU distorts the driver's own overhead. Needs root (loop devices,
# mounts). Each run starts fresh processes, so its first stage is a cold one.
#
#   scripts/vm/lib/host-bench.sh [RUNS]    (default 3)
#   VM_PROFILE=debug|release (default release); CARGO_TARGET_DIR is honoured. Build first:
#   cargo build --release --bin rds-csi --bin csi-e2e
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
RUNS=${1:-3}
BIN_DIR=$(cd "$ROOT" && realpath -m "${CARGO_TARGET_DIR:-target}")/${VM_PROFILE:-release}
OUT=$(mktemp -d /tmp/host-bench.XXXXXX)
SIM_NVMET=off
SIM_SSH_PORT=0
W=$OUT/run0
mkdir -p "$W"
source "$ROOT/scripts/vm/lib/csi-lab.sh"
[[ -x $E2E ]] || fail "no csi-e2e in $BIN_DIR: build it first"

# After a failed run: unmount what is left below $OUT (deepest first), then detach the loop
# devices over its files. Nothing outside $OUT is touched.
leftovers() {
  local path
  awk -v out="$OUT/" 'index($5, out) == 1 {print $5}' /proc/self/mountinfo | sort -r |
    while read -r path; do umount "$path" || true; done
  losetup -n -O NAME,BACK-FILE | awk -v out="$OUT/" 'index($2, out) == 1 {print $1}' |
    while read -r path; do losetup -d "$path" || true; done
}
trap 'stop_all; leftovers' EXIT

for run in $(seq 1 "$RUNS"); do
  W=$OUT/run$run
  mkdir -p "$W"
  NODE_FABRIC=(--fabric loop --sim-data-dir "$W/data")
  start_sim 127.0.0.1 >/dev/null
  start_controller 127.0.0.1
  start_node >/dev/null
  # No expansion: online resize needs CAP_SYS_RESOURCE, which a container may lack.
  # shellcheck disable=SC2046
  timeout --kill-after=5 240 "$E2E" run $(csi_flags) --no-expand --node-log "$W/node.log" \
    >"$W/e2e.out" ||
    fail "csi-e2e run $run failed: $(tail -n 5 "$W/e2e.out")"
  assert_clean >/dev/null
  stop_all
  wait "${PIDS[@]}" 2>/dev/null || true
  PIDS=()
  grep '^stage-timing:' "$W/e2e.out" | sed "s/^/run $run /"
done

# The range of each figure per stage label over the runs.
cat "$OUT"/run*/e2e.out | awk '
  /^stage-timing:/ {
    label = $2
    if (!(label in seen)) { order[++n] = label; seen[label] = 1 }
    for (i = 3; i <= NF; i++) {
      split($i, kv, "="); key = label SUBSEP kv[1]; v = kv[2] + 0
      if (!(key in lo) || v < lo[key]) lo[key] = v
      if (!(key in hi) || v > hi[key]) hi[key] = v
    }
  }
  END {
    print "ranges over the runs (ms):"
    printf "  %-10s %13s %13s %15s %13s %15s\n", "stage", "overhead", "unnamed", "node total",
      "transport", "CO total"
    for (j = 1; j <= n; j++) {
      l = order[j]
      printf "  %-10s %6.1f-%-6.1f %6.1f-%-6.1f %7.1f-%-7.1f %6.1f-%-6.1f %7.1f-%-7.1f\n", l,
        lo[l, "overhead-ms"], hi[l, "overhead-ms"], lo[l, "unnamed-ms"], hi[l, "unnamed-ms"],
        lo[l, "node-ms"], hi[l, "node-ms"], lo[l, "transport-ms"], hi[l, "transport-ms"],
        lo[l, "co-ms"], hi[l, "co-ms"]
    }
  }'
echo "tables: $OUT/run*/e2e.out"
