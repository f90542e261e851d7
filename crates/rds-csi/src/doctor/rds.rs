//! RDS checks, each distinct so that its fix is precise: the settings, the connection flags,
//! TCP reachability, the pinned host key or certificate, the login, the RouterOS version, the
//! pool, the driver's volumes and the round-trip time.
//!
//! [`gather`] walks those steps in order with a deadline each and stops where going on makes
//! no sense (credentials are never sent to a device whose identity did not check out, and a
//! device that stopped answering is not asked again); [`checks`] and the `judge_*` functions
//! turn [`RdsFacts`] into verdicts without a network.

use std::path::PathBuf;
use std::time::Duration;

use driver::controller::rules::{owned_image, volume_condition};
use driver::naming::is_managed_volume_id;
use routeros::hostkey::{HostKeyPins, HostKeyRejection};
use routeros::version::{MIN_FILE_DISKS, MIN_SERVER_NQN};
use routeros::{Error, FileDisk, HostKeyPolicy, Pool, SystemInfo, TlsPolicy};
use sha2::{Digest as _, Sha256};

use super::probe::{self, Reached, TcpFailure};
use super::report::{Check, Status, bytes, millis};
use crate::controller::{
    ConnectionError, RdsConnectionArgs, RdsTransport, Trust, VolumeLayoutArgs,
};

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

/// Walks the RDS steps. `conn.rds_address` must be set.
pub async fn gather(conn: &RdsConnectionArgs, layout: &VolumeLayoutArgs) -> RdsFacts {
    let address = conn.rds_address.clone().unwrap_or_default();
    let port = conn.port();
    let command_timeout = Duration::from_secs(conn.rds_timeout_seconds.max(1));
    let probe_deadline = PROBE_DEADLINE.min(command_timeout);
    let config = conn
        .read_secrets()
        .and_then(|secrets| conn.client_config(secrets));
    let (flags, client_config) = match config {
        Ok(config) => (Ok(()), Some(config)),
        // Judged with the identity, where the presented key can be shown for pinning.
        Err(error) if error.is_not_pinned() => (Ok(()), None),
        Err(error) => (Err(error.to_string()), None),
    };
    let mut facts = RdsFacts {
        transport: conn.rds_transport,
        address: address.clone(),
        port,
        user: conn.rds_user.clone(),
        pool: layout.pool.clone(),
        base_path: layout.volume_base_path.clone(),
        nqn_prefix: layout.nqn_prefix.clone(),
        settings: layout
            .controller_config(&address)
            .validate()
            .map(drop)
            .map_err(|e| e.to_string()),
        flags,
        reach: probe::tcp_connect(&address, port, probe_deadline).await,
        identity: None,
        login: None,
        pool_info: None,
        disks: None,
        round_trips: None,
    };
    if facts.reach.is_err() {
        return facts;
    }
    let presented = match conn.rds_transport {
        RdsTransport::Ssh => probe::ssh_host_key(&address, port, probe_deadline).await,
        RdsTransport::Rest => probe::tls_certificate(&address, port, probe_deadline).await,
    };
    let identity = PeerIdentity {
        presented,
        pinning: pinning(conn.trust(), &address, port, probe_deadline).await,
    };
    let verified = judge_identity(&facts, &identity).status != Status::Fail;
    facts.identity = Some(identity);
    let Some(mut config) = client_config.filter(|_| verified) else {
        return facts;
    };
    config.connect_timeout = probe_deadline;
    let client = match routeros::Client::new(config) {
        Ok(client) => client,
        Err(error) => {
            facts.login = Some(Err(error));
            return facts;
        }
    };
    let login = client.system_info().await;
    let logged_in = login.is_ok();
    facts.login = Some(login);
    if !logged_in {
        return facts;
    }
    // A device that stopped answering is not asked again: each ask would wait its deadline.
    fn answering<T>(result: &Option<Result<T, Error>>) -> bool {
        !matches!(result, Some(Err(error)) if error.is_retryable())
    }
    facts.pool_info = Some(client.pool(&layout.pool).await);
    if !answering(&facts.pool_info) {
        return facts;
    }
    facts.disks = Some(client.list_disks("").await);
    if !answering(&facts.disks) {
        return facts;
    }
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    let mut outcome = Ok(());
    for _ in 0..ROUND_TRIPS {
        let started = tokio::time::Instant::now();
        if let Err(error) = client.system_info().await {
            outcome = Err(error);
            break;
        }
        times.push(started.elapsed());
    }
    facts.round_trips = Some(outcome.map(|()| times));
    facts
}

