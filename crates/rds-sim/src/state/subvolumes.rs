//! `/disk btrfs subvolume` (RouterOS 7.18+) and `/file copy` (7.23+): the pool's
//! filesystem as btrfs, with subvolumes as directories and snapshots as copies of them.
//!
//! A subvolume is a directory of the pool (`<pool>/<name>`, also a `/file` item); a
//! snapshot (`parent=`) is a new subvolume holding a copy of the parent's files, shared
//! block by block where the simulator's data directory can (see [`Effect::Copy`]). A
//! read-only subvolume's files can be read, copied and snapshotted, never changed,
//! removed or put under a disk.

use serde::{Deserialize, Serialize};

use super::{BY_NAME, DISK_IMAGE, Effect, Env, FileEntry, FileKind, Outcome, State};
use crate::error::CmdError;

/// `/disk btrfs` exists from RouterOS 7.18.
pub const SUBVOLUMES_SINCE_MINOR: u32 = 18;

/// One `/disk btrfs subvolume` item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subvolume {
    pub id: u64,
    /// Its name; it is mounted at `<pool>/<name>`.
    pub name: String,
    /// The subvolume it is a snapshot of; empty when it was made empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub parent: String,
    pub read_only: bool,
}

/// Typed arguments of `/disk btrfs subvolume add`; `None` = not given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubvolumeArgs {
    /// The filesystem's label (the pool's name).
    pub fs: Option<String>,
    pub name: Option<String>,
    pub parent: Option<String>,
    pub read_only: Option<bool>,
}

impl State {
    /// Where subvolume `name` is mounted, without leading `/`.
    pub fn subvolume_path(&self, name: &str) -> String {
        format!("{}/{name}", self.pool.name)
    }

    pub fn subvolume(&self, id: u64) -> Option<&Subvolume> {
        self.subvolumes.get(id)
    }

    pub fn subvolume_by_name(&self, name: &str) -> Option<&Subvolume> {
        self.subvolumes.named(BY_NAME, name).next()
    }

    /// The subvolume mounted at `path` (without leading `/`), if any.
    pub(super) fn subvolume_at(&self, path: &str) -> Option<&Subvolume> {
        let name = path
            .strip_prefix(self.pool.name.as_str())?
            .strip_prefix('/')?;
        self.subvolume_by_name(name)
    }

    /// The read-only subvolume `path` lies in (or is), if any. Subvolumes are mounted in
    /// the pool's root, so that is the one named by the path's first part in the pool.
    pub(super) fn read_only_subvolume_of(&self, path: &str) -> Option<&Subvolume> {
        let in_pool = path
            .strip_prefix(self.pool.name.as_str())?
            .strip_prefix('/')?;
        let name = in_pool.split('/').next()?;
        self.subvolume_by_name(name).filter(|s| s.read_only)
    }

    /// Refuses a change to `path` inside a read-only subvolume.
    pub(super) fn check_writable(&self, path: &str) -> Result<(), CmdError> {
        match self.read_only_subvolume_of(path) {
            Some(_) => Err(CmdError::failure("read-only file system")),
            None => Ok(()),
        }
    }

    /// `/disk btrfs subvolume add`: an empty subvolume, or with `parent=` a snapshot of one.
    pub fn add_subvolume(&mut self, args: &SubvolumeArgs, env: &Env) -> Outcome<u64> {
        let fs = args
            .fs
            .as_deref()
            .ok_or_else(|| CmdError::MissingArguments("fs".into()))?;
        if fs != self.pool.name {
            return Err(CmdError::NoMatchingValue("fs".into()));
        }
        let name = args
            .name
            .as_deref()
            .ok_or_else(|| CmdError::MissingArguments("name".into()))?;
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(CmdError::InvalidValue("name".into()));
        }
        let path = self.subvolume_path(name);
        if self.subvolume_by_name(name).is_some() || self.file_by_name(&path).is_some() {
            return Err(CmdError::failure("subvolume with such name already exists"));
        }
        let parent = match args.parent.as_deref().filter(|p| !p.is_empty()) {
            Some(parent) => Some(
                self.subvolume_by_name(parent)
                    .ok_or_else(|| CmdError::NoMatchingValue("parent".into()))?
                    .name
                    .clone(),
            ),
            None => None,
        };
        self.check_room(env)?;

