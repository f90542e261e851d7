#!/bin/bash
# A link fault under load: the simulator (the NVMe/TCP target) sits in a network namespace
# behind a veth pair; while a filesystem volume is being written (synced every MiB), the link
# is cut for a few seconds. The controller must go `connecting`, come back `live`, the writes
# must complete, and the data must read back intact after an unstage and a fresh stage.
set -euo pipefail
W=/tmp/link-fault
mkdir -p "$W"
source "$ROOT/scripts/vm/lib/csi-lab.sh"
NS=rds-target
HOST_IF=veth-host
HOST_ADDR=10.251.0.1
TARGET_ADDR=10.251.0.2
IP=/usr/sbin/ip   # busybox's own ip applet would shadow it in the initramfs PATH

$IP netns add "$NS"
$IP link add "$HOST_IF" type veth peer name veth-target
$IP link set veth-target netns "$NS"
$IP addr add "$HOST_ADDR/30" dev "$HOST_IF"
$IP link set "$HOST_IF" up
$IP -n "$NS" addr add "$TARGET_ADDR/30" dev veth-target
$IP -n "$NS" link set veth-target up
$IP -n "$NS" link set lo up
say "target namespace $NS at $TARGET_ADDR behind $HOST_IF"

start_sim "$TARGET_ADDR" "$NS"
start_controller "$TARGET_ADDR"
start_node

# shellcheck disable=SC2046
read -ra FLAGS <<<"$(csi_flags) --param keepAliveTmo=2 --param reconnectDelay=1 --param ctrlLossTmo=60"
timeout 120 "$E2E" attach "${FLAGS[@]}" --name fault --size-mib 256 >"$W/attach.out" ||
  fail "attach failed: $(cat "$W/attach.out")"
VOL=$(awk '/^volume-id:/ {print $2}' "$W/attach.out")
TARGET=$(awk '/^target:/ {print $2}' "$W/attach.out")
CTRL=""
for c in /sys/class/nvme/nvme*; do
  [[ $(cat "$c/subsysnqn") == "$PREFIX:$VOL" ]] && CTRL=$c
done
[[ -n $CTRL ]] || fail "no controller for $VOL"
say "volume $VOL staged over $(basename "$CTRL") ($(cat "$CTRL/state")), published at $TARGET"

MIB=48
timeout 180 "$E2E" write --path "$TARGET/data.bin" --mib $MIB --seed 7 --sync-every-mib 1 \
  >"$W/write.out" 2>&1 &
WRITER=$!
PIDS+=($WRITER)
# Cut the link once the writer is under way.
wait_for 30 "writes under way" test -s "$TARGET/data.bin"
$IP link set "$HOST_IF" down
say "link down at $(stat -c %s "$TARGET/data.bin") bytes written"
state_is() { [[ $(cat "$CTRL/state") == "$1" ]]; }
wait_for 20 "controller state connecting" state_is connecting
say "controller $(basename "$CTRL") is connecting"
sleep 4   # the outage itself: the link stays down a few seconds while writes are pending
$IP link set "$HOST_IF" up
say "link up"
wait_for 30 "controller state live" state_is live
say "controller $(basename "$CTRL") is live again"
wait "$WRITER" || fail "writer failed: $(cat "$W/write.out")"
say "writes completed: $(cat "$W/write.out")"

# shellcheck disable=SC2086
timeout 120 "$E2E" detach "${FLAGS[@]}" --volume-id "$VOL" >/dev/null || fail "detach failed"
timeout 120 "$E2E" attach "${FLAGS[@]}" --name fault --size-mib 256 >/dev/null || fail "re-attach failed"
"$E2E" verify --path "$TARGET/data.bin" --mib $MIB --seed 7 || fail "data not intact"
say "after unstage and a fresh stage the data reads back intact"
timeout 120 "$E2E" detach "${FLAGS[@]}" --volume-id "$VOL" --delete >/dev/null || fail "teardown failed"
assert_clean
