//! Checks of the requests' fields, turned into typed values before anything touches the
//! node. Pure: no I/O here.

use std::path::PathBuf;
use std::time::Duration;

use csi::v1::VolumeCapability;
use csi::v1::volume_capability::AccessType;
use mounts::format::FsType;
use mounts::mount::MountOptions;

use super::error::{NodeError, Result};
use crate::capabilities;
use crate::naming;
use crate::params::VolumeContext;

/// Filesystem used when a mount capability names none.
pub const DEFAULT_FS: FsType = FsType::Ext4;

/// A volume id from a request, with the subsystem NQN it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: String,
    /// `<nqn prefix>:<id>` for ids this driver creates; `None` for any other id, which can
    /// never be attached here and is never disconnected.
    pub nqn: Option<String>,
}

impl Volume {
    pub fn parse(id: &str, nqn_prefix: &str) -> Result<Self> {
        if id.is_empty() {
            return Err(NodeError::Missing("volume_id"));
        }
        naming::validate_csi_name(id)
            .map_err(|e| NodeError::invalid("volume_id", e.to_string()))?;
        Ok(Self {
            id: id.to_owned(),
            nqn: naming::is_managed_volume_id(id).then(|| naming::nqn_for_volume(nqn_prefix, id)),
        })
    }

    /// The NQN, for calls that need the volume to be one of ours.
    pub fn require_nqn(&self) -> Result<&str> {
        self.nqn.as_deref().ok_or_else(|| NodeError::NotFound {
            volume_id: self.id.clone(),
            reason: "not a volume id this driver creates".into(),
        })
    }

    /// Parses the volume context and checks that it names this volume's NQN: unstage only
    /// has the volume id to find the device by, so a context pointing elsewhere would stage
    /// something that can never be cleanly unstaged.
    pub fn context(
        &self,
        raw: &std::collections::HashMap<String, String>,
    ) -> Result<VolumeContext> {
        let nqn = self.require_nqn()?;
        let context = VolumeContext::parse(raw)?;
        if context.nqn != nqn {
            return Err(NodeError::invalid(
                "volume_context",
                format!(
                    "NQN {:?} does not belong to volume {} (expected {nqn:?}; check --nqn-prefix)",
                    context.nqn, self.id
                ),
            ));
        }
        Ok(context)
    }
}

/// A required absolute path.
pub fn absolute_path(field: &'static str, value: &str) -> Result<PathBuf> {
    if value.is_empty() {
        return Err(NodeError::Missing(field));
    }
    if value.contains('\0') {
        return Err(NodeError::invalid(field, "contains a NUL byte"));
    }
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(NodeError::invalid(
            field,
            format!("{value:?} is not absolute"),
        ));
    }
    Ok(path)
}

/// The `volume_path` of NodeGetVolumeStats and NodeExpandVolume: required, but a path that
/// cannot hold the volume (not absolute) means the volume does not exist there, which the spec
/// answers with NOT_FOUND rather than a malformed request.
pub fn volume_path(volume: &Volume, value: &str) -> Result<PathBuf> {
    match absolute_path("volume_path", value) {
        Err(NodeError::Invalid { reason, .. }) => Err(NodeError::NotFound {
            volume_id: volume.id.clone(),
            reason: format!("not at volume_path: {reason}"),
        }),
        other => other,
    }
}

/// How the volume is consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Block,
    Filesystem { fs: FsType, options: MountOptions },
}

/// A checked volume capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capability {
    pub access: Access,
    /// The access mode only allows reading.
    pub reader_only: bool,
    /// The mount flags as the CO gave them (empty for block), kept for a re-stage.
    pub mount_flags: Vec<String>,
}

