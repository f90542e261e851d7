//! Walking the RDS steps in order, each with a deadline, stopping where going on makes no sense.

use std::path::PathBuf;
use std::time::Duration;

use routeros::hostkey::HostKeyPins;
use routeros::{Error, HostKeyPolicy, TlsPolicy};

use super::{PROBE_DEADLINE, PeerIdentity, Pinning, ROUND_TRIPS, RdsFacts, judge_identity};
use crate::connection::{
    ConnectionError, RdsConnectionArgs, RdsTransport, Trust, VolumeLayoutArgs,
};
use crate::doctor::probe;
use crate::doctor::report::Status;

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
