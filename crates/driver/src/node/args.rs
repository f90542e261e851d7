//! The node plugin's command line and start-up: build the fabric and the service from flags,
//! then serve on the CSI endpoint until SIGTERM or Ctrl-C.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use nvme::identity::{IdentityOverride, IdentityPaths, resolve_host_identity};
use nvme::{LinuxKernel, ManagedPrefix, NvmeHost, Sysfs};

use super::fabric::{Fabric, LoopFabric, NvmeTcpFabric};
use super::orphans::OrphanPolicy;
use super::{
    ClusterPods, DEFAULT_BLOCK_PUBLISH_DIR, NodeConfig, NodeService, PodRecovery, Records, routes,
};
use crate::config::{DEFAULT_DRIVER_NAME, DEFAULT_NQN_PREFIX};
use crate::server::{self, Endpoint, ServerError};

/// How volumes reach this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FabricKind {
    /// The kernel's NVMe/TCP initiator (modules nvme-tcp and nvme-fabrics).
    #[value(name = "nvme-tcp")]
    NvmeTcp,
    /// TEST AND DEMO ONLY: loop devices over the files of an RDS simulator on this host.
    Loop,
}

/// Flags of `rds-csi node`.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// CSI endpoint to serve: unix:///path/to/csi.sock (or tcp://address:port).
    #[arg(long, env = "CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: Endpoint,

    /// This node's id as the CO knows it (in Kubernetes, the node name).
    #[arg(long, env = "NODE_ID")]
    pub node_id: String,

    /// CSI driver name reported by GetPluginInfo.
    #[arg(long, env = "DRIVER_NAME", default_value = DEFAULT_DRIVER_NAME)]
    pub driver_name: String,

    /// Volume `<id>` is NVMe subsystem `<prefix>:<id>`; only NQNs under `<prefix>:` are
    /// ever connected or disconnected by this node. Must match the controller's.
    #[arg(long, env = "NQN_PREFIX", default_value = DEFAULT_NQN_PREFIX)]
    pub nqn_prefix: String,

    /// How volumes are attached: `nvme-tcp` (the kernel's initiator), or `loop`, which is
    /// for TESTS AND DEMONSTRATIONS ONLY (loop devices over a simulator's files on this
    /// host; needs --sim-data-dir).
    #[arg(long, value_enum, default_value_t = FabricKind::NvmeTcp)]
    pub fabric: FabricKind,

    /// Data directory of the RDS simulator whose exports the loop fabric attaches (its
    /// records, `exports/<nqn>.json`). Only with `--fabric loop`.
    #[arg(long, required_if_eq("fabric", "loop"))]
    pub sim_data_dir: Option<PathBuf>,

    /// Most volumes this node takes, as reported to the CO; 0 lets the CO decide.
    #[arg(long, default_value_t = 0)]
    pub max_volumes: i64,

    /// Host NQN presented to targets, instead of /etc/nvme/hostnqn or a derived one.
    #[arg(long, env = "NVME_HOST_NQN")]
    pub host_nqn: Option<String>,

    /// Host ID (a UUID) presented to targets, instead of /etc/nvme/hostid or a derived one.
    #[arg(long, env = "NVME_HOST_ID")]
    pub host_id: Option<String>,

    /// Directory below which kubelet publishes block volumes; searched for device nodes of a
    /// volume before it is unstaged.
    #[arg(long, default_value = DEFAULT_BLOCK_PUBLISH_DIR)]
    pub block_publish_dir: PathBuf,

    /// Seconds an operation may take when the caller sends no gRPC timeout.
    #[arg(long, default_value_t = 120)]
    pub operation_timeout: u64,

    /// Where the node keeps a record of each volume it staged (one JSON file per volume),
    /// to recognise the volume's namespace after the RDS restarts.
    /// [default: /var/lib/kubelet/plugins/<driver-name>/volumes]
    #[arg(long, env = "NODE_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Seconds between background checks of staged volumes for a namespace the RDS replaced
    /// (re-staged when found); 0 disables the check (calls still check their volume).
    #[arg(long, default_value_t = 15)]
    pub health_interval: u64,

    /// What to do about pods whose running containers still hold a volume's replaced
    /// namespace after it was re-staged: `off`; `events` (a Warning event on each, when the
    /// Kubernetes API can be reached); `delete` (the event, then pods a controller owns are
    /// deleted so that it creates them again; needs the Kubernetes API).
    #[arg(long, env = "POD_RECOVERY", value_enum, default_value_t = PodRecovery::Events)]
    pub pod_recovery: PodRecovery,

    /// Attachments of the driver's volumes that no staged volume uses: `report` (log and
    /// count them) or `disconnect` (also disconnect each once it stayed so for
    /// --orphan-grace, and only while nothing mounts or publishes its device).
    #[arg(long, env = "ORPHANS", value_enum, default_value_t = OrphanPolicy::Disconnect)]
    pub orphans: OrphanPolicy,

    /// How long an attachment must stay orphaned before it is disconnected (e.g. 10m, 1h).
    #[arg(long, env = "ORPHAN_GRACE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub orphan_grace: Duration,

    /// Where to serve Prometheus metrics (`/metrics`): ADDRESS:PORT, :PORT for every address,
    /// or empty to serve none.
    #[arg(long, env = "METRICS_ADDRESS", default_value = DEFAULT_NODE_METRICS_ADDRESS,
        value_parser = crate::metrics::parse_metrics_address)]
    pub metrics_address: crate::metrics::MetricsAddress,
}

