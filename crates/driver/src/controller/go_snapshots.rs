//! The existing Go driver's snapshots: unexported disks `snap-<source uuid>-at-<hex>` over
//! `<base path>/<id>.img`, made with `/disk add copy-from=`, which copies an item's
//! properties, not its data (docs/snapshots.md). They are listed, so that they can be found,
//! and deletable with their images; nothing is ever restored from them.

use routeros::{DiskItem, FileDisk, ImageRemoval, Inventory, ItemId, Slot};

use super::service::ControllerService;
use super::snapshots::SnapshotInfo;
use crate::error::{DriverError, Result};
use crate::naming;
use crate::params;

/// Whether `disk` is one of the Go driver's snapshots: its id's shape, never exported, its
/// image `<id>.img` in a directory within the base path.
fn is_go_snapshot(disk: &FileDisk, base_path: &str) -> bool {
    naming::go_snapshot_source(&disk.slot).is_some()
        && !disk.nvme_tcp_export
        && disk.file_path.rsplit_once('/').is_some_and(|(dir, file)| {
            params::is_within(dir, base_path) && file == format!("{}.img", disk.slot)
        })
}

/// The Go driver's snapshots among the inventory's disks, with their images' times.
pub fn go_snapshot_infos(inventory: &Inventory, base_path: &str) -> Vec<SnapshotInfo> {
    inventory
        .disks
        .iter()
        .filter(|disk| is_go_snapshot(disk, base_path))
        .filter_map(|disk| {
            let created = super::snapshots::file_time(&inventory.images, &disk.file_path);
            Some(SnapshotInfo {
                id: disk.slot.clone(),
                source: naming::go_snapshot_source(&disk.slot)?,
                size: disk.file_size,
                image: Some(disk.file_path.clone()),
                created,
                ready: true,
            })
        })
        .collect()
}

impl ControllerService {
    /// The Go driver's snapshots on the device (one round trip: the inventory).
    pub(super) async fn go_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let inventory = self.rds().inventory(self.base_dir()).await?;
        Ok(go_snapshot_infos(
            &inventory,
            &self.config().volume_base_path,
        ))
    }

    /// The snapshots that are disks: the driver's copies and the Go driver's (one round
    /// trip: the inventory).
    pub(super) async fn device_snapshots(&self) -> Result<Vec<SnapshotInfo>> {
        let inventory = self.rds().inventory(self.base_dir()).await?;
        let base_path = &self.config().volume_base_path;
        let mut infos = go_snapshot_infos(&inventory, base_path);
        infos.extend(super::copy_snapshots::copy_snapshot_infos(
            &inventory, base_path,
        ));
        Ok(infos)
    }

    /// Deletes one of the Go driver's snapshots: its disk, then its image unless another disk
    /// uses a file of its name (checked by the device in the same command); with the disk
    /// already gone, the one image of its name no disk uses. Anything else in its slot is left.
    pub(super) async fn delete_go_snapshot(&self, id: &str) -> Result<()> {
        let slot = Slot::try_from(id).map_err(|e| DriverError::Internal(e.to_string()))?;
        let facts = self.rds().volume_facts(&slot, self.base_dir()).await?;
        let base_path = &self.config().volume_base_path;
        match facts.slot_items.as_slice() {
            [DiskItem::File(disk)] if is_go_snapshot(disk, base_path) => {
                let item = ItemId::try_from(disk.id.as_str())
                    .map_err(|e| DriverError::Internal(e.to_string()))?;
                let image = routeros::FilePath::try_from(disk.file_path.as_str())
                    .map_err(|e| DriverError::Internal(e.to_string()))?;
                let shared = facts
                    .image_users
                    .iter()
                    .any(|u| u.file_path == disk.file_path && u.id != disk.id);
                self.rds()
                    .remove_disk(&item, (!shared).then_some(&image))
                    .await?;
                tracing::info!(snapshot = %id, image = %image, kept = shared, "deleted the Go driver's snapshot");
                Ok(())
            }
            [] => {
                let unused: Vec<_> = facts
                    .images
                    .iter()
                    .filter(|f| !facts.image_users.iter().any(|u| u.file_path == f.name))
                    .collect();
                if let [image] = unused.as_slice() {
                    let path = routeros::FilePath::try_from(image.name.as_str())
                        .map_err(|e| DriverError::Internal(e.to_string()))?;
                    if self.rds().remove_unused_image(&path).await? == ImageRemoval::Removed {
                        tracing::info!(snapshot = %id, image = %path, "removed the image a delete left");
                    }
                }
                Ok(())
            }
            _ => {
                tracing::warn!(snapshot = %id, "the slot holds something else than the Go driver's snapshot; leaving it");
                Ok(())
            }
        }
    }
}
