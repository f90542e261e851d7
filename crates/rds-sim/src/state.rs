//! The device's state model and the operations on it.
//!
//! Everything here is pure: an operation validates, changes the in-memory
//! state and returns the side effects (backing files, NVMe exports) it
//! needs. [`crate::device::Device`] performs those effects, rolls back on
//! failure and persists the result.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::CmdError;
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
    /// `/disk` items in id order; the pool's RAID entry is one of them. Shared so that the
    /// copies every mutation takes (for rollback and for the save) cost a reference count
    /// per item, not a deep copy.
    pub disks: Vec<Arc<Disk>>,
    /// `/file` items in id order.
    pub files: Vec<Arc<FileEntry>>,
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
}

/// Inputs an operation needs besides the state.
#[derive(Debug, Clone)]
pub struct Env {
    pub version: RouterOsVersion,
    /// Unix seconds, for `last-modified`.
    pub now: u64,
    /// Fault: report no free space in the pool.
    pub pool_full: bool,
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
    Export(ExportSpec),
    Unexport(ExportSpec),
    /// Tell NVMe hosts the namespace changed size.
    Revalidate(ExportSpec),
}

impl Effect {
    /// The effect that undoes this one, when there is one.
    pub fn inverse(&self) -> Option<Effect> {
        Some(match self {
            Effect::CreateDir { path } => Effect::RemoveDir { path: path.clone() },
            Effect::CreateFile { path, .. } => Effect::RemoveFile { path: path.clone() },
            Effect::ResizeFile { path, from, to } => Effect::ResizeFile {
                path: path.clone(),
                from: *to,
                to: *from,
            },
            Effect::Export(spec) => Effect::Unexport(spec.clone()),
            Effect::Unexport(spec) => Effect::Export(spec.clone()),
            Effect::RemoveDir { .. } | Effect::RemoveFile { .. } | Effect::Revalidate(_) => {
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
            disks: Vec::new(),
            files: Vec::new(),
            pool: pool.clone(),
        };
        let id = state.take_disk_id();
        state.disks.push(Arc::new(Disk {
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
        }));
        state.push_file(&pool.name, FileKind::Disk, 0, now);
        state
    }

    fn take_disk_id(&mut self) -> u64 {
        let id = self.next_disk_id;
        self.next_disk_id += 1;
        id
    }

    fn push_file(&mut self, name: &str, kind: FileKind, size: u64, now: u64) {
        let id = self.next_file_id;
        self.next_file_id += 1;
        self.files.push(Arc::new(FileEntry {
            id,
            name: name.to_string(),
            kind,
            size,
            modified: now,
        }));
    }

    pub fn disk(&self, id: u64) -> Option<&Disk> {
        self.disks.iter().map(Arc::as_ref).find(|d| d.id == id)
    }

    pub fn disk_by_slot(&self, slot: &str) -> Option<&Disk> {
        self.disks.iter().map(Arc::as_ref).find(|d| d.slot == slot)
    }

    pub fn file(&self, id: u64) -> Option<&FileEntry> {
        self.files.iter().map(Arc::as_ref).find(|f| f.id == id)
    }

    /// A `/file` item by name, with or without leading `/`.
    pub fn file_by_name(&self, name: &str) -> Option<&FileEntry> {
        let name = name.strip_prefix('/').unwrap_or(name);
        self.files.iter().map(Arc::as_ref).find(|f| f.name == name)
    }

    /// Sum of the logical sizes of the files in the pool.
    pub fn pool_used(&self) -> u64 {
        self.files
            .iter()
            .filter(|f| f.kind == FileKind::File)
            .map(|f| f.size)
            .sum()
    }

    /// Free bytes in the pool: capacity minus logical file sizes (0 when the
    /// pool-full fault is on).
    pub fn pool_free(&self, env: &Env) -> u64 {
        if env.pool_full {
            0
        } else {
            self.pool.capacity.saturating_sub(self.pool_used())
        }
    }

    /// The export a disk has when `nvme-tcp-export=yes`, whether or not it is on.
    pub fn export_of(&self, disk: &Disk, version: &RouterOsVersion) -> Option<ExportSpec> {
        let DiskKind::File { path, size, offset } = &disk.kind else {
            return None;
        };
        let nqn = if version.has_server_nqn() && !disk.nvme_tcp_server_nqn.is_empty() {
            disk.nvme_tcp_server_nqn.clone()
        } else {
            disk.slot.clone()
        };
        Some(ExportSpec {
            slot: disk.slot.clone(),
            nqn,
            port: disk.nvme_tcp_server_port,
            file_path: path.clone(),
            size: size.saturating_sub(*offset),
        })
    }

    /// All active exports, in disk order.
    pub fn exports(&self, version: &RouterOsVersion) -> Vec<ExportSpec> {
        self.disks
            .iter()
            .filter(|d| d.nvme_tcp_export)
            .filter_map(|d| self.export_of(d, version))
            .collect()
    }

    /// `/disk add`. Returns the new item's id.
    pub fn add_disk(&mut self, args: &DiskArgs, env: &Env) -> Outcome<u64> {
        let disk_type = args
            .disk_type
            .as_deref()
            .ok_or_else(|| CmdError::MissingArguments("type".into()))?;
        if disk_type != "file" {
            return Err(CmdError::failure(format!(
                "type={disk_type} is not supported by the simulator (only type=file)"
            )));
        }
        let raw_path = args
            .file_path
            .as_deref()
            .ok_or_else(|| CmdError::failure("file-path is required for type=file"))?;
        let path = self.validate_file_path(raw_path)?;
        let slot = match &args.slot {
            Some(slot) => slot.clone(),
            None => default_slot(&path),
        };
        if slot.is_empty() {
            return Err(CmdError::InvalidValue("slot".into()));
        }
        if self.disk_by_slot(&slot).is_some() {
            return Err(CmdError::failure(format!(
                "disk with slot {slot} already exists"
            )));
        }

        let (size, new_file) = match self.file_by_name(&path) {
            Some(existing) => {
                let in_use = self.disk_using_file(&path).is_some();
                if existing.kind != FileKind::File {
                    return Err(CmdError::failure("invalid file path"));
                }
                if args.file_size.is_some() || in_use {
                    return Err(CmdError::failure("file already exists"));
                }
                // Re-attaching a kept image (e.g. after `/disk remove`).
                (existing.size, false)
            }
            None => {
                let size = args.file_size.ok_or_else(|| {
                    CmdError::failure("file-size is required to create a new file")
                })?;
                if size == 0 {
                    return Err(CmdError::InvalidValue("file-size".into()));
                }
                if size > self.pool_free(env) {
                    return Err(self.no_space());
                }
                (size, true)
            }
        };
        let offset = args.file_offset.unwrap_or(0);
        if offset >= size {
            return Err(CmdError::InvalidValue("file-offset".into()));
        }

        let mut disk = Disk {
            id: self.next_disk_id,
            slot,
            comment: String::new(),
            kind: DiskKind::File {
                path: path.clone(),
                size,
                offset,
            },
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
        };
        apply_settings(&mut disk, args);
        let export = self.checked_export(&disk, env)?;

        // Validation is over; from here on the state changes.
        let mut effects = Vec::new();
        if new_file {
            effects.extend(self.create_parent_dirs(&path, env.now));
            effects.push(Effect::CreateFile {
                path: path.clone(),
                size,
            });
            self.push_file(&path, FileKind::File, size, env.now);
        }
        effects.extend(export.map(Effect::Export));
        let id = self.take_disk_id();
        self.disks.push(Arc::new(disk));
        Ok((id, effects))
    }

    /// `/disk set` on one item.
    pub fn set_disk(&mut self, id: u64, args: &DiskArgs, env: &Env) -> Outcome<()> {
        let index = self.disk_index(id)?;
        let old = Arc::clone(&self.disks[index]);
        if old.kind == DiskKind::Raid && !only_comment(args) {
            return Err(CmdError::failure(
                "only comment can be changed on the pool's raid disk in the simulator",
            ));
        }
        if let Some(slot) = &args.slot {
            if slot.is_empty() {
                return Err(CmdError::InvalidValue("slot".into()));
            }
            if self.disks.iter().any(|d| d.slot == *slot && d.id != id) {
                return Err(CmdError::failure(format!(
                    "disk with slot {slot} already exists"
                )));
            }
        }

        let mut new = Disk::clone(&old);
        apply_settings(&mut new, args);
        let mut effects = Vec::new();
        let mut grown_file = None;
        if let (Some(wanted), DiskKind::File { path, size, .. }) = (args.file_size, &mut new.kind) {
            if wanted < *size {
                return Err(CmdError::failure("file-size can not be reduced"));
            }
            if wanted > *size {
                if wanted - *size > self.pool_free(env) {
                    return Err(self.no_space());
                }
                effects.push(Effect::ResizeFile {
                    path: path.clone(),
                    from: *size,
                    to: wanted,
                });
                *size = wanted;
                grown_file = Some(path.clone());
            }
        }

        let before = old
            .nvme_tcp_export
            .then(|| self.export_of(&old, &env.version))
            .flatten();
        // The new settings are checked against the other disks only.
        self.disks.remove(index);
        let after = self.checked_export(&new, env);
        self.disks.insert(index, old);
        let after = after?;

        // Validation is over; from here on the state changes.
        match (before, after) {
            (Some(b), Some(a))
                if b.nqn == a.nqn && b.port == a.port && b.file_path == a.file_path =>
            {
                if grown_file.is_some() {
                    effects.push(Effect::Revalidate(a));
                }
            }
            (before, after) => {
                effects.extend(before.map(Effect::Unexport));
                effects.extend(after.map(Effect::Export));
            }
        }
        if let (Some(path), Some(size)) = (grown_file, args.file_size)
            && let Some(file) = self.files.iter_mut().find(|f| f.name == path)
        {
            let file = Arc::make_mut(file);
            file.size = size;
            file.modified = env.now;
        }
        self.disks[index] = Arc::new(new);
        Ok(((), effects))
    }

    /// `/disk remove` on one item. The backing file stays (as on RouterOS).
    pub fn remove_disk(&mut self, id: u64, env: &Env) -> Outcome<()> {
        let index = self.disk_index(id)?;
        let disk = &self.disks[index];
        if disk.kind == DiskKind::Raid {
            return Err(CmdError::failure("disk is in use"));
        }
        let mut effects = Vec::new();
        if disk.nvme_tcp_export {
            effects.extend(self.export_of(disk, &env.version).map(Effect::Unexport));
        }
        self.disks.remove(index);
        Ok(((), effects))
    }

    /// `/file remove` on one item.
    pub fn remove_file(&mut self, id: u64) -> Outcome<()> {
        let index = self
            .files
            .iter()
            .position(|f| f.id == id)
            .ok_or(CmdError::NoSuchItem)?;
        let file = &self.files[index];
        let effect = match file.kind {
            FileKind::Disk => return Err(CmdError::failure("can not remove a mounted disk")),
            FileKind::Directory => {
                let prefix = format!("{}/", file.name);
                if self.files.iter().any(|f| f.name.starts_with(&prefix)) {
                    return Err(CmdError::failure("directory is not empty"));
                }
                Effect::RemoveDir {
                    path: file.name.clone(),
                }
            }
            FileKind::File => {
                if let Some(disk) = self.disk_using_file(&file.name) {
                    return Err(CmdError::failure(format!(
                        "file is in use by disk {}",
                        disk.slot
                    )));
                }
                Effect::RemoveFile {
                    path: file.name.clone(),
                }
            }
        };
        self.files.remove(index);
        Ok(((), vec![effect]))
    }

    /// `/system identity set name=`.
    pub fn set_identity(&mut self, name: &str) -> Outcome<()> {
        if name.is_empty() {
            return Err(CmdError::InvalidValue("name".into()));
        }
        self.identity = name.to_string();
        Ok(((), Vec::new()))
    }

    fn disk_index(&self, id: u64) -> Result<usize, CmdError> {
        self.disks
            .iter()
            .position(|d| d.id == id)
            .ok_or(CmdError::NoSuchItem)
    }

    fn disk_using_file(&self, path: &str) -> Option<&Disk> {
        self.disks
            .iter()
            .map(Arc::as_ref)
            .find(|d| matches!(&d.kind, DiskKind::File { path: p, .. } if p == path))
    }

    fn no_space(&self) -> CmdError {
        CmdError::failure(format!("not enough free space on {}", self.pool.name))
    }

    /// Normalises a `file-path` argument: accepts `POOL/...` with or without
    /// a leading `/`, rejects anything outside the pool or with `.`/`..` parts.
    fn validate_file_path(&self, raw: &str) -> Result<String, CmdError> {
        let invalid = || CmdError::failure("invalid file path");
        let path = raw.strip_prefix('/').unwrap_or(raw);
        let rest = path
            .strip_prefix(self.pool.name.as_str())
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(invalid)?;
        let bad_part = |p: &str| p.is_empty() || p == "." || p == ".." || p.contains('\0');
        if rest.split('/').any(bad_part) {
            return Err(invalid());
        }
        Ok(path.to_string())
    }

    /// Directory entries (and effects) for the missing parents of `path`.
    fn create_parent_dirs(&mut self, path: &str, now: u64) -> Vec<Effect> {
        let mut effects = Vec::new();
        let mut end = 0;
        while let Some(offset) = path[end..].find('/') {
            end += offset;
            let dir = &path[..end];
            if self.file_by_name(dir).is_none() {
                self.push_file(dir, FileKind::Directory, 0, now);
                effects.push(Effect::CreateDir {
                    path: dir.to_string(),
                });
            }
            end += 1;
        }
        effects
    }

    /// The export `disk` would have, after checking that its NQN is usable
    /// and not exported by another disk. `None` when not exported.
    fn checked_export(&self, disk: &Disk, env: &Env) -> Result<Option<ExportSpec>, CmdError> {
        if !disk.nvme_tcp_export {
            return Ok(None);
        }
        let spec = self
            .export_of(disk, &env.version)
            .ok_or_else(|| CmdError::failure("only file disks can be exported by the simulator"))?;
        if spec.nqn.len() > MAX_NQN_BYTES
            || spec.nqn.contains('/')
            || spec.nqn.chars().any(char::is_control)
        {
            return Err(CmdError::InvalidValue("nvme-tcp-server-nqn".into()));
        }
        let taken = self
            .exports(&env.version)
            .into_iter()
            .any(|other| other.slot != disk.slot && other.nqn == spec.nqn);
        if taken {
            return Err(CmdError::failure(format!(
                "nqn {} is already exported by another disk",
                spec.nqn
            )));
        }
        Ok(Some(spec))
    }
}

/// The slot RouterOS derives from a file path: `file-` + path with `/` → `-`.
fn default_slot(path: &str) -> String {
    format!("file-{}", path.replace('/', "-"))
}

fn only_comment(args: &DiskArgs) -> bool {
    let comment = args.comment.clone();
    *args
        == DiskArgs {
            comment,
            ..DiskArgs::default()
        }
}

/// Copies the settable properties given in `args` onto `disk`.
fn apply_settings(disk: &mut Disk, args: &DiskArgs) {
    fn set<T: Clone>(target: &mut T, value: &Option<T>) {
        if let Some(v) = value {
            *target = v.clone();
        }
    }
    set(&mut disk.slot, &args.slot);
    set(&mut disk.comment, &args.comment);
    set(&mut disk.mount_filesystem, &args.mount_filesystem);
    set(&mut disk.mount_read_only, &args.mount_read_only);
    set(&mut disk.nvme_tcp_export, &args.nvme_tcp_export);
    set(&mut disk.nvme_tcp_server_port, &args.nvme_tcp_server_port);
    set(&mut disk.nvme_tcp_server_nqn, &args.nvme_tcp_server_nqn);
    set(
        &mut disk.nvme_tcp_server_allow_host_name,
        &args.nvme_tcp_server_allow_host_name,
    );
    set(&mut disk.iscsi_export, &args.iscsi_export);
    set(&mut disk.nfs_sharing, &args.nfs_sharing);
    set(&mut disk.smb_sharing, &args.smb_sharing);
    set(&mut disk.media_sharing, &args.media_sharing);
    set(&mut disk.swap, &args.swap);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const GIB: u64 = 1 << 30;

    pub(crate) fn env() -> Env {
        Env {
            version: RouterOsVersion::default(),
            now: 1_762_871_561,
            pool_full: false,
        }
    }

    pub(crate) fn fresh() -> State {
        State::new(
            PoolSettings {
                name: "storage-pool".into(),
                capacity: 100 * GIB,
            },
            "rds-sim",
            1_762_871_000,
        )
    }

    pub(crate) fn file_args(slot: &str, size: u64) -> DiskArgs {
        DiskArgs {
            disk_type: Some("file".into()),
            slot: Some(slot.into()),
            file_path: Some(format!("storage-pool/{slot}.img")),
            file_size: Some(size),
            mount_filesystem: Some(false),
            nvme_tcp_export: Some(true),
            nvme_tcp_server_port: Some(4420),
            nvme_tcp_server_nqn: Some(format!("nqn.2000-02.com.mikrotik:{slot}")),
            ..DiskArgs::default()
        }
    }

    #[test]
    fn a_fresh_device_has_the_pool_disk_and_mount_point() {
        let state = fresh();
        assert_eq!(state.disks.len(), 1);
        assert_eq!(state.disks[0].id, 1);
        assert_eq!(state.disks[0].kind, DiskKind::Raid);
        assert_eq!(state.disks[0].slot, "storage-pool");
        assert_eq!(state.files[0].name, "storage-pool");
        assert_eq!(state.files[0].kind, FileKind::Disk);
        assert_eq!(state.pool_free(&env()), 100 * GIB);
    }

    #[test]
    fn add_creates_file_and_export() {
        let mut state = fresh();
        let (id, effects) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
        assert_eq!(id, 2);
        let spec = ExportSpec {
            slot: "pvc-1".into(),
            nqn: "nqn.2000-02.com.mikrotik:pvc-1".into(),
            port: 4420,
            file_path: "storage-pool/pvc-1.img".into(),
            size: GIB,
        };
        assert_eq!(
            effects,
            vec![
                Effect::CreateFile {
                    path: "storage-pool/pvc-1.img".into(),
                    size: GIB
                },
                Effect::Export(spec.clone()),
            ]
        );
        assert_eq!(state.exports(&env().version), vec![spec]);
        assert_eq!(state.pool_free(&env()), 99 * GIB);
        let file = state.file_by_name("/storage-pool/pvc-1.img").unwrap();
        assert_eq!(
            (file.kind, file.size, file.modified),
            (FileKind::File, GIB, env().now)
        );
        assert!(!state.disk(id).unwrap().mount_filesystem);
    }

    #[test]
    fn add_creates_missing_directories() {
        let mut state = fresh();
        let mut args = file_args("x", GIB);
        args.file_path = Some("/storage-pool/a/b/x.img".into());
        let (_, effects) = state.add_disk(&args, &env()).unwrap();
        assert_eq!(
            effects[0],
            Effect::CreateDir {
                path: "storage-pool/a".into()
            }
        );
        assert_eq!(
            effects[1],
            Effect::CreateDir {
                path: "storage-pool/a/b".into()
            }
        );
        assert_eq!(
            state.file_by_name("storage-pool/a/b").unwrap().kind,
            FileKind::Directory
        );
    }

    #[test]
    fn add_rejects_duplicates_bad_paths_and_oversize() {
        let mut state = fresh();
        state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
        let before = state.clone();

        let err = state
            .add_disk(&file_args("pvc-1", GIB), &env())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "failure: disk with slot pvc-1 already exists"
        );

        let mut same_file = file_args("pvc-2", GIB);
        same_file.file_path = Some("storage-pool/pvc-1.img".into());
        same_file.nvme_tcp_server_nqn = None;
        let err = state.add_disk(&same_file, &env()).unwrap_err();
        assert_eq!(err.to_string(), "failure: file already exists");

        for bad in [
            "other/x.img",
            "storage-poolx/x.img",
            "storage-pool/../x.img",
            "storage-pool//x",
            "storage-pool/",
            "storage-pool",
        ] {
            let mut args = file_args("pvc-3", GIB);
            args.file_path = Some(bad.into());
            let err = state.add_disk(&args, &env()).unwrap_err();
            assert_eq!(err.to_string(), "failure: invalid file path", "{bad}");
        }

        let err = state
            .add_disk(&file_args("big", 100 * GIB), &env())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "failure: not enough free space on storage-pool"
        );

        let mut no_type = file_args("t", GIB);
        no_type.disk_type = None;
        assert_eq!(
            state.add_disk(&no_type, &env()).unwrap_err(),
            CmdError::MissingArguments("type".into())
        );

        let mut dup_nqn = file_args("pvc-4", GIB);
        dup_nqn.nvme_tcp_server_nqn = Some("nqn.2000-02.com.mikrotik:pvc-1".into());
        assert!(
            state
                .add_disk(&dup_nqn, &env())
                .unwrap_err()
                .to_string()
                .contains("already exported")
        );
        // Failed operations leave the state as it was (the caller restores
        // on error, but these fail before touching anything).
        assert_eq!(state, before);
    }

