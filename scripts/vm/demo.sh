#!/bin/bash
# `rds-csi demo` as a user runs it, on a kernel that has nvmet and the NVMe/TCP initiator: the
# demo must choose real NVMe/TCP (the simulator exporting through nvmet, the node connecting
# with the kernel's initiator), pass every step, and leave no NVMe controller, nvmet
# subsystem, mount, loop device or file behind.
set -euo pipefail
BIN=${BIN_DIR:?}/rds-csi
PREFIX=nqn.2000-02.com.mikrotik
W=/tmp/demo
mkdir -p "$W"
say() { echo "[test] $*"; }
fail() {
  echo "[test] FAIL: $*"
  sed 's/^/[test] | /' "$W/demo.out" 2>/dev/null || true
  local wd
  wd=$(sed -n 's/^work directory: \([^ ]*\) .*/\1/p' "$W/demo.out" 2>/dev/null || true)
  for f in "$wd"/{sim,controller,node}.log; do
    [[ -f $f ]] && { echo "--- $f"; tail -n 25 "$f"; }
  done
  exit 1
}

started=$(date +%s%N)
rc=0
TMPDIR=$W timeout --kill-after=5 300 "$BIN" demo >"$W/demo.out" 2>&1 || rc=$?
took_ms=$((($(date +%s%N) - started) / 1000000))
((rc == 0)) || fail "rds-csi demo exited with $rc"

grep -q '^ ok  start the RDS simulator .*nvmet on' "$W/demo.out" || fail "the simulator did not use nvmet"
grep -q '^fabric: NVMe/TCP' "$W/demo.out" || fail "the demo did not run over NVMe/TCP"
grep -q '^notice: ' "$W/demo.out" && fail "a notice was printed: $(grep '^notice: ' "$W/demo.out")"
grep -q '^ ok  NodeStageVolume (filesystem) .*attached /dev/nvme' "$W/demo.out" ||
  fail "the filesystem volume was not staged on an NVMe namespace"
grep -q '^ ok  NodeExpandVolume .*filesystem grew online' "$W/demo.out" || fail "no online growth"
grep -Eq '^(FAIL|skip|STOP) ' "$W/demo.out" && fail "a step did not pass"
grep -q '^All [0-9]* steps passed\.$' "$W/demo.out" || fail "no success line"
say "$(grep '^ ok  NodeStageVolume (filesystem)' "$W/demo.out" | tr -s ' ')"
sed -n '/^Summary$/,$p' "$W/demo.out" | sed 's/^/[test] | /'

# Nothing of the demo is left: its own checks ran while it was up; these run after it exited.
for c in /sys/class/nvme/nvme*; do
  [[ -e $c/subsysnqn ]] || continue
  [[ $(cat "$c/subsysnqn") == "$PREFIX:"* ]] && fail "NVMe controller $(basename "$c") left"
done
[[ -z $(ls /sys/kernel/config/nvmet/subsystems/) ]] || fail "nvmet subsystems left"
[[ -z $(ls /sys/kernel/config/nvmet/ports/) ]] || fail "nvmet ports left"
grep -q " $W/" /proc/self/mountinfo && fail "mounts left under $W"
losetup -a | grep -q "$W/" && fail "loop devices left over files in $W"
[[ -z $(ls -A "$W" | grep -v '^demo.out$') ]] || fail "files left in $W: $(ls -A "$W")"
say "demo over NVMe/TCP passed in ${took_ms} ms; nothing left behind"