        let effect = match &parent {
            Some(parent) => {
                let from = self.subvolume_path(parent);
                self.copy_entries(&from, &path, env.now);
                Effect::Copy { from, to: path }
            }
            None => {
                self.push_file(&path, FileKind::Directory, 0, env.now);
                Effect::CreateDir { path }
            }
        };
        let id = self.next_subvolume_id;
        self.next_subvolume_id += 1;
        self.subvolumes.put(Subvolume {
            id,
            name: name.to_string(),
            parent: parent.unwrap_or_default(),
            read_only: args.read_only.unwrap_or(false),
        });
        Ok((id, vec![effect]))
    }

    /// `/disk btrfs subvolume remove`: the subvolume and every file in it. Refused while a
    /// disk uses one of its files.
    pub fn remove_subvolume(&mut self, id: u64) -> Outcome<()> {
        let subvolume = self.subvolume(id).ok_or(CmdError::NoSuchItem)?;
        let path = self.subvolume_path(&subvolume.name);
        if let Some(disk) = self.disks.under(DISK_IMAGE, &path).next() {
            return Err(CmdError::failure(format!(
                "subvolume is in use by disk {}",
                disk.slot
            )));
        }
        self.subvolumes.remove(id);
        let gone: Vec<u64> = self
            .files
            .named(BY_NAME, &path)
            .chain(self.files.under(BY_NAME, &path))
            .map(|f| f.id)
            .collect();
        for id in gone {
            self.files.remove(id);
        }
        Ok(((), vec![Effect::RemoveTree { path }]))
    }

    /// `/file copy <src> name=<dst>`: a file, or a directory with everything in it.
    pub fn copy_file(&mut self, id: u64, name: &str, env: &Env) -> Outcome<()> {
        let source = self.file(id).ok_or(CmdError::NoSuchItem)?;
        if source.kind == FileKind::Disk {
            return Err(CmdError::failure("can not copy a disk"));
        }
        let from = source.name.clone();
        let to = self.validate_file_path(name)?;
        if self.file_by_name(&to).is_some() {
            return Err(CmdError::failure("file already exists"));
        }
        if to == from || is_under(&to, &from) {
            return Err(CmdError::failure("can not copy a directory into itself"));
        }
        let parent = to.rsplit_once('/').map_or("", |(dir, _)| dir);
        if !matches!(self.file_by_name(parent), Some(f) if f.kind != FileKind::File) {
            return Err(CmdError::failure("no such directory"));
        }
        self.check_writable(&to)?;
        self.check_room(env)?;
        self.copy_entries(&from, &to, env.now);
        Ok(((), vec![Effect::Copy { from, to }]))
    }

    /// `/file` items for a copy of `from` (and what lies under it) at `to`.
    fn copy_entries(&mut self, from: &str, to: &str, now: u64) {
        let copies: Vec<(String, FileKind, u64)> = self
            .files
            .named(BY_NAME, from)
            .chain(self.files.under(BY_NAME, from))
            .map(|f: &FileEntry| {
                let kind = match f.kind {
                    FileKind::Disk => FileKind::Directory,
                    kind => kind,
                };
                (format!("{to}{}", &f.name[from.len()..]), kind, f.size)
            })
            .collect();
        for (name, kind, size) in copies {
            self.push_file(&name, kind, size, now);
        }
    }
}

/// Whether `path` lies strictly inside directory `dir`.
fn is_under(path: &str, dir: &str) -> bool {
    path.strip_prefix(dir)
        .is_some_and(|rest| rest.starts_with('/'))
}