/// The node's metrics port: beside the controller's 9809, so that both can run on one host.
pub const DEFAULT_NODE_METRICS_ADDRESS: &str = ":9810";

/// Where the records live when `--state-dir` is not given: beside the plugin's socket in
/// kubelet's plugin directory, which the node's pod mounts from the host anyway.
pub fn default_state_dir(driver_name: &str) -> PathBuf {
    PathBuf::from("/var/lib/kubelet/plugins")
        .join(driver_name)
        .join("volumes")
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("--node-id must not be empty")]
    NodeId,
    #[error("--nqn-prefix: {0}")]
    NqnPrefix(nvme::Error),
    #[error("host identity: {0}")]
    Identity(nvme::Error),
    #[error("--fabric loop needs --sim-data-dir")]
    SimDataDir,
    #[error("metrics address {address}: {source}")]
    Metrics {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("--pod-recovery delete needs the Kubernetes API: {0}")]
    Kubernetes(String),
    #[error("state directory {}: {source}", path.display())]
    StateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
}

fn nvme_tcp_fabric(args: &NodeArgs, prefix: ManagedPrefix) -> Result<Arc<dyn Fabric>, SetupError> {
    let overrides = IdentityOverride {
        nqn: args.host_nqn.clone(),
        id: args.host_id.clone(),
    };
    let identity = resolve_host_identity(&IdentityPaths::default(), &overrides)
        .map_err(SetupError::Identity)?;
    for warning in &identity.warnings {
        tracing::warn!(%warning, "NVMe host identity");
    }
    tracing::info!(host_nqn = %identity.nqn, host_id = %identity.id, source = %identity.source,
        "NVMe host identity");
    let fabrics = LinuxKernel::default();
    if !std::path::Path::new("/dev/nvme-fabrics").exists() {
        tracing::warn!(
            "/dev/nvme-fabrics is missing: load the nvme-tcp and nvme-fabrics kernel modules, \
             or every stage will fail"
        );
    }
    let host = NvmeHost::new(Sysfs::new("/sys"), "/dev", fabrics, identity, prefix);
    Ok(Arc::new(NvmeTcpFabric::new(host)))
}

