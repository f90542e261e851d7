//! Decisions about what a path holds and who still uses a device, from facts gathered by the
//! callers (mount table, `lstat`). Pure, so every case is unit-tested.

use std::path::{Path, PathBuf};

use mounts::DeviceNumber;
use mounts::mount::MountOptions;
use mounts::mountinfo::{MountEntry, MountTable};
use mounts::mountpoint::MountState;
use rustix::mount::MountFlags;

/// What `lstat` found at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    Directory,
    BlockNode(DeviceNumber),
    CharNode,
    /// A regular file and its length.
    File(u64),
    Symlink,
    Other,
}

impl PathKind {
    pub fn describe(self) -> String {
        match self {
            Self::Missing => "nothing".into(),
            Self::Directory => "a directory".into(),
            Self::BlockNode(device) => format!("a block device node ({device})"),
            Self::CharNode => "a character device node".into(),
            Self::File(length) => format!("a regular file of {length} bytes"),
            Self::Symlink => "a symlink".into(),
            Self::Other => "a special file".into(),
        }
    }
}

/// Where a volume stands at a path meant for a filesystem mount (staging or publish target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtPath<'a> {
    /// Nothing there, or an empty mount point to be: mount here.
    Free,
    /// The volume's device is mounted there already (the visible, top mount).
    Ours(&'a MountEntry),
    /// Something else is mounted there.
    OtherMount(String),
    /// Not a directory: nothing can be mounted there without destroying it.
    NotADirectory(PathKind),
    /// A dead mount: it must be unmounted first.
    Stale,
}

/// Judges a mount path. `top` is the mount table's visible entry at the path, `kind` what
/// `lstat` shows, `device` the volume's device if it is attached.
pub fn judge_mount_path<'a>(
    state: MountState,
    top: Option<&'a MountEntry>,
    kind: PathKind,
    device: Option<DeviceNumber>,
) -> AtPath<'a> {
    match state {
        MountState::Missing => AtPath::Free,
        MountState::NotMounted => match kind {
            PathKind::Directory | PathKind::Missing => AtPath::Free,
            other => AtPath::NotADirectory(other),
        },
        MountState::Stale { .. } => AtPath::Stale,
        MountState::Mounted => match top {
            Some(entry) if Some(entry.device) == device => AtPath::Ours(entry),
            Some(entry) => AtPath::OtherMount(format!(
                "{} ({}, device {}) is mounted there",
                entry.source, entry.fs_type, entry.device
            )),
            None => AtPath::OtherMount("a mount this process's mount table does not list".into()),
        },
    }
}

/// Mount points of `device` other than `except` (bind mounts of a staged filesystem are the
/// publishes of its volume), in table order without repeats.
pub fn other_mounts(table: &MountTable, device: DeviceNumber, except: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = Vec::new();
    for entry in table.mounts_of_device(device) {
        if entry.mount_point != except && !found.contains(&entry.mount_point) {
            found.push(entry.mount_point.clone());
        }
    }
    found
}

/// Per-mount flags and the words that set them. Superblock flags (`sync`, `lazytime`, ...)
/// and filesystem data are left out: a bind mount shares the staged filesystem, whose
/// options were applied when it was mounted at the staging path.
const PER_MOUNT_WORDS: [(MountFlags, &str); 9] = [
    (MountFlags::RDONLY, "ro"),
    (MountFlags::NOSUID, "nosuid"),
    (MountFlags::NODEV, "nodev"),
    (MountFlags::NOEXEC, "noexec"),
    (MountFlags::NOATIME, "noatime"),
    (MountFlags::NODIRATIME, "nodiratime"),
    (MountFlags::RELATIME, "relatime"),
    (MountFlags::STRICTATIME, "strictatime"),
    (MountFlags::NOSYMFOLLOW, "nosymfollow"),
];

/// The options of a publish bind mount: the per-mount flags of the capability's options,
/// read-only when asked.
pub fn publish_options(options: &MountOptions, read_only: bool) -> MountOptions {
    let words = PER_MOUNT_WORDS
        .iter()
        .filter(|(flag, _)| options.flags().contains(*flag))
        .map(|(_, word)| *word);
    let per_mount = MountOptions::parse(words).expect("flag words always parse");
    if read_only {
        per_mount.read_only()
    } else {
        per_mount
    }
}

