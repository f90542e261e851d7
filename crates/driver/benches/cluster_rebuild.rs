//! The controller's attachment index rebuilt from 5,000 VolumeAttachments and their 5,000
//! PersistentVolumes, served in process by the fake API server: kube-rs lists both in pages of
//! 500 and parses every object, as it would from a real one. Prints the wall time from spawn
//! to ready of each rebuild (target: 1 s), then the time of one `holders` look-up, the read a
//! publish decision makes (target for the whole decision: 1 ms at p99).
//!
//! Run: `cargo bench -p driver --bench cluster_rebuild`

use std::time::{Duration, Instant};

use driver::cluster::AttachmentIndex;
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube_fake::FakeApiServer;
use serde_json::json;

const DRIVER: &str = "rds.csi.srvlab.io";
const ATTACHMENTS: usize = 5_000;
const NODES: usize = 100;
const REBUILDS: usize = 5;
const LOOKUPS: usize = 100_000;
const TARGET: Duration = Duration::from_secs(1);

fn populate(fake: &FakeApiServer) {
    for n in 0..ATTACHMENTS {
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": format!("pvc-{n:05}"),
                         "finalizers": ["kubernetes.io/pv-protection", format!("external-attacher/{DRIVER}")]},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "rds",
                     "claimRef": {"kind": "PersistentVolumeClaim", "namespace": "apps", "name": format!("data-{n}")},
                     "csi": {"driver": DRIVER, "volumeHandle": format!("pvc-{n:05}"), "fsType": "ext4",
                             "volumeAttributes": {"nqn": format!("nqn.2000-02.com.mikrotik:pvc-{n:05}"),
                                                  "address": "10.42.0.10", "port": "4420"}}},
            "status": {"phase": "Bound"},
        }))
        .unwrap();
        fake.insert(&pv).unwrap();
        let va: VolumeAttachment = serde_json::from_value(json!({
            "metadata": {"name": format!("csi-{n:064x}"), "finalizers": [format!("external-attacher/{DRIVER}")]},
            "spec": {"attacher": DRIVER, "nodeName": format!("node-{:03}", n % NODES),
                     "source": {"persistentVolumeName": format!("pvc-{n:05}")}},
            "status": {"attached": true, "attachmentMetadata": {"nqn": format!("nqn.2000-02.com.mikrotik:pvc-{n:05}")}},
        }))
        .unwrap();
        fake.insert(&va).unwrap();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let fake = FakeApiServer::new();
    populate(&fake);

    let mut walls = Vec::new();
    let mut index = None;
    for _ in 0..REBUILDS {
        let started = Instant::now();
        let (rebuilt, task) = AttachmentIndex::spawn(fake.client(), DRIVER);
        rebuilt.ready().await.expect("the index runs");
        walls.push(started.elapsed());
        check_complete(&rebuilt);
        if let Some((_, old)) = index.replace((rebuilt, task)) {
            old.abort();
        }
    }
    let (index, _task) = index.expect("rebuilt at least once");
    walls.sort();
    let median = walls[REBUILDS / 2];
    println!(
        "rebuild  {ATTACHMENTS} VolumeAttachments + {ATTACHMENTS} PVs  median {:>7.1} ms  \
         min {:>7.1} ms  max {:>7.1} ms  target {:.0} ms",
        ms(median),
        ms(walls[0]),
        ms(walls[REBUILDS - 1]),
        ms(TARGET)
    );
    if median > TARGET {
        println!("WARNING: above the 1 s target");
    }
    lookups(&index);
}

fn check_complete(index: &AttachmentIndex) {
    let held = (0..ATTACHMENTS)
        .filter(|n| index.holders(&format!("pvc-{n:05}")).len() == 1)
        .count();
    assert_eq!(held, ATTACHMENTS, "every volume has its one holder");
    assert!(index.unresolved().is_empty());
}

fn lookups(index: &AttachmentIndex) {
    let handles: Vec<String> = (0..ATTACHMENTS).map(|n| format!("pvc-{n:05}")).collect();
    let mut times = Vec::with_capacity(LOOKUPS);
    for i in 0..LOOKUPS {
        let handle = &handles[(i * 7919) % ATTACHMENTS];
        let started = Instant::now();
        let holders = index.holders(handle);
        times.push(started.elapsed());
        assert_eq!(holders.len(), 1);
    }
    times.sort();
    let at = |q: f64| times[((LOOKUPS as f64 * q) as usize).min(LOOKUPS - 1)];
    println!(
        "holders  {LOOKUPS} look-ups  p50 {:>6.2} µs  p99 {:>6.2} µs  max {:>7.2} µs",
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        times[LOOKUPS - 1].as_secs_f64() * 1e6,
    );
}
