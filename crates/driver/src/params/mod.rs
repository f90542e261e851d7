//! StorageClass parameters (CreateVolume) and the VolumeContext handed to the node.
//!
//! Every parameter is validated here, before anything reaches the RDS; unknown keys are
//! rejected so that a typo in a StorageClass is an error, not a silently ignored setting.
//! The node also accepts the VolumeContext keys written by the existing Go driver, so its
//! volumes can be adopted as they are.

use std::collections::{BTreeMap, HashMap};

mod context;
pub use context::{COPY_OF, VolumeContext, migration_timeout_seconds};

/// Keys the CO itself adds to parameters (PVC/PV names, fstype, secrets references).
pub const CO_RESERVED_PREFIX: &str = "csi.storage.k8s.io/";

pub const VOLUME_PATH: &str = "volumePath";
pub const NVME_ADDRESS: &str = "nvmeAddress";
pub const NVME_PORT: &str = "nvmePort";
pub const CTRL_LOSS_TMO: &str = "ctrlLossTmo";
pub const RECONNECT_DELAY: &str = "reconnectDelay";
pub const KEEP_ALIVE_TMO: &str = "keepAliveTmo";
pub const NR_IO_QUEUES: &str = "nrIoQueues";
pub const MKFS_OPTIONS: &str = "mkfsOptions";
pub const MIGRATION_TIMEOUT_SECONDS: &str = "migrationTimeoutSeconds";
/// How the volume's snapshots are taken, which decides where its image lives.
pub const SNAPSHOT_METHOD: &str = "snapshotMethod";
/// VolumeContext only: the subsystem NQN.
pub const NQN: &str = "nqn";
/// VolumeContext only, written by the Go driver: the RDS address, used for NVMe/TCP when
/// `nvmeAddress` is absent.
pub const RDS_ADDRESS: &str = "rdsAddress";

const STORAGE_CLASS_KEYS: [&str; 10] = [
    VOLUME_PATH,
    NVME_ADDRESS,
    NVME_PORT,
    CTRL_LOSS_TMO,
    RECONNECT_DELAY,
    KEEP_ALIVE_TMO,
    NR_IO_QUEUES,
    MKFS_OPTIONS,
    MIGRATION_TIMEOUT_SECONDS,
    SNAPSHOT_METHOD,
];

/// Longest `mkfsOptions` accepted; options are split into words, never run through a shell.
const MAX_MKFS_OPTIONS_BYTES: usize = 512;
/// Longest volume path accepted; leaves room for `/<volume id>.img` within RouterOS limits.
pub const MAX_VOLUME_PATH_BYTES: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("unknown parameter {0:?} (known: {known})", known = STORAGE_CLASS_KEYS.join(", "))]
    Unknown(String),
    #[error("parameter {key}={value:?}: {reason}")]
    Invalid {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("volume context has no {0}")]
    Missing(&'static str),
}

fn invalid(key: &'static str, value: &str, reason: impl Into<String>) -> ParamError {
    ParamError::Invalid {
        key,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

/// NVMe/TCP connect options carried from StorageClass to node. `None` = kernel default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Seconds the kernel keeps reconnecting before it gives the controller up; -1 = forever.
    pub ctrl_loss_tmo: Option<i32>,
    pub reconnect_delay: Option<u32>,
    pub keep_alive_tmo: Option<u32>,
    pub nr_io_queues: Option<u32>,
}

/// How a volume's snapshots are taken (`snapshotMethod`), see docs/snapshots.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotMethod {
    /// Btrfs subvolume snapshots (RouterOS 7.18+, a btrfs pool): the volume lives in a
    /// subvolume of its own, and a snapshot shares its blocks.
    Subvolume,
    /// `subvolume` where the device can (RouterOS 7.18+, a btrfs pool, volumes at the pool's
    /// root), else a flat image, decided when the volume is created; a flat image is
    /// snapshotted by `file-copy` where RouterOS has it (7.23+), else by `disk-copy`.
    Auto,
    /// A flat image, snapshotted (and restored) by `/file copy` (RouterOS 7.23+).
    FileCopy,
    /// A flat image, snapshotted (and restored) by `/disk copy`, a block copy (any version).
    DiskCopy,
}

