//! CreateVolume from a snapshot (a restore) or from a volume (a clone) in a subvolume: the
//! new volume's subvolume is a writable snapshot of the source's subvolume, and its disk is
//! added over the image that came with it, then grown when the request is larger than the
//! source. Sources whose image lies flat are copied by [`super::restore_copy`].
//!
//! Each step is guarded and idempotent, so an attempt cut short anywhere is completed by the
//! next: the snapshot is made only when no subvolume has the name (one that exists must be
//! a writable snapshot of this source), the disk is added only when the slot is free, the
//! image is there and no disk uses it. The only thing ever removed is a disk this call
//! added whose read-back differs from the request, never the copy.

use routeros::{AttachOutcome, SubvolumeName, SubvolumeOutcome};

use super::rules::{ContentSource, VolumePlan};
use super::service::ControllerService;
use crate::capacity::SizePolicy;
use crate::error::{DriverError, Result};

/// Where a copy comes from on the device.
struct Origin {
    /// The subvolume to snapshot.
    subvolume: SubvolumeName,
    /// The name of the image file in it.
    image_name: String,
    /// The image's size.
    size: u64,
}

impl ControllerService {
    /// The volume `plan` asks for, made as a copy of its source; `true` when this call
    /// added the disk.
    pub(super) async fn create_copy(
        &self,
        plan: &VolumePlan,
    ) -> Result<(routeros::FileDisk, bool)> {
        if let Some(method) = plan.copy_method {
            return self.create_flat_copy(plan, method).await;
        }
        let source = plan.source.as_ref().expect("a copy has a source");
        let origin = self.origin(source).await?;
        if plan.limit_bytes > 0 && origin.size > plan.limit_bytes as u64 {
            return Err(DriverError::SourceBeyondLimit {
                source_bytes: origin.size,
                limit_bytes: plan.limit_bytes,
            });
        }
        let subvolume = plan
            .subvolume
            .as_ref()
            .expect("a copy lives in a subvolume");
        let pool = &self.config().pool;
        match self
            .rds()
            .snapshot_subvolume(
                self.config().btrfs_filesystem(),
                &origin.subvolume,
                subvolume,
                false,
            )
            .await?
        {
            SubvolumeOutcome::Created(_) => {
                tracing::info!(from = %origin.subvolume, "copied the source's subvolume");
            }
            SubvolumeOutcome::Exists(item)
                if !item.read_only
                    && item
                        .parent
                        .as_deref()
                        .is_none_or(|p| p == origin.subvolume.as_str()) => {}
            SubvolumeOutcome::Exists(item) => {
                return Err(DriverError::Incompatible {
                    volume_id: plan.id.to_string(),
                    reason: format!(
                        "its subvolume exists as a {} copy of {:?}, not of {}",
                        if item.read_only {
                            "read-only"
                        } else {
                            "writable"
                        },
                        item.parent,
                        origin.subvolume
                    ),
                });
            }
        }
        let image =
            routeros::FilePath::try_from(format!("{pool}/{subvolume}/{}", origin.image_name))
                .map_err(|e| DriverError::Internal(format!("image of {}: {e}", plan.id)))?;
        let plan = VolumePlan {
            file_path: image,
            ..plan.clone()
        };
        let mut spec = plan.disk_spec();
        spec.size = origin.size;
        let (disk, added) = match self.rds().attach_image(&spec).await? {
            AttachOutcome::Attached(disk) => (disk, true),
            AttachOutcome::SlotTaken(items) => {
                // An earlier try's disk, still at the copy's size when that try stopped before
                // its grow: judged as the copy it is, and grown below.
                let as_attached = VolumePlan {
                    required_bytes: plan.required_bytes.min(origin.size as i64),
                    ..plan.clone()
                };
                (self.judged(&as_attached, &items)?, false)
            }
            AttachOutcome::AttachedMismatch { id, reason } => {
                // Only the disk: the image is the copy, which the retry attaches again.
                if let Err(error) = self.rds().remove_disk(&id, None).await {
                    tracing::warn!(disk = %id, %error, "could not remove the mismatching disk");
                }
                return Err(routeros::Error::Protocol(reason).into());
            }
            AttachOutcome::ImageMissing => {
                return Err(DriverError::Precondition(format!(
                    "volume {}: the copy of {} holds no image {}",
                    plan.id, origin.subvolume, plan.file_path
                )));
            }
            AttachOutcome::ImageInUse => {
                return Err(DriverError::Precondition(format!(
                    "volume {}: another disk uses the image {}",
                    plan.id, plan.file_path
                )));
            }
        };
        if added {
            tracing::info!(source = %origin.subvolume, size = disk.file_size, "created the volume as a copy");
        }
        Ok((self.grown_copy(&plan, disk, origin.size).await?, added))
    }

    /// A copy's disk grown to the request while it still has its source's size (a try cut
    /// short before its grow is grown by the next), then checked against the range.
    pub(super) async fn grown_copy(
        &self,
        plan: &VolumePlan,
        disk: routeros::FileDisk,
        source_size: u64,
    ) -> Result<routeros::FileDisk> {
        let size = plan.size.max(source_size);
        let disk = if size > disk.file_size && disk.file_size == source_size {
            self.rds().grow_disk(plan.id.slot(), size).await?
        } else {
            disk
        };
        if !SizePolicy::satisfies(disk.file_size, plan.required_bytes, plan.limit_bytes) {
            return Err(DriverError::Incompatible {
                volume_id: plan.id.to_string(),
                reason: format!(
                    "its size {} bytes is outside the requested range",
                    disk.file_size
                ),
            });
        }
        Ok(disk)
    }

    /// The source's subvolume, image and size, as the device shows them now.
    async fn origin(&self, source: &ContentSource) -> Result<Origin> {
        match source {
            ContentSource::Snapshot(id) => {
                let info = self
                    .snapshot(id)
                    .await?
                    .ok_or_else(|| DriverError::SnapshotNotFound(id.to_string()))?;
                let image = info.image.ok_or_else(|| {
                    DriverError::Precondition(format!("snapshot {id} holds no single image"))
                })?;
                Ok(Origin {
                    subvolume: id.clone(),
                    image_name: file_name(&image).to_owned(),
                    size: info.size,
                })
            }
            ContentSource::Volume(id) => {
                let disk = self.volume(id).await?;
                if !self.lies_in_own_subvolume(&disk) {
                    // It did when the layout was decided; the retry decides again.
                    return Err(routeros::Error::Unavailable(format!(
                        "volume_content_source: volume {id} now keeps its image at {}, not in \
                         a subvolume of its own",
                        disk.file_path
                    ))
                    .into());
                }
                Ok(Origin {
                    subvolume: SubvolumeName::try_from(id.as_str())
                        .map_err(|e| DriverError::Internal(e.to_string()))?,
                    image_name: file_name(&disk.file_path).to_owned(),
                    size: disk.file_size,
                })
            }
        }
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}
