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

# Export access: with a host list, the kernel target admits only the hosts on it.
connect_as() { # HOSTNQN -> prints the controller name, fails when refused
  local reply
  exec 4<>/dev/nvme-fabrics
  printf 'transport=tcp,traddr=127.0.0.1,trsvcid=4420,nqn=%s,hostnqn=%s' "$NQN" "$1" >&4 2>/dev/null ||
    { exec 4>&-; return 1; }
  read -r reply <&4 || true
  exec 4>&-
  echo "nvme$(sed -n 's/^instance=\([0-9]*\),.*/\1/p' <<<"$reply")"
}
ADMITTED=nqn.2014-08.org.nvmexpress:uuid:0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d
STRANGER=nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211
out=$(ros "/disk set [find where slot=\"vm-vol1\"] nvme-tcp-server-allow-host-name=\"$ADMITTED\"")
[[ -z $out ]] || fail "setting the host list said: $out"
[[ $(cat /sys/kernel/config/nvmet/subsystems/$NQN/attr_allow_any_host) == 0 ]] || fail "any host still allowed"
if c=$(connect_as "$STRANGER"); then fail "a host not on the list connected ($c)"; fi
c=$(connect_as "$ADMITTED") || fail "the listed host was refused"
echo 1 >/sys/class/nvme/"$c"/delete_controller
say "host list: the listed host connects, another is refused by the kernel target"

out=$(ros '/disk remove [find where slot="vm-vol1"]')
[[ -z $out ]] || fail "remove said: $out"
[[ ! -e /sys/kernel/config/nvmet/subsystems/$NQN ]] || fail "subsystem left after remove"
[[ -z $(ls /sys/kernel/config/nvmet/ports/*/subsystems/ 2>/dev/null) ]] || fail "port links left"
[[ -z $(ls /sys/kernel/config/nvmet/hosts/ 2>/dev/null) ]] || fail "host entries left"
[[ -f $backing ]] || fail "disk remove must keep the image (RouterOS keeps it)"
say "remove tore the export down and kept the image"
