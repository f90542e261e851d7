#!/bin/bash
# An RDS reboot, played by the simulator: a mounted ext4 volume over real NVMe/TCP
# (ctrl_loss_tmo=-1, reconnect_delay=1) is written with fsync in a loop while the simulator
# stops (its exports go away, as a rebooting device's do), stays down for 8 s and starts
# again. With stable namespace identifiers the host keeps the namespace: no write fails, the
# block device, its identifiers and the data are the same. Then once more with
# `--quirks fresh-namespace-ids`: the identifiers change, and what the host does is recorded.
set -euo pipefail
BIN=${BIN_DIR:?}/rds-csi
W=/tmp/sim-restart
mkdir -p "$W"
say() { echo "[test] $*"; }
fail() { echo "[test] FAIL: $*"; exit 1; }
OUTAGE=8

ssh-keygen -q -t ed25519 -N '' -f "$W/id"
SIM=""
start_sim() { # extra simulator flags
  : >"$W/sim.out"
  "$BIN" sim --data-dir "$W/data" --ssh-listen 127.0.0.1:2222 --rest-listen 127.0.0.1:0 \
    --authorized-keys "$W/id.pub" --nvmet on --nvme-listen 127.0.0.1:4420 "$@" \
    >"$W/sim.out" 2>>"$W/sim.err" &
  SIM=$!
  for _ in $(seq 1 300); do grep -q '^ready' "$W/sim.out" && return 0; sleep 0.1; done
  cat "$W/sim.err"
  fail "simulator did not start"
}
stop_sim() {
  kill -TERM "$SIM"
  wait "$SIM" || fail "simulator exited with $? on SIGTERM"
  SIM=""
}
WRITER=""
cleanup() {
  [[ -n $WRITER ]] && kill "$WRITER" 2>/dev/null
  [[ -n $SIM ]] && kill "$SIM" 2>/dev/null
  # A target that is gone would block an unmount until the controller gives up (never).
  umount -l "$W/mnt" 2>/dev/null
  for c in /sys/class/nvme/nvme*; do echo 1 >"$c/delete_controller" 2>/dev/null; done
  true
}
trap cleanup EXIT

ros() {
  ssh -p 2222 -i "$W/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR admin@127.0.0.1 "$1" | tr -d '\r'
}

NQN=nqn.2000-02.com.mikrotik:vm-reboot
# The identifiers the export record (one export, pretty JSON) gives the namespace:
# "<uuid> <nguid>".
recorded_ids() {
  awk -F'"' '$2 == "uuid" {u = $4} $2 == "nguid" {g = $4} END {if (u != "") print u " " g}' \
    "$W/data/exports.json"
}
ctrl_of() {
  local c
  for c in /sys/class/nvme/nvme*; do
    [[ $(cat "$c/subsysnqn" 2>/dev/null) == "$NQN" ]] && basename "$c" && return 0
  done
  return 1
}
ns_of() {
  local s n
  for s in /sys/class/nvme-subsystem/nvme-subsys*; do
    [[ $(cat "$s/subsysnqn" 2>/dev/null) == "$NQN" ]] || continue
    for n in "$s"/nvme*n*; do [[ -e $n ]] && basename "$n" && return 0; done
  done
  return 1
}
host_ids() { echo "$(cat /sys/block/"$1"/uuid) $(cat /sys/block/"$1"/nguid)"; }
ctrl_state() { cat /sys/class/nvme/"$CTRL"/state 2>/dev/null || echo gone; }

# Appends a line and fsyncs it every 50 ms; acknowledged lines go to acked, failures to errors.
start_writer() { # label
  local label=$1
  : >"$W/acked-$label"
  : >"$W/errors-$label"
  (
    i=0
    while [[ ! -f $W/stop-$label ]]; do
      if echo "$label $i" >>"$W/mnt/log" 2>/dev/null && sync "$W/mnt/log" 2>/dev/null; then
        echo "$label $i" >>"$W/acked-$label"
      else
        echo "$i" >>"$W/errors-$label"
      fi
      i=$((i + 1))
      sleep 0.05
    done
  ) &
  WRITER=$!
}
stop_writer() { # label
  touch "$W/stop-$1"
  wait "$WRITER" || true
  WRITER=""
}

