//! Verdicts on the RDS facts, without a network.

use std::time::Duration;

use driver::controller::rules::{owned_image, volume_condition};
use driver::naming::is_managed_volume_id;
use routeros::hostkey::HostKeyRejection;
use routeros::version::{MIN_FILE_DISKS, MIN_SERVER_NQN};
use routeros::{Error, FileDisk, Pool, SystemInfo};
use sha2::{Digest as _, Sha256};

use super::{LOW_FREE_PERCENT, PeerIdentity, Pinning, RdsFacts, SLOW_ROUND_TRIP};
use crate::connection::RdsTransport;
use crate::doctor::probe::TcpFailure;
use crate::doctor::report::{Check, Status, bytes, millis};

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
    checks.push(match &facts.disks {
        Some(disks) => super::judge_export_access(&facts.base_path, disks),
        None => unasked("rds.export-access", "export access"),
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
