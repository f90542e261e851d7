//! The device's state model and the operations on it.
//!
//! Everything here is pure: an operation validates, changes the in-memory
//! state and returns the side effects (backing files, NVMe exports) it
//! needs. [`crate::device::Device`] performs those effects, rolls back on
//! failure and persists the result.

mod block_copy;
mod disks;
mod exports;
mod files;
mod namespace;
mod pool;
#[cfg(test)]
mod quirk_tests;
#[cfg(test)]
mod subvolume_tests;
mod subvolumes;
mod table;
#[cfg(test)]
pub(crate) mod tests;

pub use block_copy::{BlockCopy, BlockCopyArgs, COPY_STEPS, copy_status, run_block_copy};
pub use namespace::{BadId128, Id128, NamespaceIds};
pub use pool::{FILE_METADATA_BYTES, pool_used};
pub use subvolumes::{SUBVOLUMES_SINCE_MINOR, Subvolume, SubvolumeArgs};
pub use table::{INDEXES, Row, Table};

use serde::{Deserialize, Serialize};

use crate::error::CmdError;
use crate::quirks::Quirks;
use crate::version::RouterOsVersion;

/// Version of the persisted `state.json` layout.
pub const STATE_FORMAT: u32 = 1;

/// Default `nvme-tcp-server-port`.
pub const DEFAULT_NVME_PORT: u16 = 4420;

/// Longest NQN the NVMe specification (and Linux nvmet) accepts.
const MAX_NQN_BYTES: usize = 223;

/// Everything the device remembers across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// `/system identity` name.
    pub identity: String,
    pub pool: PoolSettings,
    /// The next `/disk` internal id; ids are never reused.
    pub next_disk_id: u64,
    /// The next `/file` internal id; ids are never reused.
    pub next_file_id: u64,
    /// `/disk` items in id order; the pool's RAID entry is one of them.
    pub disks: Table<Disk>,
    /// `/file` items in id order.
    pub files: Table<FileEntry>,
    /// The next `/disk btrfs subvolume` internal id; ids are never reused.
    #[serde(default = "first_id")]
    pub next_subvolume_id: u64,
    /// `/disk btrfs subvolume` items of the pool's filesystem, in id order.
    #[serde(default)]
    pub subvolumes: Table<Subvolume>,
}

/// Where the state stood, for [`State::undo_to`].
#[derive(Debug, Clone)]
pub struct StateMark {
    identity: String,
    pool: PoolSettings,
    next_ids: [u64; 3],
    tables: [usize; 3],
}

/// Names a disk is found by: its slot, its image's path, its `nvme-tcp-server-nqn`.
pub const DISK_SLOT: usize = 0;
pub const DISK_IMAGE: usize = 1;
pub const DISK_SERVER_NQN: usize = 2;
/// The name a file or a subvolume is found by.
pub const BY_NAME: usize = 0;

impl Row for Disk {
    fn id(&self) -> u64 {
        self.id
    }

    fn names(&self) -> [Option<&str>; INDEXES] {
        let image = match &self.kind {
            DiskKind::File { path, .. } => Some(path.as_str()),
            DiskKind::Raid => None,
        };
        let nqn = Some(self.nvme_tcp_server_nqn.as_str()).filter(|n| !n.is_empty());
        [Some(&self.slot), image, nqn]
    }
}

impl Row for FileEntry {
    fn id(&self) -> u64 {
        self.id
    }

    fn names(&self) -> [Option<&str>; INDEXES] {
        [Some(&self.name), None, None]
    }
}

impl Row for Subvolume {
    fn id(&self) -> u64 {
        self.id
    }

    fn names(&self) -> [Option<&str>; INDEXES] {
        [Some(&self.name), None, None]
    }
}

fn first_id() -> u64 {
    1
}

/// The storage pool: a RAID disk mounted at `/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolSettings {
    /// Slot and mount point of the pool, e.g. `storage-pool`.
    pub name: String,
    /// Pool size in bytes.
    pub capacity: u64,
}

/// One `/disk` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    pub id: u64,
    pub slot: String,
    #[serde(default)]
    pub comment: String,
    pub kind: DiskKind,
    pub mount_filesystem: bool,
    pub mount_read_only: bool,
    pub nvme_tcp_export: bool,
    pub nvme_tcp_server_port: u16,
    /// Empty when not set; only meaningful from 7.21.
    #[serde(default)]
    pub nvme_tcp_server_nqn: String,
    #[serde(default)]
    pub nvme_tcp_server_allow_host_name: String,
    pub iscsi_export: bool,
    pub nfs_sharing: bool,
    pub smb_sharing: bool,
    pub media_sharing: bool,
    pub swap: bool,
    /// Identifiers of its exported namespace, kept across restarts and re-exports. A state
    /// saved before they existed gets new ones when it loads (saved at start).
    #[serde(default = "NamespaceIds::random")]
    pub namespace: NamespaceIds,
}

