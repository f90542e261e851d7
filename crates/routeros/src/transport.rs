//! The seam between the façade and the wire: one trait, two implementations (SSH, REST).
//!
//! It is a `dyn`-compatible trait (via `async-trait`) rather than an enum so the façade holds
//! `Arc<dyn Transport>` and tests of code above it can substitute an in-memory double without
//! a device. The boxed future per call costs well under a microsecond against network round
//! trips of milliseconds.

use async_trait::async_trait;

use crate::access::ExportAccess;
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::model::{
    AddReport, CreateDisk, DiskItem, FileDisk, FileEntry, ImageRemoval, Pool, SystemInfo,
    VolumeFacts,
};
use crate::reply::ExecOutput;
use crate::validate::{DirPath, FilePath, ItemId, Slot};

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
    /// Every item holding the slot (file disks and any other kind).
    async fn slot_items(&self, slot: &Slot) -> Result<Vec<DiskItem>>;
    /// File disks whose slot starts with `prefix` (already validated; empty = all). Items that
    /// cannot be read as file disks are skipped.
    async fn list_disks(&self, prefix: &str) -> Result<Vec<FileDisk>>;
    /// The guarded add: adds only when neither the slot nor the image path is taken, and
    /// reports what it saw, in one round trip.
    async fn create_disk(&self, request: CreateDisk<'_>) -> Result<AddReport>;
    /// Sets `file-size` and returns the disk as read back; `NotFound` if the slot is absent.
    async fn grow_disk(&self, slot: &Slot, size: u64) -> Result<FileDisk>;
    /// A volume's slot items, its images named `<slot>.img` under `dir`, and their users.
    async fn volume_facts(&self, slot: &Slot, dir: &DirPath) -> Result<VolumeFacts>;
    /// Removes the disk `id`, then `image` if given and no disk uses a file of its name, in
    /// one round trip. The image is left alone when the disk removal fails (an absent id
    /// included). `None` when no image was asked for.
    async fn remove_disk(
        &self,
        id: &ItemId,
        image: Option<&FilePath>,
    ) -> Result<Option<ImageRemoval>>;
    /// Removes the image if no disk uses a file of its name, checked in the same command.
    async fn remove_unused_image(&self, path: &FilePath) -> Result<ImageRemoval>;
    async fn get_file(&self, path: &FilePath) -> Result<Option<FileEntry>>;
    /// Removes the file; absent is not an error.
    async fn remove_file(&self, path: &FilePath) -> Result<()>;
    /// The device clock, every file disk and the `.img` files under `dir`, in one round trip.
    async fn inventory(&self, dir: &DirPath) -> Result<Inventory> {
        let _ = dir;
        Err(Error::Unsupported(format!(
            "the {} transport cannot list the inventory",
            self.kind()
        )))
    }
    /// The disk entry mounted at `mount_point` (already validated); `NotFound` if none.
    async fn pool(&self, mount_point: &str) -> Result<Pool>;
    /// The file disk's export access; `None` when the slot holds no disk.
    async fn export_access(&self, slot: &Slot) -> Result<Option<ExportAccess>> {
        let _ = slot;
        Err(Error::Unavailable(format!(
            "the {} transport cannot read export access",
            self.kind()
        )))
    }
    /// Sets `nvme-tcp-server-allow-host-name` to `value` and reads it back; `NotFound` when
    /// the slot holds no disk.
    async fn set_export_access(&self, slot: &Slot, value: &str) -> Result<ExportAccess> {
        let _ = (slot, value);
        Err(Error::Unavailable(format!(
            "the {} transport cannot set export access",
            self.kind()
        )))
    }
    /// Every `/system health` sensor.
    async fn system_health(&self) -> Result<crate::health::DeviceHealth> {
        Err(Error::Unsupported(format!(
            "the {} transport cannot read /system health",
            self.kind()
        )))
    }
    /// Runs one of this crate's own scripts (built by [`crate::command`] or
    /// [`crate::snapshots`] from validated input) and returns its JSON values, exactly
    /// `values` of them when given; device error text is an error.
    async fn query_script(
        &self,
        script: &str,
        values: Option<usize>,
    ) -> Result<Vec<serde_json::Value>> {
        let _ = (script, values);
        Err(Error::Unsupported(format!(
            "the {} transport cannot run the client's scripts",
            self.kind()
        )))
    }
    /// Runs a script and returns its raw output, for diagnostics that record exactly how the
    /// device answers (`rds-csi doctor --probe-device`). Never used for volume operations.
    async fn run_script(&self, script: &str) -> Result<ExecOutput> {
        let _ = script;
        Err(crate::Error::Unsupported(format!(
            "the {} transport cannot run raw scripts",
            self.kind()
        )))
    }
}
