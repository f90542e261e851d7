//! `/file` operations and file paths.

use super::{BY_NAME, Effect, FileKind, Outcome, State};
use crate::error::CmdError;

impl State {
    /// `/file remove` on one item.
    pub fn remove_file(&mut self, id: u64) -> Outcome<()> {
        let file = self.file(id).ok_or(CmdError::NoSuchItem)?;
        if self.subvolume_at(&file.name).is_some() {
            return Err(CmdError::failure(
                "is a subvolume: remove it with /disk btrfs subvolume remove",
            ));
        }
        self.check_writable(&file.name)?;
        let effect = match file.kind {
            FileKind::Disk => return Err(CmdError::failure("can not remove a mounted disk")),
            FileKind::Directory => {
                if self.files.under(BY_NAME, &file.name).next().is_some() {
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
        self.files.remove(id);
        Ok(((), vec![effect]))
    }

    /// Normalises a `file-path` argument: accepts `POOL/...` with or without
    /// a leading `/`, rejects anything outside the pool or with `.`/`..` parts.
    pub(super) fn validate_file_path(&self, raw: &str) -> Result<String, CmdError> {
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
    pub(super) fn create_parent_dirs(&mut self, path: &str, now: u64) -> Vec<Effect> {
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
}
