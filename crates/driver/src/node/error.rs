//! The node service's typed failures. They become gRPC statuses in [`crate::status`], with
//! the controller's.

use std::path::PathBuf;

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
    /// The volume's data path is down for now (its NVMe controller reconnects); a retry later
    /// can succeed.
    #[error("{0}")]
    Unavailable(String),
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
