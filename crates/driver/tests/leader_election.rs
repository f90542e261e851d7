//! Leader election over a Lease, against the API server double (real kube-rs requests,
//! resourceVersion preconditions and 409 conflicts): one leader among replicas; a leader that
//! stops hands over at once; one that dies is replaced once its Lease lapses; a leader that
//! cannot renew steps down.

use std::time::Duration;

use driver::leader::{LeaseTiming, spawn};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube_fake::{FakeApiServer, Verb};
use tokio::sync::watch;

const NAME: &str = "rds-csi-controller";

fn timing() -> LeaseTiming {
    LeaseTiming {
        lease_duration: Duration::from_secs(1),
        renew_deadline: Duration::from_millis(600),
        retry_period: Duration::from_millis(100),
    }
}

struct Replica {
    leading: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn replica(server: &FakeApiServer, identity: &str) -> Replica {
    let leases: Api<Lease> = Api::namespaced(server.client(), "kube-system");
    let (stop, stopped) = watch::channel(false);
    let (leading, task) = spawn(leases, NAME.into(), identity.into(), timing(), stopped);
    Replica {
        leading,
        stop,
        task,
    }
}

/// Waits (bounded) until `replica` leads (or not).
async fn until_leading(replica: &mut Replica, leads: bool, limit: Duration) -> bool {
    tokio::time::timeout(limit, replica.leading.wait_for(|l| *l == leads))
        .await
        .is_ok()
}

fn holder(server: &FakeApiServer) -> Option<String> {
    server
        .get::<Lease>(Some("kube-system"), NAME)
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test]
async fn one_replica_leads_and_a_stopped_leader_hands_over_at_once() {
    let server = FakeApiServer::new();
    let mut a = replica(&server, "a");
    assert!(until_leading(&mut a, true, Duration::from_secs(5)).await);
    let mut b = replica(&server, "b");
    // b sees a lease held and renewed: it never leads while a does.
    assert!(!until_leading(&mut b, true, Duration::from_millis(1500)).await);
    assert_eq!(holder(&server).as_deref(), Some("a"));

    a.stop.send_replace(true);
    a.task.await.unwrap();
    assert!(!*a.leading.borrow());
    // Released: b takes over within a retry or two, not a whole lease duration.
    let started = tokio::time::Instant::now();
    assert!(until_leading(&mut b, true, Duration::from_secs(5)).await);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(holder(&server).as_deref(), Some("b"));
    let transitions = server
        .get::<Lease>(Some("kube-system"), NAME)
        .and_then(|l| l.spec)
        .and_then(|s| s.lease_transitions);
    assert_eq!(transitions, Some(1));
    b.stop.send_replace(true);
    b.task.await.unwrap();
}

#[tokio::test]
async fn a_dead_leader_is_replaced_once_its_lease_lapses() {
    let server = FakeApiServer::new();
    let mut a = replica(&server, "a");
    assert!(until_leading(&mut a, true, Duration::from_secs(5)).await);
    let mut b = replica(&server, "b");
    // a dies without a word: its lease stays until it lapses by b's clock.
    a.task.abort();
    let started = tokio::time::Instant::now();
    assert!(until_leading(&mut b, true, Duration::from_secs(10)).await);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(holder(&server).as_deref(), Some("b"));
    b.stop.send_replace(true);
    b.task.await.unwrap();
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_before_its_lease_lapses() {
    let server = FakeApiServer::new();
    let mut a = replica(&server, "a");
    assert!(until_leading(&mut a, true, Duration::from_secs(5)).await);
    // Every read fails from now on (an API server a partition cut off).
    for _ in 0..200 {
        server.fail_next(Verb::Get, "/apis/coordination.k8s.io", 503);
    }
    let started = tokio::time::Instant::now();
    assert!(until_leading(&mut a, false, Duration::from_secs(5)).await);
    // Within its renew deadline (plus a retry), before the lease could lapse for others.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    a.stop.send_replace(true);
    a.task.await.unwrap();
}
