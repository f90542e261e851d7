//! Probing, formatting, growing and re-identifying filesystems.
//!
//! The rule that protects data: a device is formatted only when blkid, asked for low-level
//! probing, exits with 2 ("nothing found") on a device we could read just before. Every other
//! outcome (exit 1, 4, 8, a signal, a timeout, an unreadable device) is an error, never a format.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::str::FromStr;

use tokio::time::Instant;

use crate::blocking::run_blocking;
use crate::mount::{MountOptions, UnmountMode, mount_filesystem, unmount};
use crate::phase;
use crate::stats::is_claimed_exclusively;
use crate::tools::{Exit, ToolPaths, run, run_expecting};
use crate::{Error, Result};

/// Filesystems this driver creates and manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FsType {
    Ext4,
    Xfs,
}

impl FsType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ext4 => "ext4",
            Self::Xfs => "xfs",
        }
    }
}

impl fmt::Display for FsType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FsType {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "ext4" => Ok(Self::Ext4),
            "xfs" => Ok(Self::Xfs),
            other => Err(Error::invalid(
                other,
                "supported filesystems are ext4 and xfs",
            )),
        }
    }
}

/// What blkid found on a non-empty device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Signature {
    /// `TYPE`: the filesystem or other content type (`ext4`, `LVM2_member`, ...).
    pub fs_type: Option<String>,
    pub uuid: Option<String>,
    pub label: Option<String>,
    /// `USAGE`: `filesystem`, `raid`, `crypto`, `other`.
    pub usage: Option<String>,
    /// `PTTYPE`: a partition table (`gpt`, `dos`).
    pub partition_table: Option<String>,
}

impl Signature {
    /// The filesystem type, when the signature is a filesystem (and nothing else).
    fn filesystem(&self) -> Option<&str> {
        let usage_fits = matches!(self.usage.as_deref(), None | Some("filesystem"));
        match (&self.fs_type, &self.partition_table) {
            (Some(fs_type), None) if usage_fits => Some(fs_type),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match (&self.fs_type, &self.usage, &self.partition_table) {
            (_, _, Some(table)) => format!("a {table} partition table"),
            (Some(fs_type), Some(usage), None) => format!("{fs_type} ({usage})"),
            (Some(fs_type), None, None) => fs_type.clone(),
            (None, _, None) => "an unidentified signature".to_owned(),
        }
    }
}

/// blkid's verdict on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// blkid exited 2: no signature of any kind.
    Empty,
    Found(Signature),
}

/// Reads blkid's (`-p -o export`) exit status and output. Only exit 2 means empty.
pub fn interpret_blkid(exit: Exit, stdout: &str, stderr: &str) -> Result<Probe> {
    match exit {
        Exit::Code(0) => {
            let signature = parse_export(stdout);
            if signature == Signature::default() {
                return Err(Error::ToolOutput {
                    tool: "blkid".into(),
                    reason: "exit 0 without TYPE or PTTYPE".into(),
                });
            }
            Ok(Probe::Found(signature))
        }
        Exit::Code(2) => Ok(Probe::Empty),
        status => Err(Error::ToolFailed {
            tool: "blkid".into(),
            status,
            stderr: stderr.trim().to_owned(),
        }),
    }
}

/// Parses `KEY=value` lines; blkid escapes special characters in values with a backslash.
fn parse_export(stdout: &str) -> Signature {
    let mut signature = Signature::default();
    for line in stdout.lines() {
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unescape_export(raw);
        match key {
            "TYPE" => signature.fs_type = Some(value),
            "UUID" => signature.uuid = Some(value),
            "LABEL" => signature.label = Some(value),
            "USAGE" => signature.usage = Some(value),
            "PTTYPE" => signature.partition_table = Some(value),
            _ => {}
        }
    }
    signature
}