impl Capability {
    pub fn parse(capability: Option<&VolumeCapability>) -> Result<Self> {
        let capability = capability.ok_or(NodeError::Missing("volume_capability"))?;
        let invalid = |reason: String| NodeError::invalid("volume_capability", reason);
        let supported = capabilities::inspect(capability).map_err(|e| invalid(e.to_string()))?;
        // `inspect` refused a capability without an access type.
        let mut mount_flags = Vec::new();
        let access = match &capability.access_type {
            Some(AccessType::Mount(mount)) => {
                mount_flags.clone_from(&mount.mount_flags);
                if !mount.volume_mount_group.is_empty() {
                    return Err(invalid(
                        "volume_mount_group is not supported by this driver".into(),
                    ));
                }
                let fs = match mount.fs_type.as_str() {
                    "" => DEFAULT_FS,
                    other => other
                        .parse()
                        .map_err(|e: mounts::Error| invalid(e.to_string()))?,
                };
                let options =
                    MountOptions::parse(&mount.mount_flags).map_err(|e| invalid(e.to_string()))?;
                Access::Filesystem { fs, options }
            }
            _ => Access::Block,
        };
        Ok(Self {
            access,
            reader_only: supported.reader_only(),
            mount_flags,
        })
    }
}

/// Longest operation the node accepts to run, whatever the caller's timeout says.
pub const MAX_OPERATION_TIME: Duration = Duration::from_secs(600);

/// Parses gRPC's `grpc-timeout` header: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn grpc_timeout(text: &str) -> Option<Duration> {
    let split = text.len().checked_sub(1)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// How long an operation may take: the caller's timeout when it sent one (it will not wait
