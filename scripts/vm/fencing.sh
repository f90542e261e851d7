#!/bin/bash
# Attach fencing over real NVMe/TCP with two nodes: two node plugins with their own node ids
# and host NQNs (sharing this VM's kernel), one controller with --export-acl. A ReadWriteOnce
# volume published to node 1 is refused to node 2 by the controller, naming node 1; the
# export admits only node 1's host NQN; once node 1 let go, a node 2 that stages without
# being published is refused by the kernel target itself; published to node 2, it works.
set -euo pipefail
W=/tmp/fencing
mkdir -p "$W"
source "$ROOT/scripts/vm/lib/csi-lab.sh"
HOST1=nqn.2014-08.org.nvmexpress:uuid:2b7c5e1a-9f3d-4c8e-a6b1-0d4f7e9c3a51
HOST2=nqn.2014-08.org.nvmexpress:uuid:7c3d9e2b-1a4f-4b6c-9d8e-2f1a0b3c4d5e
NAME=pvc-5e1f0c2a-7d3b-4a9e-8c6f-1b2d3e4f5a6b
NQN=$PREFIX:$NAME
ALLOWED=/sys/kernel/config/nvmet/subsystems/$NQN/allowed_hosts

start_sim 127.0.0.1
start_controller 127.0.0.1 --export-acl
start_node --metrics-address ""
mkdir -p "$W/csi2/volumeDevices"
"$BIN" --log info node --endpoint "unix://$W/node2.sock" --node-id vm-node-2 --fabric nvme-tcp \
  --host-nqn "$HOST2" --host-id 7c3d9e2b-1a4f-4b6c-9d8e-2f1a0b3c4d5e \
  --block-publish-dir "$W/csi2/volumeDevices" --state-dir "$W/node2-state" \
  --metrics-address "" --pod-recovery off >"$W/node2.out" 2>"$W/node2.log" &
PIDS+=($!)
wait_for 30 "node 2 socket" test -S "$W/node2.sock"
N1=(--controller "unix://$W/controller.sock" --node "unix://$W/node.sock" --work-dir "$W/csi")
N2=(--controller "unix://$W/controller.sock" --node "unix://$W/node2.sock" --work-dir "$W/csi2")
e2e() { timeout --kill-after=5 120 "$E2E" "$@" 2>&1; }

out=$(e2e attach "${N1[@]}" --name "$NAME" --size-mib 64) || fail "attach on node 1: $out"
VOL=$(awk '/^volume-id:/ {print $2}' <<<"$out")
[[ $VOL == "$NAME" ]] || fail "volume id $VOL"
[[ $(cat "/sys/kernel/config/nvmet/subsystems/$NQN/attr_allow_any_host") == 0 ]] ||
  fail "the export admits any host"
[[ $(ls "$ALLOWED") == "$HOST1" ]] || fail "the export admits: $(ls "$ALLOWED")"
say "node 1 holds $VOL; the export admits only node 1's host NQN"

if out=$(e2e attach "${N2[@]}" --name "$NAME" --size-mib 64); then
  fail "node 2 was given a ReadWriteOnce volume node 1 holds: $out"
fi
grep -q "ControllerPublishVolume" <<<"$out" && grep -q "is published to node vm-node;" <<<"$out" ||
  fail "node 2's refusal does not say who holds the volume: $out"
say "node 2 refused by the controller: $(grep -o 'volume [^ ]* is published to node vm-node[^.]*' <<<"$out" | head -n1)"

out=$(e2e detach "${N1[@]}" --volume-id "$VOL") || fail "detach from node 1: $out"
[[ $(ls "$ALLOWED") == "nqn.2025-01.io.srvlab.rds-csi:no-host-admitted" ]] ||
  fail "after node 1 let go, the export admits: $(ls "$ALLOWED")"
say "node 1 let go; the export admits no one"

# A node the cluster did not publish to, staging on its own: the target refuses its connect.
if out=$(e2e attach "${N2[@]}" --name "$NAME" --size-mib 64 --no-controller-publish); then
  fail "the target let an unpublished node connect: $out"
fi
for c in /sys/class/nvme/nvme*; do
  [[ -e $c/subsysnqn && $(cat "$c/subsysnqn") == "$NQN" ]] && fail "a controller for $NQN is left"
done
refusal=$(grep -m1 "FAIL: NodeStageVolume" <<<"$out") || fail "node 2's stage failed elsewhere: $out"
say "node 2, not published, refused by the kernel target: ${refusal:0:300}"

out=$(e2e attach "${N2[@]}" --name "$NAME" --size-mib 64) || fail "attach on node 2: $out"
[[ $(ls "$ALLOWED") == "$HOST2" ]] || fail "node 2 published, the export admits: $(ls "$ALLOWED")"
say "published to node 2, it attaches; the export admits only node 2"
out=$(e2e detach "${N2[@]}" --volume-id "$VOL" --delete) || fail "detach from node 2: $out"
assert_clean