/// Turns the trust flags into what the identity check compares against (reading the files
/// they name, and for a CA bundle, verifying the device's certificate against it).
async fn pinning(
    trust: Result<Trust, ConnectionError>,
    address: &str,
    port: u16,
    deadline: Duration,
) -> Pinning {
    let policy = match trust {
        Ok(policy) => policy,
        Err(error) if error.is_not_pinned() => return Pinning::NotPinned,
        Err(error) => return Pinning::Unusable(error.to_string()),
    };
    let unusable = |error: Error| Pinning::Unusable(error.message().to_owned());
    match policy {
        Trust::Ssh(HostKeyPolicy::Insecure) | Trust::Rest(TlsPolicy::Insecure) => Pinning::Insecure,
        Trust::Ssh(policy) => match HostKeyPins::from_policy(&policy) {
            Ok(Some(pins)) => Pinning::HostKeys(pins),
            Ok(None) => Pinning::Insecure,
            Err(error) => unusable(error),
        },
        Trust::Rest(TlsPolicy::Fingerprint(text)) => {
            match routeros::tls::parse_cert_fingerprint(&text) {
                Ok(digest) => Pinning::CertificateFingerprint(digest),
                Err(error) => unusable(error),
            }
        }
        Trust::Rest(TlsPolicy::CaFile(file)) => match std::fs::read(&file) {
            Ok(pem) => Pinning::CertificateAuthority {
                verdict: probe::tls_verify_with_ca(address, port, pem, deadline).await,
                file,
            },
            Err(error) => {
                Pinning::Unusable(format!("cannot read CA file {}: {error}", file.display()))
            }
        },
        Trust::Rest(TlsPolicy::CaPem(pem)) => Pinning::CertificateAuthority {
            verdict: probe::tls_verify_with_ca(address, port, pem.into_bytes(), deadline).await,
            file: PathBuf::from("(inline)"),
        },
    }
}

/// Every RDS verdict, in display order.
pub fn checks(facts: &RdsFacts) -> Vec<Check> {
    let mut checks = vec![
        judge_settings(facts),
        judge_flags(facts),
        judge_reach(facts),
    ];
    let (identity_id, identity_name) = identity_names(facts.transport);
    checks.push(match &facts.identity {
        Some(identity) => judge_identity(facts, identity),
        None => Check::skip(
            identity_id,
            identity_name,
            "not checked: the RDS is not reachable",
        ),
    });
    checks.push(match &facts.login {
        Some(login) => judge_login(facts, login),
        None => Check::skip("rds.login", "login", login_skip_reason(facts, &checks)),
    });
    let info = match &facts.login {
        Some(Ok(info)) => Some(info),
        _ => None,
    };
    checks.push(match info {
        Some(info) => judge_version(info),
        None => Check::skip(
            "rds.version",
            "RouterOS version",
            "not checked: not logged in",
        ),
    });
    let unasked = |id: &str, name: &str| {
        let reason = if info.is_some() {
            "not checked: the RDS stopped answering"
        } else {
            "not checked: not logged in"
        };
        Check::skip(id, name, reason)
    };
    checks.push(match &facts.pool_info {
        Some(pool) => judge_pool(&facts.pool, pool),
        None => unasked("rds.pool", "storage pool"),
    });
    checks.push(match &facts.disks {
        Some(disks) => judge_volumes(&facts.base_path, &facts.nqn_prefix, disks),
        None => unasked("rds.volumes", "driver volumes"),
    });
    checks.push(match &facts.round_trips {
        Some(times) => judge_round_trips(times),
        None => unasked("rds.round-trip", "round trip"),
    });
    checks
}

fn identity_names(transport: RdsTransport) -> (&'static str, &'static str) {
    match transport {
        RdsTransport::Ssh => ("rds.host-key", "SSH host key"),
        RdsTransport::Rest => ("rds.certificate", "TLS certificate"),
    }
}

fn login_skip_reason(facts: &RdsFacts, earlier: &[Check]) -> &'static str {
    if facts.flags.is_err() {
        "not tried: the connection flags are unusable"
    } else if facts.reach.is_err() {
        "not tried: the RDS is not reachable"
    } else if earlier.iter().any(|c| c.status == Status::Fail) {
        "not tried: credentials are never sent to a device whose identity is not verified"
    } else {
        "not tried"
    }
}

pub fn judge_settings(facts: &RdsFacts) -> Check {
    let (id, name) = ("rds.settings", "volume settings");
    match &facts.settings {
        Ok(()) => Check::ok(
            id,
            name,
            format!(
                "pool {}, images under {}, subsystems {}:<volume id>",
                facts.pool, facts.base_path, facts.nqn_prefix
            ),
        ),
        Err(error) => Check::fail(id, name, error.clone()).fix(
            "give the controller's --pool, --volume-base-path and --nqn-prefix (the controller \
             refuses these too)",
        ),
    }
}

