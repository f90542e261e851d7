//! The typed failures of the CSI services. They become gRPC statuses in one place,
//! [`crate::status`].

use crate::capabilities::CapabilityError;
use crate::capacity::SizeError;
use crate::controller::fence::{FenceError, StateError};
use crate::naming::NameError;
use crate::params::ParamError;

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// A field the spec marks REQUIRED is absent or empty.
    #[error("{0} is required")]
    MissingField(&'static str),
    #[error("volume name: {0}")]
    Name(#[from] NameError),
    #[error("parameters: {0}")]
    Params(#[from] ParamError),
    #[error("capacity range: {0}")]
    Size(#[from] SizeError),
    #[error("volume capability: {0}")]
    Capability(#[from] CapabilityError),
    #[error("{field}: {reason}")]
    InvalidField { field: &'static str, reason: String },
    /// A request field the driver does not support (content sources, mutable parameters...).
    #[error("{0}")]
    NotSupported(String),
    #[error("volume {0} does not exist")]
    VolumeNotFound(String),
    #[error("snapshot {0} does not exist")]
    SnapshotNotFound(String),
    /// A restore or clone cannot fit the source within the requested limit.
    #[error("the source holds {source_bytes} bytes, more than the limit of {limit_bytes} bytes")]
    SourceBeyondLimit { source_bytes: u64, limit_bytes: i64 },
    #[error("node {0} does not exist in the cluster")]
    NodeNotFound(String),
    /// A volume with this name exists but does not match the request.
    #[error("volume {volume_id} already exists but {reason}")]
    Incompatible { volume_id: String, reason: String },
    /// The capacity check before `/disk add` failed (thin-provisioning budget).
    #[error(
        "not enough capacity in pool {pool}: {wanted} bytes wanted, {available} available \
         (pool {size} bytes x overcommit ratio {ratio}, {provisioned} bytes provisioned, \
         {free} bytes free)"
    )]
    InsufficientSpace {
        pool: String,
        wanted: u64,
        available: u64,
        size: u64,
        free: u64,
        provisioned: u64,
        ratio: String,
    },
    /// The device is in a state the driver will not act on by itself (several disks in one
    /// slot, a RouterOS too old for the driver); an operator must look.
    #[error("{0}")]
    Precondition(String),
    #[error("an operation is already pending for volume {0}; retry later")]
    OperationPending(String),
    #[error("invalid starting_token {0:?}; start the listing again without a token")]
    InvalidToken(String),
    /// The pool is missing or not usable; the operator must act.
    #[error("pool {pool}: {reason}")]
    PoolUnusable { pool: String, reason: String },
    /// A publish the fencing rules refuse (another node holds the volume, a migration...).
    /// Boxed: its names would make every driver result large.
    #[error("{0}")]
    Fence(Box<FenceError>),
    #[error("{0}")]
    AttachmentState(#[from] StateError),
    #[error("RDS: {0}")]
    Rds(#[from] routeros::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<FenceError> for DriverError {
    fn from(refusal: FenceError) -> Self {
        Self::Fence(Box::new(refusal))
    }
}

pub type Result<T, E = DriverError> = std::result::Result<T, E>;
