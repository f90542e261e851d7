//! The node service's typed failures and the one place where they become gRPC statuses.

use std::path::PathBuf;

use tonic::{Code, Status};

use super::fabric::FabricError;
use crate::params::ParamError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A field the spec marks REQUIRED is absent or empty.
    #[error("{0} is required")]
    Missing(&'static str),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("volume context: {0}")]
    Context(#[from] ParamError),
    /// The volume is not known here (not one of this driver's ids, or not attached).
    #[error("volume {volume_id}: {reason}")]
    NotFound { volume_id: String, reason: String },
    /// A path to act on does not exist.
    #[error("{} does not exist", .0.display())]
    PathNotFound(PathBuf),
    /// The node is not in the state the call needs (path holds something else, volume not
    /// staged, still published, busy); the CO must change that before a retry can succeed.
    #[error("{0}")]
    Precondition(String),
    /// Already published at the path, but not as the request asks.
    #[error("{0}")]
    Incompatible(String),
    /// A capacity the node cannot provide.
    #[error("{0}")]
    OutOfRange(String),
    #[error("an operation is already pending for volume {0}; retry later")]
    OperationPending(String),
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Fabric(#[from] FabricError),
    #[error(transparent)]
    Mount(#[from] mounts::Error),
}

pub type Result<T, E = NodeError> = std::result::Result<T, E>;

impl NodeError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn precondition(reason: impl Into<String>) -> Self {
        Self::Precondition(reason.into())
    }
}

impl From<mounts::blocking::DeadlinePassed> for NodeError {
    fn from(passed: mounts::blocking::DeadlinePassed) -> Self {
        Self::Mount(passed.into())
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

/// The gRPC code of an error, following the CSI spec's error tables.
pub fn code_of(error: &NodeError) -> Code {
    match error {
        NodeError::Missing(_) | NodeError::Invalid { .. } | NodeError::Context(_) => {
            Code::InvalidArgument
        }
        NodeError::NotFound { .. } | NodeError::PathNotFound(_) => Code::NotFound,
        NodeError::Precondition(_) => Code::FailedPrecondition,
        NodeError::Incompatible(_) => Code::AlreadyExists,
        NodeError::OperationPending(_) => Code::Aborted,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

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
}