    #[test]
    fn pool_full_fault_blocks_adds() {
        let mut state = fresh();
        let env = Env {
            pool_full: true,
            ..env()
        };
        assert_eq!(state.pool_free(&env), 0);
        let err = state.add_disk(&file_args("pvc-1", 1), &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "failure: not enough free space on storage-pool"
        );
    }

    #[test]
    fn default_slot_derives_from_the_path() {
        let mut state = fresh();
        let mut args = file_args("unused", GIB);
        args.slot = None;
        args.nvme_tcp_export = Some(false);
        let (id, _) = state.add_disk(&args, &env()).unwrap();
        assert_eq!(state.disk(id).unwrap().slot, "file-storage-pool-unused.img");
    }

    #[test]
    fn grow_resizes_and_revalidates_but_never_shrinks() {
        let mut state = fresh();
        let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
        let grow = DiskArgs {
            file_size: Some(2 * GIB),
            ..DiskArgs::default()
        };
        let ((), effects) = state.set_disk(id, &grow, &env()).unwrap();
        assert_eq!(
            effects[0],
            Effect::ResizeFile {
                path: "storage-pool/pvc-1.img".into(),
                from: GIB,
                to: 2 * GIB
            }
        );
        assert!(matches!(&effects[1], Effect::Revalidate(spec) if spec.size == 2 * GIB));
        assert_eq!(
            state.file_by_name("storage-pool/pvc-1.img").unwrap().size,
            2 * GIB
        );

        let same = state.set_disk(id, &grow, &env()).unwrap();
        assert!(same.1.is_empty());

        let shrink = DiskArgs {
            file_size: Some(GIB),
            ..DiskArgs::default()
        };
        assert_eq!(
            state.set_disk(id, &shrink, &env()).unwrap_err().to_string(),
            "failure: file-size can not be reduced"
        );
        let huge = DiskArgs {
            file_size: Some(200 * GIB),
            ..DiskArgs::default()
        };
        assert!(
            state
                .set_disk(id, &huge, &env())
                .unwrap_err()
                .to_string()
                .contains("not enough free space")
        );
    }

