#!/bin/bash
# An RDS reboot under the whole driver, over real NVMe/TCP. The simulator (the "RDS") exports
# through nvmet; the controller and the node serve as in a cluster; an ext4 volume and a block
# volume (ctrlLossTmo=-1, reconnectDelay=1) are staged and published; a pod-like writer appends
# with fsync every 50 ms to the ext4 volume and a pod-like reader reads the block device node.
# Two foreign subsystems (one under the vendor's own naming authority) stay connected
# throughout from a plain nvmet export the driver does not manage.
#
# 1. The simulator stops (its exports go away, as a rebooting device's do) for 8 s and starts
#    again keeping namespace identifiers: no write or read fails, every acknowledged write is
#    there, the data written before is intact, the same block devices, NodeGetVolumeStats
#    healthy.
# 2. Again with --quirks fresh-namespace-ids (a device that does not keep them): the node
#    reports the volume abnormal with the reason, re-stages it on the new namespace without
#    formatting anything, and a fresh NodePublishVolume (a new pod) reads the old data; the
#    block volume's published device node is renumbered.
# Then a clean teardown, the foreign subsystems untouched.
set -euo pipefail
W=/tmp/rds-reboot
mkdir -p "$W"
source "$ROOT/scripts/vm/lib/csi-lab.sh"
OUTAGE=8
NVMET=/sys/kernel/config/nvmet
FOREIGN=(nqn.2000-02.com.mikrotik:nixos-root nqn.2014-08.org.example:foreign-data)

# --- Foreign subsystems on their own nvmet port, connected before the driver starts ----------
FPORT=$NVMET/ports/4421
mkdir "$FPORT"
echo tcp >"$FPORT/addr_trtype"
echo ipv4 >"$FPORT/addr_adrfam"
echo 127.0.0.1 >"$FPORT/addr_traddr"
echo 4421 >"$FPORT/addr_trsvcid"
for nqn in "${FOREIGN[@]}"; do
  s=$NVMET/subsystems/$nqn
  truncate -s 16M "$W/${nqn##*:}.img"
  mkdir "$s"
  echo 1 >"$s/attr_allow_any_host"
  mkdir "$s/namespaces/1"
  echo -n "$W/${nqn##*:}.img" >"$s/namespaces/1/device_path"
  echo 1 >"$s/namespaces/1/buffered_io" # tmpfs has no O_DIRECT
  echo 1 >"$s/namespaces/1/enable"
  ln -s "$s" "$FPORT/subsystems/$nqn"
  echo "transport=tcp,traddr=127.0.0.1,trsvcid=4421,nqn=$nqn" >/dev/nvme-fabrics
done
ctrl_of() { # NQN -> controller name
  local c
  for c in /sys/class/nvme/nvme*; do
    [[ $(cat "$c/subsysnqn" 2>/dev/null) == "$1" ]] && basename "$c" && return 0
  done
  return 1
}
ns_of() { # NQN -> namespace block device name
  local s n
  for s in /sys/class/nvme-subsystem/nvme-subsys*; do
    [[ $(cat "$s/subsysnqn" 2>/dev/null) == "$1" ]] || continue
    for n in "$s"/nvme*n*; do [[ -e $n ]] && basename "$n" && return 0; done
  done
  return 1
}
FOREIGN_CTRLS=""
for nqn in "${FOREIGN[@]}"; do
  c=$(ctrl_of "$nqn") || fail "foreign $nqn did not connect"
  FOREIGN_CTRLS+="$c "
done
say "foreign subsystems connected: $FOREIGN_CTRLS"

# --- The driver, two volumes ------------------------------------------------------------------
start_sim 127.0.0.1
start_controller 127.0.0.1
start_node --health-interval 2
PARAMS=(--param ctrlLossTmo=-1 --param reconnectDelay=1)
# shellcheck disable=SC2046
"$E2E" attach $(csi_flags) "${PARAMS[@]}" --name rebootfs --size-mib 128 >"$W/fs.out" ||
  fail "attach of the ext4 volume failed"
