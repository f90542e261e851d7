//! The mount table as the kernel shows it in `/proc/self/mountinfo`.
//!
//! Under a mount storm this file can hold hundreds of thousands of lines and take long to
//! generate, so reading is bounded in time ([`read_mount_table`]) and size ([`MAX_BYTES`]), and
//! parsing is a single pass over bytes without allocation per field beyond the results.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use tokio::time::Instant;

use crate::blocking::run_blocking;
use crate::{DeviceNumber, Error, Result};

/// Where the kernel publishes the mount table of the calling process.
pub const SELF_MOUNTINFO: &str = "/proc/self/mountinfo";

/// A table larger than this is refused rather than buffered: no sane node has one, a storm does.
pub const MAX_BYTES: u64 = 256 << 20;

/// One line of mountinfo (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u64,
    pub parent_id: u64,
    /// `st_dev` of files on this mount: for a block filesystem, the block device's number.
    pub device: DeviceNumber,
    /// The directory of the filesystem that forms this mount's root (not `/` for bind mounts).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    /// Per-mount options (`rw`, `nosuid`, `relatime`, ...).
    pub mount_options: String,
    /// Propagation tags such as `shared:12` or `master:3`.
    pub optional_fields: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options.
    pub super_options: String,
}

impl MountEntry {
    /// Whether this particular mount is read-only.
    pub fn is_read_only(&self) -> bool {
        self.mount_options.split(',').any(|option| option == "ro")
    }

    /// How mount events cross this mount, from its optional fields (see
    /// `mount_namespaces(7)`).
    pub fn propagation(&self) -> Propagation {
        let group = |tag: &str| {
            self.optional_fields
                .iter()
                .find_map(|field| field.strip_prefix(tag)?.parse::<u64>().ok())
        };
        if self
            .optional_fields
            .iter()
            .any(|field| field == "unbindable")
        {
            return Propagation::Unbindable;
        }
        match (group("shared:"), group("master:")) {
            (Some(peer_group), master) => Propagation::Shared { peer_group, master },
            (None, Some(master)) => Propagation::Slave { master },
            (None, None) => Propagation::Private,
        }
    }
}

/// The propagation type of a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Mounts below it propagate to and from its peer group (`shared:N`); with a master it
    /// also receives from that group (`shared:N master:M`).
    Shared {
        peer_group: u64,
        master: Option<u64>,
    },
    /// Receives mounts from its master's peer group but sends none back (`master:M` alone).
    Slave { master: u64 },
    /// Neither sends nor receives (no tag).
    Private,
    /// Private, and refuses to be bind-mounted (`unbindable`).
    Unbindable,
}

/// Mounts that share a device and root: many of them for one pair is the signature of a
/// propagation storm (for example a device node of devtmpfs bind-mounted over and over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountGroup {
    pub device: DeviceNumber,
    pub root: PathBuf,
    pub fs_type: String,
    pub count: usize,
}

/// A parsed snapshot of the mount table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountTable {
    entries: Vec<MountEntry>,
}

