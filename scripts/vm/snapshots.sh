#!/bin/bash
# Snapshots, restores and clones over real NVMe/TCP: an XFS volume in a subvolume of its own
# (snapshotMethod=subvolume) is written through the kernel's initiator and snapshotted while
# mounted; the source is then rewritten; the snapshot is restored into a new volume, attached
# over NVMe/TCP beside its source (a new filesystem UUID first, as XFS refuses duplicates)
# and holds exactly the data of the snapshot's moment, while the source holds its new data;
# attached again as a raw block device, the restored filesystem checks clean (xfs_repair -n).
# A clone of the source holds the source's new data. Then everything is removed: no
# controller, disk, file, subvolume or nvmet subsystem left.
set -euo pipefail
W=/tmp/snapshots
mkdir -p "$W"
source "$ROOT/scripts/vm/lib/csi-lab.sh"
SRC=pvc-5a7e0000-0000-4000-8000-000000000001
COPY=pvc-5a7e0000-0000-4000-8000-000000000002
CLONE=pvc-5a7e0000-0000-4000-8000-000000000004
SNAPSHOT=snapshot-5a7e0000-0000-4000-8000-000000000003

start_sim 127.0.0.1
start_controller 127.0.0.1
start_node
# shellcheck disable=SC2046
out=$("$E2E" attach $(csi_flags) --param snapshotMethod=subvolume --name "$SRC" --size-mib 320 \
  --fs-type xfs) || fail "attaching $SRC: $out"
src=$(awk '/^target:/ {print $2}' <<<"$out")
"$E2E" write --path "$src/data" --mib 32 --seed 7 >/dev/null || fail "writing $SRC"
sync
# shellcheck disable=SC2046
snap=$("$E2E" snapshot $(csi_flags) --name "$SNAPSHOT" --source "$SRC") || fail "CreateSnapshot: $snap"
snap_id=$(awk '/^snapshot-id:/ {print $2}' <<<"$snap")
grep -qx 'ready: true' <<<"$snap" || fail "the snapshot is not ready: $snap"
say "snapshot $snap_id of the mounted $SRC"
"$E2E" write --path "$src/data" --mib 32 --seed 8 >/dev/null || fail "rewriting $SRC"
sync

# shellcheck disable=SC2046
out=$("$E2E" attach $(csi_flags) --name "$COPY" --size-mib 320 --fs-type xfs \
  --from-snapshot "$snap_id") || fail "restoring $snap_id: $out"
copy=$(awk '/^target:/ {print $2}' <<<"$out")
"$E2E" verify --path "$copy/data" --mib 32 --seed 7 >/dev/null ||
  fail "the restored volume does not hold the data of the snapshot's moment"
"$E2E" verify --path "$src/data" --mib 32 --seed 8 >/dev/null || fail "the source lost its new data"
src_dev=$(findmnt -no SOURCE "$src")
copy_dev=$(findmnt -no SOURCE "$copy")
[[ $src_dev == /dev/nvme* && $copy_dev == /dev/nvme* ]] ||
  fail "not both over NVMe/TCP: $src_dev, $copy_dev"
src_uuid=$(blkid -p -o value -s UUID "$src_dev")
copy_uuid=$(blkid -p -o value -s UUID "$copy_dev")
[[ $src_uuid != "$copy_uuid" ]] || fail "the copy kept its source's UUID $src_uuid"
say "restored $COPY on $copy_dev (UUID $copy_uuid) beside $SRC on $src_dev (UUID $src_uuid): snapshot data intact"

# The restored filesystem, unmounted, checks clean.
# shellcheck disable=SC2046
"$E2E" detach $(csi_flags) --volume-id "$COPY" >/dev/null || fail "detaching $COPY"
# shellcheck disable=SC2046
out=$("$E2E" attach $(csi_flags) --name "$COPY" --size-mib 320 --block \
  --from-snapshot "$snap_id") || fail "attaching $COPY as a block device: $out"
node=$(awk '/^target:/ {print $2}' <<<"$out")
xfs_repair -n "$node" >"$W/xfs_repair.out" 2>&1 || fail "xfs_repair -n: $(tail -5 "$W/xfs_repair.out")"
say "the restored filesystem checks clean"
# shellcheck disable=SC2046
"$E2E" detach $(csi_flags) --volume-id "$COPY" --block --delete >/dev/null || fail "removing $COPY"

# A clone of the source, as it is now.
# shellcheck disable=SC2046
out=$("$E2E" attach $(csi_flags) --name "$CLONE" --size-mib 320 --fs-type xfs \
  --from-volume "$SRC") || fail "cloning $SRC: $out"
clone=$(awk '/^target:/ {print $2}' <<<"$out")
"$E2E" verify --path "$clone/data" --mib 32 --seed 8 >/dev/null || fail "the clone lacks the source's data"
say "cloned $SRC into $CLONE on $(findmnt -no SOURCE "$clone"): the source's current data"
# shellcheck disable=SC2046
"$E2E" detach $(csi_flags) --volume-id "$CLONE" --delete >/dev/null || fail "removing $CLONE"
# shellcheck disable=SC2046
"$E2E" detach $(csi_flags) --volume-id "$SRC" --delete >/dev/null || fail "removing $SRC"
# shellcheck disable=SC2046
"$E2E" delete-snapshot $(csi_flags) --snapshot-id "$snap_id" || fail "DeleteSnapshot"
subvolumes=$(ros '/disk btrfs subvolume print count-only')
[[ $subvolumes == 0 ]] || fail "simulator still has $subvolumes subvolumes"
assert_clean
