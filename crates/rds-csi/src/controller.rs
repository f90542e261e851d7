//! `rds-csi controller`: flags (and their `RDS_CSI_*` environment equivalents) to the
//! controller's configuration (the RDS connection flags are in [`crate::connection`]), then
//! serve until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::BoolishValueParser;
use driver::capacity::{SizePolicy, parse_size};
use driver::config::{ControllerConfig, DEFAULT_CACHE_TTL, DEFAULT_DRIVER_NAME};
use driver::controller::budget::OvercommitRatio;
use driver::controller::fence::watched::ClusterLink;
use driver::controller::fence::{self, AttachmentState, MemoryAttachments};
use driver::controller::orphans::{
    EventTarget, OrphanMetrics, OrphanMode, OrphanPolicy, OrphanReconciler,
};
use driver::controller::{self, ControllerService};
use driver::server::{self, Endpoint};

use crate::connection::{RdsConnectionArgs, VolumeLayoutArgs};

/// How often overdue live migrations are logged.
const OVERDUE_CHECK: Duration = Duration::from_secs(60);

/// Bound of one device-health poll (its interval, when shorter).
const DEVICE_HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for volume changes still in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Where the controller keeps who holds which volume (attach fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachmentStateKind {
    /// In this process: lost on restart. For runs without Kubernetes (tests, the demo,
    /// csi-sanity).
    Memory,
    /// Watched from the cluster's VolumeAttachments (in-cluster, or `KUBECONFIG`); the
    /// background loops run on the replica holding the controller's Lease.
    Kubernetes,
}

/// Flags of `rds-csi controller`.
#[derive(Debug, Clone, clap::Args)]
// The controller cannot run without an RDS; `doctor` shares the flag but can.
#[command(mut_arg("rds_address", |arg| arg.required(true)))]
pub struct ControllerArgs {
    /// CSI endpoint to serve: unix:///path/to/csi.sock (or tcp://address:port).
    #[arg(long, env = "RDS_CSI_ENDPOINT", default_value = "unix:///csi/csi.sock")]
    pub endpoint: Endpoint,

    /// CSI driver name; keep the default to adopt volumes of the existing Go driver.
    #[arg(long, env = "RDS_CSI_DRIVER_NAME", default_value = DEFAULT_DRIVER_NAME)]
    pub driver_name: String,

    #[command(flatten)]
    pub rds: RdsConnectionArgs,

    #[command(flatten)]
    pub layout: VolumeLayoutArgs,

    /// Address nodes connect to over NVMe/TCP (default: the RDS address).
    #[arg(long, env = "RDS_CSI_NVME_ADDRESS")]
    pub nvme_address: Option<String>,

    /// NVMe/TCP port of new volumes.
    #[arg(long, env = "RDS_CSI_NVME_PORT", default_value_t = routeros::DEFAULT_NVME_TCP_PORT)]
    pub nvme_port: u16,

    /// Volume sizes are rounded up to a multiple of this (bytes, or with Ki/Mi/Gi/Ti).
    #[arg(long, env = "RDS_CSI_SIZE_GRANULARITY", default_value = "1Mi", value_parser = parse_size)]
    pub size_granularity: u64,

    /// Size of a volume whose request names none (bytes, or with Ki/Mi/Gi/Ti).
    #[arg(long, env = "RDS_CSI_DEFAULT_VOLUME_SIZE", default_value = "1Gi", value_parser = parse_size)]
    pub default_volume_size: u64,

    /// Seconds a pool reading (free space, reachability) is reused by Probe and GetCapacity.
    #[arg(long, env = "RDS_CSI_CACHE_SECONDS", default_value_t = DEFAULT_CACHE_TTL.as_secs())]
    pub cache_seconds: u64,

    /// Thin provisioning: the driver promises at most pool size x this ratio in volumes (and
    /// no more than free space x the ratio). 1 never promises more than the pool holds.
    #[arg(
        long,
        env = "RDS_CSI_OVERCOMMIT_RATIO",
        default_value = "1",
        value_parser = OvercommitRatio::parse
    )]
    pub overcommit_ratio: OvercommitRatio,

    /// Where attach fencing learns who holds which volume: `kubernetes` (the cluster's
    /// VolumeAttachments, watched) or `memory` (this process only; runs without Kubernetes).
    #[arg(long, env = "RDS_CSI_ATTACHMENT_STATE", value_enum, default_value_t = AttachmentStateKind::Kubernetes)]
    pub attachment_state: AttachmentStateKind,

    /// Storage-level fencing: each volume's export admits only the NVMe host NQNs of the nodes
    /// it is published to (`nvme-tcp-server-allow-host-name`; how RouterOS reads that list is
    /// not verified on hardware, so it is opt-in).
    #[arg(long, env = "RDS_CSI_EXPORT_ACL", value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub export_acl: bool,

    /// Where to serve Prometheus metrics (`/metrics`): ADDRESS:PORT, :PORT for every address,
    /// or empty to serve none.
    #[arg(long, env = "RDS_CSI_METRICS_ADDRESS", default_value = ":9809",
        value_parser = driver::metrics::parse_metrics_address)]
    pub metrics_address: driver::metrics::MetricsAddress,

    /// Seconds between reads of the RDS's sensors (`/system health`) and pool for the
    /// device-health metrics, on the leading replica; 0 reads never.
    #[arg(
        long,
        env = "RDS_CSI_DEVICE_HEALTH_INTERVAL_SECONDS",
        default_value_t = 30
    )]
    pub device_health_interval_seconds: u64,

    /// KubeVirt hotplug workaround: publish the volumes of one VirtualMachineInstance one at a
    /// time (needs `--attachment-state kubernetes`; RBAC to list VMIs).
    #[arg(long, env = "RDS_CSI_SERIALIZE_VMI_ATTACH", value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub serialize_vmi_attach: bool,

    /// Disks and images of the driver on the RDS that no PersistentVolume names, untouched
    /// for the grace period: `report` them (metric, log, event) or `delete` them too.
    /// Needs `--attachment-state kubernetes`.
    #[arg(long, env = "RDS_CSI_ORPHANS", default_value = "report")]
    pub orphans: OrphanMode,

    /// How long the RDS must show an orphan untouched (its image's last-modified time against
    /// the RDS clock) before it counts, and may be deleted (e.g. 1h, 1d; at least 1m).
    #[arg(long, env = "RDS_CSI_ORPHAN_GRACE", default_value = "1h", value_parser = parse_orphan_grace)]
    pub orphan_grace: Duration,

    /// Time between orphan sweeps (e.g. 10m); 0s sweeps never.
    #[arg(long, env = "RDS_CSI_ORPHAN_CHECK_INTERVAL", default_value = "10m",
        value_parser = humantime::parse_duration)]
    pub orphan_check_interval: Duration,

    /// Namespace of the controller's leader-election Lease (kubernetes attachment state);
    /// the Kubernetes client's default namespace when not given.
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
}