impl MountTable {
    /// Parses mountinfo text. Any malformed line is an error: a table we cannot read fully is
    /// not a table we may draw conclusions from.
    pub fn parse(text: &[u8]) -> Result<Self> {
        let entries = text
            .split(|byte| *byte == b'\n')
            .enumerate()
            .filter(|(_, line)| !line.is_empty())
            .map(|(index, line)| {
                parse_line(line).map_err(|reason| Error::MountInfo {
                    line: index + 1,
                    reason,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { entries })
    }

    pub fn entries(&self) -> &[MountEntry] {
        &self.entries
    }

    /// The mounts stacked at `path`, bottom first. `path` is compared after lexical
    /// normalisation (`//`, `.` and a trailing `/` do not matter); symlinks are not resolved.
    pub fn mounts_at<'a>(&'a self, path: &Path) -> impl Iterator<Item = &'a MountEntry> + 'a {
        let wanted = normalize(path);
        self.entries
            .iter()
            .filter(move |entry| entry.mount_point == wanted)
    }

    /// The mount visible at `path` (the top of the stack), if any.
    pub fn top_at(&self, path: &Path) -> Option<&MountEntry> {
        self.mounts_at(path).last()
    }

    pub fn is_mount_point(&self, path: &Path) -> bool {
        self.mounts_at(path).next().is_some()
    }

    /// The mount `path` lies on: the one with the longest mount point that is `path` or an
    /// ancestor of it, the top of its stack. `path` is compared after lexical normalisation and
    /// should have its symlinks resolved (the table holds real paths). A mount stacked over an
    /// ancestor after a deeper mount was made (hiding it) is not accounted for.
    pub fn containing(&self, path: &Path) -> Option<&MountEntry> {
        let wanted = normalize(path);
        self.entries
            .iter()
            .filter(|entry| wanted.starts_with(&entry.mount_point))
            .fold(None, |best: Option<&MountEntry>, entry| match best {
                Some(best)
                    if best.mount_point.components().count()
                        > entry.mount_point.components().count() =>
                {
                    Some(best)
                }
                _ => Some(entry),
            })
    }

    /// Mounts whose files live on `device` (a filesystem on that block device, or bind mounts of
    /// it).
    pub fn mounts_of_device(&self, device: DeviceNumber) -> impl Iterator<Item = &MountEntry> {
        self.entries
            .iter()
            .filter(move |entry| entry.device == device)
    }

    /// How many times `device` is mounted; compare with a threshold to detect storms.
    pub fn mount_count(&self, device: DeviceNumber) -> usize {
        self.mounts_of_device(device).count()
    }

    /// Every (device, root) pair mounted at least `threshold` times, largest first.
    pub fn crowded(&self, threshold: usize) -> Vec<MountGroup> {
        let mut groups: HashMap<(DeviceNumber, &Path), (usize, &str)> = HashMap::new();
        for entry in &self.entries {
            let slot = groups
                .entry((entry.device, entry.root.as_path()))
                .or_insert((0, entry.fs_type.as_str()));
            slot.0 += 1;
        }
        let mut crowded: Vec<MountGroup> = groups
            .into_iter()
            .filter(|(_, (count, _))| *count >= threshold)
            .map(|((device, root), (count, fs_type))| MountGroup {
                device,
                root: root.to_path_buf(),
                fs_type: fs_type.to_owned(),
                count,
            })
            .collect();
        crowded.sort_by(|a, b| b.count.cmp(&a.count).then(a.device.cmp(&b.device)));
        crowded
    }
}

/// Reads and parses a mountinfo file on the blocking pool, giving up at `deadline`.
pub async fn read_mount_table(path: &Path, deadline: Instant) -> Result<MountTable> {
    let path = path.to_path_buf();
    run_blocking("reading the mount table", deadline, move || {
        let file = std::fs::File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        let mut text = Vec::with_capacity(64 * 1024);
        file.take(MAX_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(|e| Error::io("read", &path, e))?;
        if text.len() as u64 > MAX_BYTES {
            return Err(Error::MountInfo {
                line: 0,
                reason: format!("table larger than {MAX_BYTES} bytes; is a mount storm going on?"),
            });
        }
        MountTable::parse(&text)
    })
    .await
}

/// Reads this process's mount table.
pub async fn read_self_mount_table(deadline: Instant) -> Result<MountTable> {
    read_mount_table(Path::new(SELF_MOUNTINFO), deadline).await
}

fn parse_line(line: &[u8]) -> std::result::Result<MountEntry, String> {
    let fields: Vec<&[u8]> = line.split(|byte| *byte == b' ').collect();
    let separator = fields
        .iter()
        .skip(6)
        .position(|field| *field == b"-")
        .map(|offset| offset + 6)
        .ok_or("no ' - ' separator after the sixth field")?;
    if fields.len() != separator + 4 {
        return Err(format!(
            "expected 3 fields after the separator, found {}",
            fields.len() - separator - 1
        ));
    }
    let number = |index: usize, what: &str| -> std::result::Result<u64, String> {
        std::str::from_utf8(fields[index])
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| format!("{what} is not a number"))
    };
    let text = |field: &[u8]| String::from_utf8_lossy(&unescape(field)).into_owned();
    let path = |field: &[u8]| PathBuf::from(OsString::from_vec(unescape(field)));
    Ok(MountEntry {
        mount_id: number(0, "mount id")?,
        parent_id: number(1, "parent id")?,
        device: std::str::from_utf8(fields[2])
            .map_err(|_| "device number is not text".to_owned())?
            .parse()
            .map_err(|e: crate::ParseDeviceNumberError| e.to_string())?,
        root: path(fields[3]),
        mount_point: path(fields[4]),
        mount_options: text(fields[5]),
        optional_fields: fields[6..separator].iter().map(|f| text(f)).collect(),
        fs_type: text(fields[separator + 1]),
        source: text(fields[separator + 2]),
        super_options: text(fields[separator + 3]),
    })
}

/// Undoes the kernel's octal escaping of space, tab, newline and backslash (`\040` etc).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut index = 0;
    while index < field.len() {
        let octal = field.get(index + 1..index + 4).filter(|digits| {
            field[index] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        });
        match octal {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, digit| acc * 8 + u32::from(digit - b'0'));
                // Three octal digits can exceed a byte (\777); such text is not an escape.
                match u8::try_from(value) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 4;
                    }
                    Err(_) => {
                        out.push(field[index]);
                        index += 1;
                    }
                }
            }
            None => {
                out.push(field[index]);
                index += 1;
            }
        }
    }
    out
}