pub fn judge_flags(facts: &RdsFacts) -> Check {
    let (id, name) = ("rds.flags", "connection flags");
    let transport = match facts.transport {
        RdsTransport::Ssh => "ssh",
        RdsTransport::Rest => "rest",
    };
    match &facts.flags {
        Ok(()) => Check::ok(
            id,
            name,
            format!(
                "{transport} to {}:{} as {}",
                facts.address, facts.port, facts.user
            ),
        ),
        Err(error) => Check::fail(id, name, error.clone())
            .fix("fix the --rds-* flags (or their RDS_CSI_RDS_* variables) as the message says"),
    }
}

pub fn judge_reach(facts: &RdsFacts) -> Check {
    let (id, name) = ("rds.reachable", "RDS reachable");
    let target = format!("{}:{}", facts.address, facts.port);
    let service = match facts.transport {
        RdsTransport::Ssh => "ssh",
        RdsTransport::Rest => "www-ssl",
    };
    match &facts.reach {
        Ok(reached) => Check::ok(
            id,
            name,
            format!(
                "{} accepted a TCP connection in {}",
                reached.peer,
                millis(reached.connect_time)
            ),
        ),
        Err(TcpFailure::Resolve(error)) => Check::fail(
            id,
            name,
            format!("cannot resolve {}: {error}", facts.address),
        )
        .fix("give --rds-address as an IP address, or a name this node's resolver knows"),
        Err(TcpFailure::Refused) => Check::fail(
            id,
            name,
            format!("{target} refused the connection: nothing listens on that port"),
        )
        .fix(format!(
            "check --rds-port, and that the {service} service is enabled on the RDS \
             (/ip service print)"
        )),
        Err(TcpFailure::NoAnswer(after)) => Check::fail(
            id,
            name,
            format!(
                "no answer from {target} within {} s: wrong address, host down, or a firewall \
                 drops the traffic",
                after.as_secs()
            ),
        )
        .fix(format!(
            "check --rds-address, the route from this node, firewalls on the way, and the \
             addresses the {service} service accepts (/ip service print)"
        )),
        Err(TcpFailure::Other(error)) => {
            Check::fail(id, name, format!("cannot connect to {target}: {error}"))
                .fix("check --rds-address and the network path from this node")
        }
    }
}

pub fn judge_identity(facts: &RdsFacts, identity: &PeerIdentity) -> Check {
    let (id, name) = identity_names(facts.transport);
    let target = format!("{}:{}", facts.address, facts.port);
    let blob = match &identity.presented {
        Ok(blob) => blob,
        Err(error) => {
            let fix = match facts.transport {
                RdsTransport::Ssh => {
                    "check --rds-port: it must be the RDS's ssh service (for the REST API give \
                     --rds-transport rest)"
                }
                RdsTransport::Rest => {
                    "check --rds-port: it must be the RDS's www-ssl service, with a certificate \
                     assigned (/ip service print)"
                }
            };
            return Check::fail(id, name, format!("{target}: {error}")).fix(fix);
        }
    };
    let (fingerprint, pin_flag) = match facts.transport {
        RdsTransport::Ssh => (
            routeros::sha256_fingerprint(blob),
            "--rds-host-key-fingerprint",
        ),
        RdsTransport::Rest => (routeros::cert_fingerprint(blob), "--rds-cert-fingerprint"),
    };
    let pin_it = format!(
        "compare {fingerprint} with the RDS's own (on its console), then pin it: {pin_flag} \
         {fingerprint}"
    );
    match &identity.pinning {
        Pinning::NotPinned => Check::fail(
            id,
            name,
            format!("not pinned, so nothing proves {target} is the RDS; it presents {fingerprint}"),
        )
        .fix(pin_it),
        Pinning::Insecure => Check::warn(
            id,
            name,
            format!("not verified (--rds-insecure): anyone at {target} would be trusted; it presents {fingerprint}"),
        )
        .fix(format!("{pin_it}, and drop --rds-insecure")),
        Pinning::Unusable(error) => Check::fail(id, name, format!("the pin cannot be used: {error}"))
            .fix(format!("fix the pin flags; the device presents {fingerprint}")),
        Pinning::HostKeys(pins) => match pins.check(&facts.address, facts.port, blob) {
            Ok(()) => Check::ok(id, name, format!("{fingerprint} matches the pin")),
            Err(HostKeyRejection::Mismatch { presented }) => {
                mismatch(facts.transport, (id, name), &target, &presented, pin_flag)
            }
            Err(HostKeyRejection::Unknown { presented }) => Check::fail(
                id,
                name,
                format!("known_hosts has no key for {target}; it presents {presented}"),
            )
            .fix(pin_it),
            Err(HostKeyRejection::Revoked { presented }) => Check::fail(
                id,
                name,
                format!("{target} presents {presented}, which known_hosts marks @revoked"),
            )
            .fix("do not connect: the device uses a key that was withdrawn; regenerate its host key and pin the new one"),
        },
        Pinning::CertificateFingerprint(pin) => {
            let digest: [u8; 32] = Sha256::digest(blob).into();
            if &digest == pin {
                Check::ok(id, name, format!("{fingerprint} matches the pin"))
            } else {
                mismatch(facts.transport, (id, name), &target, &fingerprint, pin_flag)
            }
        }
        Pinning::CertificateAuthority { file, verdict } => match verdict {
            Ok(()) => Check::ok(
                id,
                name,
                format!("{fingerprint}, issued for {} by the CA in {}", facts.address, file.display()),
            ),
            Err(error) => Check::fail(
                id,
                name,
                format!(
                    "the CA in {} does not vouch for the certificate of {target} ({fingerprint}): {error}",
                    file.display()
                ),
            )
            .fix(format!(
                "give the CA that signed the RDS's www-ssl certificate (its names must include \
                 {}), or pin the certificate itself: --rds-cert-fingerprint {fingerprint}",
                facts.address
            )),
        },
    }
}

