#!/bin/bash
# The VM offers what the other tests need: NVMe/TCP initiator and target, configfs, loop, mkfs.
set -euo pipefail
fail() { echo "[test] $*"; exit 1; }
[[ -c /dev/nvme-fabrics ]] || fail "no /dev/nvme-fabrics"
[[ -d /sys/kernel/config/nvmet ]] || fail "no nvmet in configfs"
[[ -x ${BIN_DIR:?}/rds-csi ]] || fail "no rds-csi binary in $BIN_DIR"
"$BIN_DIR/rds-csi" --version
echo "[test] kernel $(uname -r): nvme-fabrics, nvmet configfs and the project's binary are present"
