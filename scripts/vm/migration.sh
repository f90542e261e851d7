#!/bin/bash
# vm: pair
# A KubeVirt live migration of a ReadWriteMany raw block volume between two kernels. VM a runs
# the simulator (real nvmet), the controller (--export-acl, CSI over TCP for VM b's calls) and
# node 1; VM b runs node 2 with its own host NQN. The source writes, the target is published
# (a migration starts; the export admits both hosts), reads the source's data and writes its
# own, which the source reads back; the source detaches (the migration completes; the export
# admits the target alone) and the target goes on writing. Checksums at every step.
set -euo pipefail
W=/tmp/migration
mkdir -p "$W"
A=10.0.0.1
B=10.0.0.2
# One controller serves both nodes (its attachment state is in its memory), over the link.
CONTROLLER_ENDPOINT=tcp://$A:7001
case ${ROLE:-} in
  a) NODE_ID=vm-node-1 ;;
  b) NODE_ID=vm-node-2 ;;
  *) echo "[test] FAIL: ROLE must be a or b (run by scripts/vm-e2e.sh as a pair)"; exit 1 ;;
esac
source "$ROOT/scripts/vm/lib/csi-lab.sh"
HOST1=nqn.2014-08.org.nvmexpress:uuid:2b7c5e1a-9f3d-4c8e-a6b1-0d4f7e9c3a51
HOST2=nqn.2014-08.org.nvmexpress:uuid:7c3d9e2b-1a4f-4b6c-9d8e-2f1a0b3c4d5e
if [[ $ROLE == b ]]; then
  NODE_FABRIC=(--fabric nvme-tcp --host-nqn "$HOST2" --host-id 7c3d9e2b-1a4f-4b6c-9d8e-2f1a0b3c4d5e)
fi
NAME=pvc-8a4c2e1f-3b5d-4f6a-9c8e-7d1b2a3c4e5f
NQN=$PREFIX:$NAME
ALLOWED=/sys/kernel/config/nvmet/subsystems/$NQN/allowed_hosts
INBOX_PORT=7100
MIB=16

# Messages between the two VMs: each runs an inbox that appends every line it is sent.
touch "$W/inbox"
python3 -c '
import socket, sys
server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    with conn, open(sys.argv[2], "ab") as inbox:
        inbox.write(conn.makefile("rb").read())
' "$INBOX_PORT" "$W/inbox" &
PIDS+=($!)
# post PEER MESSAGE
post() {
  local end=$(($(date +%s) + 120))
  until (echo "$2" >"/dev/tcp/$1/$INBOX_PORT") 2>/dev/null; do
    (($(date +%s) < end)) || fail "cannot tell $1 '$2'"
    sleep 0.2
  done
}
# await MESSAGE: bounded, and cut short when the other VM failed.
await() {
  wait_for 400 "'$1' from the other VM" grep -qx -e "$1" -e failed "$W/inbox"
  grep -qx failed "$W/inbox" && fail "the other VM failed (its log says why)"
  true
}
# A failure on one side ends the other's wait at once.
PEER=$([[ $ROLE == a ]] && echo "$B" || echo "$A")
eval "lab_$(declare -f fail)"
fail() {
  (echo failed >"/dev/tcp/$PEER/$INBOX_PORT") 2>/dev/null || true
  lab_fail "$@"
}
e2e() { timeout --kill-after=5 120 "$E2E" "$@" 2>&1; }

# Seeds 1-3: MIB of each one's pattern in a file, and its sha256.
declare -A SUMS
for seed in 1 2 3; do
  SUMS[$seed]=$("$E2E" write --path "$W/seed-$seed" --mib "$MIB" --seed "$seed" | awk '{print $2}')
done
# put DEVICE SEED SLOT: the pattern of SEED at MIB*SLOT, straight to the device.
put() {
  dd if="$W/seed-$2" of="$1" bs=1M seek=$((MIB * $3)) oflag=direct conv=fsync,notrunc status=none
}
# check DEVICE SEED SLOT WHO: the MIB at MIB*SLOT, read past any cache, is SEED's pattern.
check() {
  local got
  got=$(dd if="$1" bs=1M skip=$((MIB * $3)) count="$MIB" iflag=direct status=none | sha256sum)
  [[ ${got%% *} == "${SUMS[$2]}" ]] || fail "$4 does not read seed $2's data at slot $3"
}
admitted() { ls "$ALLOWED" | sort | tr '\n' ' '; }
managed_controllers() {
  local c
  for c in /sys/class/nvme/nvme*; do
    [[ -e $c/subsysnqn && $(cat "$c/subsysnqn") == "$NQN" ]] && basename "$c"
  done
  true
}
ATTACH=(--name "$NAME" --size-mib 64 --block --multi-node)

if [[ $ROLE == a ]]; then
  start_sim "$A"
  start_controller "$A" --export-acl
  start_node
  out=$(e2e attach $(csi_flags) "${ATTACH[@]}") || fail "attach on the source: $out"
  T=$(awk '/^target:/ {print $2}' <<<"$out")
  put "$T" 1 0
  check "$T" 1 0 "the source"
  [[ $(admitted) == "$HOST1 " ]] || fail "the export admits: $(admitted)"
  say "source (node 1) attached and wrote seed 1; the export admits node 1 alone"
  post "$B" source-wrote

  await target-wrote
  [[ $(admitted) == "$(printf '%s\n' "$HOST1" "$HOST2" | sort | tr '\n' ' ')" ]] ||
    fail "during the migration the export admits: $(admitted)"
  check "$T" 2 1 "the source"
  say "during the migration the export admits both nodes; the source reads the target's seed 2"
  out=$(e2e detach $(csi_flags) --volume-id "$NAME" --block) || fail "detach of the source: $out"
  [[ -z $(managed_controllers) ]] || fail "node 1 kept a controller: $(managed_controllers)"
  [[ $(admitted) == "$HOST2 " ]] || fail "after the handover the export admits: $(admitted)"
  say "source detached: the migration completed; the export admits node 2 alone"
  post "$B" source-gone

  await target-done
  assert_clean
else
  start_node
  await source-wrote
  wait_for 30 "the controller" serving "${CONTROLLER_ENDPOINT#tcp://}"
  out=$(e2e attach $(csi_flags) "${ATTACH[@]}") ||
    fail "attach on the target while the source holds the volume: $out"
  T=$(awk '/^target:/ {print $2}' <<<"$out")
  [[ -n $(managed_controllers) ]] || fail "no NVMe controller on node 2"
  check "$T" 1 0 "the target"
  put "$T" 2 1
  say "target (node 2) published while the source holds it: reads seed 1, wrote seed 2"
  post "$A" target-wrote

  await source-gone
  put "$T" 3 2
  for slot in 0 1 2; do check "$T" $((slot + 1)) "$slot" "the target after the handover"; done
  say "after the handover the target goes on: wrote seed 3, reads all three"
  out=$(e2e detach $(csi_flags) --volume-id "$NAME" --block --delete) ||
    fail "detach and delete on the target: $out"
  [[ -z $(managed_controllers) ]] || fail "node 2 kept a controller: $(managed_controllers)"
  say "target detached, volume deleted"
  post "$A" target-done
fi
