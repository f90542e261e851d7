//! The one place where a driver error becomes a gRPC status, following the CSI spec's error
//! tables.
//!
//! Decisions worth knowing:
//! - A RouterOS `Invalid` is a command the device refused after our own validation accepted
//!   it: our bug or a device difference, not the caller's fault, so `INTERNAL`.
//! - `Unauthenticated` from the RDS is `UNAVAILABLE`: the CO should keep retrying while the
//!   operator fixes the controller's credentials; the message says so.
//! - An operation already running for a volume, and a stale listing token, are `ABORTED`.
//! - A publish refused by attach fencing is `FAILED_PRECONDITION` (the spec's "published to
//!   another node"), except the same node asking with another capability: `ALREADY_EXISTS`
//!   ("volume published but is incompatible"). An attachment state not readable yet is
//!   `UNAVAILABLE`.
//! - On a node, a state a retry cannot change by itself (a path holding something else, a
//!   device still in use) is `FAILED_PRECONDITION`; a lower layer's timeout is
//!   `DEADLINE_EXCEEDED` and its transient failure `UNAVAILABLE`.

use tonic::{Code, Status};

use crate::capacity::SizeError;
use crate::controller::fence::FenceError;
use crate::error::DriverError;
use crate::node::{FabricError, NodeError};

/// An error with its place in the CSI spec's error tables.
pub trait SpecCode {
    fn spec_code(&self) -> Code;
}

/// The gRPC code for an error.
pub fn code_of(error: &impl SpecCode) -> Code {
    error.spec_code()
}

impl SpecCode for DriverError {
    fn spec_code(&self) -> Code {
        driver_code(self)
    }
}

impl SpecCode for NodeError {
    fn spec_code(&self) -> Code {
        node_code(self)
    }
}

fn driver_code(error: &DriverError) -> Code {
    match error {
        DriverError::MissingField(_)
        | DriverError::Name(_)
        | DriverError::Params(_)
        | DriverError::Capability(_)
        | DriverError::InvalidField { .. }
        | DriverError::NotSupported(_) => Code::InvalidArgument,
        DriverError::Size(SizeError::Negative { .. } | SizeError::Unset) => Code::InvalidArgument,
        DriverError::Size(_) => Code::OutOfRange,
        DriverError::VolumeNotFound(_)
        | DriverError::SnapshotNotFound(_)
        | DriverError::NodeNotFound(_) => Code::NotFound,
        DriverError::SourceBeyondLimit { .. } => Code::OutOfRange,
        DriverError::Incompatible { .. } => Code::AlreadyExists,
        DriverError::InsufficientSpace { .. } => Code::ResourceExhausted,
        DriverError::OperationPending(_) | DriverError::InvalidToken(_) => Code::Aborted,
        DriverError::PoolUnusable { .. } | DriverError::Precondition(_) => Code::FailedPrecondition,
        DriverError::Internal(_) => Code::Internal,
        DriverError::Fence(refusal) if matches!(**refusal, FenceError::Incompatible { .. }) => {
            Code::AlreadyExists
        }
        DriverError::Fence(_) => Code::FailedPrecondition,
        DriverError::AttachmentState(_) => Code::Unavailable,
        DriverError::Rds(rds) => match rds {
            routeros::Error::NotFound(_) => Code::NotFound,
            routeros::Error::AlreadyExists(_) => Code::AlreadyExists,
            routeros::Error::NoSpace(_) => Code::ResourceExhausted,
            routeros::Error::Unavailable(_) | routeros::Error::Unauthenticated(_) => {
                Code::Unavailable
            }
            routeros::Error::Unsupported(_) => Code::FailedPrecondition,
            routeros::Error::Invalid(_) | routeros::Error::Protocol(_) => Code::Internal,
        },
    }
}

