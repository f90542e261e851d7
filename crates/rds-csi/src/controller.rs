//! `rds-csi controller`: flags (and their `RDS_CSI_*` environment equivalents) to the
//! controller's configuration and the RouterOS client's, then serve until SIGTERM.
//!
//! Secrets are read from files or the environment only, never from flags (which any user
//! on the host can read from the process list), and are never logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::builder::BoolishValueParser;
use driver::capacity::{SizePolicy, parse_size};
use driver::config::{
    ControllerConfig, DEFAULT_CACHE_TTL, DEFAULT_DRIVER_NAME, DEFAULT_NQN_PREFIX, DEFAULT_POOL,
};
use driver::controller::budget::OvercommitRatio;
use driver::controller::fence::watched::ClusterLink;
use driver::controller::fence::{self, AttachmentState, MemoryAttachments};
use driver::controller::{self, ControllerService};
use driver::server::{self, Endpoint};
use routeros::{ClientConfig, HostKeyPolicy, Secret, SshAuth, TlsPolicy};

/// How often overdue live migrations are logged.
const OVERDUE_CHECK: Duration = Duration::from_secs(60);

/// How long shutdown waits for volume changes still in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Environment variable holding the RDS password (alternative to `--rds-password-file`).
pub const PASSWORD_ENV: &str = "RDS_CSI_RDS_PASSWORD";

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RdsTransport {
    /// RouterOS CLI over SSH (the default service of every RDS).
    Ssh,
    /// RouterOS REST API over HTTPS (`www-ssl`).
    Rest,
}

/// How to reach and trust the RDS: the connection flags `controller` and `doctor` share.
#[derive(Debug, Clone, clap::Args)]
pub struct RdsConnectionArgs {
    /// Host name or IP address of the RDS management interface.
    #[arg(long, env = "RDS_CSI_RDS_ADDRESS")]
    pub rds_address: Option<String>,

    /// Management port (default 22 for ssh, 443 for rest).
    #[arg(long, env = "RDS_CSI_RDS_PORT")]
    pub rds_port: Option<u16>,

    /// How to talk to RouterOS.
    #[arg(long, env = "RDS_CSI_RDS_TRANSPORT", value_enum, default_value_t = RdsTransport::Ssh)]
    pub rds_transport: RdsTransport,

    /// RouterOS user (needs the read and write policies, plus ssh or rest-api).
    #[arg(long, env = "RDS_CSI_RDS_USER", default_value = "admin")]
    pub rds_user: String,

    /// SSH private key (OpenSSH format, ed25519 or rsa). Preferred over a password for SSH.
    #[arg(long, env = "RDS_CSI_RDS_KEY_FILE")]
    pub rds_key_file: Option<PathBuf>,

    /// File holding the passphrase of the SSH key, if it is encrypted.
    #[arg(long, env = "RDS_CSI_RDS_KEY_PASSPHRASE_FILE")]
    pub rds_key_passphrase_file: Option<PathBuf>,

    /// File holding the RouterOS password (one line). Or set RDS_CSI_RDS_PASSWORD.
    #[arg(long, env = "RDS_CSI_RDS_PASSWORD_FILE")]
    pub rds_password_file: Option<PathBuf>,

    /// Pinned SSH host key fingerprint(s), `SHA256:...` as `ssh-keygen -lf` prints them
    /// (comma-separated or repeated).
    #[arg(long, env = "RDS_CSI_RDS_HOST_KEY_FINGERPRINT", value_delimiter = ',')]
    pub rds_host_key_fingerprint: Vec<String>,

    /// OpenSSH known_hosts file to check the SSH host key against.
    #[arg(long, env = "RDS_CSI_RDS_KNOWN_HOSTS")]
    pub rds_known_hosts: Option<PathBuf>,

    /// PEM file with the CA (or self-signed certificate) of the REST endpoint.
    #[arg(long, env = "RDS_CSI_RDS_CA_FILE")]
    pub rds_ca_file: Option<PathBuf>,

