//! Snapshots by copy (docs/snapshots.md): a volume whose image lies flat is snapshotted by
//! copying its image to `<base path>/<snapshot id>.img`, under an unexported disk named after
//! the snapshot whose comment is the snapshot's record on the device:
//! `rds-csi:snapshot v1 source=<volume> method=<file-copy|disk-copy> state=<copying|ready>`.
//!
//! - `file-copy`: `/file copy` of the image, then the record disk over the copy, ready. An
//!   image without its record is what an interrupted copy left: the next try copies afresh.
//! - `disk-copy`: the record disk first (a new image of the source's size, `copying`), then
//!   `/disk copy` into it, then the record says `ready`, changed only from `copying`. A
//!   record still `copying` is copied into again by the next try.
//!
//! A snapshot is ready only when its record says so; until then ListSnapshots shows it with
//! `ready_to_use` false. A block copy is not a point in time: its data are the source's as
//! the copy read them (docs/snapshots.md, "Crash consistency").

use routeros::{
    DiskItem, FileDisk, FilePath, Inventory, ItemId, Slot, UnexportedDisk, UnexportedOutcome,
};

use super::copying::internal;
use super::service::ControllerService;
use super::snapshots::{SnapshotInfo, SnapshotPlan, file_time};
use crate::error::{DriverError, Result};
use crate::naming;
use crate::params::CopyMethod;

/// Start of a copy snapshot's record.
const RECORD_PREFIX: &str = "rds-csi:snapshot v1";

/// What the comment of a copy snapshot's disk records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyRecord {
    pub source: String,
    pub method: CopyMethod,
    pub ready: bool,
}

impl CopyRecord {
    pub fn render(&self) -> String {
        format!(
            "{RECORD_PREFIX} source={} method={} state={}",
            self.source,
            self.method.as_str(),
            if self.ready { "ready" } else { "copying" }
        )
    }

    /// Reads a record written by [`CopyRecord::render`]; anything else is `None`.
    pub fn parse(comment: &str) -> Option<Self> {
        let rest = comment.strip_prefix(RECORD_PREFIX)?.strip_prefix(' ')?;
        let mut fields = rest.split(' ');
        let source = fields.next()?.strip_prefix("source=")?;
        let method = CopyMethod::parse(fields.next()?.strip_prefix("method=")?)?;
        let ready = match fields.next()?.strip_prefix("state=")? {
            "ready" => true,
            "copying" => false,
            _ => return None,
        };
        (fields.next().is_none() && naming::is_managed_volume_id(source)).then(|| Self {
            source: source.to_owned(),
            method,
            ready,
        })
    }
}

/// Where the copy snapshot `id` keeps its image.
pub fn copy_snapshot_image(base_path: &str, id: &str) -> String {
    naming::image_path(base_path, id)
}

/// The snapshot `disk` records, when it is one of the driver's copy snapshots: named as a
/// snapshot id, unexported, over its image, with a record. `created` is its image's time.
pub fn copy_snapshot_info(
    disk: &FileDisk,
    base_path: &str,
    created: Option<i64>,
) -> Option<SnapshotInfo> {
    let record = CopyRecord::parse(disk.comment.as_deref()?)?;
    let ours = naming::is_managed_snapshot_id(&disk.slot)
        && !disk.nvme_tcp_export
        && disk.file_path.trim_start_matches('/') == copy_snapshot_image(base_path, &disk.slot);
    ours.then(|| SnapshotInfo {
        id: disk.slot.clone(),
        source: record.source,
        size: disk.file_size,
        image: Some(disk.file_path.trim_start_matches('/').to_owned()),
        created,
        ready: record.ready,
    })
}

/// The driver's copy snapshots among the inventory's disks.
pub fn copy_snapshot_infos(inventory: &Inventory, base_path: &str) -> Vec<SnapshotInfo> {
    inventory
        .disks
        .iter()
        .filter_map(|disk| {
            let created = file_time(&inventory.images, &disk.file_path);
            copy_snapshot_info(disk, base_path, created)
        })
        .collect()
}

/// What holds a copy snapshot's name on the device.
enum Found {
    Nothing,
    Record(FileDisk, CopyRecord),
    /// Something the driver did not make as a copy snapshot.
    Other(String),
}

impl ControllerService {
    fn snapshot_slot_and_image(&self, id: &str) -> Result<(Slot, FilePath)> {
        let slot = Slot::try_from(id).map_err(internal)?;
        let image = FilePath::try_from(copy_snapshot_image(&self.config().volume_base_path, id))
            .map_err(internal)?;
        Ok((slot, image))
    }