fn mounts_code(error: &mounts::Error) -> Code {
    use mounts::Error as M;
    match error {
        M::InvalidOption { .. } => Code::InvalidArgument,
        M::TimedOut { .. } => Code::DeadlineExceeded,
        M::DeviceNotReady { .. } => Code::Unavailable,
        // Something at a path or on a device that a retry cannot change by itself; never a
        // reason to format or remove anything.
        M::Busy { .. }
        | M::StaleMount { .. }
        | M::IsMountPoint { .. }
        | M::NotEmpty { .. }
        | M::UnexpectedNode { .. } => Code::FailedPrecondition,
        M::Io { source, .. } if source.raw_os_error() == Some(enotempty()) => {
            Code::FailedPrecondition
        }
        M::Io { .. }
        | M::MountInfo { .. }
        | M::ToolSpawn { .. }
        | M::ToolFailed { .. }
        | M::ToolOutput { .. } => Code::Internal,
    }
}

fn enotempty() -> i32 {
    rustix::io::Errno::NOTEMPTY.raw_os_error()
}

fn nvme_code(error: &nvme::Error) -> Code {
    use nvme::Error as E;
    match error {
        E::Connect { failure, .. } => match failure {
            nvme::ConnectFailure::InvalidOptions => Code::InvalidArgument,
            nvme::ConnectFailure::FabricsUnavailable => Code::FailedPrecondition,
            failure if failure.is_transient() => Code::Unavailable,
            _ => Code::Internal,
        },
        E::Invalid { .. } => Code::InvalidArgument,
        // A volume context naming an NQN this node may not manage is a configuration error.
        E::ForeignNqn { .. } | E::Identity(_) => Code::FailedPrecondition,
        E::TimedOut { .. } => Code::DeadlineExceeded,
        E::Stuck { .. } => Code::Unavailable,
        E::InUse { .. } => Code::FailedPrecondition,
        E::Mounts(inner) => mounts_code(inner),
        E::BadReply(_) | E::Sysfs { .. } | E::SysfsFormat { .. } => Code::Internal,
    }
}

fn fabric_code(error: &FabricError) -> Code {
    match error {
        FabricError::Nvme(inner) => nvme_code(inner),
        FabricError::Mounts(inner) => mounts_code(inner),
        FabricError::NotExported { .. } => Code::NotFound,
        FabricError::InUse { .. } => Code::FailedPrecondition,
        FabricError::Resolve { .. } => Code::Unavailable,
        FabricError::TimedOut(_) => Code::DeadlineExceeded,
        FabricError::TooSmall { .. } => Code::Internal,
        FabricError::ExportRecord { .. } | FabricError::Unexpected(_) => Code::Internal,
    }
}

fn node_code(error: &NodeError) -> Code {
    match error {
        NodeError::Missing(_) | NodeError::Invalid { .. } | NodeError::Context(_) => {
            Code::InvalidArgument
        }
        NodeError::NotFound { .. } | NodeError::PathNotFound(_) => Code::NotFound,
        NodeError::Precondition(_) => Code::FailedPrecondition,
        NodeError::Incompatible(_) => Code::AlreadyExists,
        NodeError::OperationPending(_) => Code::Aborted,
        NodeError::Unavailable(_) => Code::Unavailable,
        NodeError::OutOfRange(_) => Code::OutOfRange,
        NodeError::Internal(_) => Code::Internal,
        NodeError::Fabric(inner) => fabric_code(inner),
        NodeError::Mount(inner) => mounts_code(inner),
    }
}

impl From<NodeError> for Status {
    fn from(error: NodeError) -> Self {
        Status::new(code_of(&error), error.to_string())
    }
}