impl ControllerArgs {
    /// The controller configuration, validated.
    pub fn controller_config(&self) -> anyhow::Result<ControllerConfig> {
        let config = ControllerConfig {
            driver_name: self.driver_name.clone(),
            nvme_port: self.nvme_port,
            sizes: SizePolicy {
                granularity: self.size_granularity,
                default_size: self.default_volume_size,
            },
            cache_ttl: Duration::from_secs(self.cache_seconds),
            overcommit_ratio: self.overcommit_ratio,
            export_acl: self.export_acl,
            ..self
                .layout
                .controller_config(self.nvme_address.as_deref().unwrap_or(self.rds.address()?))
        };
        Ok(config.validate()?)
    }
}

/// The attachment state, and with Kubernetes the link behind it.
struct Attachments {
    state: Arc<dyn AttachmentState>,
    leading: tokio::sync::watch::Receiver<bool>,
    cluster: Option<ClusterLink>,
}

impl ControllerArgs {
    async fn attachments(&self) -> anyhow::Result<Attachments> {
        match self.attachment_state {
            AttachmentStateKind::Memory if self.serialize_vmi_attach => anyhow::bail!(
                "--serialize-vmi-attach needs --attachment-state kubernetes: it finds a \
                 volume's VMI in the cluster"
            ),
            AttachmentStateKind::Memory if self.orphans == OrphanMode::Delete => anyhow::bail!(
                "--orphans delete needs --attachment-state kubernetes: an orphan is a volume \
                 no PersistentVolume of the cluster names"
            ),
            AttachmentStateKind::Memory => Ok(Attachments {
                state: Arc::new(MemoryAttachments::default()),
                // Alone by definition: no other replica can share its memory.
                leading: tokio::sync::watch::channel(true).1,
                cluster: None,
            }),
            AttachmentStateKind::Kubernetes => {
                let identity = std::env::var("POD_NAME")
                    .ok()
                    .or_else(|| {
                        rustix::system::uname()
                            .nodename()
                            .to_str()
                            .ok()
                            .map(str::to_owned)
                    })
                    .unwrap_or_else(|| format!("pid-{}", std::process::id()));
                let link = ClusterLink::connect(
                    &self.driver_name,
                    self.leader_election_namespace.as_deref(),
                    &identity,
                )
                .await
                .context(
                    "--attachment-state kubernetes needs the Kubernetes API (in-cluster, or \
                     KUBECONFIG); without a cluster, run with --attachment-state memory",
                )?;
                tracing::info!(%identity, "watching VolumeAttachments; leader election on");
                Ok(Attachments {
                    state: link.attachments.clone(),
                    leading: link.leading.clone(),
                    cluster: Some(link),
                })
            }
        }
    }
}