/// longer), else `default`; never more than [`MAX_OPERATION_TIME`].
pub fn operation_time(caller: Option<Duration>, default: Duration) -> Duration {
    caller.unwrap_or(default).min(MAX_OPERATION_TIME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi::v1::volume_capability::access_mode::Mode;
    use csi::v1::volume_capability::{AccessMode, BlockVolume, MountVolume};
    use std::collections::HashMap;

    const PREFIX: &str = "nqn.2000-02.com.mikrotik";
    const PVC: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";

    fn mount(fs: &str, flags: &[&str], mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(AccessType::Mount(MountVolume {
                fs_type: fs.into(),
                mount_flags: flags.iter().map(|f| f.to_string()).collect(),
                volume_mount_group: String::new(),
            })),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    fn block(mode: Mode) -> VolumeCapability {
        VolumeCapability {
            access_type: Some(AccessType::Block(BlockVolume {})),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    #[test]
    fn managed_ids_map_to_nqns_and_others_do_not() {
        let volume = Volume::parse(PVC, PREFIX).unwrap();
        assert_eq!(volume.nqn.as_deref(), Some(&*format!("{PREFIX}:{PVC}")));
        let foreign = Volume::parse("some-volume", PREFIX).unwrap();
        assert_eq!(foreign.nqn, None);
        assert!(matches!(
            foreign.require_nqn(),
            Err(NodeError::NotFound { .. })
        ));
        assert!(matches!(
            Volume::parse("", PREFIX),
            Err(NodeError::Missing("volume_id"))
        ));
        assert!(matches!(
            Volume::parse("a\u{1}b", PREFIX),
            Err(NodeError::Invalid { .. })
        ));
    }

    #[test]
    fn the_context_must_name_the_volumes_own_nqn() {
        let volume = Volume::parse(PVC, PREFIX).unwrap();
        let context = |nqn: &str| -> HashMap<String, String> {
            [("nqn", nqn), ("nvmeAddress", "10.0.0.1")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        let parsed = volume
            .context(&context(&format!("{PREFIX}:{PVC}")))
            .unwrap();
        assert_eq!(parsed.nvme_port, 4420);
        assert!(matches!(
            volume.context(&context("nqn.2000-02.com.mikrotik:pvc-other")),
            Err(NodeError::Invalid {
                field: "volume_context",
                ..
            })
        ));
        assert!(matches!(
            volume.context(&HashMap::new()),
            Err(NodeError::Context(_))
        ));
    }

    #[test]
    fn paths_must_be_present_and_absolute() {
        assert_eq!(
            absolute_path("target_path", "/a/b").unwrap(),
            PathBuf::from("/a/b")
        );
        assert!(matches!(
            absolute_path("target_path", ""),
            Err(NodeError::Missing("target_path"))
        ));
        assert!(matches!(
            absolute_path("target_path", "a/b"),
            Err(NodeError::Invalid { .. })
        ));
        assert!(matches!(
            absolute_path("target_path", "/a\0"),
            Err(NodeError::Invalid { .. })
        ));
    }

    #[test]
    fn a_volume_path_that_cannot_hold_the_volume_is_not_found() {
        let volume = Volume::parse(PVC, PREFIX).unwrap();
        assert_eq!(volume_path(&volume, "/a/b").unwrap(), PathBuf::from("/a/b"));
        assert!(matches!(
            volume_path(&volume, ""),
            Err(NodeError::Missing("volume_path"))
        ));
        for elsewhere in ["some/path", "/a\0"] {
            assert!(
                matches!(
                    volume_path(&volume, elsewhere),
                    Err(NodeError::NotFound { .. })
                ),
                "{elsewhere:?}"
            );
        }
    }

    #[test]
    fn capabilities_parse_into_access_and_mode() {
        let fs = Capability::parse(Some(&mount("", &["noatime"], Mode::SingleNodeWriter))).unwrap();
        assert_eq!(
            fs.access,
            Access::Filesystem {
                fs: FsType::Ext4,
                options: MountOptions::parse(["noatime"]).unwrap()
            }
        );
        assert!(!fs.reader_only);
        let xfs = Capability::parse(Some(&mount("xfs", &[], Mode::SingleNodeReaderOnly))).unwrap();
        assert!(matches!(
            xfs.access,
            Access::Filesystem {
                fs: FsType::Xfs,
                ..
            }
        ));
        assert!(xfs.reader_only);
        let shared = Capability::parse(Some(&block(Mode::MultiNodeMultiWriter))).unwrap();
        assert_eq!(shared.access, Access::Block);
    }

    #[test]
    fn unsupported_capabilities_are_invalid_arguments() {
        let mut no_mode = block(Mode::SingleNodeWriter);
        no_mode.access_mode = None;
        let mut no_type = block(Mode::SingleNodeWriter);
        no_type.access_type = None;
        let mut group = mount("ext4", &[], Mode::SingleNodeWriter);
        if let Some(AccessType::Mount(m)) = &mut group.access_type {
            m.volume_mount_group = "1000".into();
        }
        let cases = [
            mount("ext4", &[], Mode::MultiNodeMultiWriter),
            mount("btrfs", &[], Mode::SingleNodeWriter),
            mount("ext4", &["bind"], Mode::SingleNodeWriter),
            block(Mode::MultiNodeReaderOnly),
            block(Mode::Unknown),
            no_mode,
            no_type,
            group,
        ];
        for case in cases {
            assert!(
                matches!(
                    Capability::parse(Some(&case)),
                    Err(NodeError::Invalid { .. })
                ),
                "{case:?}"
            );
        }
        assert!(matches!(
            Capability::parse(None),
            Err(NodeError::Missing("volume_capability"))
        ));
    }

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        assert_eq!(grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(grpc_timeout("3M"), Some(Duration::from_secs(180)));
        assert_eq!(grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(grpc_timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(grpc_timeout("7u"), Some(Duration::from_micros(7)));
        assert_eq!(grpc_timeout("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "10", "10s", "123456789S", "-1S", "1.5S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn operation_time_follows_the_caller_within_bounds() {
        let default = Duration::from_secs(120);
        assert_eq!(operation_time(None, default), default);
        assert_eq!(
            operation_time(Some(Duration::from_secs(5)), default),
            Duration::from_secs(5)
        );
        assert_eq!(
            operation_time(Some(Duration::from_secs(7200)), default),
            MAX_OPERATION_TIME
        );
    }
}