/// Builds the node service from flags.
pub fn build(args: &NodeArgs) -> Result<NodeService, SetupError> {
    if args.node_id.trim().is_empty() {
        return Err(SetupError::NodeId);
    }
    // Checked for both fabrics: the prefix must name something specific.
    let prefix =
        ManagedPrefix::new(format!("{}:", args.nqn_prefix)).map_err(SetupError::NqnPrefix)?;
    let fabric: Arc<dyn Fabric> = match args.fabric {
        FabricKind::NvmeTcp => nvme_tcp_fabric(args, prefix)?,
        FabricKind::Loop => Arc::new(LoopFabric::new(
            args.sim_data_dir.clone().ok_or(SetupError::SimDataDir)?,
        )),
    };
    let mut config = NodeConfig::new(args.node_id.clone(), args.nqn_prefix.clone());
    config.driver_name = args.driver_name.clone();
    config.max_volumes_per_node = args.max_volumes;
    config.block_publish_dir = args.block_publish_dir.clone();
    config.default_operation_time = Duration::from_secs(args.operation_timeout);
    config.health_interval = Duration::from_secs(args.health_interval);
    config.orphans = args.orphans;
    config.orphan_grace = args.orphan_grace;
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&args.driver_name));
    let records = Records::open(&state_dir).map_err(|source| SetupError::StateDir {
        path: state_dir.clone(),
        source,
    })?;
    tracing::info!(state_dir = %state_dir.display(), staged = records.all().len(),
        "staged-volume records");
    Ok(NodeService::new(config, fabric, records))
}

/// Connects the service to the Kubernetes API (in-cluster, or `KUBECONFIG`) as
/// `--pod-recovery` needs: without it `events` goes on without events, `delete` refuses to
/// start (an explicit opt-in that cannot work must not look as if it did).
async fn with_cluster(service: NodeService, args: &NodeArgs) -> Result<NodeService, SetupError> {
    if args.pod_recovery == PodRecovery::Off {
        return Ok(service);
    }
    match kube::Client::try_default().await {
        Ok(client) => {
            tracing::info!(pod_recovery = ?args.pod_recovery, "Kubernetes API configured");
            let pods = ClusterPods::new(client, &args.node_id, args.pod_recovery);
            Ok(service.with_cluster_pods(pods))
        }
        Err(error) if args.pod_recovery == PodRecovery::Delete => {
            Err(SetupError::Kubernetes(error.to_string()))
        }
        Err(error) => {
            tracing::warn!(%error, "no Kubernetes API: pods left on a replaced namespace get no \
                event (--pod-recovery off silences this)");
            Ok(service)
        }
    }
}