impl From<DriverError> for Status {
    fn from(error: DriverError) -> Self {
        let code = code_of(&error);
        let message = match &error {
            DriverError::Rds(routeros::Error::Unauthenticated(_)) => format!(
                "{error}; the RDS refused the controller's credentials or identity: the operator \
                 must fix the configured user, key, password or pinned host key/certificate"
            ),
            _ => error.to_string(),
        };
        Status::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::CapabilityError;
    use crate::naming::NameError;
    use crate::params::ParamError;
    use std::io;

    #[test]
    fn every_error_has_its_spec_code() {
        let rds = |e: routeros::Error| DriverError::Rds(e);
        let cases = [
            (DriverError::MissingField("name"), Code::InvalidArgument),
            (DriverError::Name(NameError::Empty), Code::InvalidArgument),
            (
                DriverError::Params(ParamError::Unknown("x".into())),
                Code::InvalidArgument,
            ),
            (
                DriverError::Capability(CapabilityError::Empty),
                Code::InvalidArgument,
            ),
            (
                DriverError::NotSupported("snapshots".into()),
                Code::InvalidArgument,
            ),
            (
                DriverError::InvalidField {
                    field: "max_entries",
                    reason: "negative".into(),
                },
                Code::InvalidArgument,
            ),
            (
                DriverError::Size(SizeError::Negative {
                    required: -1,
                    limit: 0,
                }),
                Code::InvalidArgument,
            ),
            (DriverError::Size(SizeError::Unset), Code::InvalidArgument),
            (
                DriverError::Size(SizeError::RequiredAboveLimit {
                    required: 2,
                    limit: 1,
                }),
                Code::OutOfRange,
            ),
            (
                DriverError::Size(SizeError::CannotShrink {
                    current: 2,
                    limit: 1,
                }),
                Code::OutOfRange,
            ),
            (DriverError::VolumeNotFound("v".into()), Code::NotFound),
            (DriverError::SnapshotNotFound("s".into()), Code::NotFound),
            (
                DriverError::SourceBeyondLimit {
                    source_bytes: 2,
                    limit_bytes: 1,
                },
                Code::OutOfRange,
            ),
            (DriverError::NodeNotFound("n".into()), Code::NotFound),
            (
                DriverError::Incompatible {
                    volume_id: "v".into(),
                    reason: "r".into(),
                },
                Code::AlreadyExists,
            ),
            (
                DriverError::InsufficientSpace {
                    pool: "p".into(),
                    wanted: 2,
                    available: 1,
                    size: 4,
                    free: 3,
                    provisioned: 3,
                    ratio: "1".into(),
                },
                Code::ResourceExhausted,
            ),
            (
                DriverError::Precondition("two disks".into()),
                Code::FailedPrecondition,
            ),
            (DriverError::OperationPending("v".into()), Code::Aborted),
            (DriverError::InvalidToken("t".into()), Code::Aborted),
            (
                DriverError::PoolUnusable {
                    pool: "p".into(),
                    reason: "r".into(),
                },
                Code::FailedPrecondition,
            ),
            (DriverError::Internal("x".into()), Code::Internal),
            (
                DriverError::from(FenceError::HeldElsewhere {
                    volume_id: "v".into(),
                    node: "b".into(),
                    holder: "a".into(),
                    reason: "r".into(),
                }),
                Code::FailedPrecondition,
            ),
            (
                DriverError::from(FenceError::MigrationBusy {
                    volume_id: "v".into(),
                    node: "c".into(),
                    from: "a".into(),
                    to: "b".into(),
                }),
                Code::FailedPrecondition,
            ),
            (
                DriverError::from(FenceError::MigrationOverdue {
                    volume_id: "v".into(),
                    node: "c".into(),
                    from: "a".into(),
                    to: "b".into(),
                    age_s: 400,
                    window_s: 300,
                }),
                Code::FailedPrecondition,
            ),
            (
                DriverError::from(FenceError::Crowded {
                    volume_id: "v".into(),
                    node: "d".into(),
                    nodes: vec!["a".into(), "b".into(), "c".into()],
                }),
                Code::FailedPrecondition,
            ),
            (
                DriverError::from(FenceError::Incompatible {
                    volume_id: "v".into(),
                    node: "a".into(),
                    held: "h".into(),
                    requested: "r".into(),
                }),
                Code::AlreadyExists,
            ),
            (
                DriverError::AttachmentState(crate::controller::fence::StateError(
                    "not synced".into(),
                )),
                Code::Unavailable,
            ),
            (rds(routeros::Error::NotFound("x".into())), Code::NotFound),
            (
                rds(routeros::Error::AlreadyExists("x".into())),
                Code::AlreadyExists,
            ),
            (
                rds(routeros::Error::NoSpace("x".into())),
                Code::ResourceExhausted,
            ),
            (
                rds(routeros::Error::Unavailable("x".into())),
                Code::Unavailable,
            ),
            (
                rds(routeros::Error::Unauthenticated("x".into())),
                Code::Unavailable,
            ),
            (
                rds(routeros::Error::Unsupported("x".into())),
                Code::FailedPrecondition,
            ),
            (rds(routeros::Error::Invalid("x".into())), Code::Internal),
            (rds(routeros::Error::Protocol("x".into())), Code::Internal),
        ];
        for (error, code) in cases {
            let shown = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{shown}");
            assert!(status.message().contains(&shown), "{shown}");
        }
    }

    #[test]
    fn request_and_state_errors_have_their_spec_codes() {
        let cases = [
            (NodeError::Missing("volume_id"), Code::InvalidArgument),
            (
                NodeError::invalid("target_path", "x"),
                Code::InvalidArgument,
            ),
            (
                NodeError::Context(ParamError::Missing("nqn")),
                Code::InvalidArgument,
            ),
            (
                NodeError::NotFound {
                    volume_id: "v".into(),
                    reason: "r".into(),
                },
                Code::NotFound,
            ),
            (NodeError::PathNotFound("/x".into()), Code::NotFound),
            (NodeError::precondition("p"), Code::FailedPrecondition),
            (NodeError::Incompatible("i".into()), Code::AlreadyExists),
            (NodeError::OperationPending("v".into()), Code::Aborted),
            (NodeError::Unavailable("u".into()), Code::Unavailable),
            (NodeError::OutOfRange("o".into()), Code::OutOfRange),
        ];
        for (error, code) in cases {
            assert_eq!(code_of(&error), code, "{error}");
        }
    }

    #[test]
    fn lower_layer_errors_keep_their_meaning() {
        let mount = |e: mounts::Error| NodeError::Mount(e);
        assert_eq!(
            code_of(&mount(mounts::Error::Busy { path: "/t".into() })),
            Code::FailedPrecondition
        );
        assert_eq!(
            code_of(&mount(mounts::Error::TimedOut { op: "x".into() })),
            Code::DeadlineExceeded
        );
        assert_eq!(
            code_of(&mount(mounts::Error::ToolFailed {
                tool: "blkid".into(),
                status: mounts::tools::Exit::Code(1),
                stderr: String::new(),
            })),
            Code::Internal
        );
        assert_eq!(
            code_of(&mount(mounts::Error::Io {
                op: "rmdir",
                path: "/t".into(),
                source: io::Error::from_raw_os_error(enotempty()),
            })),
            Code::FailedPrecondition
        );
        let refused = nvme::Error::Connect {
            nqn: "n".into(),
            target: "t".into(),
            failure: nvme::ConnectFailure::Refused,
            source: io::Error::other("refused"),
        };
        assert_eq!(
            code_of(&NodeError::Fabric(FabricError::Nvme(refused))),
            Code::Unavailable
        );
        let foreign = nvme::Error::ForeignNqn {
            nqn: "n".into(),
            prefix: "p".into(),
        };
        assert_eq!(
            code_of(&NodeError::Fabric(FabricError::Nvme(foreign))),
            Code::FailedPrecondition
        );
        assert_eq!(
            code_of(&NodeError::Fabric(FabricError::NotExported {
                nqn: "n".into(),
                reason: "r".into()
            })),
            Code::NotFound
        );
    }

    #[test]
    fn refused_credentials_tell_the_operator_what_to_fix() {
        let status = Status::from(DriverError::Rds(routeros::Error::Unauthenticated(
            "password rejected".into(),
        )));
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("password rejected"));
        assert!(status.message().contains("operator must fix"));
    }
}