    /// SHA-256 fingerprint of the REST certificate (hex, `:` separators optional).
    #[arg(long, env = "RDS_CSI_RDS_CERT_FINGERPRINT")]
    pub rds_cert_fingerprint: Option<String>,

    /// Trust any SSH host key or certificate (logged loudly). For labs only.
    #[arg(long, env = "RDS_CSI_RDS_INSECURE", value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub rds_insecure: bool,

    /// Commands in flight on the RDS at once (RouterOS allows 20 sessions by default).
    #[arg(long, env = "RDS_CSI_RDS_MAX_SESSIONS", default_value_t = routeros::DEFAULT_MAX_CONCURRENCY)]
    pub rds_max_sessions: usize,

    /// RouterOS commands that got no answer in a row after which commands fail at once
    /// (UNAVAILABLE) for a cool-down, instead of piling up on the device; 0 never.
    #[arg(long, env = "RDS_CSI_RDS_BREAKER_FAILURES", default_value_t = routeros::breaker::DEFAULT_FAILURES)]
    pub rds_breaker_failures: u32,

    /// Seconds of the breaker's first cool-down (doubled after each failed probe, up to 8x).
    #[arg(long, env = "RDS_CSI_RDS_BREAKER_COOL_DOWN_SECONDS", default_value_t = routeros::breaker::DEFAULT_COOL_DOWN.as_secs())]
    pub rds_breaker_cool_down_seconds: u64,

    /// Deadline of one RouterOS command, in seconds.
    #[arg(long, env = "RDS_CSI_RDS_TIMEOUT_SECONDS", default_value_t = routeros::DEFAULT_COMMAND_TIMEOUT.as_secs())]
    pub rds_timeout_seconds: u64,
}

/// Where volumes live on the RDS and how their subsystems are named: shared by `controller`
/// and `doctor`.
#[derive(Debug, Clone, clap::Args)]
pub struct VolumeLayoutArgs {
    /// Directory under which every volume image lives; StorageClass volumePaths must lie
    /// within it.
    #[arg(long, env = "RDS_CSI_VOLUME_BASE_PATH", default_value = DEFAULT_POOL)]
    pub volume_base_path: String,

    /// Mount point of the RDS storage pool (for free space and health).
    #[arg(long, env = "RDS_CSI_POOL", default_value = DEFAULT_POOL)]
    pub pool: String,

    /// NQN prefix of volume subsystems: `<prefix>:<volume id>`.
    #[arg(long, env = "RDS_CSI_NQN_PREFIX", default_value = DEFAULT_NQN_PREFIX)]
    pub nqn_prefix: String,
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

    /// KubeVirt hotplug workaround: publish the volumes of one VirtualMachineInstance one at a
    /// time (needs `--attachment-state kubernetes`; RBAC to list VMIs).
    #[arg(long, env = "RDS_CSI_SERIALIZE_VMI_ATTACH", value_parser = BoolishValueParser::new(), default_value_t = false)]
    pub serialize_vmi_attach: bool,

    /// Namespace of the controller's leader-election Lease (kubernetes attachment state);
    /// the Kubernetes client's default namespace when not given.
    #[arg(long, env = "POD_NAMESPACE")]
    pub leader_election_namespace: Option<String>,
}

/// Why the connection flags do not make a usable RouterOS client configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("--rds-address is required")]
    NoAddress,
    #[error("reading the {what} file {}: {source}", path.display())]
    SecretFile {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} file {} is empty", path.display())]
    EmptySecretFile { what: &'static str, path: PathBuf },
    #[error("--rds-ca-file and --rds-cert-fingerprint apply to --rds-transport rest")]
    RestFlagsWithSsh,
    #[error(
        "--rds-key-file, --rds-known-hosts and --rds-host-key-fingerprint apply to \
         --rds-transport ssh"
    )]
    SshFlagsWithRest,
    #[error("no SSH credentials: give --rds-key-file, --rds-password-file or set {PASSWORD_ENV}")]
    NoSshCredentials,
    #[error("REST needs a password: give --rds-password-file or set {PASSWORD_ENV}")]
    NoRestPassword,
    #[error(
        "the RDS host key is not pinned: give --rds-host-key-fingerprint or --rds-known-hosts \
         (or --rds-insecure in a lab)"
    )]
    HostKeyNotPinned,
    #[error(
        "the RDS certificate is not trusted: give --rds-ca-file or --rds-cert-fingerprint \
         (or --rds-insecure in a lab)"
    )]
    CertificateNotTrusted,
    #[error("give only one of --rds-host-key-fingerprint, --rds-known-hosts and --rds-insecure")]
    SeveralHostKeyPins,
    #[error("give only one of --rds-ca-file, --rds-cert-fingerprint and --rds-insecure")]
    SeveralCertificatePins,
    #[error("--rds-max-sessions must be at least 1")]
    NoSessions,
    #[error("--rds-timeout-seconds must be at least 1")]
    NoTimeout,
}