fn mismatch(
    transport: RdsTransport,
    (id, name): (&str, &str),
    target: &str,
    presented: &str,
    pin_flag: &str,
) -> Check {
    let what = match transport {
        RdsTransport::Ssh => "host key",
        RdsTransport::Rest => "certificate",
    };
    Check::fail(
        id,
        name,
        format!(
            "MISMATCH: {target} presents {presented}, which is not the pinned one: another \
             machine answers at this address, or the RDS's {what} was replaced"
        ),
    )
    .fix(format!(
        "do not connect until you know why; if the RDS's {what} changed on purpose, re-pin: \
         {pin_flag} {presented}"
    ))
}

pub fn judge_login(facts: &RdsFacts, login: &Result<SystemInfo, Error>) -> Check {
    let (id, name) = ("rds.login", "login");
    let user = &facts.user;
    let info = match login {
        Ok(info) => info,
        Err(error) => {
            let text = error.message();
            return match error {
                Error::Unauthenticated(_) if text.contains("not enough permissions") => {
                    Check::fail(id, name, format!("{user} logged in but lacks permissions: {text}"))
                        .fix(format!(
                            "give {user}'s group the read and write policies plus {} \
                             (/user group print)",
                            match facts.transport {
                                RdsTransport::Ssh => "ssh",
                                RdsTransport::Rest => "rest-api",
                            }
                        ))
                }
                Error::Unauthenticated(_) => Check::fail(
                    id,
                    name,
                    format!("the RDS refused the credentials of {user}: {text}"),
                )
                .fix(match facts.transport {
                    RdsTransport::Ssh => {
                        "check --rds-user and the password (--rds-password-file or \
                         RDS_CSI_RDS_PASSWORD) or --rds-key-file; a key must be imported for that \
                         user (/user ssh-keys print), and once a user has a key RouterOS may \
                         refuse its password"
                    }
                    RdsTransport::Rest => {
                        "check --rds-user and the password (--rds-password-file or \
                         RDS_CSI_RDS_PASSWORD)"
                    }
                }),
                Error::Invalid(_) => Check::fail(id, name, format!("the client cannot be set up: {text}"))
                    .fix("check --rds-key-file and its passphrase file"),
                Error::Unavailable(_) => Check::fail(
                    id,
                    name,
                    format!("the RDS stopped answering during login: {text}"),
                )
                .fix("the service may be at its session limit (/ip service print: max-sessions) or overloaded; retry, then check the RDS"),
                other => Check::fail(id, name, format!("login failed: {other}")),
            };
        }
    };
    let mut detail = format!(
        "logged in as {user}: {} \"{}\"",
        info.board_name.as_deref().unwrap_or("RDS"),
        info.identity
    );
    if let Some(uptime) = &info.uptime {
        detail.push_str(&format!(", up {uptime}"));
    }
    Check::ok(id, name, detail)
}

