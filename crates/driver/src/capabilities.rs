//! Which volume capabilities (access type × access mode) the driver supports, and why.
//!
//! A volume is one NVMe namespace exported by the RDS. Any single node may use it as a block
//! device or a filesystem. Several nodes may share it only as a raw block device whose users
//! coordinate writes themselves: that is KubeVirt live migration, where the source and target
//! VM briefly hold the disk together. Everything else that spans nodes is refused:
//! - a filesystem (ext4, xfs) mounted by two nodes is corrupted, since neither is a cluster
//!   filesystem, so MULTI_NODE_* is never offered for mounts;
//! - MULTI_NODE_READER_ONLY and MULTI_NODE_SINGLE_WRITER promise read-only access on some
//!   nodes, which the RDS cannot enforce (an export has no per-host read-only setting).

use csi::v1::VolumeCapability;
use csi::v1::volume_capability::AccessType;
use csi::v1::volume_capability::access_mode::Mode;

/// Filesystems the node plugin can create and grow.
pub const SUPPORTED_FS_TYPES: [&str; 2] = ["ext4", "xfs"];

/// How a volume is consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    Block,
    Mount,
}

impl std::fmt::Display for AccessKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AccessKind::Block => "block",
            AccessKind::Mount => "filesystem",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("volume_capabilities must list at least one capability")]
    Empty,
    #[error("a volume capability names no access type (block or mount)")]
    NoAccessType,
    #[error("a volume capability names no access mode")]
    NoAccessMode,
    #[error("unknown access mode {0}")]
    UnknownMode(i32),
    #[error("access mode {mode} is not supported for {kind} volumes: {reason}")]
    Unsupported {
        mode: &'static str,
        kind: AccessKind,
        reason: &'static str,
    },
    #[error("filesystem type {0:?} is not supported (supported: ext4, xfs)")]
    FsType(String),
}

const NO_SHARED_FILESYSTEM: &str =
    "a filesystem mounted by two nodes is corrupted (ext4 and xfs are not cluster filesystems)";
const NO_READ_ONLY_EXPORT: &str =
    "the RDS cannot export a volume read-only to some hosts, so the promise cannot be kept";

/// A capability the driver supports: how the volume is consumed, under which access mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Supported {
    pub kind: AccessKind,
    pub mode: Mode,
}

impl Supported {
    /// The mode only allows reading.
    pub fn reader_only(&self) -> bool {
        matches!(
            self.mode,
            Mode::SingleNodeReaderOnly | Mode::MultiNodeReaderOnly
        )
    }
}

/// Checks one capability; returns how the volume will be consumed.
pub fn check(capability: &VolumeCapability) -> Result<AccessKind, CapabilityError> {
    inspect(capability).map(|supported| supported.kind)
}

/// Checks one capability; returns how the volume will be consumed and under which mode.
pub fn inspect(capability: &VolumeCapability) -> Result<Supported, CapabilityError> {
    let kind = match &capability.access_type {
        Some(AccessType::Block(_)) => AccessKind::Block,
        Some(AccessType::Mount(mount)) => {
            let fs = mount.fs_type.as_str();
            if !fs.is_empty() && !SUPPORTED_FS_TYPES.contains(&fs) {
                return Err(CapabilityError::FsType(mount.fs_type.clone()));
            }
            AccessKind::Mount
        }
        None => return Err(CapabilityError::NoAccessType),
    };
    let raw_mode = capability
        .access_mode
        .as_ref()
        .ok_or(CapabilityError::NoAccessMode)?
        .mode;
    let mode = Mode::try_from(raw_mode).map_err(|_| CapabilityError::UnknownMode(raw_mode))?;
    let refusal = match (mode, kind) {
        (Mode::Unknown, _) => return Err(CapabilityError::UnknownMode(raw_mode)),
        (
            Mode::SingleNodeWriter
            | Mode::SingleNodeSingleWriter
            | Mode::SingleNodeMultiWriter
            | Mode::SingleNodeReaderOnly,
            _,
        ) => None,
        (Mode::MultiNodeMultiWriter, AccessKind::Block) => None,
        (Mode::MultiNodeMultiWriter, AccessKind::Mount) => Some(NO_SHARED_FILESYSTEM),
        (Mode::MultiNodeReaderOnly | Mode::MultiNodeSingleWriter, _) => Some(NO_READ_ONLY_EXPORT),
    };
    match refusal {
        None => Ok(Supported { kind, mode }),
        Some(reason) => Err(CapabilityError::Unsupported {
            mode: mode.as_str_name(),
            kind,
            reason,
        }),
    }
}