impl ConnectionError {
    /// True when only the trust anchor is missing: everything else about the flags is usable.
    pub fn is_not_pinned(&self) -> bool {
        matches!(self, Self::HostKeyNotPinned | Self::CertificateNotTrusted)
    }
}

/// Reads a secret file: its first line, without the line ending.
fn read_secret(path: &Path, what: &'static str) -> Result<Secret, ConnectionError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConnectionError::SecretFile {
        what,
        path: path.to_owned(),
        source,
    })?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(ConnectionError::EmptySecretFile {
            what,
            path: path.to_owned(),
        });
    }
    Ok(Secret::new(line))
}

/// Secrets gathered from files and the environment.
#[derive(Debug, Default)]
pub struct Secrets {
    pub password: Option<Secret>,
    pub key_passphrase: Option<Secret>,
}

/// How the device's identity is trusted, per transport.
#[derive(Debug, Clone)]
pub enum Trust {
    Ssh(HostKeyPolicy),
    Rest(TlsPolicy),
}

impl RdsTransport {
    /// The management port when `--rds-port` is not given.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Ssh => routeros::DEFAULT_SSH_PORT,
            Self::Rest => routeros::DEFAULT_REST_PORT,
        }
    }
}

impl RdsConnectionArgs {
    pub fn address(&self) -> Result<&str, ConnectionError> {
        self.rds_address
            .as_deref()
            .ok_or(ConnectionError::NoAddress)
    }

    /// The management port in effect.
    pub fn port(&self) -> u16 {
        self.rds_port
            .unwrap_or_else(|| self.rds_transport.default_port())
    }

    /// Reads the secrets the flags point at (files, or the password environment variable).
    pub fn read_secrets(&self) -> Result<Secrets, ConnectionError> {
        let password = match &self.rds_password_file {
            Some(path) => Some(read_secret(path, "password")?),
            None => std::env::var(PASSWORD_ENV)
                .ok()
                .filter(|p| !p.is_empty())
                .map(Secret::new),
        };
        let key_passphrase = self
            .rds_key_passphrase_file
            .as_deref()
            .map(|path| read_secret(path, "key passphrase"))
            .transpose()?;
        Ok(Secrets {
            password,
            key_passphrase,
        })
    }

    /// Refuses the flags that belong to the other transport.
    pub fn check_transport_flags(&self) -> Result<(), ConnectionError> {
        match self.rds_transport {
            RdsTransport::Ssh
                if self.rds_ca_file.is_some() || self.rds_cert_fingerprint.is_some() =>
            {
                Err(ConnectionError::RestFlagsWithSsh)
            }
            RdsTransport::Rest
                if self.rds_key_file.is_some()
                    || self.rds_known_hosts.is_some()
                    || !self.rds_host_key_fingerprint.is_empty() =>
            {
                Err(ConnectionError::SshFlagsWithRest)
            }
            _ => Ok(()),
        }
    }