# shellcheck disable=SC2046
"$E2E" attach $(csi_flags) "${PARAMS[@]}" --name rebootblk --size-mib 32 --block >"$W/blk.out" ||
  fail "attach of the block volume failed"
FS_ID=$(awk '/^volume-id:/ {print $2}' "$W/fs.out")
FS_TARGET=$(awk '/^target:/ {print $2}' "$W/fs.out")
BLK_ID=$(awk '/^volume-id:/ {print $2}' "$W/blk.out")
BLK_TARGET=$(awk '/^target:/ {print $2}' "$W/blk.out")
FS_NQN=$PREFIX:$FS_ID
BLK_NQN=$PREFIX:$BLK_ID
STAGING=$W/csi/staging/$FS_ID
staged_dev() { awk -v m="$STAGING" '$5 == m {d = $3} END {print d}' /proc/self/mountinfo; }
dev_of() { cat "/sys/block/$1/dev"; }
node_rdev() { stat -c '%Hr:%Lr' "$1"; }
staged_on() { [[ $(staged_dev) == "$(dev_of "$1")" ]]; }
node_on() { [[ $(node_rdev "$1") == "$(dev_of "$2")" ]]; }
ctrl_live() { [[ $(cat "/sys/class/nvme/$(ctrl_of "$1")/state" 2>/dev/null) == live ]]; }
FS_NS=$(ns_of "$FS_NQN") || fail "no namespace for $FS_NQN"
BLK_NS=$(ns_of "$BLK_NQN") || fail "no namespace for $BLK_NQN"
staged_on "$FS_NS" || fail "staging is not on /dev/$FS_NS"
node_on "$BLK_TARGET" "$BLK_NS" || fail "block node is not /dev/$BLK_NS"
# What the host sees is what the simulator's export record gives the namespace.
recorded_uuid() {
  awk -F'"' '$2 == "uuid" {print $4}' "$W/data/exports/$1.json"
}
[[ $(cat "/sys/block/$FS_NS/uuid") == "$(recorded_uuid "$FS_NQN")" ]] ||
  fail "host uuid $(cat "/sys/block/$FS_NS/uuid") is not the export record's"
FS_UUID=$(blkid -p -s UUID -o value "/dev/$FS_NS")
FS_IDS=$(cat "/sys/block/$FS_NS/uuid")
BLK_IDS=$(cat "/sys/block/$BLK_NS/uuid")
say "ext4 $FS_ID on /dev/$FS_NS (fs UUID $FS_UUID), block $BLK_ID on /dev/$BLK_NS"

head -c $((8 << 20)) /dev/urandom >"$FS_TARGET/before"
sync
SUM=$(md5sum <"$FS_TARGET/before")
head -c $((4 << 20)) /dev/urandom >"$W/blk-pattern"
dd if="$W/blk-pattern" of="$BLK_TARGET" bs=1M oflag=direct conv=fsync status=none
BLK_SUM=$(md5sum <"$W/blk-pattern")

