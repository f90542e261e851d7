//! Device nodes for block volumes, and removal of publish/stage paths that is safe by
//! construction: nothing here removes a path that is still a mount point, nothing removes a
//! tree (no `remove_dir_all`), and a dead mount is reported, not deleted.

use std::fs::FileType;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{FileType as NodeType, Mode};
use tokio::time::Instant;

use crate::blocking::run_blocking;
use crate::mountinfo::MountTable;
use crate::mountpoint::{MountState, mount_state};
use crate::{DeviceNumber, Error, Result};

/// Permissions of the block device nodes we create (what udev gives disks).
const BLOCK_NODE_MODE: u32 = 0o660;

pub(crate) fn describe(kind: &FileType) -> &'static str {
    if kind.is_block_device() {
        "a block device"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symlink"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// What is at a path where a block device node is expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeState {
    Missing,
    /// A block device node for exactly the expected device.
    Matches,
    /// A block device node for another device.
    OtherDevice(DeviceNumber),
    /// Something that is not a block device node at all.
    NotABlockDevice(&'static str),
}

/// Inspects `path` without following a symlink there.
pub fn inspect_block_node(path: &Path, expected: DeviceNumber) -> Result<NodeState> {
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(NodeState::Missing),
        Err(error) => Err(Error::io("lstat", path, error)),
        Ok(meta) if !meta.file_type().is_block_device() => {
            Ok(NodeState::NotABlockDevice(describe(&meta.file_type())))
        }
        Ok(meta) => {
            let found = DeviceNumber::from_raw(meta.rdev());
            Ok(if found == expected {
                NodeState::Matches
            } else {
                NodeState::OtherDevice(found)
            })
        }
    }
}

/// Outcome of [`create_block_node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The same node was already there (a retried publish).
    AlreadyPresent,
}

fn unexpected(path: &Path, expected: DeviceNumber, state: &NodeState) -> Error {
    Error::UnexpectedNode {
        path: path.to_path_buf(),
        expected: format!("block device {expected}"),
        found: match state {
            NodeState::OtherDevice(other) => format!("block device {other}"),
            NodeState::NotABlockDevice(kind) => (*kind).to_owned(),
            NodeState::Missing | NodeState::Matches => "nothing".to_owned(),
        },
    }
}

/// Creates a block device node at `path` for `device` (mode 0660). This is how a block volume
/// is published: a node with the device's number, not a bind mount of `/dev/...`, which under
/// bidirectional propagation multiplies into a mount storm. An existing node for the same
/// device is accepted; anything else at the path is an error and left alone.
pub async fn create_block_node(
    path: &Path,
    device: DeviceNumber,
    deadline: Instant,
) -> Result<Created> {
    let path = path.to_path_buf();
    let op = format!("creating device node {}", path.display());
    run_blocking(&op, deadline, move || {
        match inspect_block_node(&path, device)? {
            NodeState::Matches => return Ok(Created::AlreadyPresent),
            NodeState::Missing => {}
            other => return Err(unexpected(&path, device, &other)),
        }
        let made = rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            NodeType::BlockDevice,
            Mode::from_raw_mode(BLOCK_NODE_MODE),
            device.to_raw(),
        );
        match made {
            Ok(()) => {
                // mknod applies the umask; set the mode we mean.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(BLOCK_NODE_MODE))
                    .map_err(|e| Error::io("chmod", &path, e))?;
                Ok(Created::Created)
            }
            // Lost a race with a concurrent identical publish: judge what won.
            Err(rustix::io::Errno::EXIST) => match inspect_block_node(&path, device)? {
                NodeState::Matches => Ok(Created::AlreadyPresent),
                other => Err(unexpected(&path, device, &other)),
            },
            Err(errno) => Err(Error::io("mknod", &path, errno.into())),
        }
    })
    .await
}

/// Outcome of the removal helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    Removed,
    AlreadyAbsent,
}

/// Fails unless `path` exists and is not a mount point (or does not exist at all).
async fn require_unmounted(path: &Path, table: &MountTable, deadline: Instant) -> Result<bool> {
    match mount_state(path, table, deadline).await? {
        MountState::Missing => Ok(false),
        MountState::NotMounted => Ok(true),
        MountState::Mounted => Err(Error::IsMountPoint {
            path: path.to_path_buf(),
        }),
        MountState::Stale { errno } => Err(Error::StaleMount {
            path: path.to_path_buf(),
            source: io::Error::from_raw_os_error(errno),
        }),
    }
}

/// Removes the device node at `path` (block or character), after verifying that it is not a
/// mount point. Anything else at the path is an error and left alone.
pub async fn remove_device_node(
    path: &Path,
    table: &MountTable,
    deadline: Instant,
) -> Result<Removed> {
    remove_unmounted_file(
        path,
        table,
        deadline,
        "device node",
        "a device node",
        |meta| {
            let kind = meta.file_type();
            (kind.is_block_device() || kind.is_char_device())
                .then_some(())
                .ok_or_else(|| describe(&kind).to_owned())
        },
    )
    .await
}

/// Removes the empty regular file at `path` (what a bind mount of a device node leaves
/// behind) after verifying that it is not a mount point. A file with content, or anything
/// else, is an error and left alone.
pub async fn remove_empty_file(
    path: &Path,
    table: &MountTable,
    deadline: Instant,
) -> Result<Removed> {
    remove_unmounted_file(
        path,
        table,
        deadline,
        "empty file",
        "an empty file",
        |meta| match (meta.file_type().is_file(), meta.len()) {
            (true, 0) => Ok(()),
            (true, len) => Err(format!("a file of {len} bytes")),
            (false, _) => Err(describe(&meta.file_type()).to_owned()),
        },
    )
    .await
}