/// Checks a request's list of capabilities: at least one, and every one supported.
pub fn check_all(capabilities: &[VolumeCapability]) -> Result<(), CapabilityError> {
    if capabilities.is_empty() {
        return Err(CapabilityError::Empty);
    }
    capabilities.iter().try_for_each(|c| check(c).map(|_| ()))
}

/// Whether the node must grow a filesystem after ControllerExpandVolume: yes for mounts, no for
/// raw block; when the CO does not say, assume a filesystem (growing one that is not there is
/// a cheap no-op, skipping a needed one leaves the space unusable).
pub fn node_expansion_required(capability: Option<&VolumeCapability>) -> bool {
    !matches!(
        capability.and_then(|c| c.access_type.as_ref()),
        Some(AccessType::Block(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use csi::v1::volume_capability::{AccessMode, BlockVolume, MountVolume};

    fn cap(block: bool, mode: Mode) -> VolumeCapability {
        let access_type = if block {
            AccessType::Block(BlockVolume {})
        } else {
            AccessType::Mount(MountVolume {
                fs_type: "ext4".into(),
                ..Default::default()
            })
        };
        VolumeCapability {
            access_type: Some(access_type),
            access_mode: Some(AccessMode { mode: mode as i32 }),
        }
    }

    #[test]
    fn single_node_modes_work_for_block_and_mount() {
        for mode in [
            Mode::SingleNodeWriter,
            Mode::SingleNodeSingleWriter,
            Mode::SingleNodeMultiWriter,
            Mode::SingleNodeReaderOnly,
        ] {
            assert_eq!(check(&cap(true, mode)), Ok(AccessKind::Block), "{mode:?}");
            assert_eq!(check(&cap(false, mode)), Ok(AccessKind::Mount), "{mode:?}");
        }
    }

    #[test]
    fn multi_node_writer_only_for_block() {
        assert_eq!(
            check(&cap(true, Mode::MultiNodeMultiWriter)),
            Ok(AccessKind::Block)
        );
        let err = check(&cap(false, Mode::MultiNodeMultiWriter)).unwrap_err();
        assert!(err.to_string().contains("not cluster filesystems"), "{err}");
        for mode in [Mode::MultiNodeReaderOnly, Mode::MultiNodeSingleWriter] {
            for block in [true, false] {
                assert!(
                    matches!(
                        check(&cap(block, mode)),
                        Err(CapabilityError::Unsupported { .. })
                    ),
                    "{mode:?} block={block}"
                );
            }
        }
    }

    #[test]
    fn only_reader_modes_are_reader_only() {
        let reader = inspect(&cap(false, Mode::SingleNodeReaderOnly)).unwrap();
        assert!(reader.reader_only());
        for mode in [
            Mode::SingleNodeWriter,
            Mode::SingleNodeSingleWriter,
            Mode::SingleNodeMultiWriter,
        ] {
            assert!(
                !inspect(&cap(false, mode)).unwrap().reader_only(),
                "{mode:?}"
            );
        }
        assert!(
            !inspect(&cap(true, Mode::MultiNodeMultiWriter))
                .unwrap()
                .reader_only()
        );
    }

    #[test]
    fn malformed_capabilities_are_refused() {
        let mut c = cap(true, Mode::SingleNodeWriter);
        c.access_type = None;
        assert_eq!(check(&c), Err(CapabilityError::NoAccessType));
        let mut c = cap(true, Mode::SingleNodeWriter);
        c.access_mode = None;
        assert_eq!(check(&c), Err(CapabilityError::NoAccessMode));
        let mut c = cap(true, Mode::SingleNodeWriter);
        c.access_mode = Some(AccessMode { mode: 99 });
        assert_eq!(check(&c), Err(CapabilityError::UnknownMode(99)));
        assert_eq!(
            check(&cap(true, Mode::Unknown)),
            Err(CapabilityError::UnknownMode(0))
        );
        let mut c = cap(false, Mode::SingleNodeWriter);
        c.access_type = Some(AccessType::Mount(MountVolume {
            fs_type: "ntfs".into(),
            ..Default::default()
        }));
        assert_eq!(check(&c), Err(CapabilityError::FsType("ntfs".into())));
        assert_eq!(check_all(&[]), Err(CapabilityError::Empty));
        assert!(
            check_all(&[
                cap(true, Mode::SingleNodeWriter),
                cap(false, Mode::MultiNodeMultiWriter)
            ])
            .is_err()
        );
    }

    #[test]
    fn node_expansion_only_for_filesystems() {
        assert!(!node_expansion_required(Some(&cap(
            true,
            Mode::SingleNodeWriter
        ))));
        assert!(node_expansion_required(Some(&cap(
            false,
            Mode::SingleNodeWriter
        ))));
        assert!(node_expansion_required(None));
    }
}
