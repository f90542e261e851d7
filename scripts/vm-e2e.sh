#!/usr/bin/env bash
# Real NVMe/TCP tests in a QEMU VM: Debian's own kernel (which has nvmet, nvme-tcp and configfs,
# unlike the build machine's), booted under TCG with a busybox initramfs; the host's root is
# shared read-only over 9p and each test runs the project's own binaries in a chroot of it.
#
#   scripts/vm-e2e.sh [TEST...]     TEST = a script name under scripts/vm/ without .sh
#                                   (default: every scripts/vm/*.sh)
#   LAB=dir       where the kernel and initramfs are cached (default <target dir>/vm-lab)
#   VM_TIMEOUT=s  per-test wall-clock limit (default 600); a hung VM fails, never hangs CI
#   VM_PROFILE=p  which build of the binaries runs in the VM: debug (default: CI builds it
#                 anyway) or release (for benchmarks; a release build adds minutes)
#   CARGO_TARGET_DIR is honoured: the binaries are taken from where cargo puts them.
#
# Everything comes from Debian packages; the kernel package is fetched and unpacked, not
# installed. Each test prints VMTEST PASS or VMTEST FAIL on the serial console.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET_DIR=$(cd "$ROOT" && realpath -m "${CARGO_TARGET_DIR:-target}")
LAB=${LAB:-$TARGET_DIR/vm-lab}
VM_TIMEOUT=${VM_TIMEOUT:-600}
VM_PROFILE=${VM_PROFILE:-debug}
case $VM_PROFILE in
  debug) BUILD_FLAGS=() ;;
  release) BUILD_FLAGS=(--release) ;;
  *) echo "[vm-e2e] VM_PROFILE must be debug or release, not $VM_PROFILE" >&2; exit 2 ;;
esac
BIN_DIR=$TARGET_DIR/$VM_PROFILE
mkdir -p "$LAB"

log() { printf '[vm-e2e] %s\n' "$*"; }

install_packages() {
  local need=() p
  for p in qemu-system-x86 busybox-static kmod cpio xz-utils zstd; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || need+=("$p")
  done
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
}

# Debian's current kernel ABI package (what linux-image-amd64 depends on), unpacked once.
fetch_kernel() {
  local k=$LAB/kernel
  if [[ ! -f $k/.done ]]; then
    apt-cache show linux-image-amd64 >/dev/null 2>&1 || apt-get update -qq
    local pkg
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
    [[ -n $pkg ]] || { log "cannot resolve the kernel package"; exit 1; }
    log "fetching $pkg"
    rm -rf "$k" "$LAB/dl" && mkdir -p "$k" "$LAB/dl"
    (cd "$LAB/dl" && apt-get download "$pkg" >/dev/null 2>&1)
    dpkg -x "$LAB"/dl/"$pkg"_*.deb "$k"
    rm -rf "$LAB/dl"
    echo "$pkg" >"$k/.done"
  fi
  KVER=$(ls "$k/lib/modules" | head -n1)
  VMLINUZ=$k/boot/vmlinuz-$KVER
  # The .deb ships no modules.dep (its postinst would make it).
  [[ -f $k/lib/modules/$KVER/modules.dep ]] || depmod -b "$k" "$KVER"
}

build_initrd() {
  INITRD=$LAB/initrd.gz
  local stamp=$LAB/initrd.stamp want
  want="$KVER $(sha256sum "$ROOT/scripts/vm/init" | cut -c1-16)"
  [[ -f $INITRD && "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && return
  log "building initramfs"
  local r
  r=$(mktemp -d)
  mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,run,host,lib/modules/$KVER}
  cp /bin/busybox "$r/bin/busybox"
  ln -s busybox "$r/bin/sh"
  local mods="configfs nvmet nvmet-tcp nvme-tcp nvme-fabrics nvme-core loop ext4 xfs
    crc32c_generic veth 9p 9pnet_virtio virtio_pci virtio_net"
  local m f rel
  for m in $mods; do
    modprobe -d "$LAB/kernel" -S "$KVER" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
  done | sort -u | while read -r f; do
    rel=${f#"$LAB"/kernel/}
    mkdir -p "$r/$(dirname "$rel")"
    cp "$f" "$r/$rel"
    case $f in
      *.xz) xz -d "$r/$rel" ;;
      *.zst) zstd -qd --rm "$r/$rel" ;;
    esac
  done
  cp "$LAB/kernel/lib/modules/$KVER"/modules.{order,builtin,builtin.modinfo} "$r/lib/modules/$KVER/" 2>/dev/null || true
  depmod -b "$r" "$KVER"
  cp "$ROOT/scripts/vm/init" "$r/init"
  chmod +x "$r/init"
  (cd "$r" && find . | cpio -o -H newc --quiet | gzip -1) >"$INITRD"
  rm -rf "$r"
  echo "$want" >"$stamp"
}

