//! How to reach and trust the RDS, and where volumes live on it: the flags `controller` and
//! `doctor` share (with their `RDS_CSI_*` environment equivalents), turned into the RouterOS
//! client's configuration.
//!
//! Secrets are read from files or the environment only, never from flags (which any user
//! on the host can read from the process list), and are never logged.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::BoolishValueParser;
use driver::config::{ControllerConfig, DEFAULT_NQN_PREFIX, DEFAULT_POOL};
use routeros::{ClientConfig, HostKeyPolicy, Secret, SshAuth, TlsPolicy};

/// Environment variable holding the RDS password (alternative to `--rds-password-file`).
pub const PASSWORD_ENV: &str = "RDS_CSI_RDS_PASSWORD";

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

    /// Label of the pool's btrfs filesystem, for volumes in subvolumes and their snapshots
    /// (`/disk btrfs subvolume add fs=`) [default: the pool's name].
    #[arg(long, env = "RDS_CSI_BTRFS_FILESYSTEM")]
    pub btrfs_filesystem: Option<String>,
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

impl VolumeLayoutArgs {
    /// A controller configuration with this layout and every other setting at its default
    /// (not yet validated).
    pub fn controller_config(&self, nvme_address: &str) -> ControllerConfig {
        ControllerConfig {
            pool: self.pool.clone(),
            volume_base_path: self.volume_base_path.clone(),
            nqn_prefix: self.nqn_prefix.clone(),
            btrfs_filesystem: self.btrfs_filesystem.clone(),
            ..ControllerConfig::new(nvme_address)
        }
    }
}
