//! Looking at paths on the node: what `lstat` shows, and which published block device nodes
//! point at a device. Every look has a deadline, since a
//! path below a dead mount can block `stat` for as long as the mount is dead.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use mounts::DeviceNumber;
use mounts::blocking::run_blocking;
use mounts::devnode::{NodeState, inspect_block_node};
use mounts::mountpoint::MountState;
use tokio::time::Instant;

use super::error::{NodeError, Result};
use super::rules::PathKind;

/// What `lstat` shows at `path`.
pub async fn path_kind(path: &Path, deadline: Instant) -> Result<PathKind> {
    let path = path.to_path_buf();
    let op = format!("lstat {}", path.display());
    run_blocking(&op, deadline, move || {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(PathKind::Missing);
            }
            Err(error) => {
                return Err(mounts::Error::Io {
                    op: "lstat",
                    path,
                    source: error,
                });
            }
        };
        let kind = meta.file_type();
        Ok(if kind.is_dir() {
            PathKind::Directory
        } else if kind.is_block_device() {
            PathKind::BlockNode(DeviceNumber::from_raw(meta.rdev()))
        } else if kind.is_char_device() {
            PathKind::CharNode
        } else if kind.is_file() {
            PathKind::File(meta.len())
        } else if kind.is_symlink() {
            PathKind::Symlink
        } else {
            PathKind::Other
        })
    })
    .await
    .map_err(NodeError::Mount)
}

/// Creates the directory `path` and any missing parents.
pub async fn make_dirs(path: &Path, deadline: Instant) -> Result<()> {
    let path = path.to_path_buf();
    let op = format!("mkdir {}", path.display());
    run_blocking(&op, deadline, move || {
        std::fs::create_dir_all(&path).map_err(|source| mounts::Error::Io {
            op: "mkdir",
            path,
            source,
        })
    })
    .await
    .map_err(NodeError::Mount)
}

/// The state of a block device node at `path` for `device`, with its permission bits.
pub async fn block_node(
    path: &Path,
    device: DeviceNumber,
    deadline: Instant,
) -> Result<(NodeState, u32)> {
    let path = path.to_path_buf();
    let op = format!("inspecting {}", path.display());
    run_blocking(&op, deadline, move || {
        let state = inspect_block_node(&path, device)?;
        let mode = match state {
            NodeState::Matches => {
                std::fs::symlink_metadata(&path)
                    .map_err(|source| mounts::Error::Io {
                        op: "lstat",
                        path: path.clone(),
                        source,
                    })?
                    .permissions()
                    .mode()
                    & 0o777
            }
            _ => 0,
        };
        Ok((state, mode))
    })
    .await
    .map_err(NodeError::Mount)
}

/// What `lstat` shows at a path that is not a mount point; a mount point is taken for the
/// directory it must be, without a `stat` that would hang or fail on a dead mount.
pub async fn kind_unless_mounted(
    path: &Path,
    state: MountState,
    deadline: Instant,
) -> Result<PathKind> {
    match state {
        MountState::NotMounted => path_kind(path, deadline).await,
        MountState::Missing => Ok(PathKind::Missing),
        MountState::Mounted | MountState::Stale { .. } => Ok(PathKind::Directory),
    }
}

/// How deep below the publish directory block device nodes are looked for. Kubernetes puts
/// them at `<dir>/publish/<volume>/<pod>` and bind-mounts them at `<dir>/<volume>/dev/<pod>`.
const MAX_DEPTH: usize = 6;
/// A walk that meets more entries than this cannot prove a device unused in bounded time.
const MAX_ENTRIES: usize = 100_000;

/// Block device nodes for `device` below `root`, without following symlinks or entering
/// other filesystems. A missing `root` holds none.
pub async fn published_nodes(
    root: &Path,
    device: DeviceNumber,
    deadline: Instant,
) -> Result<Vec<PathBuf>> {
    let root = root.to_path_buf();
    let op = format!(
        "looking for device nodes of {device} below {}",
        root.display()
    );
    run_blocking(&op, deadline, move || walk(&root, device)).await
}

fn walk(root: &Path, device: DeviceNumber) -> Result<Vec<PathBuf>> {
    let root_meta = match std::fs::symlink_metadata(root) {
        Ok(meta) if meta.is_dir() => meta,
        Ok(_) => return Ok(Vec::new()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => {
            return Err(NodeError::Mount(mounts::Error::Io {
                op: "lstat",
                path: root.to_path_buf(),
                source: error,
            }));
        }
    };
    let mut found = Vec::new();
    let mut seen = 0usize;
    let mut pending = vec![(root.to_path_buf(), 0usize)];
    while let Some((dir, depth)) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed meanwhile by a concurrent unpublish.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(NodeError::Mount(mounts::Error::Io {
                    op: "read_dir",
                    path: dir,
                    source: error,
                }));
            }
        };
        for entry in entries.flatten() {
            seen += 1;
            if seen > MAX_ENTRIES {
                return Err(NodeError::precondition(format!(
                    "more than {MAX_ENTRIES} entries below {}; cannot prove {device} unpublished",
                    root.display()
                )));
            }
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let kind = meta.file_type();
            if kind.is_block_device() && DeviceNumber::from_raw(meta.rdev()) == device {
                found.push(path);
            } else if kind.is_dir() && depth + 1 < MAX_DEPTH && meta.dev() == root_meta.dev() {
                pending.push((path, depth + 1));
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    #[tokio::test]
    async fn kinds_of_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"abc").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(
            path_kind(dir.path(), soon()).await.unwrap(),
            PathKind::Directory
        );
        assert_eq!(path_kind(&file, soon()).await.unwrap(), PathKind::File(3));
        assert_eq!(path_kind(&link, soon()).await.unwrap(), PathKind::Symlink);
        assert_eq!(
            path_kind(&dir.path().join("absent"), soon()).await.unwrap(),
            PathKind::Missing
        );
        assert_eq!(
            path_kind(Path::new("/dev/null"), soon()).await.unwrap(),
            PathKind::CharNode
        );
    }

    fn mknod(path: &Path, device: DeviceNumber) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            rustix::fs::FileType::BlockDevice,
            rustix::fs::Mode::from_raw_mode(0o600),
            device.to_raw(),
        )
        .unwrap();
    }

    #[tokio::test]
    async fn finds_the_devices_nodes_within_depth_without_following_links() {
        if !mounts::fixtures::root_or_skip("finds_the_devices_nodes_within_depth") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let wanted = DeviceNumber::new(7, 42);
        let published = root.join("publish/pvc-1/pod-a");
        mknod(&published, wanted);
        mknod(&root.join("publish/pvc-2/pod-b"), DeviceNumber::new(7, 43));
        // Too deep to be a kubelet publish path.
        mknod(&root.join("a/b/c/d/e/f/g/node"), wanted);
        // A symlink to a matching node is not a node.
        std::os::unix::fs::symlink(&published, root.join("link")).unwrap();
        let found = published_nodes(root, wanted, soon()).await.unwrap();
        assert_eq!(found, vec![published]);
    }

    #[tokio::test]
    async fn a_missing_publish_directory_holds_no_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let nodes = published_nodes(&dir.path().join("absent"), DeviceNumber::new(7, 0), soon())
            .await
            .unwrap();
        assert!(nodes.is_empty());
    }
}