fn unescape_export(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(character) = chars.next() {
        match character {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Extra mkfs arguments from a user string (a StorageClass parameter), split like a shell
/// would split them but never given to one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MkfsOptions(Vec<String>);

impl MkfsOptions {
    pub fn parse(text: &str) -> Result<Self> {
        let words = crate::shellwords::split(text)?;
        // A leading bare word would read as the device to mkfs; values may follow options.
        match words.first() {
            Some(first) if !first.starts_with('-') => Err(Error::invalid(
                first.as_str(),
                "mkfs options must start with an option",
            )),
            _ => Ok(Self(words)),
        }
    }

    pub fn args(&self) -> &[String] {
        &self.0
    }
}

/// What [`FsTools::format_if_empty`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatOutcome {
    /// The device was empty and now holds a new filesystem (mkfs said so by its exit code;
    /// the mount that follows with the filesystem type named is what proves it).
    Formatted,
    /// The device already holds a filesystem, left untouched. It may differ from the requested
    /// type; whether that is acceptable is the caller's decision.
    AlreadyFormatted {
        fs_type: String,
        uuid: Option<String>,
    },
}

/// The mkfs invocation for `fs` on `device`: lazy inode/journal init and no discard, because
/// the backing files are sparse and a full-device discard or inode table write can take longer
/// than a stage request may.
fn mkfs_args(fs: FsType, device: &Path, extra: &MkfsOptions) -> Vec<OsString> {
    let mut args: Vec<OsString> = match fs {
        // -F only because blkid just said the device is empty: it stops mke2fs from asking
        // for confirmation on a whole-disk device with no terminal to answer.
        FsType::Ext4 => [
            "-F",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
        ]
        .map(OsString::from)
        .to_vec(),
        FsType::Xfs => vec!["-K".into()],
    };
    args.extend(extra.args().iter().map(OsString::from));
    args.push(device.into());
    args
}

/// Checks that `device` is a block device (or an image file) whose first block reads: blkid's
/// "nothing found" on a device that cannot be read (just reconnected, zero size) would otherwise
/// look exactly like an empty one.
async fn ensure_readable(device: &Path, deadline: Instant) -> Result<()> {
    let device = device.to_path_buf();
    let op = format!("reading the first block of {}", device.display());
    run_blocking(&op, deadline, move || {
        let not_ready = |reason: String| Error::DeviceNotReady {
            device: device.clone(),
            reason,
        };
        let meta = std::fs::metadata(&device).map_err(|e| not_ready(e.to_string()))?;
        let kind = meta.file_type();
        if !(kind.is_block_device() || kind.is_file()) {
            return Err(Error::UnexpectedNode {
                path: device.clone(),
                expected: "a block device".into(),
                found: crate::devnode::describe(&kind).into(),
            });
        }
        let file = std::fs::File::open(&device).map_err(|e| not_ready(e.to_string()))?;
        let size = if kind.is_block_device() {
            crate::stats::block_size_of(&file).map_err(|e| not_ready(e.to_string()))?
        } else {
            meta.len()
        };
        if size == 0 {
            return Err(not_ready("size is 0".into()));
        }
        let mut first_block = vec![0u8; 4096.min(size as usize)];
        rustix::io::pread(&file, &mut first_block[..], 0)
            .map_err(|errno| not_ready(format!("read: {errno}")))?;
        Ok(())
    })
    .await
}

/// Runs blkid, mkfs, resize and UUID tools with deadlines.
#[derive(Debug, Clone, Default)]
pub struct FsTools {
    paths: ToolPaths,
}

impl FsTools {
    pub fn new(paths: ToolPaths) -> Self {
        Self { paths }
    }

    /// Probes `device` with `blkid -p -o export` after checking it is readable.
    pub async fn probe(&self, device: &Path, deadline: Instant) -> Result<Probe> {
        ensure_readable(device, deadline).await?;
        self.blkid(device, deadline).await
    }

    async fn blkid(&self, device: &Path, deadline: Instant) -> Result<Probe> {
        let args = ["-p".into(), "-o".into(), "export".into(), device.into()];
        let output = run(&self.paths.blkid, &args, deadline).await?;
        interpret_blkid(output.exit, &output.stdout, &output.stderr)
    }

    /// Formats `device` with `fs` if, and only if, blkid says it is empty; otherwise reports
    /// what is there. A partition table, RAID or crypto member, or unknown signature is an
    /// error ([`Error::NotEmpty`]). The new filesystem is not probed again: mkfs's exit code
    /// says it was made, and mounting it with its type named is the check that counts.
    pub async fn format_if_empty(
        &self,
        device: &Path,
        fs: FsType,
        extra: &MkfsOptions,
        deadline: Instant,
    ) -> Result<FormatOutcome> {
        // Each step is a phase of NodeStageVolume's breakdown (see `crate::phase`).
        phase::timed("readable check", ensure_readable(device, deadline)).await?;
        match phase::timed("blkid", self.blkid(device, deadline)).await? {
            Probe::Found(signature) => {
                return match signature.filesystem() {
                    Some(fs_type) => Ok(FormatOutcome::AlreadyFormatted {
                        fs_type: fs_type.to_owned(),
                        uuid: signature.uuid,
                    }),
                    None => Err(Error::NotEmpty {
                        device: device.to_path_buf(),
                        found: signature.describe(),
                    }),
                };
            }
            Probe::Empty => {}
        }
        tracing::info!(device = %device.display(), %fs, "device is empty; creating a filesystem");
        let mkfs = match fs {
            FsType::Ext4 => &self.paths.mkfs_ext4,
            FsType::Xfs => &self.paths.mkfs_xfs,
        };
        phase::timed(
            "mkfs",
            run_expecting(mkfs, &mkfs_args(fs, device, extra), &[0], deadline),
        )
        .await?;
        Ok(FormatOutcome::Formatted)
    }

    async fn expect_filesystem(
        &self,
        device: &Path,
        fs: FsType,
        deadline: Instant,
    ) -> Result<Signature> {
        match self.probe(device, deadline).await? {
            Probe::Found(signature) if signature.filesystem() == Some(fs.as_str()) => Ok(signature),
            other => Err(Error::ToolOutput {
                tool: "blkid".into(),
                reason: format!("expected {fs} on {}, found {other:?}", device.display()),
            }),
        }
    }

    /// Grows the filesystem on `device` to fill the (already grown) device. `mounted_at` is its
    /// mount point when mounted (online growth; XFS can only grow that way), `None` when not: an
    /// unmounted ext4 is checked first, as resize2fs demands.
    pub async fn grow(
        &self,
        fs: FsType,
        device: &Path,
        mounted_at: Option<&Path>,
        deadline: Instant,
    ) -> Result<()> {
        let paths = &self.paths;
        match (fs, mounted_at) {
            (FsType::Ext4, Some(_)) => {}
            (FsType::Ext4, None) => self.check_ext4(device, deadline).await?,
            (FsType::Xfs, Some(mount_point)) => {
                let args = [mount_point.into()];
                return run_expecting(&paths.xfs_growfs, &args, &[0], deadline)
                    .await
                    .map(drop);
            }
            (FsType::Xfs, None) => {
                return Err(Error::invalid(
                    device.display().to_string(),
                    "XFS can only grow while mounted",
                ));
            }
        }
        run_expecting(&paths.resize2fs, &[device.into()], &[0], deadline)
            .await
            .map(drop)
    }

    /// A forced, non-interactive e2fsck: 0 = clean, 1 = errors corrected; anything else needs
    /// a human.
    async fn check_ext4(&self, device: &Path, deadline: Instant) -> Result<()> {
        let args = ["-f".into(), "-p".into(), device.into()];
        run_expecting(&self.paths.e2fsck, &args, &[0, 1], deadline)
            .await
            .map(drop)
    }

    /// Gives the unmounted filesystem on `device` a new random UUID and returns it, so a clone
    /// can be mounted beside its source. For ext4 the filesystem is checked first (tune2fs
    /// requires it, and it replays a journal left by a snapshot of a mounted source). For XFS a
    /// dirty log makes xfs_admin refuse (with exit status 0 in xfsprogs 6.1: only the UUID
    /// read back tells); it is then replayed by mounting once at `scratch` (an empty
    /// directory) with `nouuid`, and xfs_admin retried. The new UUID is verified either way.
    pub async fn regenerate_uuid(
        &self,
        fs: FsType,
        device: &Path,
        scratch: &Path,
        deadline: Instant,
    ) -> Result<String> {
        if is_claimed_exclusively(device, deadline).await? {
            return Err(Error::Busy {
                path: device.to_path_buf(),
            });
        }
        match fs {
            FsType::Ext4 => {
                self.check_ext4(device, deadline).await?;
                let set = ["-U".into(), "random".into(), device.into()];
                run_expecting(&self.paths.tune2fs, &set, &[0], deadline).await?;
            }
            FsType::Xfs => {
                let before = self.expect_filesystem(device, fs, deadline).await?.uuid;
                let set = ["-U".into(), "generate".into(), device.into()];
                let first = run_expecting(&self.paths.xfs_admin, &set, &[0], deadline).await;
                let now = self.expect_filesystem(device, fs, deadline).await?.uuid;
                if first.is_err() || now == before {
                    tracing::info!(device = %device.display(), outcome = ?first.err(),
                        "xfs_admin did not change the UUID; replaying the log by a mount, then retrying");
                    self.replay_xfs_log(device, scratch, deadline).await?;
                    run_expecting(&self.paths.xfs_admin, &set, &[0], deadline).await?;
                }
                let uuid = self.new_uuid(device, fs, deadline).await?;
                if Some(&uuid) == before.as_ref() {
                    return Err(Error::ToolOutput {
                        tool: "xfs_admin".into(),
                        reason: format!("the UUID of {} did not change", device.display()),
                    });
                }
                return Ok(uuid);
            }
        }
        self.new_uuid(device, fs, deadline).await
    }

    async fn new_uuid(&self, device: &Path, fs: FsType, deadline: Instant) -> Result<String> {
        self.expect_filesystem(device, fs, deadline)
            .await?
            .uuid
            .ok_or_else(|| Error::ToolOutput {
                tool: "blkid".into(),
                reason: format!("no UUID on {} after regeneration", device.display()),
            })
    }

    async fn replay_xfs_log(&self, device: &Path, scratch: &Path, deadline: Instant) -> Result<()> {
        let options = MountOptions::parse(["nouuid"])?;
        mount_filesystem(device, scratch, FsType::Xfs.as_str(), &options, deadline).await?;
        unmount(scratch, UnmountMode::Normal, deadline)
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::test_scripts::script;
    use std::path::PathBuf;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(20)
    }

    #[test]
    fn only_exit_two_means_empty() {
        assert_eq!(
            interpret_blkid(Exit::Code(2), "", "").unwrap(),
            Probe::Empty
        );
        for exit in [
            Exit::Code(1),
            Exit::Code(4),
            Exit::Code(8),
            Exit::Code(3),
            Exit::Signal(9),
        ] {
            assert!(
                matches!(
                    interpret_blkid(exit, "", "boom"),
                    Err(Error::ToolFailed { .. })
                ),
                "{exit:?}"
            );
        }
    }

    #[test]
    fn exit_zero_parses_the_export_format() {
        let stdout = "DEVNAME=/dev/loop0\nUUID=6b74-aa\nVERSION=1.0\nBLOCK_SIZE=1024\nTYPE=ext4\nUSAGE=filesystem\nLABEL=my\\ data\n";
        let probe = interpret_blkid(Exit::Code(0), stdout, "").unwrap();
        assert_eq!(
            probe,
            Probe::Found(Signature {
                fs_type: Some("ext4".into()),
                uuid: Some("6b74-aa".into()),
                label: Some("my data".into()),
                usage: Some("filesystem".into()),
                partition_table: None,
            })
        );
    }

    #[test]
    fn exit_zero_without_a_signature_is_not_trusted() {
        assert!(matches!(
            interpret_blkid(Exit::Code(0), "DEVNAME=/dev/x\n", ""),
            Err(Error::ToolOutput { .. })
        ));
    }

    #[test]
    fn only_plain_filesystems_count_as_formatted() {
        let fs = |fs_type: &str, usage: Option<&str>, table: Option<&str>| Signature {
            fs_type: Some(fs_type.into()),
            usage: usage.map(Into::into),
            partition_table: table.map(Into::into),
            ..Signature::default()
        };
        assert_eq!(
            fs("xfs", Some("filesystem"), None).filesystem(),
            Some("xfs")
        );
        assert_eq!(fs("xfs", None, None).filesystem(), Some("xfs"));
        assert_eq!(fs("LVM2_member", Some("raid"), None).filesystem(), None);
        assert_eq!(fs("crypto_LUKS", Some("crypto"), None).filesystem(), None);
        assert_eq!(fs("ext4", None, Some("gpt")).filesystem(), None);
        let table_only = Signature {
            partition_table: Some("dos".into()),
            ..Signature::default()
        };
        assert_eq!(table_only.describe(), "a dos partition table");
    }

    #[test]
    fn field_lesson_16_mkfs_is_lazy_and_skips_discard() {
        let extra = MkfsOptions::parse("-L 'my vol' -m 0").unwrap();
        let device = Path::new("/dev/nvme1n1");
        assert_eq!(
            mkfs_args(FsType::Ext4, device, &extra),
            [
                "-F",
                "-E",
                "lazy_itable_init=1,lazy_journal_init=1,nodiscard",
                "-L",
                "my vol",
                "-m",
                "0",
                "/dev/nvme1n1"
            ]
            .map(OsString::from)
        );
        assert_eq!(
            mkfs_args(FsType::Xfs, device, &MkfsOptions::default()),
            ["-K", "/dev/nvme1n1"].map(OsString::from)
        );
    }

    #[test]
    fn mkfs_options_must_start_with_an_option() {
        assert!(MkfsOptions::parse("/dev/sda").is_err());
        assert!(MkfsOptions::parse("-L 'unterminated").is_err());
        assert_eq!(MkfsOptions::parse("").unwrap(), MkfsOptions::default());
    }

    #[test]
    fn fs_type_names() {
        assert_eq!("xfs".parse::<FsType>().unwrap(), FsType::Xfs);
        assert_eq!(FsType::Ext4.to_string(), "ext4");
        assert!("btrfs".parse::<FsType>().is_err());
    }

    /// A tool set whose blkid and mkfs are scripts; mkfs leaves a marker when it runs.
    struct Fakes {
        dir: tempfile::TempDir,
        device: PathBuf,
        tools: FsTools,
    }

    impl Fakes {
        fn new(blkid_body: &str) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let device = dir.path().join("disk.img");
            std::fs::write(&device, vec![0u8; 8192]).unwrap();
            let marker = dir.path().join("mkfs-ran");
            let mkfs = format!("echo \"$@\" > {}", marker.display());
            let paths = ToolPaths {
                blkid: script(dir.path(), "blkid", blkid_body),
                mkfs_ext4: script(dir.path(), "mkfs.ext4", &mkfs),
                mkfs_xfs: script(dir.path(), "mkfs.xfs", &mkfs),
                ..ToolPaths::default()
            };
            Self {
                dir,
                device,
                tools: FsTools::new(paths),
            }
        }

        fn mkfs_ran(&self) -> Option<String> {
            std::fs::read_to_string(self.dir.path().join("mkfs-ran")).ok()
        }

        async fn format(&self) -> Result<FormatOutcome> {
            self.tools
                .format_if_empty(&self.device, FsType::Ext4, &MkfsOptions::default(), soon())
                .await
        }
    }

    #[tokio::test]
    async fn field_lesson_01_blkid_exit_one_never_leads_to_mkfs() {
        let fakes = Fakes::new("echo 'device not ready' >&2; exit 1");
        let result = fakes.format().await;
        assert!(
            matches!(
                result,
                Err(Error::ToolFailed {
                    status: Exit::Code(1),
                    ..
                })
            ),
            "{result:?}"
        );
        assert_eq!(fakes.mkfs_ran(), None);
    }

    #[tokio::test]
    async fn blkid_killed_or_ambivalent_never_leads_to_mkfs() {
        for body in ["kill -KILL $$", "exit 8", "exit 4"] {
            let fakes = Fakes::new(body);
            assert!(fakes.format().await.is_err(), "{body}");
            assert_eq!(fakes.mkfs_ran(), None, "{body}");
        }
    }

    #[tokio::test]
    async fn field_lesson_15_a_hung_blkid_times_out_without_mkfs() {
        let fakes = Fakes::new("sleep 30");
        let result = fakes
            .tools
            .format_if_empty(
                &fakes.device,
                FsType::Ext4,
                &MkfsOptions::default(),
                Instant::now() + Duration::from_millis(300),
            )
            .await;
        assert!(matches!(result, Err(Error::TimedOut { .. })), "{result:?}");
        assert_eq!(fakes.mkfs_ran(), None);
    }

    #[tokio::test]
    async fn an_existing_filesystem_is_reported_not_formatted() {
        let fakes = Fakes::new("echo TYPE=xfs; echo UUID=1234; exit 0");
        assert_eq!(
            fakes.format().await.unwrap(),
            FormatOutcome::AlreadyFormatted {
                fs_type: "xfs".into(),
                uuid: Some("1234".into())
            }
        );
        assert_eq!(fakes.mkfs_ran(), None);
    }

    #[tokio::test]
    async fn a_partition_table_is_refused() {
        let fakes = Fakes::new("echo PTTYPE=gpt; exit 0");
        assert!(matches!(fakes.format().await, Err(Error::NotEmpty { .. })));
        assert_eq!(fakes.mkfs_ran(), None);
    }

    /// blkid that counts its runs in the fake tools' directory and says "empty".
    const COUNTING_EMPTY_BLKID: &str = "echo run >> \"$(dirname \"$0\")/blkid-runs\"; exit 2";

    #[tokio::test]
    async fn empty_device_is_formatted_after_one_probe() {
        let fakes = Fakes::new(COUNTING_EMPTY_BLKID);
        assert_eq!(fakes.format().await.unwrap(), FormatOutcome::Formatted);
        let args = fakes.mkfs_ran().unwrap();
        assert!(
            args.starts_with("-F -E lazy_itable_init=1,lazy_journal_init=1,nodiscard "),
            "{args}"
        );
        assert!(args.trim_end().ends_with("disk.img"), "{args}");
        let runs = std::fs::read_to_string(fakes.dir.path().join("blkid-runs")).unwrap();
        assert_eq!(runs.lines().count(), 1, "blkid ran {runs:?}");
    }

    #[test]
    fn a_format_is_timed_step_by_step() {
        let fakes = Fakes::new(COUNTING_EMPTY_BLKID);
        let phases = crate::phase::capture::Phases::default();
        let outcome = crate::phase::capture::collect(&phases, fakes.format()).unwrap();
        assert_eq!(outcome, FormatOutcome::Formatted);
        assert_eq!(phases.names(), ["readable check", "blkid", "mkfs"]);
    }

    #[tokio::test]
    async fn unreadable_or_empty_devices_are_not_probed() {
        let fakes = Fakes::new("echo probed > \"$(dirname \"$0\")/probed\"; exit 2");
        std::fs::write(&fakes.device, b"").unwrap();
        assert!(matches!(
            fakes.format().await,
            Err(Error::DeviceNotReady { .. })
        ));
        std::fs::remove_file(&fakes.device).unwrap();
        assert!(matches!(
            fakes.format().await,
            Err(Error::DeviceNotReady { .. })
        ));
        assert!(!fakes.dir.path().join("probed").exists());
        assert_eq!(fakes.mkfs_ran(), None);
    }
}
