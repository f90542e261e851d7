//! The seam between the façade and the wire: one trait, two implementations (SSH, REST).
//!
//! It is a `dyn`-compatible trait (via `async-trait`) rather than an enum so the façade holds
//! `Arc<dyn Transport>` and tests of code above it can substitute an in-memory double without
//! a device. The boxed future per call costs well under a microsecond against network round
//! trips of milliseconds.

use async_trait::async_trait;

use crate::error::Result;
use crate::model::{CreateDisk, FileDisk, FileEntry, Pool, SystemInfo};
use crate::validate::{FilePath, Slot};

/// Device operations in their fewest round trips. Inputs are validated before they get here;
/// concurrency limits, deadlines, version decisions and read-back checks live in the façade.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// `ssh` or `rest`, for logs.
    fn kind(&self) -> &'static str;

    /// Changes whenever the transport has (re)connected, so cached facts about the device
    /// (its version) are re-read after a reconnect, which may follow an upgrade.
    fn connection_epoch(&self) -> u64;

    async fn system_info(&self) -> Result<SystemInfo>;
    async fn get_disk(&self, slot: &Slot) -> Result<Option<FileDisk>>;
    /// File disks whose slot starts with `prefix` (already validated; empty = all).
    async fn list_disks(&self, prefix: &str) -> Result<Vec<FileDisk>>;
    /// Adds the disk and returns it as read back.
    async fn create_disk(&self, request: CreateDisk<'_>) -> Result<FileDisk>;
    /// Sets `file-size` and returns the disk as read back; `NotFound` if the slot is absent.
    async fn grow_disk(&self, slot: &Slot, size: u64) -> Result<FileDisk>;
    /// Removes the disk entry (not its file); absent is not an error.
    async fn remove_disk(&self, slot: &Slot) -> Result<()>;
    /// Removes the disk entry and then its image file in one round trip; each may be absent.
    /// The file is left alone when the disk removal fails.
    async fn remove_disk_and_file(&self, slot: &Slot, path: &FilePath) -> Result<()>;
    async fn get_file(&self, path: &FilePath) -> Result<Option<FileEntry>>;
    /// Removes the file; absent is not an error.
    async fn remove_file(&self, path: &FilePath) -> Result<()>;
    /// The disk entry mounted at `mount_point` (already validated); `NotFound` if none.
    async fn pool(&self, mount_point: &str) -> Result<Pool>;
}