/// How long shutdown waits for volume operations still running.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Runs the node plugin until SIGTERM or SIGINT, then lets running operations finish.
pub async fn run(args: NodeArgs) -> Result<(), SetupError> {
    // Resolving the host identity reads files: off the runtime, like every other file read.
    let service = tokio::task::spawn_blocking({
        let args = args.clone();
        move || build(&args)
    })
    .await
    .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))?;
    let mut registry = prometheus_client::registry::Registry::default();
    crate::metrics::register_rpc(&mut registry, "node");
    let service = with_cluster(service, &args)
        .await?
        .with_metrics(&mut registry);
    let metrics = match args.metrics_address.0 {
        Some(address) => {
            let (bound, task) = crate::metrics::serve(address, Arc::new(registry))
                .await
                .map_err(|source| SetupError::Metrics { address, source })?;
            tracing::info!(address = %bound, "serving metrics at /metrics");
            Some(task)
        }
        None => None,
    };
    tracing::info!(node_id = %args.node_id, fabric = ?args.fabric, driver = %args.driver_name,
        "starting the node plugin");
    let listener = server::bind(&args.endpoint).await?;
    tracing::info!(endpoint = %listener.endpoint()?, "serving CSI Identity and Node");
    let locks = service.locks().clone();
    service.forget_unstaged().await;
    let health_check = service.spawn_health_check();
    listener
        .serve(routes(service), server::shutdown_signal())
        .await?;
    if let Some(task) = metrics {
        task.abort();
    }
    // A stage or expand whose caller went away still runs (a format cut off half-way would
    // leave a device that is neither empty nor a filesystem), and so does a re-stage.
    let started = tokio::time::Instant::now();
    if let Some(check) = health_check {
        check.stop(SHUTDOWN_GRACE).await;
    }
    locks
        .drain(SHUTDOWN_GRACE.saturating_sub(started.elapsed()))
        .await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        node: NodeArgs,
    }

    #[test]
    fn defaults_and_the_loop_fabric_needs_a_data_dir() {
        let cli = Cli::try_parse_from(["node", "--node-id", "n1"]).unwrap();
        assert_eq!(cli.node.fabric, FabricKind::NvmeTcp);
        assert_eq!(cli.node.nqn_prefix, DEFAULT_NQN_PREFIX);
        assert_eq!(cli.node.endpoint, Endpoint::Unix("/csi/csi.sock".into()));
        assert_eq!(cli.node.health_interval, 15);
        assert_eq!(cli.node.pod_recovery, PodRecovery::Events);
        assert_eq!(cli.node.orphans, OrphanPolicy::Disconnect);
        assert_eq!(cli.node.orphan_grace, Duration::from_secs(600));
        let reporting = Cli::try_parse_from([
            "node",
            "--node-id",
            "n1",
            "--orphans",
            "report",
            "--orphan-grace",
            "90s",
        ])
        .unwrap();
        assert_eq!(reporting.node.orphans, OrphanPolicy::Report);
        assert_eq!(reporting.node.orphan_grace, Duration::from_secs(90));
        assert_eq!(
            cli.node.metrics_address.0,
            Some("0.0.0.0:9810".parse().unwrap())
        );
        let off = Cli::try_parse_from(["node", "--node-id", "n1", "--metrics-address", ""]);
        assert_eq!(off.unwrap().node.metrics_address.0, None);
        assert_eq!(
            default_state_dir(&cli.node.driver_name),
            PathBuf::from("/var/lib/kubelet/plugins/rds.csi.srvlab.io/volumes")
        );
        assert!(Cli::try_parse_from(["node", "--node-id", "n1", "--fabric", "loop"]).is_err());
        let cli = Cli::try_parse_from([
            "node",
            "--node-id",
            "n1",
            "--fabric",
            "loop",
            "--sim-data-dir",
            "/tmp/sim",
            "--max-volumes",
            "30",
        ])
        .unwrap();
        assert_eq!(cli.node.fabric, FabricKind::Loop);
        assert_eq!(cli.node.max_volumes, 30);
    }

    #[test]
    fn the_help_says_the_loop_fabric_is_for_tests() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("TESTS AND DEMONSTRATIONS ONLY"), "{help}");
    }

    #[test]
    fn broad_prefixes_and_empty_node_ids_are_refused() {
        let state = tempfile::tempdir().unwrap();
        let state_dir = state.path().join("records");
        let args = |prefix: &str, node: &str| {
            Cli::try_parse_from([
                "node",
                "--state-dir",
                state_dir.to_str().unwrap(),
                "--node-id",
                node,
                "--nqn-prefix",
                prefix,
                "--fabric",
                "loop",
                "--sim-data-dir",
                "/nonexistent",
            ])
            .unwrap()
            .node
        };
        assert!(matches!(
            build(&args("nqn.2014-08.org.nvmexpress", "n1")),
            Err(SetupError::NqnPrefix(_))
        ));
        assert!(matches!(
            build(&args(DEFAULT_NQN_PREFIX, " ")),
            Err(SetupError::NodeId)
        ));
        let service = build(&args(DEFAULT_NQN_PREFIX, "n1")).unwrap();
        assert!(state_dir.is_dir(), "the state directory is made at start");
        assert_eq!(service.config().node_id, "n1");
        assert_eq!(service.config().driver_name, DEFAULT_DRIVER_NAME);
    }
}