impl ControllerArgs {
    /// The orphan reconciler, when sweeps are asked for (the cluster tells what is orphaned).
    fn orphan_reconciler(
        &self,
        service: &Arc<ControllerService>,
        link: &ClusterLink,
        registry: &mut driver::metrics::Registry,
    ) -> Option<OrphanReconciler> {
        if self.orphan_check_interval.is_zero() {
            tracing::info!("orphan sweeps off (--orphan-check-interval 0s)");
            return None;
        }
        let policy = OrphanPolicy {
            mode: self.orphans,
            grace: self.orphan_grace,
            interval: self.orphan_check_interval,
        };
        let metrics = OrphanMetrics::register(registry);
        let reconciler = OrphanReconciler::new(
            service.clone(),
            link.index.clone(),
            link.client.clone(),
            policy,
            metrics,
        );
        let pod = std::env::var("POD_NAME").ok();
        Some(match (pod, self.leader_election_namespace.as_deref()) {
            (Some(pod), Some(namespace)) => {
                reconciler.with_events(EventTarget::pod(link.events.clone(), namespace, &pod))
            }
            _ => reconciler,
        })
    }
}

/// A grace of at least a minute: a shorter one could take a volume whose PersistentVolume is
/// still being made for an orphan.
fn parse_orphan_grace(text: &str) -> Result<Duration, String> {
    let grace = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if grace < Duration::from_secs(60) {
        return Err(format!("{text}: at least 1m"));
    }
    Ok(grace)
}

/// Runs the controller until SIGTERM or SIGINT.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let config = args.controller_config()?;
    let client_config = args.rds.client_config(args.rds.read_secrets()?)?;
    // After every local check: a settings mistake is reported before any network wait.
    let attachments = args.attachments().await?;
    tracing::info!(
        endpoint = %args.endpoint,
        driver = config.driver_name,
        rds = %args.rds.address()?,
        transport = ?args.rds.rds_transport,
        pool = config.pool,
        base_path = config.volume_base_path,
        nqn_prefix = config.nqn_prefix,
        attachment_state = ?args.attachment_state,
        "starting the CSI controller"
    );
    let mut registry = driver::metrics::Registry::default();
    let rds = routeros::Client::new(client_config).context("setting up the RouterOS client")?;
    let commands = driver::metrics::RouterOsMetrics::register(&mut registry, rds.transport());
    let rds = rds.with_observer(Arc::new(commands));
    // The controller serves even while the RDS is down (Probe reports not ready); this
    // first contact only tells the operator early whether the settings work.
    let first_contact = rds.clone();
    tokio::spawn(async move {
        match first_contact.system_info().await {
            Ok(info) => tracing::info!(
                version = info.version_text,
                identity = info.identity,
                board = info.board_name.as_deref().unwrap_or("?"),
                "connected to the RDS"
            ),
            Err(error) => tracing::warn!(%error, "cannot reach the RDS yet"),
        }
    });
    let health_source = (rds.clone(), config.pool.clone());
    let fencing = driver::metrics::FencingMetrics::register(&mut registry);
    let mut service = ControllerService::new(rds, config)
        .with_attachments(attachments.state)
        .with_fencing_metrics(fencing.clone());
    if let Some(link) = &attachments.cluster {
        service = service
            .with_events(link.events.clone())
            .with_nodes(driver::cluster::NodeDirectory::new(link.client.clone()));
        if args.serialize_vmi_attach {
            let turns = driver::cluster::VmiTurns::new(link.client.clone(), &args.driver_name);
            service = service.with_vmi_turns(turns);
        }
    }
    let service = Arc::new(service);
    driver::metrics::register_rpc(&mut registry, "controller");
    let device_health = (args.device_health_interval_seconds > 0).then(|| {
        let interval = Duration::from_secs(args.device_health_interval_seconds);
        driver::device_health::Poller {
            client: health_source.0,
            pool: health_source.1,
            interval,
            timeout: interval.min(DEVICE_HEALTH_TIMEOUT),
            metrics: driver::device_health::DeviceHealthMetrics::register(&mut registry),
        }
    });
    let reconciler = attachments.cluster.as_ref().and_then(|link| {
        let reconciler = args.orphan_reconciler(&service, link, &mut registry)?;
        Some((reconciler, link.leading.clone()))
    });
    let metrics = match args.metrics_address.0 {
        Some(address) => {
            let (bound, task) = driver::metrics::serve(address, Arc::new(registry))
                .await
                .with_context(|| format!("serving metrics on {address}"))?;
            tracing::info!(address = %bound, "serving metrics at /metrics");
            Some(task)
        }
        None => None,
    };
    let orphans = reconciler.map(|(reconciler, leading)| tokio::spawn(reconciler.run(leading)));
    let health = device_health.map(|poller| tokio::spawn(poller.run(attachments.leading.clone())));
    let overdue = tokio::spawn(fence::watch_attachments(
        service.clone(),
        OVERDUE_CHECK,
        attachments.leading,
        fencing,
    ));
    let listener = server::bind(&args.endpoint).await?;
    tracing::info!(endpoint = %listener.endpoint()?, "serving CSI Identity and Controller");
    listener
        .serve(
            controller::routes(service.clone()),
            server::shutdown_signal(),
        )
        .await?;
    // Device changes whose callers gave up still run; let them finish, within a bound.
    service.locks().drain(SHUTDOWN_GRACE).await;
    overdue.abort();
    if let Some(task) = health {
        task.abort();
    }
    if let Some(task) = orphans {
        task.abort();
    }
    if let Some(task) = metrics {
        task.abort();
    }
    if let Some(link) = attachments.cluster {
        link.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
