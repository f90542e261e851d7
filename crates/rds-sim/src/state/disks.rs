//! `/disk` operations.

use super::{
    BY_NAME, DEFAULT_NVME_PORT, DISK_IMAGE, DISK_SLOT, Disk, DiskArgs, DiskKind, Effect, Env,
    FileKind, NamespaceIds, Outcome, State,
};
use crate::error::CmdError;
use crate::quirks::Quirk;

impl State {
    /// `/disk add`. Returns the new item's id.
    pub fn add_disk(&mut self, args: &DiskArgs, env: &Env) -> Outcome<u64> {
        let id = self.next_disk_id;
        self.with_export_changes(id, env, |state| state.add_file_disk(args, env))
    }

    fn add_file_disk(&mut self, args: &DiskArgs, env: &Env) -> Outcome<u64> {
        let merged;
        let args = match &args.copy_from {
            Some(reference) => {
                merged = self.copied_defaults(reference)?.overlaid_with(args);
                &merged
            }
            None => args,
        };
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
        self.check_writable(&path)?;
        let slot = match &args.slot {
            Some(slot) => slot.clone(),
            None => default_slot(&path),
        };
        if slot.is_empty() {
            return Err(CmdError::InvalidValue("slot".into()));
        }
        self.check_slot_free(&slot, None, env)?;

        let (size, new_file) = match self.file_by_name(&path) {
            Some(existing) => {
                if existing.kind != FileKind::File {
                    return Err(CmdError::failure("invalid file path"));
                }
                let adopt = env.quirks.has(Quirk::ReuseExistingFile);
                let in_use = self.disk_using_file(&path).is_some();
                if !adopt && (args.file_size.is_some() || in_use) {
                    return Err(CmdError::failure("file already exists"));
                }
                // Re-attaching a kept image (e.g. after `/disk remove`), or adopting any
                // existing file as it is: its size, its data.
                (existing.size, false)
            }
            None => {
                let size = args.file_size.ok_or_else(|| {
                    CmdError::failure("file-size is required to create a new file")
                })?;
                if size == 0 {
                    return Err(CmdError::InvalidValue("file-size".into()));
                }
                self.check_room(env)?;
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
            namespace: NamespaceIds::random(),
        };
        apply_settings(&mut disk, args);
        self.checked_export(&disk, env)?;

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
        let id = self.take_disk_id();
        self.disks.put(disk);
        Ok((id, effects))
    }

    /// `/disk set` on one item.
    pub fn set_disk(&mut self, id: u64, args: &DiskArgs, env: &Env) -> Outcome<()> {
        self.with_export_changes(id, env, |state| state.set_disk_settings(id, args, env))
    }

    fn set_disk_settings(&mut self, id: u64, args: &DiskArgs, env: &Env) -> Outcome<()> {
        let old = self.disk(id).ok_or(CmdError::NoSuchItem)?;
        if old.kind == DiskKind::Raid && !only_comment(args) {
            return Err(CmdError::failure(
                "only comment can be changed on the pool's raid disk in the simulator",
            ));
        }
        if let Some(slot) = &args.slot {
            if slot.is_empty() {
                return Err(CmdError::InvalidValue("slot".into()));
            }
            self.check_slot_free(slot, Some(id), env)?;
        }

        let mut new = Disk::clone(old);
        apply_settings(&mut new, args);
        let mut effects = Vec::new();
        let mut grown = false;
        if let (Some(wanted), DiskKind::File { path, size, .. }) = (args.file_size, &mut new.kind) {
            if wanted < *size {
                return Err(CmdError::failure("file-size can not be reduced"));
            }
            if wanted > *size {
                self.check_room(env)?;
                effects.push(Effect::ResizeFile {
                    path: path.clone(),
                    from: *size,
                    to: wanted,
                });
                *size = wanted;
                grown = true;
            }
        }
        self.checked_export(&new, env)?;

        // Validation is over; from here on the state changes.
        if let (true, DiskKind::File { path, size, .. }) = (grown, &new.kind)
            && let Some(file) = self.files.ids_named(BY_NAME, path).first().copied()
        {
            self.files.update(file, |file| {
                file.size = *size;
                file.modified = env.now;
            });
        }
        self.disks.put(new);
        Ok(((), effects))
    }

    /// `/disk remove` on one item. The backing file stays (as on RouterOS).
    pub fn remove_disk(&mut self, id: u64, env: &Env) -> Outcome<()> {
        self.with_export_changes(id, env, |state| {
            let disk = state.disk(id).ok_or(CmdError::NoSuchItem)?;
            if disk.kind == DiskKind::Raid {
                return Err(CmdError::failure("disk is in use"));
            }
            state.disks.remove(id);
            Ok(((), Vec::new()))
        })
    }

    /// Refuses a slot another disk (not `id`) has, unless slots may repeat (quirk).
    fn check_slot_free(&self, slot: &str, id: Option<u64>, env: &Env) -> Result<(), CmdError> {
        let taken = self
            .disks
            .ids_named(DISK_SLOT, slot)
            .iter()
            .any(|&other| Some(other) != id);
        if taken && !env.quirks.has(Quirk::DuplicateSlots) {
            return Err(CmdError::failure(format!(
                "disk with slot {slot} already exists"
            )));
        }
        Ok(())
    }

    /// `copy-from=`: the properties of the item `reference` names (`*ID` or slot) as the
    /// defaults of a new item. Properties only, as RouterOS documents the argument: a file
    /// disk made this way gets a new, empty image, never a copy of the source's data.
    fn copied_defaults(&self, reference: &str) -> Result<DiskArgs, CmdError> {
        let source = crate::records::parse_id(reference)
            .and_then(|id| self.disk(id))
            .or_else(|| self.disk_by_slot(reference))
            .ok_or(CmdError::NoSuchItem)?;
        let DiskKind::File { path, size, offset } = &source.kind else {
            return Err(CmdError::failure("can not copy from this disk"));
        };
        Ok(DiskArgs {
            disk_type: Some("file".into()),
            slot: Some(source.slot.clone()),
            comment: Some(source.comment.clone()),
            file_path: Some(path.clone()),
            file_size: Some(*size),
            file_offset: Some(*offset),
            mount_filesystem: Some(source.mount_filesystem),
            mount_read_only: Some(source.mount_read_only),
            nvme_tcp_export: Some(source.nvme_tcp_export),
            nvme_tcp_server_port: Some(source.nvme_tcp_server_port),
            nvme_tcp_server_nqn: Some(source.nvme_tcp_server_nqn.clone()).filter(|n| !n.is_empty()),
            nvme_tcp_server_allow_host_name: Some(source.nvme_tcp_server_allow_host_name.clone()),
            iscsi_export: Some(source.iscsi_export),
            nfs_sharing: Some(source.nfs_sharing),
            smb_sharing: Some(source.smb_sharing),
            media_sharing: Some(source.media_sharing),
            swap: Some(source.swap),
            copy_from: None,
        })
    }

    pub(super) fn disk_using_file(&self, path: &str) -> Option<&Disk> {
        self.disks.named(DISK_IMAGE, path).next()
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

impl DiskArgs {
    /// These arguments over `self` as defaults: a given argument wins.
    fn overlaid_with(self, given: &DiskArgs) -> DiskArgs {
        fn pick<T: Clone>(given: &Option<T>, default: Option<T>) -> Option<T> {
            given.clone().or(default)
        }
        DiskArgs {
            disk_type: pick(&given.disk_type, self.disk_type),
            slot: pick(&given.slot, self.slot),
            comment: pick(&given.comment, self.comment),
            file_path: pick(&given.file_path, self.file_path),
            file_size: pick(&given.file_size, self.file_size),
            file_offset: pick(&given.file_offset, self.file_offset),
            mount_filesystem: pick(&given.mount_filesystem, self.mount_filesystem),
            mount_read_only: pick(&given.mount_read_only, self.mount_read_only),
            nvme_tcp_export: pick(&given.nvme_tcp_export, self.nvme_tcp_export),
            nvme_tcp_server_port: pick(&given.nvme_tcp_server_port, self.nvme_tcp_server_port),
            nvme_tcp_server_nqn: pick(&given.nvme_tcp_server_nqn, self.nvme_tcp_server_nqn),
            nvme_tcp_server_allow_host_name: pick(
                &given.nvme_tcp_server_allow_host_name,
                self.nvme_tcp_server_allow_host_name,
            ),
            iscsi_export: pick(&given.iscsi_export, self.iscsi_export),
            nfs_sharing: pick(&given.nfs_sharing, self.nfs_sharing),
            smb_sharing: pick(&given.smb_sharing, self.smb_sharing),
            media_sharing: pick(&given.media_sharing, self.media_sharing),
            swap: pick(&given.swap, self.swap),
            copy_from: None,
        }
    }
}
