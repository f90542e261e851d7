//! Leader election over a coordination.k8s.io/v1 Lease, so that several controller replicas
//! can run and only one runs the background loops (overdue migrations, reconcilers). CSI
//! calls are answered by every replica; only loops that act on their own need a leader.
//!
//! The protocol is the one every Kubernetes component uses (the crates that implement it do
//! not support kube 5, or need server-side apply): read the Lease; create it when missing;
//! renew it while holding it, with its resourceVersion as a precondition (a conflict means
//! someone else wrote it: not the leader); take it over once its holder let it lapse. A lapse
//! is judged by this replica's own clock — how long the Lease has stayed unchanged since it
//! was first seen so — never by comparing the holder's timestamps with ours (clocks skew).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

/// Timing of the election (client-go's defaults).
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// How long a Lease holds without renewal.
    pub lease_duration: Duration,
    /// The leader steps down when it could not renew for this long.
    pub renew_deadline: Duration,
    /// Time between attempts.
    pub retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What one attempt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// This replica holds the Lease (acquired or renewed).
    Holding,
    /// Another replica holds it.
    Held,
    /// The API server did not answer usefully (network, 5xx): try again.
    Failed,
}

/// One replica's view of who holds the Lease.
#[derive(Debug, Default)]
struct Observed {
    /// The Lease's spec as last read, and when (here) it last changed.
    spec: Option<LeaseSpec>,
    changed_at: Option<Instant>,
}

impl Observed {
    fn note(&mut self, spec: &LeaseSpec, now: Instant) {
        if self.spec.as_ref() != Some(spec) {
            self.spec = Some(spec.clone());
            self.changed_at = Some(now);
        }
    }

    /// Whether the holder let the Lease lapse: unchanged for longer than its duration, or
    /// held by no one.
    fn lapsed(&self, spec: &LeaseSpec, now: Instant, default_duration: Duration) -> bool {
        if spec.holder_identity.as_deref().is_none_or(str::is_empty) {
            return true;
        }
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(default_duration, Duration::from_secs);
        self.changed_at
            .is_some_and(|at| now.duration_since(at) > duration)
    }
}

/// Runs the election for `identity` on Lease `name` until `stop` is set; publishes whether
/// this replica leads on the returned channel. On stop, a Lease held is released so that
/// another replica takes over at once.
pub fn spawn(
    leases: Api<Lease>,
    name: String,
    identity: String,
    timing: LeaseTiming,
    mut stop: watch::Receiver<bool>,
) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    let (leading_tx, leading) = watch::channel(false);
    let task = tokio::spawn(async move {
        let mut observed = Observed::default();
        let mut last_renewal: Option<Instant> = None;
        loop {
            let attempt = attempt(&leases, &name, &identity, &timing, &mut observed).await;
            let now = Instant::now();
            let leads = match attempt {
                Attempt::Holding => {
                    last_renewal = Some(now);
                    true
                }
                Attempt::Held => false,
                // A leader that cannot reach the API server keeps leading only until its
                // renew deadline, well before its Lease lapses for the others.
                Attempt::Failed => {
                    last_renewal.is_some_and(|at| now.duration_since(at) < timing.renew_deadline)
                }
            };
            if !leads {
                last_renewal = None;
            }
            if *leading_tx.borrow() != leads {
                tracing::info!(lease = %name, %identity, leads, "leadership changed");
                leading_tx.send_replace(leads);
            }
            tokio::select! {
                () = tokio::time::sleep(timing.retry_period) => {}
                _ = stop.changed() => break,
            }
        }
        if *leading_tx.borrow() {
            leading_tx.send_replace(false);
            release(&leases, &name, &identity).await;
        }
    });
    (leading, task)
}

async fn attempt(
    leases: &Api<Lease>,
    name: &str,
    identity: &str,
    timing: &LeaseTiming,
    observed: &mut Observed,
) -> Attempt {
    let now = Instant::now();
    let lease = match leases.get_opt(name).await {
        Ok(lease) => lease,
        Err(error) => {
            tracing::debug!(lease = name, %error, "lease not read");
            return Attempt::Failed;
        }
    };
    let Some(mut lease) = lease else {
        let created = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(held_by(identity, timing, None, 0)),
        };
        return match leases.create(&PostParams::default(), &created).await {
            Ok(_) => Attempt::Holding,
            Err(kube::Error::Api(status)) if status.code == 409 => Attempt::Held,
            Err(_) => Attempt::Failed,
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    observed.note(&spec, now);
    let mine = spec.holder_identity.as_deref() == Some(identity);
    if !mine && !observed.lapsed(&spec, now, timing.lease_duration) {
        return Attempt::Held;
    }
    let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
    let acquired = if mine {
        spec.acquire_time.clone()
    } else {
        None
    };
    lease.spec = Some(held_by(identity, timing, acquired, transitions));
    // The resourceVersion read is the precondition: a write by anyone since is a conflict.
    match leases.replace(name, &PostParams::default(), &lease).await {
        Ok(written) => {
            if let Some(spec) = &written.spec {
                observed.note(spec, Instant::now());
            }
            Attempt::Holding
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Attempt::Held,
        Err(_) => Attempt::Failed,
    }
}

fn held_by(
    identity: &str,
    timing: &LeaseTiming,
    acquired: Option<MicroTime>,
    transitions: i32,
) -> LeaseSpec {
    let now = MicroTime(Timestamp::now());
    LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: i32::try_from(timing.lease_duration.as_secs()).ok(),
        acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
        renew_time: Some(now),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

/// Gives the Lease up (no holder), if this replica still holds it.
async fn release(leases: &Api<Lease>, name: &str, identity: &str) {
    let Ok(Some(mut lease)) = leases.get_opt(name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(identity) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    if let Err(error) = leases.replace(name, &PostParams::default(), &lease).await {
        tracing::warn!(lease = name, %error, "lease not released; it lapses by itself");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(seconds),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_lapses_by_the_observers_clock_once_it_stays_unchanged_past_its_duration() {
        let t0 = Instant::now();
        let mut observed = Observed::default();
        let held = spec(Some("a"), 15);
        observed.note(&held, t0);
        let default = Duration::from_secs(15);
        assert!(!observed.lapsed(&held, t0 + Duration::from_secs(15), default));
        assert!(observed.lapsed(&held, t0 + Duration::from_secs(16), default));
        // A renewal (any change) restarts the clock.
        let renewed = LeaseSpec {
            renew_time: Some(MicroTime(Timestamp::now())),
            ..held.clone()
        };
        observed.note(&renewed, t0 + Duration::from_secs(14));
        assert!(!observed.lapsed(&renewed, t0 + Duration::from_secs(20), default));
        // Released (no holder): free at once.
        assert!(observed.lapsed(&spec(None, 1), t0, default));
        assert!(observed.lapsed(&spec(Some(""), 15), t0, default));
    }
}
