//! CreateVolume from a source whose image lies flat (a copy snapshot, or a volume outside a
//! subvolume of its own): the new volume's image is a copy of the source's, made by the copy
//! method `decide_layout` chose, at the source's size; then grown when the request is larger.
//!
//! - `file-copy`: `/file copy` to the volume's image path, then the disk over it (guarded
//!   like every attach). The disk is the copy's commit: an image without it is what an
//!   interrupted copy left, and the next try copies afresh.
//! - `disk-copy`: the volume's disk first, its comment marked as a copy under way, then
//!   `/disk copy` into it, then the mark goes. A disk still marked is copied into again by
//!   the next try; CreateVolume answers success only for an unmarked disk.

use routeros::{AttachOutcome, DiskItem, FileDisk, FilePath, Slot};

use super::copying::internal;
use super::rules::{ContentSource, VolumePlan};
use super::service::ControllerService;
use crate::error::{DriverError, Result};
use crate::naming;
use crate::params::CopyMethod;

/// A flat source on the device.
struct FlatOrigin {
    slot: Slot,
    image: FilePath,
    size: u64,
}

impl ControllerService {
    /// The volume `plan` asks for, copied by `method`; `true` when this call added the disk.
    pub(super) async fn create_flat_copy(
        &self,
        plan: &VolumePlan,
        method: CopyMethod,
    ) -> Result<(FileDisk, bool)> {
        let source = plan.source.as_ref().expect("a copy has a source");
        let origin = self.flat_origin(source).await?;
        if plan.limit_bytes > 0 && origin.size > plan.limit_bytes as u64 {
            return Err(DriverError::SourceBeyondLimit {
                source_bytes: origin.size,
                limit_bytes: plan.limit_bytes,
            });
        }
        self.ensure_subvolume(plan).await?;
        let at_source_size = VolumePlan {
            size: origin.size,
            required_bytes: plan.required_bytes.min(origin.size as i64),
            ..plan.clone()
        };
        let items = self.rds().slot_items(plan.id.slot()).await?;
        let (disk, added) = match (items.as_slice(), method) {
            // An earlier try's block copy, not finished: copy into it again.
            ([DiskItem::File(disk)], _) if is_marked(disk) => {
                let disk = self
                    .finish_marked_copy(&at_source_size, &origin, disk)
                    .await?;
                (disk, true)
            }
            ([], CopyMethod::FileCopy) => {
                self.fresh_file_copy(&origin.image, &plan.file_path, origin.size)
                    .await?;
                (self.attach_copy(&at_source_size).await?, true)
            }
            ([], CopyMethod::DiskCopy) => {
                let marked = VolumePlan {
                    copying: true,
                    ..at_source_size.clone()
                };
                let (disk, added) = self.add(&marked).await?;
                if !added || !is_marked(&disk) {
                    return Err(routeros::Error::Unavailable(format!(
                        "volume {}: its slot was taken while the copy began; retry",
                        plan.id
                    ))
                    .into());
                }
                let disk = self
                    .finish_marked_copy(&at_source_size, &origin, &disk)
                    .await?;
                (disk, true)
            }
            // Done by an earlier try (then grown, or not yet), or another volume: judged.
            (items, _) => (self.judged(&at_source_size, items)?, false),
        };
        if added {
            tracing::info!(source = %origin.slot, method = method.as_str(), size = disk.file_size, "created the volume as a copy");
        }
        Ok((self.grown_copy(plan, disk, origin.size).await?, added))
    }

    /// The source's disk, image and size, as the device shows them now.
    async fn flat_origin(&self, source: &ContentSource) -> Result<FlatOrigin> {
        let (slot, image, size) = match source {
            ContentSource::Snapshot(id) => {
                let info = self
                    .copy_snapshot(id.as_str())
                    .await?
                    .ok_or_else(|| DriverError::SnapshotNotFound(id.to_string()))?;
                if !info.ready {
                    return Err(routeros::Error::Unavailable(format!(
                        "snapshot {id} is still being copied"
                    ))
                    .into());
                }
                let image = info.image.expect("a copy snapshot has its image");
                (id.to_string(), image, info.size)
            }
            ContentSource::Volume(id) => {
                let disk = self.volume(id).await?;
                (id.to_string(), disk.file_path, disk.file_size)
            }
        };
        Ok(FlatOrigin {
            slot: Slot::try_from(slot).map_err(internal)?,
            image: FilePath::try_from(image.trim_start_matches('/')).map_err(internal)?,
            size,
        })
    }

    /// The disk over a `/file copy` (its commit).
    async fn attach_copy(&self, plan: &VolumePlan) -> Result<FileDisk> {
        match self.rds().attach_image(&plan.disk_spec()).await? {
            AttachOutcome::Attached(disk) => Ok(disk),
            AttachOutcome::SlotTaken(items) => self.judged(plan, &items),
            AttachOutcome::AttachedMismatch { id, reason } => {
                // Only the disk: the image is the copy, which the retry attaches again.
                if let Err(error) = self.rds().remove_disk(&id, None).await {
                    tracing::warn!(disk = %id, %error, "could not remove the mismatching disk");
                }
                Err(routeros::Error::Protocol(reason).into())
            }
            AttachOutcome::ImageMissing | AttachOutcome::ImageInUse => {
                Err(routeros::Error::Unavailable(format!(
                    "volume {}: the copy at {} changed before its disk was added; retry",
                    plan.id, plan.file_path
                ))
                .into())
            }
        }
    }

    /// `/disk copy` into the marked disk, then its comment unmarked; the disk as read back.
    async fn finish_marked_copy(
        &self,
        plan: &VolumePlan,
        origin: &FlatOrigin,
        disk: &FileDisk,
    ) -> Result<FileDisk> {
        let marked = VolumePlan {
            copying: true,
            ..plan.clone()
        };
        let expected = marked.disk_spec().comment.expect("volumes carry a comment");
        if disk.comment.as_deref() != Some(expected.as_str()) || disk.file_size != origin.size {
            return Err(DriverError::Incompatible {
                volume_id: plan.id.to_string(),
                reason: "a copy for another request is under way in its slot".into(),
            });
        }
        self.block_copy(&origin.slot, plan.id.slot(), origin.size)
            .await?;
        let done = plan.disk_spec().comment.expect("volumes carry a comment");
        let after = self
            .rds()
            .swap_disk_comment(plan.id.slot(), &expected, &done)
            .await?
            .ok_or_else(|| DriverError::VolumeNotFound(plan.id.to_string()))?;
        self.judged(plan, &[DiskItem::File(after)])
    }
}

fn is_marked(disk: &FileDisk) -> bool {
    disk.comment
        .as_deref()
        .is_some_and(|c| naming::unmarked_comment(c).is_some())
}