pub fn judge_version(info: &SystemInfo) -> Check {
    let (id, name) = ("rds.version", "RouterOS version");
    let version = &info.version;
    let upgrade = format!(
        "upgrade RouterOS on the RDS to {}.{} or newer (/system package update)",
        MIN_SERVER_NQN.0, MIN_SERVER_NQN.1
    );
    if !version.supports_file_disks() {
        return Check::fail(
            id,
            name,
            format!(
                "RouterOS {} has no file-backed disks (they arrived in {}.{})",
                info.version_text, MIN_FILE_DISKS.0, MIN_FILE_DISKS.1
            ),
        )
        .fix(upgrade);
    }
    if !version.supports_server_nqn() {
        return Check::fail(
            id,
            name,
            format!(
                "RouterOS {} cannot set a disk's NQN (that arrived in {}.{}): volumes would be \
                 exported as their slot name, not <prefix>:<volume id>, and the node plugin \
                 stages only the latter",
                info.version_text, MIN_SERVER_NQN.0, MIN_SERVER_NQN.1
            ),
        )
        .fix(upgrade);
    }
    Check::ok(
        id,
        name,
        format!(
            "RouterOS {}: file disks and NQNs supported",
            info.version_text
        ),
    )
}

pub fn judge_pool(name_given: &str, pool: &Result<Pool, Error>) -> Check {
    let (id, name) = ("rds.pool", "storage pool");
    let pool = match pool {
        Ok(pool) => pool,
        Err(Error::NotFound(_)) => {
            return Check::fail(id, name, format!("no disk is mounted at {name_given:?}")).fix(
                "give --pool the mount point of the RDS's storage pool (/disk print: mount-point)",
            );
        }
        Err(error) => return Check::fail(id, name, format!("cannot read the pool: {error}")),
    };
    let summary = format!(
        "{}: {} free of {} ({})",
        pool.mount_point,
        bytes(pool.free),
        bytes(pool.size),
        if pool.fs.is_empty() {
            "no filesystem"
        } else {
            pool.fs.as_str()
        }
    );
    if !pool.mounted {
        return Check::fail(id, name, format!("{summary}; not mounted"))
            .fix("mount the pool on the RDS before provisioning");
    }
    if pool.free == 0 {
        return Check::fail(
            id,
            name,
            format!("{summary}: full, no volume can be created or grown"),
        )
        .fix("free space on the pool (delete unused volumes or leftover images) or grow it");
    }
    let free_percent = pool.free.saturating_mul(100) / pool.size.max(1);
    let mut problems = Vec::new();
    if free_percent < LOW_FREE_PERCENT {
        problems.push(format!("only {free_percent}% free"));
    }
    if let Some(state) = pool.state.as_deref().filter(|s| *s != "clean") {
        problems.push(format!("RAID state {state}"));
    }
    if problems.is_empty() {
        let state = pool
            .state
            .as_deref()
            .map(|s| format!(", RAID {s}"))
            .unwrap_or_default();
        return Check::ok(id, name, format!("{summary}{state}"));
    }
    Check::warn(id, name, format!("{summary}; {}", problems.join(", "))).fix(
        "free or add space before it runs out, and check the RAID on the RDS (/disk print detail)",
    )
}

pub fn judge_volumes(
    base_path: &str,
    nqn_prefix: &str,
    disks: &Result<Vec<FileDisk>, Error>,
) -> Check {
    let (id, name) = ("rds.volumes", "driver volumes");
    let disks = match disks {
        Ok(disks) => disks,
        Err(error) => return Check::fail(id, name, format!("cannot list disks: {error}")),
    };
    let (ours, others): (Vec<&FileDisk>, Vec<&FileDisk>) = disks
        .iter()
        .partition(|disk| owned_image(disk, base_path).is_some());
    let total: u64 = ours.iter().map(|disk| disk.file_size).sum();
    let mut detail = format!(
        "{} volume{} of this driver ({}) under {base_path}; {} other disk{} left alone",
        ours.len(),
        if ours.len() == 1 { "" } else { "s" },
        bytes(total),
        others.len(),
        if others.len() == 1 { "" } else { "s" },
    );
    const SHOWN: usize = 10;
    let abnormal: Vec<String> = ours
        .iter()
        .filter_map(|disk| {
            let condition = volume_condition(disk, nqn_prefix);
            condition
                .abnormal
                .then(|| format!("{}: {}", disk.slot, condition.message))
        })
        .collect();
    let elsewhere: Vec<&str> = others
        .iter()
        .filter(|disk| is_managed_volume_id(&disk.slot))
        .map(|disk| disk.slot.as_str())
        .collect();
    let mut fixes = Vec::new();
    if !abnormal.is_empty() {
        detail.push_str(&format!("\n{} abnormal:", abnormal.len()));
        for line in abnormal.iter().take(SHOWN) {
            detail.push_str(&format!("\n  {line}"));
        }
        if abnormal.len() > SHOWN {
            detail.push_str(&format!("\n  ... and {} more", abnormal.len() - SHOWN));
        }
        fixes.push("inspect the abnormal ones on the RDS: /disk print detail where slot=<slot>");
    }
    if !elsewhere.is_empty() {
        let shown: Vec<&str> = elsewhere.iter().copied().take(SHOWN).collect();
        detail.push_str(&format!(
            "\n{} disk{} named like volumes but with images outside {base_path}: {}{}",
            elsewhere.len(),
            if elsewhere.len() == 1 { "" } else { "s" },
            shown.join(", "),
            if elsewhere.len() > SHOWN { ", ..." } else { "" }
        ));
        fixes.push(
            "if those are this driver's volumes, give the controller's --volume-base-path; the \
             driver leaves disks outside it alone",
        );
    }
    if fixes.is_empty() {
        Check::ok(id, name, detail)
    } else {
        Check::warn(id, name, detail).fix(fixes.join("\n"))
    }
}