# The pod-like writer and reader; acknowledged writes to acked-*, failures to errors-*.
WRITER="" READER=""
start_io() { # label
  local label=$1
  : >"$W/acked-$label"
  : >"$W/errors-$label"
  : >"$W/reads-$label"
  : >"$W/read-errors-$label"
  (
    i=0
    while [[ ! -f $W/stop-$label ]]; do
      if echo "$label $i" >>"$FS_TARGET/log" 2>/dev/null && sync "$FS_TARGET/log" 2>/dev/null; then
        echo "$label $i" >>"$W/acked-$label"
      else
        echo "$i" >>"$W/errors-$label"
      fi
      i=$((i + 1))
      sleep 0.05
    done
  ) &
  WRITER=$!
  (
    while [[ ! -f $W/stop-$label ]]; do
      if dd if="$BLK_TARGET" of=/dev/null bs=64k count=1 skip=$((RANDOM % 64)) iflag=direct \
        status=none 2>/dev/null; then
        echo . >>"$W/reads-$label"
      else
        echo x >>"$W/read-errors-$label"
      fi
      sleep 0.05
    done
  ) &
  READER=$!
}
stop_io() {
  touch "$W/stop-$1"
  wait "$WRITER" "$READER" || true
}
reboot_rds() { # simulator flags
  stop_sim
  [[ ! -e $NVMET/subsystems/$FS_NQN ]] || fail "the export outlived the simulator"
  say "RDS down: controller $(cat "/sys/class/nvme/$(ctrl_of "$FS_NQN")/state")"
  sleep "$OUTAGE"
  start_sim 127.0.0.1 "" "$@"
  local t0=$SECONDS
  wait_for 60 "live controller" ctrl_live "$FS_NQN"
  say "RDS back; controller live $((SECONDS - t0))s after the start"
}
stats() { # volume-id path -> prints the stats output
  # shellcheck disable=SC2046
  "$E2E" stats $(csi_flags) --volume-id "$1" --path "$2"
}

# --- 1. A reboot that keeps namespace identifiers: invisible ---------------------------------
start_io stable
sleep 1
reboot_rds
sleep 2
stop_io stable
errors=$(wc -l <"$W/errors-stable")
read_errors=$(wc -l <"$W/read-errors-stable")
say "stable: $(wc -l <"$W/acked-stable") writes acknowledged, $errors failed;" \
  "$(wc -l <"$W/reads-stable") block reads, $read_errors failed"
((errors == 0)) || fail "$errors writes failed across the reboot"
((read_errors == 0)) || fail "$read_errors block reads failed across the reboot"
[[ $(ns_of "$FS_NQN") == "$FS_NS" && $(ns_of "$BLK_NQN") == "$BLK_NS" ]] ||
  fail "a block device changed: $(ns_of "$FS_NQN"), $(ns_of "$BLK_NQN")"
staged_on "$FS_NS" || fail "the staging mount moved"
echo 3 >/proc/sys/vm/drop_caches
[[ $(md5sum <"$FS_TARGET/before") == "$SUM" ]] || fail "data written before the reboot changed"
grep "^stable " "$FS_TARGET/log" | cmp -s - "$W/acked-stable" || fail "acknowledged writes missing"
[[ $(head -c $((4 << 20)) "$BLK_TARGET" | md5sum) == "$BLK_SUM" ]] || fail "block data changed"
for v in "$FS_ID $FS_TARGET" "$BLK_ID $BLK_TARGET"; do
  # shellcheck disable=SC2086
  stats $v >"$W/stats.out" || fail "NodeGetVolumeStats failed"
  grep -q '^abnormal: false' "$W/stats.out" || fail "unhealthy after the reboot: $(cat "$W/stats.out")"
done
say "stable identifiers: the reboot was invisible (0 failed writes and reads, same devices, data intact, healthy)"

# --- 2. A reboot that gives the namespaces new identifiers -----------------------------------
start_io fresh
sleep 1
reboot_rds --quirks fresh-namespace-ids
sleep 2
stop_io fresh
say "fresh identifiers: $(wc -l <"$W/errors-fresh") writes and $(wc -l <"$W/read-errors-fresh")" \
  "block reads failed (the old namespaces are gone)"
stats "$FS_ID" "$FS_TARGET" >"$W/stats.out" || fail "NodeGetVolumeStats failed"
grep -q '^abnormal: true' "$W/stats.out" || fail "not reported abnormal: $(cat "$W/stats.out")"
say "condition: $(sed -n 's/^message: //p' "$W/stats.out")"
grep -qE 'new namespace|replaced this volume|not on this node' "$W/stats.out" ||
  fail "the reason is not given"