/// A way of copying an image (the copy methods of [`SnapshotMethod`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMethod {
    FileCopy,
    DiskCopy,
}

impl CopyMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyMethod::FileCopy => SnapshotMethod::FILE_COPY,
            CopyMethod::DiskCopy => SnapshotMethod::DISK_COPY,
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            SnapshotMethod::FILE_COPY => Some(CopyMethod::FileCopy),
            SnapshotMethod::DISK_COPY => Some(CopyMethod::DiskCopy),
            _ => None,
        }
    }
}

impl SnapshotMethod {
    pub const SUBVOLUME: &'static str = "subvolume";
    pub const AUTO: &'static str = "auto";
    pub const FILE_COPY: &'static str = "file-copy";
    pub const DISK_COPY: &'static str = "disk-copy";

    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotMethod::Subvolume => Self::SUBVOLUME,
            SnapshotMethod::Auto => Self::AUTO,
            SnapshotMethod::FileCopy => Self::FILE_COPY,
            SnapshotMethod::DiskCopy => Self::DISK_COPY,
        }
    }

    /// The copy method this names, if it names one.
    pub fn copy_method(self) -> Option<CopyMethod> {
        match self {
            SnapshotMethod::FileCopy => Some(CopyMethod::FileCopy),
            SnapshotMethod::DiskCopy => Some(CopyMethod::DiskCopy),
            SnapshotMethod::Subvolume | SnapshotMethod::Auto => None,
        }
    }

    pub fn parse(value: &str) -> Result<Self, ParamError> {
        match value.trim() {
            Self::SUBVOLUME => Ok(SnapshotMethod::Subvolume),
            Self::AUTO => Ok(SnapshotMethod::Auto),
            Self::FILE_COPY => Ok(SnapshotMethod::FileCopy),
            Self::DISK_COPY => Ok(SnapshotMethod::DiskCopy),
            _ => Err(invalid(
                SNAPSHOT_METHOD,
                value,
                "one of \"subvolume\", \"auto\", \"file-copy\", \"disk-copy\"",
            )),
        }
    }
}

/// Parsed and validated StorageClass parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeParams {
    /// Directory on the RDS holding images, without leading or trailing `/`.
    pub volume_path: Option<String>,
    pub nvme_address: Option<String>,
    pub nvme_port: Option<u16>,
    pub connect: ConnectOptions,
    pub mkfs_options: Option<String>,
    pub migration_timeout_seconds: Option<u32>,
    /// Absent: the volume's image lies flat in its directory.
    pub snapshot_method: Option<SnapshotMethod>,
}