    async fn find_copy_snapshot(&self, slot: &Slot) -> Result<(Found, Vec<routeros::FileEntry>)> {
        let facts = self.rds().volume_facts(slot, self.base_dir()).await?;
        let base_path = &self.config().volume_base_path;
        let found = match facts.slot_items.as_slice() {
            [] => Found::Nothing,
            [DiskItem::File(disk)] => match disk.comment.as_deref().and_then(CopyRecord::parse) {
                Some(record) if copy_snapshot_info(disk, base_path, None).is_some() => {
                    Found::Record(disk.clone(), record)
                }
                _ => Found::Other(format!("disk {} over {}", disk.slot, disk.file_path)),
            },
            items => Found::Other(format!("{} items", items.len())),
        };
        Ok((found, facts.images))
    }

    /// The copy snapshot `id`, if the device has it (one round trip).
    pub(super) async fn copy_snapshot(&self, id: &str) -> Result<Option<SnapshotInfo>> {
        let (slot, _) = self.snapshot_slot_and_image(id)?;
        let (found, images) = self.find_copy_snapshot(&slot).await?;
        let Found::Record(disk, _) = found else {
            return Ok(None);
        };
        let created = file_time(&images, &disk.file_path);
        Ok(copy_snapshot_info(
            &disk,
            &self.config().volume_base_path,
            created,
        ))
    }

    /// CreateSnapshot of `source`, a volume whose image lies flat, by `method`; the same
    /// request again finds (or completes) the same snapshot.
    pub(super) async fn create_copy_snapshot(
        &self,
        plan: &SnapshotPlan,
        source: &FileDisk,
        method: CopyMethod,
    ) -> Result<SnapshotInfo> {
        let (slot, image) = self.snapshot_slot_and_image(plan.id.as_str())?;
        let record = |ready| CopyRecord {
            source: plan.source.to_string(),
            method,
            ready,
        };
        let (found, images) = self.find_copy_snapshot(&slot).await?;
        match found {
            Found::Other(what) => {
                return Err(DriverError::Incompatible {
                    volume_id: plan.id.to_string(),
                    reason: format!(
                        "{what} holds the name and is not one of the driver's snapshots"
                    ),
                });
            }
            Found::Record(_, held) if held.source != plan.source.as_str() => {
                return Err(DriverError::Incompatible {
                    volume_id: plan.id.to_string(),
                    reason: format!("is a snapshot of volume {}", held.source),
                });
            }
            Found::Record(_, held) if held.ready => {}
            // An interrupted block copy: its record disk is the destination; copy again.
            Found::Record(_, held) => {
                self.finish_block_copy(&slot, source, &held).await?;
            }
            Found::Nothing => {
                let from = FilePath::try_from(source.file_path.trim_start_matches('/'))
                    .map_err(internal)?;
                match method {
                    CopyMethod::FileCopy => {
                        self.fresh_file_copy(&from, &image, source.file_size)
                            .await?;
                        self.add_record(&slot, &image, None, &record(true)).await?;
                    }
                    CopyMethod::DiskCopy => {
                        if images.iter().any(|f| f.name == image.as_str()) {
                            self.remove_unrecorded(&image).await?;
                        }
                        let copying = record(false);
                        self.add_record(&slot, &image, Some(source.file_size), &copying)
                            .await?;
                        self.finish_block_copy(&slot, source, &copying).await?;
                    }
                }
                tracing::info!(snapshot = %plan.id, source = %plan.source, method = method.as_str(), "copied the snapshot");
            }
        }
        self.copy_snapshot(plan.id.as_str())
            .await?
            .filter(|info| info.ready)
            .ok_or_else(|| {
                routeros::Error::Protocol(format!(
                    "snapshot {} does not read back as ready",
                    plan.id
                ))
                .into()
            })
    }

    /// Removes an image at a snapshot's path that no record names (what an interrupted copy
    /// left), only when no disk uses it (checked by the device in the same command).
    async fn remove_unrecorded(&self, image: &FilePath) -> Result<()> {
        match self.rds().remove_unused_image(image).await? {
            routeros::ImageRemoval::Removed => {
                tracing::info!(%image, "removed the image of an unfinished snapshot");
                Ok(())
            }
            routeros::ImageRemoval::InUse => Err(DriverError::Precondition(format!(
                "a disk uses {image}, where the snapshot's copy goes"
            ))),
        }
    }

    /// The guarded add of a snapshot's record disk (over a new image of `size`, or over the
    /// copy that is there).
    async fn add_record(
        &self,
        slot: &Slot,
        image: &FilePath,
        size: Option<u64>,
        record: &CopyRecord,
    ) -> Result<()> {
        let disk = UnexportedDisk {
            slot: slot.clone(),
            file_path: image.clone(),
            size,
            comment: record.render(),
        };
        match self.rds().add_unexported_disk(&disk).await? {
            UnexportedOutcome::Added(_) => Ok(()),
            UnexportedOutcome::SlotTaken(_) => Err(routeros::Error::Unavailable(format!(
                "slot {slot} was taken while the snapshot was made; retry"
            ))
            .into()),
            UnexportedOutcome::PathUnfit => Err(DriverError::Precondition(format!(
                "snapshot {slot}: {image} is {} (a disk may use it)",
                if size.is_some() {
                    "taken"
                } else {
                    "not there to record"
                }
            ))),
        }
    }