/// Permissions of a published block device node: read-write for owner and group, or
/// read-only (enforced for unprivileged users of the node, such as a VM's process).
pub fn block_node_mode(read_only: bool) -> u32 {
    if read_only { 0o440 } else { 0o660 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 7:3 / /k/staging/pv1 rw,noatime shared:30 - ext4 /dev/loop3 rw
41 27 7:3 / /k/pods/a/mount ro,relatime shared:30 - ext4 /dev/loop3 rw
42 27 7:3 / /k/pods/a/mount ro,relatime shared:30 - ext4 /dev/loop3 rw
43 27 0:50 / /k/staging/pv2 rw - tmpfs tmpfs rw
";

    fn table() -> MountTable {
        MountTable::parse(TABLE.as_bytes()).unwrap()
    }

    const LOOP3: DeviceNumber = DeviceNumber::new(7, 3);

    #[test]
    fn free_paths_are_missing_or_unmounted_directories() {
        for (state, kind) in [
            (MountState::Missing, PathKind::Missing),
            (MountState::NotMounted, PathKind::Directory),
        ] {
            assert_eq!(
                judge_mount_path(state, None, kind, Some(LOOP3)),
                AtPath::Free
            );
        }
    }

    #[test]
    fn files_and_nodes_are_not_mount_points() {
        for kind in [
            PathKind::File(0),
            PathKind::BlockNode(LOOP3),
            PathKind::Symlink,
        ] {
            assert_eq!(
                judge_mount_path(MountState::NotMounted, None, kind, Some(LOOP3)),
                AtPath::NotADirectory(kind)
            );
        }
    }

    #[test]
    fn a_mount_is_ours_only_with_the_volumes_device() {
        let table = table();
        let staged = table.top_at(Path::new("/k/staging/pv1"));
        assert!(matches!(
            judge_mount_path(MountState::Mounted, staged, PathKind::Directory, Some(LOOP3)),
            AtPath::Ours(entry) if entry.mount_id == 40
        ));
        // Not attached (or another device): the same mount belongs to something else.
        for device in [None, Some(DeviceNumber::new(259, 1))] {
            assert!(matches!(
                judge_mount_path(MountState::Mounted, staged, PathKind::Directory, device),
                AtPath::OtherMount(why) if why.contains("/dev/loop3")
            ));
        }
        let tmpfs = table.top_at(Path::new("/k/staging/pv2"));
        assert!(matches!(
            judge_mount_path(MountState::Mounted, tmpfs, PathKind::Directory, Some(LOOP3)),
            AtPath::OtherMount(why) if why.contains("tmpfs")
        ));
        assert_eq!(
            judge_mount_path(
                MountState::Stale { errno: 107 },
                None,
                PathKind::Missing,
                Some(LOOP3)
            ),
            AtPath::Stale
        );
    }

    #[test]
    fn publishes_are_the_other_mounts_of_the_staged_device() {
        let table = table();
        assert_eq!(
            other_mounts(&table, LOOP3, Path::new("/k/staging/pv1")),
            vec![PathBuf::from("/k/pods/a/mount")]
        );
        assert_eq!(
            other_mounts(
                &table,
                DeviceNumber::new(0, 50),
                Path::new("/k/staging/pv2")
            ),
            Vec::<PathBuf>::new()
        );
    }

    #[test]
    fn publish_options_keep_per_mount_flags_only() {
        let options = MountOptions::parse(["noatime,nosuid,discard,sync", "nouuid"]).unwrap();
        assert_eq!(
            publish_options(&options, false),
            MountOptions::parse(["noatime,nosuid"]).unwrap()
        );
        assert_eq!(
            publish_options(&options, true),
            MountOptions::parse(["ro,noatime,nosuid"]).unwrap()
        );
        assert_eq!(
            publish_options(&MountOptions::default(), false),
            MountOptions::default()
        );
    }

    #[test]
    fn read_only_block_nodes_lose_write_permission() {
        assert_eq!(block_node_mode(false), 0o660);
        assert_eq!(block_node_mode(true), 0o440);
    }
}
