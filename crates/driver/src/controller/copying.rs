//! The two ways the driver copies an image on the device, shared by snapshots and restores
//! of volumes whose image lies flat (docs/snapshots.md): `/file copy` (RouterOS 7.23+) and
//! `/disk copy`, a block copy (any version, over SSH: REST cuts every command at 60 s).
//!
//! A copy is never taken for done on anything but what this call saw: `/file copy` returned
//! and the copy reads back at the source's size, or `/disk copy` printed its last status at
//! 100 %. Whatever an interrupted copy left is copied over (or removed) by the next try.

use std::time::Duration;

use routeros::{BlockCopyOutcome, CopyOutcome, FilePath, ImageRemoval, Slot};

use super::service::ControllerService;
use crate::error::{DriverError, Result};
use crate::params::{CopyMethod, SnapshotMethod};

/// An id or path the driver derived itself that validation refused: a bug, not a bad request.
pub(super) fn internal(e: impl std::fmt::Display) -> DriverError {
    DriverError::Internal(e.to_string())
}

/// Block copies run at once; the others wait their turn (their CO's retries are ABORTED
/// meanwhile), so that long copies never take every RouterOS session from the other calls.
pub const MAX_BLOCK_COPIES: usize = 2;

/// Time allowed a block copy: a minute, plus the image at 20 MiB/s (a slow pool under load).
pub fn block_copy_deadline(bytes: u64) -> Duration {
    Duration::from_secs(60 + bytes / (20 << 20))
}

impl ControllerService {
    /// The copy method for an image that lies flat, from what the StorageClass or
    /// VolumeSnapshotClass asked (`None`: nothing) and what the device can.
    pub(super) async fn copy_method(&self, asked: Option<SnapshotMethod>) -> Result<CopyMethod> {
        let file_copy = self.rds().version().await?.supports_file_copy();
        let over_ssh = self.rds().transport() == "ssh";
        let refuse = |why: String| Err(DriverError::Precondition(why));
        match asked {
            Some(SnapshotMethod::Subvolume) => refuse(
                "snapshotMethod subvolume copies only images in a subvolume of their own; this \
                 one lies flat (use auto, file-copy or disk-copy)"
                    .into(),
            ),
            Some(SnapshotMethod::FileCopy) if !file_copy => {
                refuse("snapshotMethod file-copy needs RouterOS 7.23 or later".into())
            }
            Some(SnapshotMethod::FileCopy) => Ok(CopyMethod::FileCopy),
            Some(SnapshotMethod::DiskCopy) if !over_ssh => refuse(
                "snapshotMethod disk-copy needs the SSH transport: a block copy outlasts the \
                 REST API's 60-second limit"
                    .into(),
            ),
            Some(SnapshotMethod::DiskCopy) => Ok(CopyMethod::DiskCopy),
            Some(SnapshotMethod::Auto) | None if file_copy => Ok(CopyMethod::FileCopy),
            Some(SnapshotMethod::Auto) | None if over_ssh => Ok(CopyMethod::DiskCopy),
            Some(SnapshotMethod::Auto) | None => refuse(
                "no copy method: /file copy needs RouterOS 7.23 or later, and /disk copy the \
                 SSH transport"
                    .into(),
            ),
        }
    }

    /// `/file copy` of `from` to `to`, where no file may be: one left there by an interrupted
    /// copy (the caller knows nothing records it) goes first, only if no disk uses it. Checks
    /// the copy's size.
    pub(super) async fn fresh_file_copy(
        &self,
        from: &FilePath,
        to: &FilePath,
        size: u64,
    ) -> Result<()> {
        let mut cleared = false;
        loop {
            match self.rds().copy_file(from, to).await? {
                CopyOutcome::Copied(copy) if copy.size == size => return Ok(()),
                CopyOutcome::Copied(copy) => {
                    return Err(routeros::Error::Protocol(format!(
                        "the copy {to} of {from} is {} bytes, not {size}",
                        copy.size
                    ))
                    .into());
                }
                CopyOutcome::TargetExists(_) if !cleared => {
                    match self.rds().remove_unused_image(to).await? {
                        ImageRemoval::Removed => {
                            tracing::info!(image = %to, "removed what an interrupted copy left");
                        }
                        ImageRemoval::InUse => {
                            return Err(DriverError::Precondition(format!(
                                "a disk uses {to}, where the copy goes"
                            )));
                        }
                    }
                    cleared = true;
                }
                CopyOutcome::TargetExists(_) => {
                    return Err(routeros::Error::Unavailable(format!(
                        "{to} reappeared after its removal; retry"
                    ))
                    .into());
                }
            }
        }
    }

    /// `/disk copy` of disk `src` into disk `dst` (`bytes` long); only a final status counts.
    pub(super) async fn block_copy(&self, src: &Slot, dst: &Slot, bytes: u64) -> Result<()> {
        let _turn = self
            .block_copies
            .acquire()
            .await
            .map_err(|_| DriverError::Internal("the controller is shutting down".into()))?;
        let started = std::time::Instant::now();
        match self
            .rds()
            .block_copy(src, dst, block_copy_deadline(bytes))
            .await?
        {
            BlockCopyOutcome::Finished => {
                tracing::info!(%src, %dst, bytes, elapsed_ms = started.elapsed().as_millis() as u64, "block copy finished");
                Ok(())
            }
            BlockCopyOutcome::Unfinished { last, said } => {
                Err(routeros::Error::Unavailable(format!(
                    "the copy of {src} into {dst} did not finish (last progress {}; the device \
                     said {said:?}); the next try copies again",
                    last.map_or_else(
                        || "none".to_owned(),
                        |p| format!("{} / {}", p.copied, p.total)
                    )
                ))
                .into())
            }
        }
    }
}
