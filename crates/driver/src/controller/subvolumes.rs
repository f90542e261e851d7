//! Volumes in a subvolume of their own (StorageClass `snapshotMethod: subvolume`): the
//! subvolume, named after the volume id at the root of the pool's btrfs filesystem, holds the
//! volume's image, and its snapshots share its blocks (docs/snapshots.md).
//!
//! A create makes the subvolume before the guarded add of the disk; a delete removes it after
//! the disk and image, only when, in that same command, no disk is backed by a file in it.
//! Either step interrupted leaves what the next try completes.

use routeros::{FileDisk, SubvolumeName, SubvolumeOutcome, SubvolumeRemoval, VolumeFacts};

use super::rules::{ContentSource, VolumeId, VolumePlan};
use super::service::ControllerService;
use crate::error::{DriverError, Result};
use crate::params::SnapshotMethod;

impl ControllerService {
    /// The plan with its layout decided. A copy of a source in a subvolume of its own is a
    /// writable snapshot of that subvolume, so it lives in a subvolume of its own whatever the
    /// StorageClass says; a copy of an image that lies flat is copied by a copy method and
    /// lies where the StorageClass says. `snapshotMethod: auto`: a subvolume of its own when
    /// the device has subvolumes (RouterOS 7.18+) and a btrfs pool, else as it is (a flat
    /// image). Reads are cached (the version per connection, the pool for `cache_ttl`); a
    /// copy's source costs one round trip.
    pub async fn decide_layout(&self, mut plan: VolumePlan) -> Result<VolumePlan> {
        if let Some(source) = &plan.source {
            if self.source_in_subvolume(source).await? {
                return plan.with_subvolume(self.config());
            }
            // `subvolume` in the StorageClass places the new volume; its data are copied by
            // the method the device has.
            let asked = plan
                .params
                .snapshot_method
                .filter(|m| *m != SnapshotMethod::Subvolume);
            plan.copy_method = Some(self.copy_method(asked).await?);
        }
        if plan.subvolume.is_some() || !plan.auto_may_use_subvolume(self.config()) {
            return Ok(plan);
        }
        let subvolumes = self.rds().version().await?.supports_subvolumes();
        if subvolumes && self.pool().await?.fs == "btrfs" {
            return plan.with_subvolume(self.config());
        }
        Ok(plan)
    }

    /// Whether a copy's source lies in a subvolume (a subvolume snapshot, or a volume in a
    /// subvolume of its own); a source that does not exist is NOT_FOUND.
    async fn source_in_subvolume(&self, source: &ContentSource) -> Result<bool> {
        match source {
            ContentSource::Snapshot(id) => match self.snapshot_by_id(id).await? {
                Some(info) => Ok(info.image.is_some_and(|image| {
                    image.starts_with(&format!("{}/{id}/", self.config().pool))
                })),
                None => Err(DriverError::SnapshotNotFound(id.to_string())),
            },
            ContentSource::Volume(id) => Ok(self.lies_in_own_subvolume(&self.volume(id).await?)),
        }
    }

    /// Makes the plan's subvolume unless it exists. One that exists is an earlier try's
    /// (its name is this volume's id): the guarded add then judges what it holds. A
    /// read-only one is a snapshot, never a volume's home.
    pub(super) async fn ensure_subvolume(&self, plan: &VolumePlan) -> Result<()> {
        let Some(subvolume) = &plan.subvolume else {
            return Ok(());
        };
        match self
            .rds()
            .create_subvolume(self.config().btrfs_filesystem(), subvolume)
            .await?
        {
            SubvolumeOutcome::Created(_) => {
                tracing::info!(%subvolume, "created the volume's subvolume");
                Ok(())
            }
            SubvolumeOutcome::Exists(item) if item.read_only => {
                Err(DriverError::Precondition(format!(
                    "volume {}: a read-only subvolume {subvolume} is in the way",
                    plan.id
                )))
            }
            SubvolumeOutcome::Exists(_) => Ok(()),
        }
    }

    /// Whether the volume may have a subvolume left to remove once its disk is gone: its disk
    /// lies in the directory named after it, or no disk holds the slot (an interrupted
    /// delete) on a device that has subvolumes.
    pub(super) async fn may_have_subvolume(&self, facts: &VolumeFacts) -> bool {
        match facts.slot_items.as_slice() {
            [routeros::DiskItem::File(disk)] => self.lies_in_own_subvolume(disk),
            [] => self
                .rds()
                .version()
                .await
                .is_ok_and(|v| v.supports_subvolumes()),
            _ => false,
        }
    }

    /// The disk's image lies in `<pool>/<slot>/`, the volume's own subvolume.
    pub(super) fn lies_in_own_subvolume(&self, disk: &FileDisk) -> bool {
        disk.file_path
            .rsplit_once('/')
            .is_some_and(|(dir, _)| dir == format!("{}/{}", self.config().pool, disk.slot))
    }

    /// Removes the volume's subvolume, with what is left in it, when no disk uses a file in
    /// it (checked by the device in the same command).
    pub(super) async fn remove_volume_subvolume(&self, id: &VolumeId) -> Result<()> {
        let name = SubvolumeName::try_from(id.as_str())
            .map_err(|e| DriverError::Internal(format!("subvolume for {id}: {e}")))?;
        match self
            .rds()
            .remove_unused_subvolume(&self.config().pool, &name)
            .await?
        {
            SubvolumeRemoval::Gone => Ok(()),
            SubvolumeRemoval::InUse => {
                tracing::warn!(subvolume = %name, "a disk uses a file in this volume's subvolume; kept");
                Ok(())
            }
        }
    }
}