# A device "reboot": exports gone for $OUTAGE s, then the simulator starts again with $@.
reboot_sim() {
  stop_sim
  [[ ! -e /sys/kernel/config/nvmet/subsystems/$NQN ]] || fail "the export outlived the simulator"
  say "simulator stopped, export gone; controller $(ctrl_state)"
  sleep "$OUTAGE"
  ACKED_DOWN=$(wc -l <"$W/acked-$LABEL")
  say "after ${OUTAGE}s: controller $(ctrl_state), $ACKED_DOWN writes acknowledged"
  start_sim "$@"
  local t0=$SECONDS
  for _ in $(seq 1 300); do [[ $(ctrl_state) == live ]] && break; sleep 0.1; done
  say "simulator back; controller $(ctrl_state) $((SECONDS - t0))s after the start"
}

# --- A disk, connected and mounted ---------------------------------------------------------
start_sim
out=$(ros "/disk add type=file slot=vm-reboot file-path=storage-pool/vm-reboot.img file-size=128M mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"$NQN\"")
[[ -z $out ]] || fail "disk add said: $out"
exec 3<>/dev/nvme-fabrics
printf 'transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=%s,ctrl_loss_tmo=-1,reconnect_delay=1' "$NQN" >&3
read -r reply <&3 || true
exec 3>&-
CTRL=$(ctrl_of) || fail "connect replied '$reply'"
NS=""
for _ in $(seq 1 200); do NS=$(ns_of) && break; sleep 0.05; done
[[ -n $NS && -b /dev/$NS ]] || fail "no namespace block device for $NQN"
IDS=$(host_ids "$NS")
[[ $IDS == "$(recorded_ids)" ]] || fail "host sees ids '$IDS', the export record says '$(recorded_ids)'"
say "connected $CTRL: /dev/$NS, uuid/nguid $IDS (as recorded)"

mkdir -p "$W/mnt"
mke2fs -q -t ext4 /dev/"$NS"
mount /dev/"$NS" "$W/mnt"
head -c $((8 << 20)) /dev/urandom >"$W/mnt/before"
sync
SUM=$(md5sum <"$W/mnt/before")

# --- Reboot with stable identifiers: invisible -----------------------------------------------
LABEL=stable
start_writer "$LABEL"
sleep 1
reboot_sim
sleep 2
stop_writer "$LABEL"
acked=$(wc -l <"$W/acked-$LABEL")
errors=$(wc -l <"$W/errors-$LABEL")
now_ns=$(ns_of || echo none)
say "stable: $acked writes acknowledged, $errors failed; device /dev/$now_ns"
[[ $errors -eq 0 ]] || fail "$errors writes failed across the restart"
((acked > ACKED_DOWN)) || fail "no write completed after the restart"
[[ $now_ns == "$NS" ]] || fail "the block device changed: $NS -> $now_ns"
[[ $(host_ids "$NS") == "$IDS" ]] || fail "identifiers changed: $IDS -> $(host_ids "$NS")"
[[ $(recorded_ids) == "$IDS" ]] || fail "the export record changed: $(recorded_ids)"
echo 3 >/proc/sys/vm/drop_caches
[[ $(md5sum <"$W/mnt/before") == "$SUM" ]] || fail "data written before the restart changed"
# Every acknowledged line is in the log, in order, the last ones after the restart.
grep "^$LABEL " "$W/mnt/log" | cmp -s - "$W/acked-$LABEL" || fail "acknowledged writes missing from the log"
say "stable identifiers: the restart was invisible (same device, ids, data; 0 failed writes)"

# --- Reboot of a device that does not keep identifiers --------------------------------------
LABEL=fresh
start_writer "$LABEL"
sleep 1
reboot_sim --quirks fresh-namespace-ids
NEW_IDS=$(recorded_ids)
[[ -n $NEW_IDS && $NEW_IDS != "$IDS" ]] || fail "fresh-namespace-ids kept the identifiers: $NEW_IDS"
say "fresh-namespace-ids: the export record now says $NEW_IDS"
sleep 2
stop_writer "$LABEL"
now_ns=$(ns_of || true)
seen=""
[[ -n $now_ns ]] && seen=$(host_ids "$now_ns")
[[ $seen != "$IDS" ]] || fail "the host still sees the old identifiers on /dev/$now_ns"
say "fresh-namespace-ids: $(wc -l <"$W/acked-$LABEL") writes acknowledged," \
  "$(wc -l <"$W/errors-$LABEL") failed; device /dev/$NS -> ${now_ns:+/dev/}${now_ns:-gone}" \
  "${seen:+(ids $seen)}; controller $(ctrl_state)"
dmesg | grep -iE "identifiers changed|removing|I/O error|EXT4-fs error" | tail -4 | sed 's/^/[test] dmesg: /' || true
stop_sim
