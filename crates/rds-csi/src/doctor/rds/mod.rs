//! RDS checks, each distinct so that its fix is precise: the settings, the connection flags,
//! TCP reachability, the pinned host key or certificate, the login, the RouterOS version, the
//! pool, the driver's volumes, which hosts their exports admit and the round-trip time.
//!
//! [`gather`] walks those steps in order with a deadline each and stops where going on makes
//! no sense (credentials are never sent to a device whose identity did not check out, and a
//! device that stopped answering is not asked again); [`checks`] and the `judge_*` functions
//! turn [`RdsFacts`] into verdicts without a network.
//!
//! The steps live in `gather.rs`, the verdicts in `judge.rs`.

mod export_access;
mod gather;
mod judge;
#[cfg(test)]
mod tests;

pub use export_access::judge_export_access;
pub use gather::gather;
pub use judge::*;

use std::path::PathBuf;
use std::time::Duration;

use routeros::hostkey::HostKeyPins;
use routeros::{Error, FileDisk, Pool, SystemInfo};

use crate::connection::RdsTransport;
use crate::doctor::probe::{Reached, TcpFailure};

/// Longest wait for a TCP connect, key exchange or TLS handshake (shorter when
/// `--rds-timeout-seconds` is).
pub const PROBE_DEADLINE: Duration = Duration::from_secs(10);
/// Reads timed for the round-trip check.
pub const ROUND_TRIPS: usize = 5;
/// A median round trip above this makes every volume operation slow.
pub const SLOW_ROUND_TRIP: Duration = Duration::from_secs(1);
/// Free space below this share of the pool is worth a warning.
pub const LOW_FREE_PERCENT: u64 = 10;

/// How the device's identity is to be checked.
#[derive(Debug, Clone)]
pub enum Pinning {
    /// Neither a pin nor `--rds-insecure`.
    NotPinned,
    /// `--rds-insecure`.
    Insecure,
    /// The pin flags cannot be used (several given, unreadable file, malformed fingerprint).
    Unusable(String),
    HostKeys(HostKeyPins),
    CertificateFingerprint([u8; 32]),
    /// `--rds-ca-file`, and what a handshake verified against it said.
    CertificateAuthority {
        file: PathBuf,
        verdict: Result<(), String>,
    },
}

/// What the device presented and how it is to be trusted.
#[derive(Debug, Clone)]
pub struct PeerIdentity {
    /// The SSH host key blob, or the TLS leaf certificate (DER).
    pub presented: Result<Vec<u8>, String>,
    pub pinning: Pinning,
}

/// Everything the RDS checks judge. `None` means the step was not reached.
#[derive(Debug, Clone)]
pub struct RdsFacts {
    pub transport: RdsTransport,
    pub address: String,
    pub port: u16,
    pub user: String,
    pub pool: String,
    pub base_path: String,
    pub nqn_prefix: String,
    /// The layout as the controller validates it.
    pub settings: Result<(), String>,
    /// Problems with the connection flags or secrets other than a missing pin.
    pub flags: Result<(), String>,
    pub reach: Result<Reached, TcpFailure>,
    pub identity: Option<PeerIdentity>,
    pub login: Option<Result<SystemInfo, Error>>,
    pub pool_info: Option<Result<Pool, Error>>,
    pub disks: Option<Result<Vec<FileDisk>, Error>>,
    pub round_trips: Option<Result<Vec<Duration>, Error>>,
}