    #[test]
    fn set_export_toggles_and_rename_reexports() {
        let mut state = fresh();
        let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
        let off = DiskArgs {
            nvme_tcp_export: Some(false),
            ..DiskArgs::default()
        };
        let ((), effects) = state.set_disk(id, &off, &env()).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::Unexport(_)]));
        assert!(state.exports(&env().version).is_empty());

        let on_new_port = DiskArgs {
            nvme_tcp_export: Some(true),
            nvme_tcp_server_port: Some(4421),
            ..DiskArgs::default()
        };
        let ((), effects) = state.set_disk(id, &on_new_port, &env()).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::Export(s)] if s.port == 4421));

        let new_nqn = DiskArgs {
            nvme_tcp_server_nqn: Some("nqn.x:y".into()),
            ..DiskArgs::default()
        };
        let ((), effects) = state.set_disk(id, &new_nqn, &env()).unwrap();
        assert!(
            matches!(effects.as_slice(), [Effect::Unexport(a), Effect::Export(b)] if a.nqn != b.nqn && b.nqn == "nqn.x:y")
        );
    }

    #[test]
    fn before_7_21_the_nqn_is_the_slot() {
        let mut state = fresh();
        let env = Env {
            version: "7.20.1".parse().unwrap(),
            ..env()
        };
        let mut args = file_args("pvc-1", GIB);
        args.nvme_tcp_server_nqn = None;
        let (_, effects) = state.add_disk(&args, &env).unwrap();
        assert!(matches!(&effects[1], Effect::Export(s) if s.nqn == "pvc-1"));
    }

    #[test]
    fn remove_disk_keeps_the_file_and_ids_are_not_reused() {
        let mut state = fresh();
        let (id, _) = state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
        let ((), effects) = state.remove_disk(id, &env()).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::Unexport(_)]));
        assert!(state.disk(id).is_none());
        let file = state
            .file_by_name("storage-pool/pvc-1.img")
            .unwrap()
            .clone();
        assert_eq!(
            state.pool_free(&env()),
            99 * GIB,
            "the kept image still uses space"
        );

        // Re-attach the kept image without a size.
        let mut again = file_args("pvc-1", GIB);
        again.file_size = None;
        let (id2, effects) = state.add_disk(&again, &env()).unwrap();
        assert!(id2 > id);
        assert!(matches!(effects.as_slice(), [Effect::Export(_)]));

        assert!(
            state
                .remove_file(file.id)
                .unwrap_err()
                .to_string()
                .starts_with("failure: file is in use")
        );
        state.remove_disk(id2, &env()).unwrap();
        let ((), effects) = state.remove_file(file.id).unwrap();
        assert_eq!(
            effects,
            vec![Effect::RemoveFile {
                path: "storage-pool/pvc-1.img".into()
            }]
        );
        assert_eq!(state.pool_free(&env()), 100 * GIB);
        assert_eq!(
            state.remove_file(file.id).unwrap_err(),
            CmdError::NoSuchItem
        );
        assert_eq!(
            state.remove_disk(id2, &env()).unwrap_err(),
            CmdError::NoSuchItem
        );
    }

    #[test]
    fn the_pool_is_protected() {
        let mut state = fresh();
        assert_eq!(
            state.remove_disk(1, &env()).unwrap_err().to_string(),
            "failure: disk is in use"
        );
        assert!(state.remove_file(1).is_err());
        let grow = DiskArgs {
            file_size: Some(1),
            ..DiskArgs::default()
        };
        assert!(state.set_disk(1, &grow, &env()).is_err());
        let comment = DiskArgs {
            comment: Some("main pool".into()),
            ..DiskArgs::default()
        };
        state.set_disk(1, &comment, &env()).unwrap();
        assert_eq!(state.disks[0].comment, "main pool");
    }

    #[test]
    fn directories_must_be_empty_to_remove() {
        let mut state = fresh();
        let mut args = file_args("x", GIB);
        args.file_path = Some("storage-pool/d/x.img".into());
        args.nvme_tcp_export = Some(false);
        let (id, _) = state.add_disk(&args, &env()).unwrap();
        let dir = state.file_by_name("storage-pool/d").unwrap().id;
        assert_eq!(
            state.remove_file(dir).unwrap_err().to_string(),
            "failure: directory is not empty"
        );
        state.remove_disk(id, &env()).unwrap();
        let img = state.file_by_name("storage-pool/d/x.img").unwrap().id;
        state.remove_file(img).unwrap();
        let ((), effects) = state.remove_file(dir).unwrap();
        assert_eq!(
            effects,
            vec![Effect::RemoveDir {
                path: "storage-pool/d".into()
            }]
        );
    }

    #[test]
    fn effects_have_inverses_where_undo_is_possible() {
        let spec = ExportSpec {
            slot: "s".into(),
            nqn: "n".into(),
            port: 1,
            file_path: "p".into(),
            size: 1,
        };
        assert_eq!(
            Effect::Export(spec.clone()).inverse(),
            Some(Effect::Unexport(spec.clone()))
        );
        assert_eq!(
            Effect::ResizeFile {
                path: "p".into(),
                from: 1,
                to: 2
            }
            .inverse(),
            Some(Effect::ResizeFile {
                path: "p".into(),
                from: 2,
                to: 1
            })
        );
        assert_eq!(Effect::RemoveFile { path: "p".into() }.inverse(), None);
    }

    #[test]
    fn state_round_trips_through_json() {
        let mut state = fresh();
        state.add_disk(&file_args("pvc-1", GIB), &env()).unwrap();
        let text = serde_json::to_string(&state).unwrap();
        let back: State = serde_json::from_str(&text).unwrap();
        assert_eq!(back, state);
    }
}
