//! A disk over an image that already exists: the last step of a restore or a clone, whose
//! image arrives as a copy (a writable subvolume snapshot) before any disk uses it.
//!
//! Guarded like the create: one script adds the disk only when no item holds the slot,
//! exactly one file is at the image path, and no disk is backed by it, all looked up inside
//! the condition; it reports what it saw and the slot's items afterwards.

use crate::client::Client;
use crate::command::{disk_add, find_file, find_slot, print_disk, put_json};
use crate::error::{Error, Result};
use crate::judge::check_slots;
use crate::model::{CreateDisk, DiskItem, DiskSpec, FileDisk};
use crate::quote::{quote, regex_escape};
use crate::reply::{disk_item, ids, items};
use crate::validate::{FilePath, ItemId};

/// What a guarded attach found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachOutcome {
    /// This call added the disk and the device reports what was asked.
    Attached(FileDisk),
    /// This call added the disk (`id`) but it reads back otherwise; the caller removes it
    /// (never its image, which is the copy it was made for).
    AttachedMismatch { id: ItemId, reason: String },
    /// Nothing added: the slot is held by these items.
    SlotTaken(Vec<DiskItem>),
    /// Nothing added: no file (or several) at the image path.
    ImageMissing,
    /// Nothing added: a disk is backed by the image.
    ImageInUse,
}

fn find_users(path: &FilePath) -> String {
    format!(
        "[/disk find where file-path~{}]",
        quote(&format!("^/?{}$", regex_escape(path.as_str())))
    )
}

/// The guarded attach: the slot's holders, the files at the path and the disks using it,
/// then the new id when it added, then the slot's items: four or five JSON values.
pub fn attach_image(req: &CreateDisk<'_>) -> String {
    let spec = req.spec;
    let add = disk_add(req, false);
    let (in_slot, at_path, users) = (
        find_slot(&spec.slot),
        find_file(&spec.file_path),
        find_users(&spec.file_path),
    );
    format!(
        ":put [:serialize to=json {in_slot}];:put [:serialize to=json {at_path}];\
         :put [:serialize to=json {users}];\
         :if (([:len {in_slot}] = 0) && ([:len {at_path}] = 1) && ([:len {users}] = 0)) \
         do={{{}}};{}",
        put_json(&add),
        print_disk(&spec.slot)
    )
}

/// The values of a guarded add over a path: what it looked up, the new id when it added,
/// the slot's items afterwards.
pub(crate) struct GuardedAdd {
    pub slot_before: Vec<String>,
    pub files: Vec<String>,
    pub users: Vec<String>,
    pub added: Option<String>,
    pub after: serde_json::Value,
}

impl GuardedAdd {
    /// Reads the four or five values (`what` names the script in errors).
    pub(crate) fn read(values: Vec<serde_json::Value>, what: &str) -> Result<Self> {
        let count = values.len();
        let mut values = values.into_iter();
        let (Some(slot), Some(files), Some(users)) = (values.next(), values.next(), values.next())
        else {
            return Err(Error::Protocol(format!(
                "{what}: expected 4 or 5 JSON values, got {count}"
            )));
        };
        let (added, after) = match (values.next(), values.next(), values.next()) {
            (Some(after), None, None) => (None, after),
            (Some(serde_json::Value::String(id)), Some(after), None) => (Some(id), after),
            _ => {
                return Err(Error::Protocol(format!(
                    "{what}: expected 4 or 5 JSON values of the right kinds, got {count}"
                )));
            }
        };
        Ok(Self {
            slot_before: ids(slot, "slot look-up")?,
            files: ids(files, "file look-up")?,
            users: ids(users, "image users")?,
            added,
            after,
        })
    }
}

/// What the attach script's values mean.
pub fn judge_attach(req: &CreateDisk<'_>, values: Vec<serde_json::Value>) -> Result<AttachOutcome> {
    let GuardedAdd {
        slot_before,
        files,
        users,
        added,
        after,
    } = GuardedAdd::read(values, "guarded attach")?;
    let free = slot_before.is_empty() && files.len() == 1 && users.is_empty();
    if free != added.is_some() {
        return Err(Error::Protocol(format!(
            "guarded attach: slot holders {slot_before:?}, files {files:?}, users {users:?}, \
             added {added:?}"
        )));
    }
    let slot_after: Vec<DiskItem> = items(after)?.iter().map(disk_item).collect::<Result<_>>()?;
    check_slots(&req.spec.slot, &slot_after)?;
    let Some(added) = added else {
        return Ok(if !slot_before.is_empty() {
            AttachOutcome::SlotTaken(slot_after)
        } else if files.len() != 1 {
            AttachOutcome::ImageMissing
        } else {
            AttachOutcome::ImageInUse
        });
    };
    let id = ItemId::try_from(added.as_str())
        .map_err(|_| Error::Protocol(format!("the add returned an unexpected id {added:?}")))?;
    let reason = match slot_after.iter().find(|i| i.id() == id.as_str()) {
        Some(DiskItem::File(disk)) => match req.verify(disk) {
            Ok(()) => return Ok(AttachOutcome::Attached(disk.clone())),
            Err(mismatch) => mismatch.message().to_owned(),
        },
        Some(DiskItem::Other { kind, .. }) => format!("the new disk {id} is of type {kind}"),
        None => format!("the new disk {id} is missing from the read-back of its slot"),
    };
    Ok(AttachOutcome::AttachedMismatch { id, reason })
}

impl Client {
    /// Adds an exported file disk over the existing image `spec.file_path`, whose size must be
    /// `spec.size` (verified on the read-back), only when the slot is free, the image exists
    /// and no disk uses it (one round trip). Nothing here removes anything.
    pub async fn attach_image(&self, spec: &DiskSpec) -> Result<AttachOutcome> {
        spec.validate()?;
        let version = self.version().await?;
        version.require_server_nqn()?;
        let request = CreateDisk {
            spec,
            send_nqn: true,
        };
        let values = self
            .query_script_any("attach-image", spec.slot.as_str(), &attach_image(&request))
            .await?;
        judge_attach(&request, values)
    }
}
