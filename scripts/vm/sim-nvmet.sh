#!/bin/bash
# The simulator's real NVMe/TCP export: a disk added over SSH becomes an nvmet subsystem that
# the kernel's initiator connects to; data written through /dev/nvmeXnY lands in the backing
# file; growing file-size reaches the host; removing the disk tears the subsystem down.
set -euo pipefail
BIN=${BIN_DIR:?}/rds-csi
W=/tmp/sim-nvmet
mkdir -p "$W"
say() { echo "[test] $*"; }
fail() { echo "[test] FAIL: $*"; exit 1; }

ssh-keygen -q -t ed25519 -N '' -f "$W/id"
"$BIN" sim --data-dir "$W/data" --ssh-listen 127.0.0.1:2222 --rest-listen 127.0.0.1:0 \
  --authorized-keys "$W/id.pub" --nvmet on --nvme-listen 127.0.0.1:4420 >"$W/sim.out" 2>"$W/sim.err" &
SIM=$!
trap 'kill $SIM 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do grep -q '^ready' "$W/sim.out" && break; sleep 0.1; done
grep -q '^ready' "$W/sim.out" || { cat "$W/sim.err"; fail "simulator did not start"; }

ros() {
  ssh -p 2222 -i "$W/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR admin@127.0.0.1 "$1" | tr -d '\r'
}

NQN=nqn.2000-02.com.mikrotik:vm-vol1
out=$(ros "/disk add type=file slot=vm-vol1 file-path=storage-pool/vm-vol1.img file-size=64M mount-filesystem=no nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=\"$NQN\"")
[[ -z $out ]] || fail "disk add said: $out"
[[ -d /sys/kernel/config/nvmet/subsystems/$NQN ]] || fail "no nvmet subsystem for $NQN"
say "nvmet subsystem $NQN exported"

# Connect with the kernel initiator through /dev/nvme-fabrics, as the node plugin does.
exec 3<>/dev/nvme-fabrics
printf 'transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=%s' "$NQN" >&3
read -r reply <&3 || true
exec 3>&-
ctrl=nvme$(sed -n 's/^instance=\([0-9]*\),.*/\1/p' <<<"$reply")
[[ $ctrl != nvme ]] || fail "connect replied '$reply'"
say "connected: $reply"

find_ns() {
  local s
  for s in /sys/class/nvme-subsystem/nvme-subsys*; do
    [[ $(cat "$s/subsysnqn") == "$NQN" ]] || continue
    for n in "$s"/nvme*n*; do [[ -e $n ]] && basename "$n" && return 0; done
  done
  return 1
}
ns=""
for _ in $(seq 1 200); do ns=$(find_ns) && break; sleep 0.05; done
[[ -n $ns && -b /dev/$ns ]] || fail "no namespace block device for $NQN"
size=$(($(cat /sys/block/"$ns"/size) * 512))
[[ $size -eq $((64 << 20)) ]] || fail "namespace is $size bytes, expected 64 MiB"
say "namespace /dev/$ns, $size bytes"

head -c $((4 << 20)) /dev/urandom >"$W/pattern"
dd if="$W/pattern" of=/dev/"$ns" bs=1M oflag=direct status=none
sync
backing=$W/data/files/storage-pool/vm-vol1.img
cmp -n $((4 << 20)) "$W/pattern" "$backing" || fail "backing file does not hold what the host wrote"
say "4 MiB written through NVMe/TCP are in the backing file"

out=$(ros '/disk set [find where slot="vm-vol1"] file-size=128M')
[[ -z $out ]] || fail "grow said: $out"
echo 1 >/sys/class/nvme/"$ctrl"/rescan_controller
for _ in $(seq 1 200); do
  size=$(($(cat /sys/block/"$ns"/size) * 512))
  [[ $size -eq $((128 << 20)) ]] && break
  sleep 0.05
done
[[ $size -eq $((128 << 20)) ]] || fail "after grow the host sees $size bytes"
say "grow to 128 MiB reached the host"

echo 1 >/sys/class/nvme/"$ctrl"/delete_controller
out=$(ros '/disk remove [find where slot="vm-vol1"]')
[[ -z $out ]] || fail "remove said: $out"
[[ ! -e /sys/kernel/config/nvmet/subsystems/$NQN ]] || fail "subsystem left after remove"
[[ -z $(ls /sys/kernel/config/nvmet/ports/*/subsystems/ 2>/dev/null) ]] || fail "port links left"
[[ -f $backing ]] || fail "disk remove must keep the image (RouterOS keeps it)"
say "remove tore the export down and kept the image"