/// Lexical normalisation: drops `.` components, repeated and trailing slashes. `..` is kept as
/// is, since resolving it lexically could name a different directory across a symlink.
pub(crate) fn normalize(path: &Path) -> PathBuf {
    path.components()
        .filter(|component| !matches!(component, Component::CurDir))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
24 27 0:6 / /dev rw,relatime shared:2 - devtmpfs devtmpfs rw,size=12334492k,mode=755
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 27 259:3 / /var/lib/kubelet/plugins/staging/pv\\0401 rw,noatime shared:30 master:4 - xfs /dev/nvme2n1 rw,attr2,inode64,noquota
41 27 259:3 / /var/lib/kubelet/pods/a/volumes/pv1/mount ro,relatime shared:30 - xfs /dev/nvme2n1 rw,attr2
42 27 0:6 /nvme2n1 /var/lib/kubelet/pods/b/dev rw - devtmpfs devtmpfs rw
43 27 0:6 /nvme2n1 /var/lib/kubelet/pods/c/dev rw - devtmpfs devtmpfs rw
44 27 0:6 /nvme2n1 /var/lib/kubelet/pods/d/dev rw - devtmpfs devtmpfs rw
";

    fn sample() -> MountTable {
        MountTable::parse(SAMPLE.as_bytes()).expect("sample parses")
    }

    #[test]
    fn parses_all_fields_of_a_line_with_optional_fields() {
        let table = sample();
        let entry = &table.entries()[3];
        assert_eq!(entry.mount_id, 40);
        assert_eq!(entry.parent_id, 27);
        assert_eq!(entry.device, DeviceNumber::new(259, 3));
        assert_eq!(entry.root, Path::new("/"));
        assert_eq!(
            entry.mount_point,
            Path::new("/var/lib/kubelet/plugins/staging/pv 1")
        );
        assert_eq!(entry.mount_options, "rw,noatime");
        assert_eq!(entry.optional_fields, vec!["shared:30", "master:4"]);
        assert_eq!(entry.fs_type, "xfs");
        assert_eq!(entry.source, "/dev/nvme2n1");
        assert_eq!(entry.super_options, "rw,attr2,inode64,noquota");
        assert!(!entry.is_read_only());
        assert!(table.entries()[4].is_read_only());
    }

    #[test]
    fn a_line_without_optional_fields_parses() {
        let table = sample();
        let entry = &table.entries()[0];
        assert!(entry.optional_fields.is_empty());
        assert_eq!(entry.fs_type, "proc");
    }

    #[test]
    fn unescapes_octal_sequences_and_leaves_other_backslashes() {
        assert_eq!(unescape(br"a\040b\011c\012d\134e"), b"a b\tc\nd\\e");
        assert_eq!(unescape(br"x\0"), br"x\0");
        assert_eq!(unescape(br"x\08y"), br"x\08y");
        assert_eq!(unescape(br"\777"), br"\777");
        assert_eq!(unescape(br"end\"), br"end\");
    }

    #[test]
    fn non_utf8_mount_points_survive() {
        let table = MountTable::parse(b"1 0 0:1 / /mnt/\xff\\040x rw - tmpfs t rw\n").unwrap();
        assert_eq!(
            table.entries()[0]
                .mount_point
                .as_os_str()
                .as_encoded_bytes(),
            b"/mnt/\xff x"
        );
    }

    #[test]
    fn finds_mounts_by_path_regardless_of_trailing_slash_and_dots() {
        let table = sample();
        assert!(table.is_mount_point(Path::new("/var/lib/kubelet/plugins/staging/pv 1/")));
        assert!(table.is_mount_point(Path::new("/var/lib/kubelet/./pods/a/volumes/pv1/mount")));
        assert!(!table.is_mount_point(Path::new("/var/lib/kubelet")));
        assert_eq!(
            table.top_at(Path::new("/dev")).map(|e| e.mount_id),
            Some(24)
        );
    }

    #[test]
    fn stacked_mounts_report_the_top_one() {
        let text = "1 0 0:1 / /m rw - tmpfs a rw\n2 1 0:2 / /m rw - tmpfs b rw\n";
        let table = MountTable::parse(text.as_bytes()).unwrap();
        assert_eq!(table.mounts_at(Path::new("/m")).count(), 2);
        assert_eq!(table.top_at(Path::new("/m")).unwrap().source, "b");
    }

    #[test]
    fn the_containing_mount_is_the_deepest_ancestor_on_top_of_its_stack() {
        let table = sample();
        let deep = Path::new("/var/lib/kubelet/pods/a/volumes/pv1/mount/sub/dir");
        assert_eq!(table.containing(deep).map(|e| e.mount_id), Some(41));
        assert_eq!(
            table
                .containing(Path::new("/var/lib/kubelet/"))
                .map(|e| e.mount_id),
            Some(27)
        );
        // Only whole components count: /devices is not below /dev.
        assert_eq!(
            table.containing(Path::new("/devices")).map(|e| e.mount_id),
            Some(27)
        );
        let stacked = "1 0 0:1 / / rw - tmpfs a rw\n2 1 0:2 / /k rw - tmpfs b rw\n3 1 0:3 / /k rw shared:4 - tmpfs c rw\n";
        let table = MountTable::parse(stacked.as_bytes()).unwrap();
        assert_eq!(table.containing(Path::new("/k/x")).unwrap().source, "c");
        assert_eq!(MountTable::default().containing(Path::new("/x")), None);
    }

    #[test]
    fn propagation_comes_from_the_optional_fields() {
        let table = sample();
        let of = |id: u64| {
            table
                .entries()
                .iter()
                .find(|e| e.mount_id == id)
                .unwrap()
                .propagation()
        };
        assert_eq!(of(22), Propagation::Private);
        assert_eq!(
            of(27),
            Propagation::Shared {
                peer_group: 1,
                master: None
            }
        );
        assert_eq!(
            of(40),
            Propagation::Shared {
                peer_group: 30,
                master: Some(4)
            }
        );
        let text =
            "1 0 0:1 / /s rw master:7 - tmpfs a rw\n2 0 0:1 / /u rw unbindable - tmpfs a rw\n";
        let table = MountTable::parse(text.as_bytes()).unwrap();
        assert_eq!(
            table.entries()[0].propagation(),
            Propagation::Slave { master: 7 }
        );
        assert_eq!(table.entries()[1].propagation(), Propagation::Unbindable);
    }

    #[test]
    fn counts_mounts_of_a_device() {
        let table = sample();
        assert_eq!(table.mount_count(DeviceNumber::new(259, 3)), 2);
        assert_eq!(table.mount_count(DeviceNumber::new(259, 4)), 0);
    }

    #[test]
    fn crowded_groups_find_a_devtmpfs_bind_storm() {
        let crowded = sample().crowded(3);
        assert_eq!(
            crowded,
            vec![MountGroup {
                device: DeviceNumber::new(0, 6),
                root: PathBuf::from("/nvme2n1"),
                fs_type: "devtmpfs".into(),
                count: 3,
            }]
        );
        assert!(sample().crowded(4).is_empty());
    }

    #[test]
    fn malformed_lines_are_errors_with_their_line_number() {
        let cases = [
            "1 0 0:1 / /m rw tmpfs a rw",         // no separator
            "1 0 0:1 / /m rw - tmpfs a",          // missing super options
            "1 0 0:1 / /m rw - tmpfs a rw extra", // too many fields
            "x 0 0:1 / /m rw - tmpfs a rw",       // bad id
            "1 0 01 / /m rw - tmpfs a rw",        // bad device
        ];
        for case in cases {
            let text = format!("1 0 0:1 / / rw - tmpfs a rw\n{case}\n");
            match MountTable::parse(text.as_bytes()) {
                Err(Error::MountInfo { line: 2, .. }) => {}
                other => panic!("{case:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn empty_source_field_is_kept_as_empty() {
        let table = MountTable::parse(b"1 0 0:1 / /m rw - tmpfs  rw\n").unwrap();
        assert_eq!(table.entries()[0].source, "");
    }

    #[tokio::test]
    async fn reads_this_process_mount_table() {
        let table = read_self_mount_table(Instant::now() + std::time::Duration::from_secs(10))
            .await
            .unwrap();
        assert!(table.is_mount_point(Path::new("/proc")));
    }

    #[tokio::test]
    async fn field_lesson_09_a_storm_sized_table_parses_fast_and_is_flagged() {
        let mut text = String::new();
        for index in 0..200_000 {
            text.push_str(&format!(
                "{index} 1 0:6 /nvme0n1 /var/lib/kubelet/pods/{index}/dev rw,relatime shared:7 - devtmpfs udev rw,size=100k\n"
            ));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("mountinfo");
        std::fs::write(&file, &text).unwrap();
        let started = std::time::Instant::now();
        let table = read_mount_table(&file, Instant::now() + std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(table.mount_count(DeviceNumber::new(0, 6)), 200_000);
        assert_eq!(table.crowded(1000)[0].count, 200_000);
        // Generous bound for a debug build on a loaded 2-core machine; a storm table must not
        // take a node handler's whole deadline.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[tokio::test]
    async fn field_lesson_09_a_table_that_never_arrives_times_out() {
        // Opening a FIFO without a writer blocks, like a mountinfo read stuck in the kernel.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("mountinfo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let started = Instant::now();
        let result = read_mount_table(&fifo, started + std::time::Duration::from_millis(100)).await;
        assert!(matches!(result, Err(Error::TimedOut { .. })), "{result:?}");
        // Unblock the stuck reader so the blocking thread ends.
        drop(std::fs::OpenOptions::new().write(true).open(&fifo).unwrap());
    }

    #[tokio::test]
    async fn a_missing_file_is_an_io_error() {
        let result = read_mount_table(
            Path::new("/nonexistent/mountinfo"),
            Instant::now() + std::time::Duration::from_secs(5),
        )
        .await;
        assert!(matches!(result, Err(Error::Io { op: "open", .. })));
    }
}
