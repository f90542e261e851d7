//! `/disk` operations and NVMe/TCP exports.

use std::sync::Arc;

use super::{
    DEFAULT_NVME_PORT, Disk, DiskArgs, DiskKind, Effect, Env, ExportSpec, FileKind, MAX_NQN_BYTES,
    Outcome, State,
};
use crate::error::CmdError;
use crate::version::RouterOsVersion;

impl State {
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

    pub(super) fn disk_index(&self, id: u64) -> Result<usize, CmdError> {
        self.disks
            .iter()
            .position(|d| d.id == id)
            .ok_or(CmdError::NoSuchItem)
    }

    pub(super) fn disk_using_file(&self, path: &str) -> Option<&Disk> {
        self.disks
            .iter()
            .map(Arc::as_ref)
            .find(|d| matches!(&d.kind, DiskKind::File { path: p, .. } if p == path))
    }

    /// The export `disk` would have, after checking that its NQN is usable
    /// and not exported by another disk. `None` when not exported.
    pub(super) fn checked_export(
        &self,
        disk: &Disk,
        env: &Env,
    ) -> Result<Option<ExportSpec>, CmdError> {
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
