//! The CSI Node service: attach a volume's device through a [`Fabric`], format it only when
//! empty, mount it at the staging path, and hand it to pods as a bind mount (filesystem) or a
//! device node of its own (block).
//!
//! Layout: [`grpc`] holds the thin tonic handlers (check the request, take the volume's lock,
//! run one operation); `stage`, `publish`, `stats` and `expand` hold the operations; `rules`
//! the pure decisions they take; `probe` the looks at paths; [`fabric`] the attach/detach
//! side. Errors are typed ([`NodeError`]) and become gRPC statuses in one place.
//!
//! Invariants kept throughout:
//! - a device is formatted only when blkid says it is empty (see `mounts::format`);
//! - nothing is removed that may still be a mount point, and no tree is ever removed;
//! - a device is detached only when no mount of it and no published device node of it
//!   remains, only for NQNs under the managed prefix, and a failed stage never detaches a
//!   device that something has mounted;
//! - every external call carries a deadline taken from the caller's gRPC timeout.

mod args;
mod error;
mod expand;
pub mod fabric;
mod grpc;
mod health;
mod orphans;
mod pod_events;
mod pods;
mod probe;
mod publish;
mod records;
mod recover;
mod request;
mod rules;
mod stage;
mod stats;
mod watch;
pub use orphans::{DEFAULT_ORPHAN_GRACE, OrphanPolicy, OrphanTracker};
pub use watch::HealthCheck;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mounts::DeviceNumber;
use mounts::format::FsTools;
use mounts::mount::{UnmountMode, Unmounted, unmount};
use mounts::mountinfo::read_self_mount_table;
use mounts::mountpoint::{MountState, mount_state};
use mounts::tools::ToolPaths;
use tokio::time::Instant;

use crate::config::DEFAULT_DRIVER_NAME;
use crate::identity::CsiIdentity;
use crate::locks::VolumeLocks;
use crate::metrics::NodeMetrics;

pub use args::{FabricKind, NodeArgs, SetupError, run};
pub use error::NodeError;
pub use fabric::{AttachedDevice, Condition, Fabric, FabricError, LoopFabric, NvmeTcpFabric};
pub use grpc::NODE_CAPABILITIES;
pub use pods::{ClusterPods, PodRecovery};
pub use records::{Records, StagedLayout, StagedVolume};

use error::Result;

/// Where kubelet publishes block volumes (the device nodes this driver creates live below).
pub const DEFAULT_BLOCK_PUBLISH_DIR: &str =
    "/var/lib/kubelet/plugins/kubernetes.io/csi/volumeDevices";
/// Time an operation may take when the caller sends no gRPC timeout.
pub const DEFAULT_OPERATION_TIME: Duration = Duration::from_secs(120);
/// How often staged volumes are checked for a replaced namespace.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(15);

/// Settings of the node service.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Reported by GetPluginInfo; the same as the controller's.
    pub driver_name: String,
    pub vendor_version: String,
    /// The node id reported by NodeGetInfo (the Kubernetes node name).
    pub node_id: String,
    /// Reported by NodeGetInfo; 0 lets the CO decide.
    pub max_volumes_per_node: i64,
    /// Volume `<id>` is the subsystem `<nqn_prefix>:<id>`.
    pub nqn_prefix: String,
    /// Scanned for device nodes of a block volume before it is unstaged.
    pub block_publish_dir: PathBuf,
    pub default_operation_time: Duration,
    pub tools: ToolPaths,
    /// Period of the background check of staged volumes ([`NodeService::spawn_health_check`]).
    pub health_interval: Duration,
    /// What the background check does about attachments no staged volume uses.
    pub orphans: OrphanPolicy,
    /// How long an attachment must stay orphaned before it is disconnected.
    pub orphan_grace: Duration,
}

impl NodeConfig {
    pub fn new(node_id: impl Into<String>, nqn_prefix: impl Into<String>) -> Self {
        Self {
            driver_name: DEFAULT_DRIVER_NAME.into(),
            vendor_version: env!("CARGO_PKG_VERSION").into(),
            node_id: node_id.into(),
            max_volumes_per_node: 0,
            nqn_prefix: nqn_prefix.into(),
            block_publish_dir: DEFAULT_BLOCK_PUBLISH_DIR.into(),
            default_operation_time: DEFAULT_OPERATION_TIME,
            tools: ToolPaths::default(),
            health_interval: DEFAULT_HEALTH_INTERVAL,
            orphans: OrphanPolicy::default(),
            orphan_grace: DEFAULT_ORPHAN_GRACE,
        }
    }
}

/// The node service: cheap to clone, one per server.
#[derive(Clone)]
pub struct NodeService {
    core: Arc<NodeCore>,
    locks: VolumeLocks,
}

impl std::fmt::Debug for NodeService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeService")
            .field("config", &self.core.config)
            .field("fabric", &self.core.fabric.name())
            .finish()
    }
}

impl NodeService {
    /// The service over `fabric`, remembering staged volumes in `records` (see
    /// [`Records::open`]; `Records::default()` forgets them with the process).
    pub fn new(config: NodeConfig, fabric: Arc<dyn Fabric>, records: Records) -> Self {
        let tools = FsTools::new(config.tools.clone());
        Self {
            core: Arc::new(NodeCore {
                config,
                fabric,
                tools,
                records,
                recovery_failures: Mutex::default(),
                wake_check: tokio::sync::Notify::new(),
                pods: None,
                metrics: NodeMetrics::default(),
            }),
            locks: VolumeLocks::default(),
        }
    }

