//! Is this path a mount point? Answered from two independent sources (the mount table and
//! `st_dev` of the path against its parent), and never guessed: a path whose `stat` fails the way
//! a dead mount fails is reported as stale, not as "not mounted".

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::time::Instant;

use crate::blocking::run_blocking;
use crate::mountinfo::{MountTable, normalize};
use crate::{Error, Result};

/// What is at a path, as far as mounts are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountState {
    /// Nothing exists at the path.
    Missing,
    /// The path exists and nothing is mounted there.
    NotMounted,
    Mounted,
    /// A mount is (or was) there but does not answer: `stat` failed with ENOTCONN, EIO, ESTALE
    /// and the like, or the path vanished while the table still lists it. It must be unmounted,
    /// never removed or reused.
    Stale {
        errno: i32,
    },
}

/// Errors of `stat` that a dead mount produces (network or FUSE filesystems, a vanished device).
fn is_stale_errno(errno: i32) -> bool {
    [
        rustix::io::Errno::NOTCONN,
        rustix::io::Errno::STALE,
        rustix::io::Errno::IO,
        rustix::io::Errno::HOSTDOWN,
        rustix::io::Errno::TIMEDOUT,
    ]
    .iter()
    .any(|stale| stale.raw_os_error() == errno)
}

/// Classifies a path from the facts gathered about it. `own` is the path's `st_dev` (lstat),
/// `parent` its parent directory's.
fn classify(
    path: &Path,
    own: io::Result<u64>,
    parent: io::Result<u64>,
    in_table: bool,
) -> Result<MountState> {
    let own = match own {
        Ok(device) => device,
        Err(error) => {
            let errno = error.raw_os_error().unwrap_or(0);
            return if error.kind() == io::ErrorKind::NotFound && !in_table {
                Ok(MountState::Missing)
            } else if error.kind() == io::ErrorKind::NotFound || is_stale_errno(errno) {
                Ok(MountState::Stale { errno })
            } else {
                Err(Error::io("stat", path, error))
            };
        }
    };
    if in_table {
        return Ok(MountState::Mounted);
    }
    let parent = parent.map_err(|error| match error.raw_os_error() {
        Some(errno) if is_stale_errno(errno) => Error::StaleMount {
            path: path.parent().unwrap_or(path).to_path_buf(),
            source: error,
        },
        _ => Error::io("stat parent of", path, error),
    })?;
    Ok(if own == parent {
        MountState::NotMounted
    } else {
        // A mount that this process's table does not list (another mount namespace's
        // propagation); st_dev does not lie.
        MountState::Mounted
    })
}

/// The path as the mount table spells it: the parent's symlinks resolved (the table holds real
/// paths), the last component kept as is (it may be a dead mount that cannot be resolved).
fn spelling(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|real| real.join(name))
            .unwrap_or_else(|_| normalize(path)),
        _ => normalize(path),
    }
}

/// `path` as the mount table spells it (its parent's symlinks resolved, the last component as
/// is), worked out on a blocking thread under `deadline`: resolving the parent stats each of
/// its components, which hangs below a dead mount.
pub async fn table_spelling(path: &Path, deadline: Instant) -> Result<PathBuf> {
    let path = path.to_path_buf();
    let op = format!("resolving {}", path.display());
    run_blocking(&op, deadline, move || Ok(spelling(&path))).await
}