/// Unlinks what is at `path` once it is known not to be a mount point and `accept` (given its
/// lstat) says it is the kind of thing expected; otherwise an error naming what was found.
async fn remove_unmounted_file(
    path: &Path,
    table: &MountTable,
    deadline: Instant,
    what: &'static str,
    expected: &'static str,
    accept: fn(&std::fs::Metadata) -> std::result::Result<(), String>,
) -> Result<Removed> {
    if !require_unmounted(path, table, deadline).await? {
        return Ok(Removed::AlreadyAbsent);
    }
    let path = path.to_path_buf();
    let op = format!("removing {what} {}", path.display());
    run_blocking(&op, deadline, move || {
        let meta = match std::fs::symlink_metadata(&path) {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(Removed::AlreadyAbsent);
            }
            Err(error) => return Err(Error::io("lstat", &path, error)),
            Ok(meta) => meta,
        };
        if let Err(found) = accept(&meta) {
            return Err(Error::UnexpectedNode {
                path: path.clone(),
                expected: expected.into(),
                found,
            });
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(Removed::Removed),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Removed::AlreadyAbsent),
            Err(error) => Err(Error::io("unlink", &path, error)),
        }
    })
    .await
}

/// Removes the directory at `path` if it is empty and not a mount point. A non-empty directory
/// is an error: its content may be a volume's data that an unmount failed to hide.
pub async fn remove_empty_dir(
    path: &Path,
    table: &MountTable,
    deadline: Instant,
) -> Result<Removed> {
    if !require_unmounted(path, table, deadline).await? {
        return Ok(Removed::AlreadyAbsent);
    }
    let path = path.to_path_buf();
    let op = format!("removing directory {}", path.display());
    run_blocking(&op, deadline, move || match std::fs::remove_dir(&path) {
        Ok(()) => Ok(Removed::Removed),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Removed::AlreadyAbsent),
        Err(error) => Err(Error::io("rmdir", &path, error)),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    async fn table() -> MountTable {
        crate::mountinfo::read_self_mount_table(soon())
            .await
            .unwrap()
    }

    #[test]
    fn inspection_tells_missing_matching_other_and_wrong_kind() {
        let null = DeviceNumber::new(1, 3);
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            inspect_block_node(&dir.path().join("x"), null).unwrap(),
            NodeState::Missing
        );
        assert_eq!(
            inspect_block_node(dir.path(), null).unwrap(),
            NodeState::NotABlockDevice("a directory")
        );
        // /dev/null is a character device: not acceptable where a block node is expected.
        assert_eq!(
            inspect_block_node(Path::new("/dev/null"), null).unwrap(),
            NodeState::NotABlockDevice("a character device")
        );
    }

    #[tokio::test]
    async fn removes_an_empty_directory_and_reports_absence_after() {
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("target");
        std::fs::create_dir(&target).unwrap();
        let table = table().await;
        assert_eq!(
            remove_empty_dir(&target, &table, soon()).await.unwrap(),
            Removed::Removed
        );
        assert!(!target.exists());
        assert_eq!(
            remove_empty_dir(&target, &table, soon()).await.unwrap(),
            Removed::AlreadyAbsent
        );
    }

    #[tokio::test]
    async fn never_removes_a_non_empty_directory() {
        let parent = tempfile::tempdir().unwrap();
        let target = parent.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("data"), b"precious").unwrap();
        let result = remove_empty_dir(&target, &table().await, soon()).await;
        assert!(
            matches!(result, Err(Error::Io { op: "rmdir", .. })),
            "{result:?}"
        );
        assert_eq!(std::fs::read(target.join("data")).unwrap(), b"precious");
    }

    #[tokio::test]
    async fn device_node_removal_refuses_regular_files() {
        let parent = tempfile::tempdir().unwrap();
        let file = parent.path().join("not-a-node");
        std::fs::write(&file, b"data").unwrap();
        let result = remove_device_node(&file, &table().await, soon()).await;
        assert!(
            matches!(result, Err(Error::UnexpectedNode { .. })),
            "{result:?}"
        );
        assert!(file.exists());
    }

    #[tokio::test]
    async fn only_an_empty_file_is_removed_as_one() {
        let parent = tempfile::tempdir().unwrap();
        let (empty, full) = (parent.path().join("empty"), parent.path().join("full"));
        std::fs::write(&empty, b"").unwrap();
        std::fs::write(&full, b"data").unwrap();
        let table = table().await;
        assert_eq!(
            remove_empty_file(&empty, &table, soon()).await.unwrap(),
            Removed::Removed
        );
        assert!(!empty.exists());
        let result = remove_empty_file(&full, &table, soon()).await;
        assert!(
            matches!(result, Err(Error::UnexpectedNode { .. })),
            "{result:?}"
        );
        assert_eq!(std::fs::read(&full).unwrap(), b"data");
        let result = remove_empty_file(parent.path(), &table, soon()).await;
        assert!(
            matches!(result, Err(Error::UnexpectedNode { .. })),
            "{result:?}"
        );
    }

    #[tokio::test]
    async fn mount_points_are_never_removed() {
        // /proc is a mount point in every test environment; removal must stop at the check.
        let result = remove_empty_dir(Path::new("/proc"), &table().await, soon()).await;
        assert!(
            matches!(result, Err(Error::IsMountPoint { .. })),
            "{result:?}"
        );
    }
}