/// What a `/disk` item is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum DiskKind {
    /// The pool's RAID array (mounted, btrfs).
    Raid,
    /// A block device backed by a file in the pool.
    File {
        /// Path without leading `/`, e.g. `storage-pool/pvc-1.img`.
        path: String,
        /// Logical size of the backing file in bytes.
        size: u64,
        /// Offset of the block device inside the file.
        offset: u64,
    },
}

/// One `/file` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub id: u64,
    /// Path without leading `/`, e.g. `storage-pool/pvc-1.img`.
    pub name: String,
    pub kind: FileKind,
    /// Logical size in bytes (0 for directories).
    pub size: u64,
    /// Unix seconds of the last change.
    pub modified: u64,
}

/// The type of a `/file` item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileKind {
    /// The mount point of a disk (the pool's root).
    Disk,
    Directory,
    File,
}

/// Typed arguments of `/disk add` and `/disk set`; `None` = not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskArgs {
    pub disk_type: Option<String>,
    pub slot: Option<String>,
    pub comment: Option<String>,
    pub file_path: Option<String>,
    pub file_size: Option<u64>,
    pub file_offset: Option<u64>,
    pub mount_filesystem: Option<bool>,
    pub mount_read_only: Option<bool>,
    pub nvme_tcp_export: Option<bool>,
    pub nvme_tcp_server_port: Option<u16>,
    pub nvme_tcp_server_nqn: Option<String>,
    pub nvme_tcp_server_allow_host_name: Option<String>,
    pub iscsi_export: Option<bool>,
    pub nfs_sharing: Option<bool>,
    pub smb_sharing: Option<bool>,
    pub media_sharing: Option<bool>,
    pub swap: Option<bool>,
    /// `copy-from`: the item (`*ID` or slot) whose properties are the defaults of `add`.
    pub copy_from: Option<String>,
}

/// Inputs an operation needs besides the state.
#[derive(Debug, Clone)]
pub struct Env {
    pub version: RouterOsVersion,
    /// Unix seconds, for `last-modified`.
    pub now: u64,
    /// Fault: report no free space in the pool.
    pub pool_full: bool,
    /// How this device differs from the facts (see [`crate::quirks`]).
    pub quirks: Quirks,
    /// Bytes the pool's files occupy, as the device last observed them (see
    /// [`crate::usage`]).
    pub pool_used: u64,
}

/// An NVMe/TCP export as the outside world sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportSpec {
    pub slot: String,
    /// Subsystem NQN: `nvme-tcp-server-nqn` on 7.21+ when set, else the slot.
    pub nqn: String,
    pub port: u16,
    /// Backing file path without leading `/`.
    pub file_path: String,
    pub size: u64,
    /// The namespace's identifiers, written before it is enabled.
    pub ids: NamespaceIds,
    /// Host NQNs admitted (`nvme-tcp-server-allow-host-name`); empty = any host.
    pub allowed_hosts: Vec<String>,
}

/// A side effect an operation needs, in the order it must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    CreateDir {
        path: String,
    },
    RemoveDir {
        path: String,
    },
    CreateFile {
        path: String,
        size: u64,
    },
    ResizeFile {
        path: String,
        from: u64,
        to: u64,
    },
    RemoveFile {
        path: String,
    },
    /// Copy a file or a directory tree (a subvolume snapshot, `/file copy`): copy-on-write
    /// where the data directory's filesystem can share blocks, a sparse copy otherwise.
    Copy {
        from: String,
        to: String,
    },
    /// Remove a directory tree (`/disk btrfs subvolume remove`).
    RemoveTree {
        path: String,
    },
    Export(ExportSpec),
    Unexport(ExportSpec),
    /// Tell NVMe hosts the namespace changed size.
    Revalidate(ExportSpec),
    /// Admit only `spec.allowed_hosts` (any host when empty) from now on; `previous` undoes.
    AllowHosts {
        spec: ExportSpec,
        previous: Vec<String>,
    },
}

impl Effect {
    /// The effect that undoes this one, when there is one.
    pub fn inverse(&self) -> Option<Effect> {
        Some(match self {
            Effect::CreateDir { path } => Effect::RemoveDir { path: path.clone() },
            Effect::CreateFile { path, .. } => Effect::RemoveFile { path: path.clone() },
            Effect::Copy { to, .. } => Effect::RemoveTree { path: to.clone() },
            Effect::ResizeFile { path, from, to } => Effect::ResizeFile {
                path: path.clone(),
                from: *to,
                to: *from,
            },
            Effect::Export(spec) => Effect::Unexport(spec.clone()),
            Effect::Unexport(spec) => Effect::Export(spec.clone()),
            Effect::AllowHosts { spec, previous } => Effect::AllowHosts {
                spec: ExportSpec {
                    allowed_hosts: previous.clone(),
                    ..spec.clone()
                },
                previous: spec.allowed_hosts.clone(),
            },
            Effect::RemoveDir { .. }
            | Effect::RemoveFile { .. }
            | Effect::RemoveTree { .. }
            | Effect::Revalidate(_) => {
                return None;
            }
        })
    }
}