/// The mount state of `path` (absolute), judged against `table` (read by the caller, usually
/// with [`crate::mountinfo::read_self_mount_table`]) and against `st_dev`. The `stat` calls run
/// under `deadline` because they hang on a dead network mount.
pub async fn mount_state(path: &Path, table: &MountTable, deadline: Instant) -> Result<MountState> {
    if !path.is_absolute() {
        return Err(Error::invalid(
            path.display().to_string(),
            "mount paths must be absolute",
        ));
    }
    let path = normalize(path);
    if path.parent().is_none() {
        return Ok(MountState::Mounted); // "/" is always a mount point
    }
    let op = format!("checking whether {} is a mount point", path.display());
    let (spelled, own, parent) = run_blocking::<_, Error, _>(&op, deadline, {
        let path = path.clone();
        move || {
            let own = std::fs::symlink_metadata(&path).map(|meta| meta.dev());
            let parent = path
                .parent()
                .map(|parent| std::fs::metadata(parent).map(|meta| meta.dev()))
                .unwrap_or_else(|| Err(io::ErrorKind::NotFound.into()));
            Ok((spelling(&path), own, parent))
        }
    })
    .await?;
    let in_table = table.is_mount_point(&spelled) || table.is_mount_point(&path);
    classify(&path, own, parent, in_table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errno(code: rustix::io::Errno) -> io::Result<u64> {
        Err(io::Error::from_raw_os_error(code.raw_os_error()))
    }

    const P: &str = "/var/lib/kubelet/pods/x/volumes/v/mount";

    #[test]
    fn same_device_as_parent_and_not_in_table_is_not_mounted() {
        assert_eq!(
            classify(Path::new(P), Ok(1), Ok(1), false).unwrap(),
            MountState::NotMounted
        );
    }

    #[test]
    fn a_table_entry_or_a_different_device_means_mounted() {
        assert_eq!(
            classify(Path::new(P), Ok(1), Ok(1), true).unwrap(),
            MountState::Mounted
        );
        assert_eq!(
            classify(Path::new(P), Ok(2), Ok(1), false).unwrap(),
            MountState::Mounted
        );
    }

    #[test]
    fn dead_mount_errors_are_stale_never_not_mounted() {
        use rustix::io::Errno;
        for code in [Errno::NOTCONN, Errno::IO, Errno::STALE, Errno::HOSTDOWN] {
            for in_table in [false, true] {
                assert_eq!(
                    classify(Path::new(P), errno(code), Ok(1), in_table).unwrap(),
                    MountState::Stale {
                        errno: code.raw_os_error()
                    }
                );
            }
        }
    }

    #[test]
    fn missing_path_still_in_the_table_is_stale() {
        let missing = errno(rustix::io::Errno::NOENT);
        assert_eq!(
            classify(Path::new(P), missing, Ok(1), false).unwrap(),
            MountState::Missing
        );
        let missing = errno(rustix::io::Errno::NOENT);
        assert!(matches!(
            classify(Path::new(P), missing, Ok(1), true).unwrap(),
            MountState::Stale { .. }
        ));
    }

    #[test]
    fn other_stat_errors_are_reported_not_guessed() {
        let result = classify(Path::new(P), errno(rustix::io::Errno::NOTDIR), Ok(1), false);
        assert!(matches!(result, Err(Error::Io { .. })));
        let result = classify(Path::new(P), Ok(1), errno(rustix::io::Errno::ACCESS), false);
        assert!(matches!(result, Err(Error::Io { .. })));
        let result = classify(
            Path::new(P),
            Ok(1),
            errno(rustix::io::Errno::NOTCONN),
            false,
        );
        assert!(matches!(result, Err(Error::StaleMount { .. })));
    }

    #[tokio::test]
    async fn spelling_resolves_the_parent_only() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let alias = dir.path().join("alias");
        std::os::unix::fs::symlink(&real, &alias).unwrap();
        let canonical = std::fs::canonicalize(&real).unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        assert_eq!(
            table_spelling(&alias.join("mnt"), deadline).await.unwrap(),
            canonical.join("mnt")
        );
        assert_eq!(
            table_spelling(Path::new("/"), deadline).await.unwrap(),
            PathBuf::from("/")
        );
    }

    #[tokio::test]
    async fn real_paths_proc_and_a_plain_directory() {
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        let table = crate::mountinfo::read_self_mount_table(deadline)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            mount_state(Path::new("/proc"), &table, deadline)
                .await
                .unwrap(),
            MountState::Mounted
        );
        assert_eq!(
            mount_state(dir.path(), &table, deadline).await.unwrap(),
            MountState::NotMounted
        );
        assert_eq!(
            mount_state(&dir.path().join("absent"), &table, deadline)
                .await
                .unwrap(),
            MountState::Missing
        );
    }
}