    /// How the device is trusted: exactly one pin (or `--rds-insecure`) for the transport.
    pub fn trust(&self) -> Result<Trust, ConnectionError> {
        match self.rds_transport {
            RdsTransport::Ssh => {
                let given = [
                    !self.rds_host_key_fingerprint.is_empty(),
                    self.rds_known_hosts.is_some(),
                    self.rds_insecure,
                ];
                let policy = match (given, &self.rds_known_hosts) {
                    ([true, false, false], _) => {
                        HostKeyPolicy::Fingerprints(self.rds_host_key_fingerprint.clone())
                    }
                    ([false, true, false], Some(path)) => {
                        HostKeyPolicy::KnownHostsFile(path.clone())
                    }
                    ([false, false, true], _) => HostKeyPolicy::Insecure,
                    ([false, false, false], _) => return Err(ConnectionError::HostKeyNotPinned),
                    _ => return Err(ConnectionError::SeveralHostKeyPins),
                };
                Ok(Trust::Ssh(policy))
            }
            RdsTransport::Rest => {
                let given = [
                    self.rds_ca_file.is_some(),
                    self.rds_cert_fingerprint.is_some(),
                    self.rds_insecure,
                ];
                let policy = match (given, &self.rds_ca_file, &self.rds_cert_fingerprint) {
                    ([true, false, false], Some(path), _) => TlsPolicy::CaFile(path.clone()),
                    ([false, true, false], _, Some(fingerprint)) => {
                        TlsPolicy::Fingerprint(fingerprint.clone())
                    }
                    ([false, false, true], _, _) => TlsPolicy::Insecure,
                    ([false, false, false], _, _) => {
                        return Err(ConnectionError::CertificateNotTrusted);
                    }
                    _ => return Err(ConnectionError::SeveralCertificatePins),
                };
                Ok(Trust::Rest(policy))
            }
        }
    }

    /// The RouterOS client configuration. Refuses to run without a way to trust the device.
    pub fn client_config(&self, secrets: Secrets) -> Result<ClientConfig, ConnectionError> {
        self.check_transport_flags()?;
        let address = self.address()?;
        let mut config = match self.rds_transport {
            RdsTransport::Ssh => {
                let auth = match (&self.rds_key_file, secrets.password) {
                    (Some(path), _) => SshAuth::KeyFile {
                        path: path.clone(),
                        passphrase: secrets.key_passphrase,
                    },
                    (None, Some(password)) => SshAuth::Password(password),
                    (None, None) => return Err(ConnectionError::NoSshCredentials),
                };
                let Trust::Ssh(host_key) = self.trust()? else {
                    unreachable!("ssh transport gives ssh trust")
                };
                ClientConfig::ssh(address, &self.rds_user, auth, host_key)
            }
            RdsTransport::Rest => {
                let Some(password) = secrets.password else {
                    return Err(ConnectionError::NoRestPassword);
                };
                let Trust::Rest(tls) = self.trust()? else {
                    unreachable!("rest transport gives rest trust")
                };
                ClientConfig::rest(address, &self.rds_user, password, tls)
            }
        };
        config.port = self.rds_port;
        if self.rds_max_sessions == 0 {
            return Err(ConnectionError::NoSessions);
        }
        config.max_concurrency = self.rds_max_sessions;
        if self.rds_timeout_seconds == 0 {
            return Err(ConnectionError::NoTimeout);
        }
        config.command_timeout = Duration::from_secs(self.rds_timeout_seconds);
        config.breaker = routeros::BreakerConfig {
            failures: self.rds_breaker_failures,
            cool_down: Duration::from_secs(self.rds_breaker_cool_down_seconds.max(1)),
        };
        Ok(config)
    }
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

impl VolumeLayoutArgs {
    /// A controller configuration with this layout and every other setting at its default
    /// (not yet validated).
    pub fn controller_config(&self, nvme_address: &str) -> ControllerConfig {
        ControllerConfig {
            pool: self.pool.clone(),
            volume_base_path: self.volume_base_path.clone(),
            nqn_prefix: self.nqn_prefix.clone(),
            ..ControllerConfig::new(nvme_address)
        }
    }
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
    let mut service = ControllerService::new(rds, config).with_attachments(attachments.state);
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
    let fencing = driver::metrics::FencingMetrics::register(&mut registry);
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