pub fn judge_round_trips(times: &Result<Vec<Duration>, Error>) -> Check {
    let (id, name) = ("rds.round-trip", "round trip");
    let times = match times {
        Ok(times) if !times.is_empty() => times,
        Ok(_) => return Check::skip(id, name, "no reads timed"),
        Err(error) => {
            return Check::fail(id, name, format!("a read failed: {error}"))
                .fix("the RDS answers irregularly: check its load and the network path");
        }
    };
    let mut sorted = times.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let detail = format!(
        "median {} over {} reads (fastest {}, slowest {})",
        millis(median),
        sorted.len(),
        millis(sorted[0]),
        millis(sorted[sorted.len() - 1])
    );
    if median > SLOW_ROUND_TRIP {
        Check::warn(
            id,
            name,
            format!("{detail}: slow; creating a volume takes one round trip, deleting two"),
        )
        .fix("check the RDS's load (/system resource print) and the latency of the path to it")
    } else {
        Check::ok(id, name, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use routeros::{NqnSource, RouterOsVersion};

    fn facts(transport: RdsTransport) -> RdsFacts {
        RdsFacts {
            transport,
            address: "10.0.0.1".into(),
            port: 22,
            user: "csi".into(),
            pool: "storage-pool".into(),
            base_path: "storage-pool".into(),
            nqn_prefix: "nqn.2000-02.com.mikrotik".into(),
            settings: Ok(()),
            flags: Ok(()),
            reach: Ok(Reached {
                peer: "10.0.0.1:22".parse().unwrap(),
                connect_time: Duration::from_millis(1),
            }),
            identity: None,
            login: None,
            pool_info: None,
            disks: None,
            round_trips: None,
        }
    }

    /// An ed25519-shaped public key blob.
    fn key_blob(fill: u8) -> Vec<u8> {
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&[fill; 32]);
        blob
    }

    fn pinned(blob: &[u8]) -> Pinning {
        Pinning::HostKeys(HostKeyPins {
            fingerprints: vec![Sha256::digest(blob).into()],
            known_hosts: Vec::new(),
        })
    }

    fn identity(presented: Vec<u8>, pinning: Pinning) -> PeerIdentity {
        PeerIdentity {
            presented: Ok(presented),
            pinning,
        }
    }

    #[test]
    fn a_host_key_mismatch_fails_distinctly_from_not_pinned() {
        let f = facts(RdsTransport::Ssh);
        let device = key_blob(1);
        let shown = routeros::sha256_fingerprint(&device);

        let ok = judge_identity(&f, &identity(device.clone(), pinned(&device)));
        assert_eq!(ok.status, Status::Ok, "{ok:?}");

        let mismatch = judge_identity(&f, &identity(device.clone(), pinned(&key_blob(2))));
        assert_eq!(mismatch.status, Status::Fail);
        assert!(
            mismatch.detail.starts_with("MISMATCH"),
            "{}",
            mismatch.detail
        );
        assert!(mismatch.detail.contains(&shown));
        assert!(mismatch.fix.unwrap().contains("do not connect"));

        let unpinned = judge_identity(&f, &identity(device.clone(), Pinning::NotPinned));
        assert_eq!(unpinned.status, Status::Fail);
        assert!(
            unpinned.detail.starts_with("not pinned"),
            "{}",
            unpinned.detail
        );
        assert!(
            unpinned
                .fix
                .unwrap()
                .contains(&format!("--rds-host-key-fingerprint {shown}"))
        );

        let insecure = judge_identity(&f, &identity(device.clone(), Pinning::Insecure));
        assert_eq!(insecure.status, Status::Warn);
        assert!(insecure.detail.contains(&shown));

        let unknown = Pinning::HostKeys(HostKeyPins {
            fingerprints: Vec::new(),
            known_hosts: Vec::new(),
        });
        let unknown = judge_identity(&f, &identity(device, unknown));
        assert_eq!(unknown.status, Status::Fail);
        assert!(
            unknown.detail.contains("known_hosts has no key"),
            "{}",
            unknown.detail
        );

        let broken = PeerIdentity {
            presented: Err("no SSH host key received".into()),
            pinning: Pinning::NotPinned,
        };
        assert_eq!(judge_identity(&f, &broken).status, Status::Fail);
    }

    #[test]
    fn a_certificate_is_checked_by_fingerprint_or_by_ca() {
        let f = facts(RdsTransport::Rest);
        let der = b"a certificate".to_vec();
        let digest: [u8; 32] = Sha256::digest(&der).into();
        let ok = judge_identity(
            &f,
            &identity(der.clone(), Pinning::CertificateFingerprint(digest)),
        );
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(ok.id, "rds.certificate");

        let other = judge_identity(
            &f,
            &identity(der.clone(), Pinning::CertificateFingerprint([0; 32])),
        );
        assert_eq!(other.status, Status::Fail);
        assert!(other.detail.starts_with("MISMATCH"));
        assert!(other.fix.unwrap().contains("--rds-cert-fingerprint"));

        let untrusted = Pinning::CertificateAuthority {
            file: "/etc/rds/ca.pem".into(),
            verdict: Err("invalid peer certificate: UnknownIssuer".into()),
        };
        let untrusted = judge_identity(&f, &identity(der, untrusted));
        assert_eq!(untrusted.status, Status::Fail);
        assert!(untrusted.detail.contains("UnknownIssuer"));
    }

    #[test]
    fn login_failures_name_their_cause() {
        let f = facts(RdsTransport::Ssh);
        let refused = judge_login(
            &f,
            &Err(Error::Unauthenticated(
                "SSH authentication as \"csi\" refused".into(),
            )),
        );
        assert_eq!(refused.status, Status::Fail);
        assert!(refused.detail.contains("refused the credentials"));
        assert!(refused.fix.unwrap().contains("--rds-password-file"));

        let rights = judge_login(
            &f,
            &Err(Error::Unauthenticated("not enough permissions (9)".into())),
        );
        assert!(rights.detail.contains("lacks permissions"));
        assert!(rights.fix.unwrap().contains("ssh"));

        let key = judge_login(
            &f,
            &Err(Error::Invalid("cannot load SSH key /k: denied".into())),
        );
        assert!(key.fix.unwrap().contains("--rds-key-file"));

        let gone = judge_login(
            &f,
            &Err(Error::Unavailable("no answer within 30000 ms".into())),
        );
        assert!(gone.fix.unwrap().contains("max-sessions"));
    }

    fn info(version: &str) -> SystemInfo {
        SystemInfo {
            version: RouterOsVersion::parse(version).unwrap(),
            version_text: version.into(),
            identity: "rds-1".into(),
            board_name: Some("RDS2216".into()),
            architecture: None,
            uptime: None,
            cpu_count: None,
            total_memory: None,
            free_memory: None,
        }
    }

    #[test]
    fn versions_too_old_fail_with_what_is_missing() {
        let old = judge_version(&info("7.16.2 (stable)"));
        assert_eq!(old.status, Status::Fail);
        assert!(
            old.detail.contains("no file-backed disks"),
            "{}",
            old.detail
        );
        let no_nqn = judge_version(&info("7.20.8 (long-term)"));
        assert_eq!(no_nqn.status, Status::Fail);
        assert!(
            no_nqn.detail.contains("cannot set a disk's NQN"),
            "{}",
            no_nqn.detail
        );
        assert!(no_nqn.fix.unwrap().contains("7.21"));
        assert_eq!(judge_version(&info("7.21.5 (stable)")).status, Status::Ok);
        assert_eq!(judge_version(&info("7.21beta2")).status, Status::Ok);
    }

    fn pool(size: u64, free: u64, state: Option<&str>) -> Result<Pool, Error> {
        Ok(Pool {
            slot: "storage-pool".into(),
            mount_point: "storage-pool".into(),
            fs: "btrfs".into(),
            size,
            free,
            mounted: true,
            state: state.map(str::to_owned),
        })
    }

    #[test]
    fn low_pool_space_warns_and_a_full_or_missing_pool_fails() {
        const TIB: u64 = 1 << 40;
        let roomy = judge_pool("storage-pool", &pool(10 * TIB, 4 * TIB, Some("clean")));
        assert_eq!(roomy.status, Status::Ok, "{roomy:?}");
        assert!(
            roomy.detail.contains("4.0 TiB free of 10.0 TiB"),
            "{}",
            roomy.detail
        );
        let low = judge_pool("storage-pool", &pool(10 * TIB, TIB / 2, None));
        assert_eq!(low.status, Status::Warn);
        assert!(low.detail.contains("only 5% free"), "{}", low.detail);
        let degraded = judge_pool("storage-pool", &pool(10 * TIB, 4 * TIB, Some("degraded")));
        assert_eq!(degraded.status, Status::Warn);
        assert!(degraded.detail.contains("RAID state degraded"));
        assert_eq!(
            judge_pool("storage-pool", &pool(TIB, 0, None)).status,
            Status::Fail
        );
        let missing = judge_pool("pool-x", &Err(Error::NotFound("no disk".into())));
        assert_eq!(missing.status, Status::Fail);
        assert!(missing.fix.unwrap().contains("--pool"));
    }

    fn disk(slot: &str, path: &str, nqn: &str) -> FileDisk {
        FileDisk {
            id: "*1".into(),
            slot: slot.into(),
            file_path: path.into(),
            file_size: 1 << 30,
            nvme_tcp_export: true,
            nvme_tcp_port: 4420,
            nqn: nqn.into(),
            nqn_source: NqnSource::ServerNqn,
            mount_filesystem: false,
            comment: None,
        }
    }

    #[test]
    fn volumes_are_counted_by_the_managed_naming_and_oddities_flagged() {
        const PVC: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
        const OTHER: &str = "pvc-00000000-0000-4000-8000-000000000000";
        let prefix = "nqn.2000-02.com.mikrotik";
        let good = disk(
            PVC,
            &format!("storage-pool/{PVC}.img"),
            &format!("{prefix}:{PVC}"),
        );
        let hand_made = disk("backup", "storage-pool/backup.img", "backup");
        let check = judge_volumes(
            "storage-pool",
            prefix,
            &Ok(vec![good.clone(), hand_made.clone()]),
        );
        assert_eq!(check.status, Status::Ok, "{check:?}");
        assert!(
            check
                .detail
                .starts_with("1 volume of this driver (1.0 GiB)"),
            "{}",
            check.detail
        );
        assert!(check.detail.contains("1 other disk left alone"));

        let unexported = FileDisk {
            nvme_tcp_export: false,
            ..good.clone()
        };
        let stray = disk(OTHER, &format!("other-pool/{OTHER}.img"), "x");
        let check = judge_volumes(
            "storage-pool",
            prefix,
            &Ok(vec![unexported, stray, hand_made]),
        );
        assert_eq!(check.status, Status::Warn);
        assert!(check.detail.contains("not exported"), "{}", check.detail);
        assert!(
            check
                .detail
                .contains(&format!("outside storage-pool: {OTHER}")),
            "{}",
            check.detail
        );
        assert!(check.fix.unwrap().contains("--volume-base-path"));
    }

    #[test]
    fn round_trips_report_the_median_and_warn_when_slow() {
        let ms = Duration::from_millis;
        let fast = judge_round_trips(&Ok(vec![ms(30), ms(10), ms(20), ms(900), ms(25)]));
        assert_eq!(fast.status, Status::Ok);
        assert!(
            fast.detail.starts_with("median 25 ms over 5 reads"),
            "{}",
            fast.detail
        );
        let slow = judge_round_trips(&Ok(vec![ms(1500), ms(1200), ms(2000)]));
        assert_eq!(slow.status, Status::Warn);
        assert_eq!(
            judge_round_trips(&Err(Error::Unavailable("x".into()))).status,
            Status::Fail
        );
    }

    #[test]
    fn unreached_steps_are_skipped_with_the_reason() {
        let mut f = facts(RdsTransport::Ssh);
        f.reach = Err(TcpFailure::Refused);
        let all = checks(&f);
        let by_id = |id: &str| all.iter().find(|c| c.id == id).unwrap().clone();
        let reach = by_id("rds.reachable");
        assert_eq!(reach.status, Status::Fail);
        assert!(reach.fix.unwrap().contains("ssh service"));
        assert_eq!(by_id("rds.host-key").status, Status::Skip);
        assert!(by_id("rds.login").detail.contains("not reachable"));
        for id in ["rds.version", "rds.pool", "rds.volumes", "rds.round-trip"] {
            assert_eq!(by_id(id).status, Status::Skip, "{id}");
        }

        let mut f = facts(RdsTransport::Ssh);
        f.identity = Some(identity(key_blob(1), pinned(&key_blob(2))));
        let all = checks(&f);
        let login = all.iter().find(|c| c.id == "rds.login").unwrap();
        assert!(login.detail.contains("never sent"), "{}", login.detail);

        let mut f = facts(RdsTransport::Ssh);
        f.identity = Some(identity(key_blob(1), pinned(&key_blob(1))));
        f.login = Some(Ok(info("7.21.5")));
        f.pool_info = Some(Err(Error::Unavailable("no answer".into())));
        let all = checks(&f);
        let volumes = all.iter().find(|c| c.id == "rds.volumes").unwrap();
        assert!(
            volumes.detail.contains("stopped answering"),
            "{}",
            volumes.detail
        );
    }
}