# One VM running scripts/vm/<test>.sh in the host-root chroot, its console to OUT; extra
# kernel arguments, then QEMU flags (a VM of a pair gets a network card).
boot_vm() {
  local name=$1 out=$2 append=$3
  shift 3
  timeout --kill-after=10 "$VM_TIMEOUT" qemu-system-x86_64 \
    -nographic -no-reboot -accel tcg -cpu max -smp 2 -m 2G -nic none "$@" \
    -kernel "$VMLINUZ" -initrd "$INITRD" \
    -virtfs local,path=/,mount_tag=host,security_model=none,readonly=on,multidevs=remap \
    -append "console=ttyS0 quiet panic=-1 vmtest.root=$ROOT vmtest.bin=$BIN_DIR vmtest.test=$name $append" \
    </dev/null >"$out" 2>&1
}

# Says how a VM's run went (LABEL, its console OUT, exit RC, seconds TOOK); 0 on VMTEST PASS.
judge_vm() {
  local label=$1 out=$2 rc=$3 took=$4
  grep -E '^(VMTEST|\[vm\]|\[test\])' "$out" | sed "s/^/  | /" || true
  if grep -q '^VMTEST PASS' "$out"; then
    log "$label: PASS (${took}s)"
    return 0
  fi
  if [[ $rc -eq 124 ]]; then
    log "$label: FAIL: timed out after ${VM_TIMEOUT}s (log: $out)"
  else
    log "$label: FAIL (exit $rc, ${took}s, log: $out)"
  fi
  tail -n 40 "$out" | sed "s/^/  ! /"
  return 1
}

# Boots the VM(s) of scripts/vm/<test>.sh; 0 when each says VMTEST PASS. A script with the
# line `# vm: pair` runs on two VMs at once, `a` (10.0.0.1) and `b` (10.0.0.2), joined by a
# point-to-point UDP link between their network cards: two kernels, two NVMe hosts.
run_test() {
  local name=$1 start rc=0
  start=$(date +%s)
  if ! grep -qx '# vm: pair' "$ROOT/scripts/vm/$name.sh"; then
    log "$name: booting"
    boot_vm "$name" "$LAB/$name.log" "" || rc=$?
    judge_vm "$name" "$LAB/$name.log" "$rc" $(($(date +%s) - start))
    return
  fi
  log "$name: booting two VMs"
  local port_a=$((20000 + RANDOM % 20000)) port_b pid_a pid_b rc_a=0 rc_b=0
  port_b=$((port_a + 1))
  local link=local.type=inet,local.host=127.0.0.1,remote.type=inet,remote.host=127.0.0.1
  boot_vm "$name" "$LAB/$name-a.log" "vmtest.role=a vmtest.ip=10.0.0.1/24" \
    -netdev "dgram,id=n0,$link,local.port=$port_a,remote.port=$port_b" \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01 &
  pid_a=$!
  boot_vm "$name" "$LAB/$name-b.log" "vmtest.role=b vmtest.ip=10.0.0.2/24" \
    -netdev "dgram,id=n0,$link,local.port=$port_b,remote.port=$port_a" \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02 &
  pid_b=$!
  wait "$pid_a" || rc_a=$?
  wait "$pid_b" || rc_b=$?
  local took=$(($(date +%s) - start)) failed=0
  judge_vm "$name (a)" "$LAB/$name-a.log" "$rc_a" "$took" || failed=1
  judge_vm "$name (b)" "$LAB/$name-b.log" "$rc_b" "$took" || failed=1
  return $failed
}

install_packages
fetch_kernel
build_initrd

# The tests run the host's binaries of $VM_PROFILE; build them first.
(cd "$ROOT" && cargo build --locked "${BUILD_FLAGS[@]}" --bin rds-csi --bin csi-e2e)
log "binaries: $BIN_DIR ($VM_PROFILE)"

tests=("$@")
if ((${#tests[@]} == 0)); then
  for f in "$ROOT"/scripts/vm/*.sh; do tests+=("$(basename "$f" .sh)"); done
fi
failed=0
for t in "${tests[@]}"; do
  [[ -f $ROOT/scripts/vm/$t.sh ]] || { log "no such test: $t"; exit 2; }
  run_test "$t" || failed=1
done
exit $failed