    /// `/disk copy` of the source into the record disk, then the record says ready.
    async fn finish_block_copy(
        &self,
        slot: &Slot,
        source: &FileDisk,
        copying: &CopyRecord,
    ) -> Result<()> {
        let src = Slot::try_from(source.slot.as_str()).map_err(internal)?;
        self.block_copy(&src, slot, source.file_size).await?;
        let ready = CopyRecord {
            ready: true,
            ..copying.clone()
        };
        let after = self
            .rds()
            .swap_disk_comment(slot, &copying.render(), &ready.render())
            .await?;
        match after.and_then(|d| d.comment) {
            Some(comment) if comment == ready.render() => Ok(()),
            other => Err(routeros::Error::Protocol(format!(
                "snapshot {slot}: the record reads back as {other:?}"
            ))
            .into()),
        }
    }

    /// DeleteSnapshot of a copy snapshot: its record disk with its image, or the image an
    /// interrupted copy left (only if no disk uses it). `false` when nothing of it was there.
    pub(super) async fn delete_copy_snapshot(&self, id: &str) -> Result<bool> {
        let (slot, image) = self.snapshot_slot_and_image(id)?;
        let (found, images) = self.find_copy_snapshot(&slot).await?;
        match found {
            Found::Record(disk, record) => {
                let item = ItemId::try_from(disk.id.as_str()).map_err(internal)?;
                let removal = self.rds().remove_disk(&item, Some(&image)).await?;
                tracing::info!(snapshot = %id, source = %record.source, ?removal, "deleted the snapshot");
                Ok(true)
            }
            Found::Nothing if images.iter().any(|f| f.name == image.as_str()) => {
                self.remove_unrecorded(&image).await?;
                Ok(true)
            }
            Found::Nothing => Ok(false),
            Found::Other(what) => {
                tracing::warn!(snapshot = %id, %what, "the name is held by something else; leaving it");
                Ok(false)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VOL: &str = "pvc-11111111-2222-4333-8444-555555555555";
    const SNAP: &str = "snap-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";

    fn disk(slot: &str, path: &str, comment: Option<String>, exported: bool) -> FileDisk {
        FileDisk {
            nvme_tcp_export: exported,
            comment,
            ..crate::controller::judge::tests::disk("*1", slot, path)
        }
    }

    #[test]
    fn records_round_trip_and_refuse_anything_else() {
        for method in [CopyMethod::FileCopy, CopyMethod::DiskCopy] {
            for ready in [true, false] {
                let record = CopyRecord {
                    source: VOL.into(),
                    method,
                    ready,
                };
                assert_eq!(CopyRecord::parse(&record.render()), Some(record));
            }
        }
        let good = format!("rds-csi:snapshot v1 source={VOL} method=disk-copy state=ready");
        assert!(CopyRecord::parse(&good).is_some());
        for bad in [
            String::new(),
            format!("rds-csi:snapshot v1 source={VOL} method=disk-copy state=done"),
            format!("rds-csi:snapshot v1 source={VOL} method=copy-from state=ready"),
            "rds-csi:snapshot v1 source=x method=disk-copy state=ready".into(),
            format!("{good} extra"),
            format!("rds-csi:snapshot v2 source={VOL} method=disk-copy state=ready"),
        ] {
            assert_eq!(CopyRecord::parse(&bad), None, "{bad}");
        }
    }

    #[test]
    fn only_unexported_record_disks_over_their_image_are_copy_snapshots() {
        let record = CopyRecord {
            source: VOL.into(),
            method: CopyMethod::FileCopy,
            ready: false,
        }
        .render();
        let image = format!("storage-pool/{SNAP}.img");
        let info = copy_snapshot_info(
            &disk(SNAP, &format!("/{image}"), Some(record.clone()), false),
            "storage-pool",
            Some(7),
        )
        .unwrap();
        assert_eq!(
            info,
            SnapshotInfo {
                id: SNAP.into(),
                source: VOL.into(),
                size: 1 << 30,
                image: Some(image.clone()),
                created: Some(7),
                ready: false,
            }
        );
        for (slot, path, comment, exported) in [
            (SNAP, image.as_str(), Some(record.clone()), true),
            (
                SNAP,
                "storage-pool/elsewhere.img",
                Some(record.clone()),
                false,
            ),
            (
                "snap-by-hand",
                "storage-pool/snap-by-hand.img",
                Some(record.clone()),
                false,
            ),
            (SNAP, image.as_str(), None, false),
        ] {
            assert!(
                copy_snapshot_info(&disk(slot, path, comment, exported), "storage-pool", None)
                    .is_none(),
                "{slot} {path} {exported}"
            );
        }
    }
}