    /// Registers the node's metrics in `registry` (see [`crate::metrics`]). Set before the
    /// service is served.
    pub fn with_metrics(mut self, registry: &mut prometheus_client::registry::Registry) -> Self {
        Arc::get_mut(&mut self.core)
            .expect("set before the service is shared")
            .metrics = NodeMetrics::register(registry);
        self
    }

    /// Lets the node tell (and, when so configured, delete) the pods left on a replaced
    /// namespace. Set before the service is served.
    pub fn with_cluster_pods(mut self, pods: ClusterPods) -> Self {
        Arc::get_mut(&mut self.core)
            .expect("set before the service is shared")
            .pods = Some(pods);
        self
    }

    /// What the node remembers of the volumes it staged.
    pub fn records(&self) -> &Records {
        &self.core.records
    }

    pub fn config(&self) -> &NodeConfig {
        &self.core.config
    }

    /// The per-volume locks every operation runs under.
    pub fn locks(&self) -> &VolumeLocks {
        &self.locks
    }

    pub fn into_server(self) -> csi::v1::node_server::NodeServer<Self> {
        csi::v1::node_server::NodeServer::new(self)
    }
}

/// The node plugin's gRPC services: Identity, answering for this service, and Node.
pub fn routes(service: NodeService) -> tonic::service::Routes {
    let config = service.config();
    let identity = CsiIdentity::new(
        config.driver_name.clone(),
        config.vendor_version.clone(),
        Arc::new(service.clone()),
    );
    tonic::service::Routes::new(identity.into_server()).add_service(service.into_server())
}

/// What the operations share.
pub(crate) struct NodeCore {
    config: NodeConfig,
    fabric: Arc<dyn Fabric>,
    tools: FsTools,
    records: Records,
    /// Why the last re-stage of a volume failed, for its VolumeCondition.
    recovery_failures: Mutex<HashMap<String, String>>,
    /// Wakes the background check early (a stats call saw a replaced namespace).
    wake_check: tokio::sync::Notify,
    /// The cluster's pods on this node, when the node talks to Kubernetes.
    pods: Option<ClusterPods>,
    metrics: NodeMetrics,
}

/// A volume is mounted once at staging and once per pod; this many mounts of one device is
/// the signature of a propagation storm, worth an operator's attention.
const MOUNT_STORM_THRESHOLD: usize = 256;

/// Time given to undo a half-done stage: its own deadline may be what made it fail.
const ROLLBACK_TIME: Duration = Duration::from_secs(10);

/// Unmounts stacked on one path are undone one by one. A re-stage stacks one layer over the
/// dead one at the staging path and at each published path (one per RDS reboot that replaced
/// the namespace); more than this is not a volume's doing.
const MAX_STACKED_MOUNTS: usize = 32;

impl NodeCore {
    /// Who still uses `device`: its mounts anywhere, and block device nodes for it below the
    /// publish directory. Mountinfo sees bind mounts in every pod (the node plugin shares the
    /// host's mount namespace); a device node is not a mount, so it is found by a walk.
    async fn users_of(&self, device: DeviceNumber, deadline: Instant) -> Result<Vec<String>> {
        let table = read_self_mount_table(deadline).await?;
        let count = table.mount_count(device);
        if count >= MOUNT_STORM_THRESHOLD {
            tracing::error!(%device, count, "device mounted an absurd number of times: a mount \
                propagation storm? Check for bind mounts of /dev nodes under Bidirectional \
                propagation");
        }
        let mut users: Vec<String> = table
            .mounts_of_device(device)
            .map(|entry| format!("mounted at {}", entry.mount_point.display()))
            .collect();
        users.extend(
            probe::published_nodes(&self.config.block_publish_dir, device, deadline)
                .await?
                .into_iter()
                .map(|node| format!("device node {}", node.display())),
        );
        Ok(users)
    }

    /// Unmounts everything stacked at `path`, then checks with a fresh mount table that it
    /// is no longer a mount point.
    async fn unmount_all(&self, path: &Path, deadline: Instant) -> Result<()> {
        for _ in 0..MAX_STACKED_MOUNTS {
            if unmount(path, UnmountMode::Normal, deadline).await? == Unmounted::NotMounted {
                break;
            }
            tracing::info!(path = %path.display(), "unmounted");
        }
        let table = read_self_mount_table(deadline).await?;
        match mount_state(path, &table, deadline).await? {
            MountState::Missing | MountState::NotMounted => Ok(()),
            state => Err(NodeError::precondition(format!(
                "{} is still a mount point after unmounting ({state:?})",
                path.display()
            ))),
        }
    }

    /// Detaches `device` of `nqn` after a failed stage, but only when nothing uses it; a
    /// failure here is logged, never reported over the stage's own error.
    async fn release_if_unused(&self, nqn: &str, device: &AttachedDevice) {
        let deadline = Instant::now() + ROLLBACK_TIME;
        match self.users_of(device.device, deadline).await {
            Ok(users) if users.is_empty() => {
                if let Err(error) = self.fabric.detach(nqn, deadline).await {
                    tracing::warn!(nqn, %error, "could not detach after a failed stage");
                }
            }
            Ok(users) => tracing::warn!(nqn, ?users, "left attached after a failed stage: in use"),
            Err(error) => {
                tracing::warn!(nqn, %error, "left attached after a failed stage: usage unknown")
            }
        }
    }
}