fn parse_num<T: std::str::FromStr>(
    key: &'static str,
    value: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<T, ParamError> {
    let n: i64 = value
        .trim()
        .parse()
        .map_err(|_| invalid(key, value, "not an integer"))?;
    if !range.contains(&n) {
        return Err(invalid(
            key,
            value,
            format!("must be in {}..={}", range.start(), range.end()),
        ));
    }
    n.to_string()
        .parse()
        .map_err(|_| invalid(key, value, "out of range"))
}

/// A directory path made only of safe components (`[A-Za-z0-9._-]`, no `.`/`..`), returned
/// without leading or trailing `/`.
pub fn parse_dir_path(key: &'static str, value: &str) -> Result<String, ParamError> {
    let trimmed = value.trim_matches('/');
    let ok = !trimmed.is_empty()
        && trimmed.len() <= MAX_VOLUME_PATH_BYTES
        && trimmed.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if !ok {
        return Err(invalid(
            key,
            value,
            format!(
                "must be a path of at most {MAX_VOLUME_PATH_BYTES} bytes made of [A-Za-z0-9._-] \
                 components without '.' or '..'"
            ),
        ));
    }
    Ok(trimmed.to_owned())
}

/// True if the normalised directory `path` is `base` or lies below it.
pub fn is_within(path: &str, base: &str) -> bool {
    path == base
        || path
            .strip_prefix(base)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// A host name, IPv4 or IPv6 literal; nothing that could smuggle fabrics options.
pub fn parse_address(key: &'static str, value: &str) -> Result<String, ParamError> {
    let v = value.trim();
    if v.parse::<std::net::IpAddr>().is_ok() {
        return Ok(v.to_owned());
    }
    let hostname_ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !hostname_ok {
        return Err(invalid(key, value, "must be an IP address or a host name"));
    }
    Ok(v.to_owned())
}

fn parse_mkfs_options(value: &str) -> Result<String, ParamError> {
    if value.len() > MAX_MKFS_OPTIONS_BYTES {
        return Err(invalid(
            MKFS_OPTIONS,
            value,
            format!("longer than {MAX_MKFS_OPTIONS_BYTES} bytes"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(invalid(MKFS_OPTIONS, value, "contains control characters"));
    }
    Ok(value.trim().to_owned())
}

impl ConnectOptions {
    fn set(&mut self, key: &str, value: &str) -> Result<bool, ParamError> {
        match key {
            CTRL_LOSS_TMO => {
                self.ctrl_loss_tmo = Some(parse_num(CTRL_LOSS_TMO, value, -1..=86_400 * 365)?)
            }
            RECONNECT_DELAY => {
                self.reconnect_delay = Some(parse_num(RECONNECT_DELAY, value, 1..=3600)?)
            }
            KEEP_ALIVE_TMO => {
                self.keep_alive_tmo = Some(parse_num(KEEP_ALIVE_TMO, value, 1..=3600)?)
            }
            NR_IO_QUEUES => self.nr_io_queues = Some(parse_num(NR_IO_QUEUES, value, 1..=1024)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn write(&self, ctx: &mut BTreeMap<String, String>) {
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                ctx.insert(k.to_owned(), v);
            }
        };
        put(CTRL_LOSS_TMO, self.ctrl_loss_tmo.map(|v| v.to_string()));
        put(RECONNECT_DELAY, self.reconnect_delay.map(|v| v.to_string()));
        put(KEEP_ALIVE_TMO, self.keep_alive_tmo.map(|v| v.to_string()));
        put(NR_IO_QUEUES, self.nr_io_queues.map(|v| v.to_string()));
    }
}

impl VolumeParams {
    /// Parses StorageClass parameters; keys prefixed `csi.storage.k8s.io/` are the CO's and
    /// are ignored here, anything else unknown is an error.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, ParamError> {
        let mut p = VolumeParams::default();
        // Sorted, so that the first error reported does not depend on hash order.
        let mut entries: Vec<_> = params.iter().collect();
        entries.sort();
        for (key, value) in entries {
            if key.starts_with(CO_RESERVED_PREFIX) || p.connect.set(key, value)? {
                continue;
            }
            match key.as_str() {
                VOLUME_PATH => p.volume_path = Some(parse_dir_path(VOLUME_PATH, value)?),
                NVME_ADDRESS => p.nvme_address = Some(parse_address(NVME_ADDRESS, value)?),
                NVME_PORT => p.nvme_port = Some(parse_num(NVME_PORT, value, 1..=65535)?),
                MKFS_OPTIONS => p.mkfs_options = Some(parse_mkfs_options(value)?),
                MIGRATION_TIMEOUT_SECONDS => {
                    p.migration_timeout_seconds =
                        Some(parse_num(MIGRATION_TIMEOUT_SECONDS, value, 1..=86_400)?)
                }
                SNAPSHOT_METHOD => p.snapshot_method = Some(SnapshotMethod::parse(value)?),
                _ => return Err(ParamError::Unknown(key.clone())),
            }
        }
        Ok(p)
    }
}

impl VolumeParams {
    /// The parameters in a canonical `key=value` form (sorted, normalised values, unset
    /// parameters absent), so that equal requests compare equal however they were spelled.
    fn canonical(&self) -> BTreeMap<&'static str, String> {
        let mut out = BTreeMap::new();
        let mut put = |k: &'static str, v: Option<String>| {
            if let Some(v) = v {
                out.insert(k, v);
            }
        };
        put(VOLUME_PATH, self.volume_path.clone());
        put(NVME_ADDRESS, self.nvme_address.clone());
        put(NVME_PORT, self.nvme_port.map(|v| v.to_string()));
        put(
            CTRL_LOSS_TMO,
            self.connect.ctrl_loss_tmo.map(|v| v.to_string()),
        );
        put(
            RECONNECT_DELAY,
            self.connect.reconnect_delay.map(|v| v.to_string()),
        );
        put(
            KEEP_ALIVE_TMO,
            self.connect.keep_alive_tmo.map(|v| v.to_string()),
        );
        put(
            NR_IO_QUEUES,
            self.connect.nr_io_queues.map(|v| v.to_string()),
        );
        put(MKFS_OPTIONS, self.mkfs_options.clone());
        put(
            MIGRATION_TIMEOUT_SECONDS,
            self.migration_timeout_seconds.map(|v| v.to_string()),
        );
        put(
            SNAPSHOT_METHOD,
            self.snapshot_method.map(|m| m.as_str().to_owned()),
        );
        out
    }

    /// A short digest (16 hex digits of SHA-256) of the canonical parameters, recorded on the
    /// disk so that a later CreateVolume with the same name can tell whether its parameters
    /// are the ones the volume was made with.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        for (key, value) in self.canonical() {
            // Length-prefixed, so no choice of values can make two different maps collide.
            hasher.update(format!("{}:{key}{}:{value}", key.len(), value.len()));
        }
        hasher.finalize()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_parameter() {
        let p = VolumeParams::parse(&map(&[
            ("volumePath", "/storage-pool/k8s/"),
            ("nvmeAddress", "10.0.0.5"),
            ("nvmePort", "4421"),
            ("ctrlLossTmo", "-1"),
            ("reconnectDelay", "2"),
            ("keepAliveTmo", "5"),
            ("nrIoQueues", "4"),
            ("mkfsOptions", "-m 0 -E stride=16"),
            ("migrationTimeoutSeconds", "300"),
            ("csi.storage.k8s.io/pvc/name", "data"),
        ]))
        .unwrap();
        assert_eq!(p.volume_path.as_deref(), Some("storage-pool/k8s"));
        assert_eq!(p.nvme_address.as_deref(), Some("10.0.0.5"));
        assert_eq!(p.nvme_port, Some(4421));
        assert_eq!(p.connect.ctrl_loss_tmo, Some(-1));
        assert_eq!(p.connect.reconnect_delay, Some(2));
        assert_eq!(p.connect.keep_alive_tmo, Some(5));
        assert_eq!(p.connect.nr_io_queues, Some(4));
        assert_eq!(p.mkfs_options.as_deref(), Some("-m 0 -E stride=16"));
        assert_eq!(p.migration_timeout_seconds, Some(300));
    }

    #[test]
    fn rejects_unknown_and_bad_values() {
        assert_eq!(
            VolumeParams::parse(&map(&[("volumepath", "x")])),
            Err(ParamError::Unknown("volumepath".into()))
        );
        for (k, v) in [
            ("nvmePort", "0"),
            ("nvmePort", "70000"),
            ("nvmePort", "44a"),
            ("ctrlLossTmo", "-2"),
            ("reconnectDelay", "0"),
            ("nrIoQueues", "99999"),
            ("volumePath", "../etc"),
            ("volumePath", "pool/../x"),
            ("volumePath", "pool/a b"),
            ("volumePath", "pool/x\";[/disk remove]"),
            ("nvmeAddress", "10.0.0.1,nqn=evil"),
            ("nvmeAddress", "host name"),
            ("mkfsOptions", "-E x\n-F"),
            ("migrationTimeoutSeconds", "0"),
        ] {
            assert!(
                matches!(
                    VolumeParams::parse(&map(&[(k, v)])),
                    Err(ParamError::Invalid { .. })
                ),
                "{k}={v:?}"
            );
        }
    }

    #[test]
    fn digest_ignores_spelling_and_co_keys_but_not_values() {
        let a = VolumeParams::parse(&map(&[
            ("volumePath", "/storage-pool/k8s/"),
            ("nvmePort", "4420"),
            ("csi.storage.k8s.io/pvc/name", "one"),
        ]))
        .unwrap();
        let b = VolumeParams::parse(&map(&[
            ("volumePath", "storage-pool/k8s"),
            ("nvmePort", " 4420"),
            ("csi.storage.k8s.io/pvc/name", "two"),
        ]))
        .unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.digest().len(), 16);
        let c = VolumeParams::parse(&map(&[
            ("volumePath", "storage-pool/k8s"),
            ("nvmePort", "4421"),
        ]))
        .unwrap();
        assert_ne!(a.digest(), c.digest());
        assert_ne!(VolumeParams::default().digest(), a.digest());
    }

    #[test]
    fn paths_within_a_base() {
        assert!(is_within("storage-pool", "storage-pool"));
        assert!(is_within("storage-pool/k8s", "storage-pool"));
        assert!(!is_within("storage-pool2", "storage-pool"));
        assert!(!is_within("other/storage-pool", "storage-pool"));
        assert!(parse_dir_path(VOLUME_PATH, &"a".repeat(MAX_VOLUME_PATH_BYTES)).is_ok());
        assert!(parse_dir_path(VOLUME_PATH, &"a".repeat(MAX_VOLUME_PATH_BYTES + 1)).is_err());
    }

    #[test]
    fn context_round_trip() {
        let ctx = VolumeContext {
            nqn: "nqn.2000-02.com.mikrotik:pvc-1".into(),
            nvme_address: "rds.local".into(),
            nvme_port: 4420,
            connect: ConnectOptions {
                ctrl_loss_tmo: Some(-1),
                reconnect_delay: None,
                keep_alive_tmo: Some(5),
                nr_io_queues: None,
            },
            mkfs_options: None,
            volume_path: Some("storage-pool".into()),
            migration_timeout_seconds: Some(120),
            copy_of: Some("snap-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60".into()),
        };
        let m: HashMap<_, _> = ctx.to_map().into_iter().collect();
        assert_eq!(VolumeContext::parse(&m), Ok(ctx));
    }

    #[test]
    fn accepts_go_driver_context() {
        let ctx = VolumeContext::parse(&map(&[
            (
                "nqn",
                "nqn.2000-02.com.mikrotik:pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60",
            ),
            ("rdsAddress", "192.168.88.1"),
            ("nvmePort", "4420"),
            ("ctrlLossTmo", "-1"),
            ("reconnectDelay", "5"),
            ("keepAliveTmo", "10"),
            ("volumePath", "/storage-pool/metal-csi"),
            ("someOldKey", "ignored"),
        ]))
        .unwrap();
        assert_eq!(ctx.nvme_address, "192.168.88.1");
        assert_eq!(ctx.connect.ctrl_loss_tmo, Some(-1));
        assert_eq!(ctx.volume_path.as_deref(), Some("storage-pool/metal-csi"));
    }

    #[test]
    fn go_driver_keep_alive_zero_is_the_kernel_default() {
        let ctx = VolumeContext::parse(&map(&[
            ("nqn", "nqn.2000-02.com.mikrotik:pvc-1"),
            ("nvmeAddress", "10.42.68.1"),
            ("keepAliveTmo", "0"),
        ]))
        .unwrap();
        assert_eq!(ctx.connect.keep_alive_tmo, None);
        assert!(!ctx.to_map().contains_key(KEEP_ALIVE_TMO));
        // A StorageClass still may not ask for it: 0 is not a keep-alive.
        assert!(VolumeParams::parse(&map(&[("keepAliveTmo", "0")])).is_err());
        // Other bad values in a context are still refused.
        assert!(
            VolumeContext::parse(&map(&[
                ("nqn", "nqn.x:y"),
                ("nvmeAddress", "1.2.3.4"),
                ("keepAliveTmo", "-1"),
            ]))
            .is_err()
        );
    }

    #[test]
    fn context_needs_nqn_and_address() {
        assert_eq!(
            VolumeContext::parse(&map(&[("nvmeAddress", "1.2.3.4")])),
            Err(ParamError::Missing(NQN))
        );
        assert_eq!(
            VolumeContext::parse(&map(&[("nqn", "nqn.x:y")])),
            Err(ParamError::Missing(NVME_ADDRESS))
        );
        assert!(VolumeContext::parse(&map(&[("nqn", "a,b"), ("nvmeAddress", "1.2.3.4")])).is_err());
    }
}