# The node finds the new namespace (rescan) and re-stages on it.
# (The kernel may give the new namespace the old one's name once nothing holds the old.)
new_ns() { # NQN OLD-UUID -> the namespace of NQN whose uuid is not OLD-UUID
  local n
  n=$(ns_of "$1") && [[ $(cat "/sys/block/$n/uuid") != "$2" ]] && echo "$n"
}
wait_for 60 "new ext4 namespace" new_ns "$FS_NQN" "$FS_IDS"
FS_NEW=$(new_ns "$FS_NQN" "$FS_IDS")
wait_for 60 "re-staged ext4 volume" staged_on "$FS_NEW"
[[ $(blkid -p -s UUID -o value "/dev/$FS_NEW") == "$FS_UUID" ]] || fail "the filesystem changed"
say "ext4 volume re-staged on /dev/$FS_NEW (same filesystem $FS_UUID, nothing formatted)"
# A new pod: a fresh NodePublishVolume reads the data written before either reboot.
NEW_TARGET=$W/csi/pods/new-pod/mount
# shellcheck disable=SC2046
"$E2E" publish $(csi_flags) --volume-id "$FS_ID" --target "$NEW_TARGET" >/dev/null ||
  fail "NodePublishVolume of a new pod failed"
[[ $(md5sum <"$NEW_TARGET/before") == "$SUM" ]] || fail "the new pod reads other data"
grep "^stable " "$NEW_TARGET/log" | cmp -s - "$W/acked-stable" || fail "acknowledged writes lost"
stats "$FS_ID" "$NEW_TARGET" >"$W/stats.out"
grep -q '^abnormal: false' "$W/stats.out" || fail "the new pod's volume: $(cat "$W/stats.out")"
# The block volume: its published node renumbered to the new namespace, its data there.
wait_for 60 "new block namespace" new_ns "$BLK_NQN" "$BLK_IDS"
BLK_NEW=$(new_ns "$BLK_NQN" "$BLK_IDS")
wait_for 60 "renumbered block node" node_on "$BLK_TARGET" "$BLK_NEW"
[[ $(head -c $((4 << 20)) "$BLK_TARGET" | md5sum) == "$BLK_SUM" ]] || fail "block data changed"
say "block volume: node renumbered to /dev/$BLK_NEW, data intact"

# --- Teardown; the foreign subsystems untouched ------------------------------------------------
# shellcheck disable=SC2046
"$E2E" unpublish $(csi_flags) --volume-id "$FS_ID" --target "$NEW_TARGET" || fail "unpublish failed"
# shellcheck disable=SC2046
"$E2E" detach $(csi_flags) --volume-id "$FS_ID" --delete >/dev/null || fail "detach of ext4 failed"
# shellcheck disable=SC2046
"$E2E" detach $(csi_flags) --volume-id "$BLK_ID" --block --delete >/dev/null ||
  fail "detach of the block volume failed"
now=""
for nqn in "${FOREIGN[@]}"; do
  c=$(ctrl_of "$nqn") || fail "foreign $nqn was disconnected"
  [[ $(cat "/sys/class/nvme/$c/state") == live ]] || fail "foreign $c is not live"
  now+="$c "
done
[[ $now == "$FOREIGN_CTRLS" ]] || fail "foreign controllers changed: $FOREIGN_CTRLS -> $now"
[[ -z $(ls "$W/node-state") ]] || fail "node records left: $(ls "$W/node-state")"
say "foreign subsystems untouched ($now)"
for nqn in "${FOREIGN[@]}"; do
  echo 1 >"/sys/class/nvme/$(ctrl_of "$nqn")/delete_controller"
  rm "$FPORT/subsystems/$nqn"
  echo 0 >"$NVMET/subsystems/$nqn/namespaces/1/enable"
  rmdir "$NVMET/subsystems/$nqn/namespaces/1" "$NVMET/subsystems/$nqn"
done
rmdir "$FPORT"
assert_clean
