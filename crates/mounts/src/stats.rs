//! Capacity and identity of filesystems and block devices.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use tokio::time::Instant;

use crate::blocking::run_blocking;
use crate::{DeviceNumber, Error, Result};

/// Space and inode usage of a mounted filesystem, as `df` would show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsStats {
    pub total_bytes: u64,
    pub used_bytes: u64,
    /// What an unprivileged writer can still use (excludes the root reserve).
    pub available_bytes: u64,
    pub total_inodes: u64,
    pub used_inodes: u64,
    pub free_inodes: u64,
}

impl FsStats {
    fn from_statvfs(vfs: &rustix::fs::StatVfs) -> Self {
        let unit = vfs.f_frsize;
        Self {
            total_bytes: vfs.f_blocks.saturating_mul(unit),
            used_bytes: vfs
                .f_blocks
                .saturating_sub(vfs.f_bfree)
                .saturating_mul(unit),
            available_bytes: vfs.f_bavail.saturating_mul(unit),
            total_inodes: vfs.f_files,
            used_inodes: vfs.f_files.saturating_sub(vfs.f_ffree),
            free_inodes: vfs.f_ffree,
        }
    }
}

/// statvfs(2) of the filesystem holding `path`.
pub async fn filesystem_stats(path: &Path, deadline: Instant) -> Result<FsStats> {
    let path = path.to_path_buf();
    let op = format!("statvfs {}", path.display());
    run_blocking(&op, deadline, move || {
        rustix::fs::statvfs(&path)
            .map(|vfs| FsStats::from_statvfs(&vfs))
            .map_err(|errno| Error::io("statvfs", path, errno.into()))
    })
    .await
}

/// BLKGETSIZE64: the kernel writes a u64 although the opcode is declared with size_t.
const BLKGETSIZE64: rustix::ioctl::Opcode = rustix::ioctl::opcode::read::<usize>(0x12, 114);

pub(crate) fn block_size_of(file: &std::fs::File) -> std::io::Result<u64> {
    // SAFETY: BLKGETSIZE64 is a getter that writes exactly one u64.
    unsafe {
        let getter = rustix::ioctl::Getter::<BLKGETSIZE64, u64>::new();
        rustix::ioctl::ioctl(file, getter).map_err(Into::into)
    }
}

/// Size in bytes of the block device at `device`, by ioctl (not sysfs: this is what the
/// filesystem tools will see).
pub async fn block_device_size(device: &Path, deadline: Instant) -> Result<u64> {
    let device = device.to_path_buf();
    let op = format!("reading the size of {}", device.display());
    run_blocking(&op, deadline, move || {
        let file = std::fs::File::open(&device).map_err(|e| Error::io("open", &device, e))?;
        block_size_of(&file).map_err(|e| Error::io("BLKGETSIZE64", &device, e))
    })
    .await
}

/// The device number a block or character device node stands for (`st_rdev`).
pub fn device_number_of_node(node: &Path) -> Result<DeviceNumber> {
    let meta = std::fs::metadata(node).map_err(|e| Error::io("stat", node, e))?;
    let kind = meta.file_type();
    if !(kind.is_block_device() || kind.is_char_device()) {
        return Err(Error::UnexpectedNode {
            path: node.to_path_buf(),
            expected: "a device node".into(),
            found: crate::devnode::describe(&kind).into(),
        });
    }
    Ok(DeviceNumber::from_raw(meta.rdev()))
}

/// The device number of the filesystem holding `path` (`st_dev`).
pub fn filesystem_device_of(path: &Path) -> Result<DeviceNumber> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io("stat", path, e))?;
    Ok(DeviceNumber::from_raw(meta.dev()))
}

/// Whether anything holds `device` exclusively: a mounted filesystem, device-mapper, md, or a
/// program that opened it with O_EXCL. The kernel answers this for every mount namespace and
/// process at once, which is what "is this volume still in use?" needs; a check limited to our
/// own view of processes would say "free" too often.
pub async fn is_claimed_exclusively(device: &Path, deadline: Instant) -> Result<bool> {
    let device = device.to_path_buf();
    let op = format!("probing {} with O_EXCL", device.display());
    run_blocking(&op, deadline, move || {
        let flags = OFlags::RDONLY | OFlags::EXCL | OFlags::CLOEXEC | OFlags::NONBLOCK;
        match rustix::fs::open(&device, flags, Mode::empty()) {
            Ok(_) => Ok(false),
            Err(Errno::BUSY) => Ok(true),
            // The node names a device number with no device behind it: nothing can hold it.
            Err(Errno::NXIO | Errno::NODEV) => Ok(false),
            Err(errno) => Err(Error::io("open O_EXCL", device, errno.into())),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn usage_is_computed_in_fragment_units() {
        let vfs = rustix::fs::StatVfs {
            f_bsize: 4096,
            f_frsize: 1024,
            f_blocks: 1000,
            f_bfree: 300,
            f_bavail: 250,
            f_files: 64,
            f_ffree: 60,
            f_favail: 60,
            f_fsid: 0,
            f_flag: rustix::fs::StatVfsMountFlags::empty(),
            f_namemax: 255,
        };
        assert_eq!(
            FsStats::from_statvfs(&vfs),
            FsStats {
                total_bytes: 1_024_000,
                used_bytes: 716_800,
                available_bytes: 256_000,
                total_inodes: 64,
                used_inodes: 4,
                free_inodes: 60,
            }
        );
    }

    #[tokio::test]
    async fn statvfs_of_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let stats = filesystem_stats(dir.path(), Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        assert!(stats.total_bytes > 0);
        assert!(stats.used_bytes <= stats.total_bytes);
        assert!(stats.available_bytes <= stats.total_bytes);
    }

    #[test]
    fn device_numbers_of_nodes_and_refusal_of_plain_files() {
        assert_eq!(
            device_number_of_node(Path::new("/dev/null")).unwrap(),
            DeviceNumber::new(1, 3)
        );
        let file = tempfile::NamedTempFile::new().unwrap();
        assert!(matches!(
            device_number_of_node(file.path()),
            Err(Error::UnexpectedNode { .. })
        ));
        assert_eq!(
            filesystem_device_of(file.path()).unwrap(),
            filesystem_device_of(file.path().parent().unwrap()).unwrap()
        );
    }

    #[tokio::test]
    async fn block_size_of_a_non_block_file_is_an_error() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let result = block_device_size(file.path(), Instant::now() + Duration::from_secs(5)).await;
        assert!(matches!(
            result,
            Err(Error::Io {
                op: "BLKGETSIZE64",
                ..
            })
        ));
    }
}
