//! Client configuration: where the device is, how to reach it, and how much to ask of it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default number of commands in flight on one client (RouterOS allows 20 sessions by default;
/// staying well below leaves room for operators and other tools).
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;
/// Default deadline of one command, including waiting for a slot and (re)connecting.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Default deadline of one connection attempt (TCP, key exchange, authentication).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A secret string whose `Debug` output never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only for handing it to the transport.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// SSH authentication.
#[derive(Debug, Clone)]
pub enum SshAuth {
    Password(Secret),
    /// An OpenSSH private key (ed25519 or rsa), optionally encrypted.
    KeyFile {
        path: PathBuf,
        passphrase: Option<Secret>,
    },
}

/// RouterOS's SSH service port.
pub const DEFAULT_SSH_PORT: u16 = 22;
/// RouterOS's `www-ssl` (REST) service port.
pub const DEFAULT_REST_PORT: u16 = 443;

/// How the SSH host key is trusted.
#[derive(Debug, Clone)]
pub enum HostKeyPolicy {
    /// One or more `SHA256:...` fingerprints as `ssh-keygen -l` prints them.
    Fingerprints(Vec<String>),
    /// A known_hosts file (plain or `|1|` hashed host names).
    KnownHostsFile(PathBuf),
    /// known_hosts lines given inline (one or more, newline-separated).
    KnownHostsLines(String),
    /// Accept any host key, logging a loud warning with its fingerprint. For labs only.
    Insecure,
}

/// How the REST certificate is trusted.
#[derive(Debug, Clone)]
pub enum TlsPolicy {
    /// PEM file with the CA (or the self-signed certificate); host name verified.
    CaFile(PathBuf),
    /// PEM text with the CA (or the self-signed certificate); host name verified.
    CaPem(String),
    /// SHA-256 of the leaf certificate (hex, `:`-separated or not); host name not checked.
    Fingerprint(String),
    /// Accept any certificate, logging a loud warning with its fingerprint. For labs only.
    Insecure,
}

/// Transport-specific settings.
#[derive(Debug, Clone)]
pub enum TransportConfig {
    Ssh {
        auth: SshAuth,
        host_key: HostKeyPolicy,
    },
    Rest {
        password: Secret,
        tls: TlsPolicy,
    },
}

/// Reconnect backoff: `initial`, doubling per failed attempt, capped at `max`, with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// Delay before the next attempt after `failures` consecutive failures (>= 1), with
    /// `jitter` in `[0, 1)` spreading it over the upper half of the exponential step so
    /// many clients do not reconnect in lockstep.
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let exponent = failures.saturating_sub(1).min(31);
        let step = self.initial.saturating_mul(1u32 << exponent).min(self.max);
        let jitter = jitter.clamp(0.0, 1.0);
        step.mul_f64(0.5 + 0.5 * jitter)
    }
}

/// Everything needed to build a [`crate::Client`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Host name or IP address of the device.
    pub address: String,
    /// TCP port; `None` means [`DEFAULT_SSH_PORT`] or [`DEFAULT_REST_PORT`].
    pub port: Option<u16>,
    /// Login name; RouterOS `user+opts` suffixes are passed through as given.
    pub user: String,
    pub transport: TransportConfig,
    /// Commands in flight at once (SSH channels or HTTP requests).
    pub max_concurrency: usize,
    /// Deadline of each command; exceeding it is `Unavailable`.
    pub command_timeout: Duration,
    pub connect_timeout: Duration,
    pub backoff: Backoff,
    /// When to stop asking a device that does not answer (see [`crate::breaker`]).
    pub breaker: crate::breaker::BreakerConfig,
}

impl ClientConfig {
    /// An SSH configuration with default limits.
    pub fn ssh(
        address: impl Into<String>,
        user: impl Into<String>,
        auth: SshAuth,
        host_key: HostKeyPolicy,
    ) -> Self {
        Self::with_transport(address, user, TransportConfig::Ssh { auth, host_key })
    }

    /// A REST (HTTPS) configuration with default limits.
    pub fn rest(
        address: impl Into<String>,
        user: impl Into<String>,
        password: Secret,
        tls: TlsPolicy,
    ) -> Self {
        Self::with_transport(address, user, TransportConfig::Rest { password, tls })
    }

    fn with_transport(
        address: impl Into<String>,
        user: impl Into<String>,
        transport: TransportConfig,
    ) -> Self {
        Self {
            address: address.into(),
            port: None,
            user: user.into(),
            transport,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            backoff: Backoff::default(),
            breaker: crate::breaker::BreakerConfig::default(),
        }
    }

    /// The port in effect.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.transport {
            TransportConfig::Ssh { .. } => DEFAULT_SSH_PORT,
            TransportConfig::Rest { .. } => DEFAULT_REST_PORT,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let cfg = ClientConfig::rest("rds", "admin", Secret::new("hunter2"), TlsPolicy::Insecure);
        let ssh = ClientConfig::ssh(
            "rds",
            "admin+ct",
            SshAuth::KeyFile {
                path: "/k".into(),
                passphrase: Some("pass-phrase-x".into()),
            },
            HostKeyPolicy::Insecure,
        );
        let pw = ClientConfig::ssh(
            "rds",
            "admin",
            SshAuth::Password("p4ssw0rd".into()),
            HostKeyPolicy::Insecure,
        );
        let all = format!("{cfg:?} {ssh:?} {pw:?}");
        for secret in ["hunter2", "pass-phrase-x", "p4ssw0rd"] {
            assert!(!all.contains(secret), "{all}");
        }
        assert!(all.contains("<redacted>"));
        assert!(
            all.contains("admin+ct"),
            "login names pass through unchanged"
        );
    }

    #[test]
    fn default_ports() {
        let mut cfg = ClientConfig::rest("rds", "u", Secret::new("p"), TlsPolicy::Insecure);
        assert_eq!(cfg.effective_port(), 443);
        cfg.port = Some(8443);
        assert_eq!(cfg.effective_port(), 8443);
        let ssh = ClientConfig::ssh(
            "rds",
            "u",
            SshAuth::Password("p".into()),
            HostKeyPolicy::Insecure,
        );
        assert_eq!(ssh.effective_port(), 22);
        assert_eq!(ssh.max_concurrency, 8);
        assert_eq!(ssh.command_timeout, Duration::from_secs(30));
    }

    #[test]
    fn backoff_doubles_caps_and_jitters_within_bounds() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(2),
        };
        assert_eq!(b.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(b.delay(2, 1.0), Duration::from_millis(200));
        assert_eq!(b.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(b.delay(10, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(u32::MAX, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(3, 0.5), Duration::from_millis(300));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(100));
        // Out-of-range jitter is clamped rather than producing negative or huge delays.
        assert_eq!(b.delay(1, -3.0), Duration::from_millis(50));
        assert_eq!(b.delay(1, 9.0), Duration::from_millis(100));
    }
}
