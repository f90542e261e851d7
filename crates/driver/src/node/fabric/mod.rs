//! How a volume's block device gets onto (and off) this node.
//!
//! The node service never talks to the kernel's NVMe or loop drivers itself: it asks a
//! [`Fabric`]. There are two: [`NvmeTcpFabric`], the real one, and [`LoopFabric`], which
//! attaches a simulator's exported files through loop devices on the same host and exists
//! only for tests and demonstrations on machines without NVMe/TCP.

mod exports;
mod loop_fabric;
mod nvme_tcp;

use std::path::PathBuf;

use mounts::DeviceNumber;
use nvme::NamespaceIds;
use tokio::time::Instant;

use crate::params::VolumeContext;

/// One attachment of a driver volume: its subsystem and its controller's state
/// ([`nvme::ControllerState::label`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManagedController {
    pub nqn: String,
    pub state: &'static str,
}

pub use exports::{ExportEntry, read_export, read_exports};
pub use loop_fabric::LoopFabric;
pub use nvme_tcp::NvmeTcpFabric;

/// A volume's block device as attached on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedDevice {
    /// The device node (`/dev/nvme3n1`, `/dev/loop4`).
    pub path: PathBuf,
    pub device: DeviceNumber,
    /// True when this call created the attachment (rather than finding it in place); only
    /// such an attachment may be rolled back when the rest of a stage fails.
    pub newly_attached: bool,
    /// The namespace's identifiers: a device with other identifiers under the same NQN is a
    /// new namespace, whatever its name (see `nvme::namespace_ids`).
    pub ids: NamespaceIds,
}

/// Whether the path to a volume's data works, as the fabric sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    Healthy,
    Abnormal(String),
}

/// Everything a fabric can report.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    #[error(transparent)]
    Nvme(#[from] nvme::Error),
    #[error(transparent)]
    Mounts(#[from] mounts::Error),
    /// The target (or the simulator's export record) does not offer this NQN.
    #[error("{nqn} is not exported: {reason}")]
    NotExported { nqn: String, reason: String },
    /// The simulator's export record could not be read.
    #[error("export record {}: {reason}", path.display())]
    ExportRecord { path: PathBuf, reason: String },
    /// The device is still held (mounted, opened exclusively, stacked on).
    #[error("{nqn} is still in use: {reason}")]
    InUse { nqn: String, reason: String },
    /// The target's host name did not resolve.
    #[error("resolving {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("{0} did not finish before its deadline")]
    TimedOut(String),
    /// The device did not reach the size the caller needs.
    #[error("{nqn}: device has {found} bytes, {wanted} needed")]
    TooSmall {
        nqn: String,
        found: u64,
        wanted: u64,
    },
    /// Sysfs or a tool said something unexpected.
    #[error("{0}")]
    Unexpected(String),
}

impl From<mounts::blocking::DeadlinePassed> for FabricError {
    fn from(passed: mounts::blocking::DeadlinePassed) -> Self {
        Self::TimedOut(passed.op)
    }
}

/// Attach, find, detach and resize the block device of a volume, by subsystem NQN.
///
/// Implementations must be idempotent: attaching an attached volume returns the same device,
/// detaching a detached one succeeds. Detach refuses ([`FabricError::InUse`]) while the
/// kernel says the device is held; the node service checks mounts and published device nodes
/// before it even asks.
#[async_trait::async_trait]
pub trait Fabric: Send + Sync + 'static {
    /// Short name for logs (`nvme-tcp`, `loop`).
    fn name(&self) -> &'static str;

    /// The host NQN this node connects as, when the fabric has one (the controller admits
    /// it to the exports of the volumes published here).
    fn host_nqn(&self) -> Option<&str> {
        None
    }

    /// Makes the volume's device available on this node and returns it.
    async fn attach(
        &self,
        volume: &VolumeContext,
        deadline: Instant,
    ) -> Result<AttachedDevice, FabricError>;

    /// The volume's device if it is attached, without attaching anything.
    async fn find(
        &self,
        nqn: &str,
        deadline: Instant,
    ) -> Result<Option<AttachedDevice>, FabricError>;

    /// Removes the attachment. The NQN has already been checked against the managed prefix
    /// by the caller; implementations check again where they can.
    async fn detach(&self, nqn: &str, deadline: Instant) -> Result<(), FabricError>;

    /// Makes the kernel re-read the device's size and waits until it is at least
    /// `min_size_bytes`; returns the size seen.
    async fn rescan(
        &self,
        nqn: &str,
        min_size_bytes: u64,
        deadline: Instant,
    ) -> Result<u64, FabricError>;

    /// Whether anything of the volume's attachment is left on this node: a device, or (NVMe)
    /// a controller in any state, such as one reconnecting while the RDS reboots. Only a node
    /// reboot or a detach leaves nothing.
    async fn is_connected(&self, nqn: &str, deadline: Instant) -> Result<bool, FabricError> {
        Ok(self.find(nqn, deadline).await?.is_some())
    }

    /// The attachments of the driver's own volumes on this node, one per controller (any
    /// state), for the orphan check and the metrics. The default knows none.
    async fn managed_controllers(
        &self,
        deadline: Instant,
    ) -> Result<Vec<ManagedController>, FabricError> {
        let _ = deadline;
        Ok(Vec::new())
    }

    /// Whether the attachment works (controller live, device present).
    async fn condition(&self, nqn: &str, deadline: Instant) -> Result<Condition, FabricError>;

    /// Whether `device`, once the volume's, no longer carries `nqn`'s data path: a re-stage
    /// moves a volume off a device only when it is gone, never while two devices carry it.
    async fn is_gone(
        &self,
        nqn: &str,
        device: DeviceNumber,
        deadline: Instant,
    ) -> Result<bool, FabricError>;
}