type Outcome<T> = Result<(T, Vec<Effect>), CmdError>;

impl State {
    /// A fresh device: the pool's RAID disk and its mount point.
    pub fn new(pool: PoolSettings, identity: &str, now: u64) -> Self {
        let mut state = State {
            format: STATE_FORMAT,
            identity: identity.to_string(),
            next_disk_id: 1,
            next_file_id: 1,
            disks: Table::new(),
            files: Table::new(),
            pool: pool.clone(),
            next_subvolume_id: 1,
            subvolumes: Table::new(),
        };
        let id = state.take_disk_id();
        state.disks.put(Disk {
            id,
            slot: pool.name.clone(),
            comment: String::new(),
            kind: DiskKind::Raid,
            mount_filesystem: true,
            mount_read_only: false,
            nvme_tcp_export: false,
            nvme_tcp_server_port: DEFAULT_NVME_PORT,
            nvme_tcp_server_nqn: String::new(),
            nvme_tcp_server_allow_host_name: String::new(),
            iscsi_export: false,
            nfs_sharing: false,
            smb_sharing: false,
            media_sharing: false,
            swap: false,
            namespace: NamespaceIds::random(),
        });
        state.push_file(&pool.name, FileKind::Disk, 0, now);
        state.forget_changes();
        state
    }

    /// Where the state stands now, for [`State::undo_to`].
    pub fn mark(&self) -> StateMark {
        StateMark {
            identity: self.identity.clone(),
            pool: self.pool.clone(),
            next_ids: [self.next_disk_id, self.next_file_id, self.next_subvolume_id],
            tables: [self.disks.mark(), self.files.mark(), self.subvolumes.mark()],
        }
    }

    /// Back to where `mark` was taken (no [`State::settle`] since).
    pub fn undo_to(&mut self, mark: StateMark) {
        let [disks, files, subvolumes] = mark.tables;
        self.disks.undo_to(disks);
        self.files.undo_to(files);
        self.subvolumes.undo_to(subvolumes);
        [self.next_disk_id, self.next_file_id, self.next_subvolume_id] = mark.next_ids;
        self.identity = mark.identity;
        self.pool = mark.pool;
    }

    /// The changes so far stay: they can no longer be undone.
    pub fn settle(&mut self) {
        self.disks.settle();
        self.files.settle();
        self.subvolumes.settle();
    }

    /// Nothing changed so far, as far as undo and the journal are concerned (a state just
    /// made or read, whose first save writes it whole).
    pub fn forget_changes(&mut self) {
        self.settle();
        self.disks.take_changed();
        self.files.take_changed();
        self.subvolumes.take_changed();
    }

    /// What changed since the last call (or since the state was made or read), for the
    /// journal: the changed items as they are now and the ids of those gone.
    pub fn take_changes(&mut self) -> crate::journal::Changes {
        let disks = self.disks.take_changed();
        let files = self.files.take_changed();
        let subvolumes = self.subvolumes.take_changed();
        crate::journal::Changes::new(self, disks, files, subvolumes)
    }

    fn take_disk_id(&mut self) -> u64 {
        let id = self.next_disk_id;
        self.next_disk_id += 1;
        id
    }

    fn push_file(&mut self, name: &str, kind: FileKind, size: u64, now: u64) {
        let id = self.next_file_id;
        self.next_file_id += 1;
        self.files.put(FileEntry {
            id,
            name: name.to_string(),
            kind,
            size,
            modified: now,
        });
    }

    pub fn disk(&self, id: u64) -> Option<&Disk> {
        self.disks.get(id)
    }

    /// The first disk (in id order) in `slot`.
    pub fn disk_by_slot(&self, slot: &str) -> Option<&Disk> {
        self.disks.named(DISK_SLOT, slot).next()
    }

    pub fn file(&self, id: u64) -> Option<&FileEntry> {
        self.files.get(id)
    }

    /// A `/file` item by name, with or without leading `/`.
    pub fn file_by_name(&self, name: &str) -> Option<&FileEntry> {
        let name = name.strip_prefix('/').unwrap_or(name);
        self.files.named(BY_NAME, name).next()
    }

    /// `/system identity set name=`.
    pub fn set_identity(&mut self, name: &str) -> Outcome<()> {
        if name.is_empty() {
            return Err(CmdError::InvalidValue("name".into()));
        }
        self.identity = name.to_string();
        Ok(((), Vec::new()))
    }
}
