//! KubeVirt hotplug serialization against the fake API server: publishes of volumes of one
//! VMI take turns, other VMIs' volumes and volumes of no VMI do not wait, and a cluster
//! without KubeVirt (or without the volume's PV) serializes nothing.

use std::time::Duration;

use driver::cluster::VmiTurns;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube_fake::{FakeApiServer, Resource};
use serde_json::json;

const DRIVER: &str = "rds.csi.srvlab.io";
/// Bound on waits that should take milliseconds.
const BOUND: Duration = Duration::from_secs(10);
/// How long a publish that must wait for its turn is watched not finishing.
const STILL_WAITING: Duration = Duration::from_millis(300);

fn pv(handle: &str, claim: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": handle},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                 "csi": {"driver": DRIVER, "volumeHandle": handle},
                 "claimRef": {"namespace": "vms", "name": claim, "uid": format!("uid-{claim}")}},
    }))
    .unwrap()
}

fn vmi(name: &str, claims: &[&str]) -> serde_json::Value {
    let volumes: Vec<_> = claims
        .iter()
        .map(
            |c| json!({"name": c, "persistentVolumeClaim": {"claimName": c, "hotpluggable": true}}),
        )
        .collect();
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": name, "namespace": "vms"},
        "spec": {"domain": {}, "volumes": volumes},
    })
}

fn with_kubevirt() -> FakeApiServer {
    let fake = FakeApiServer::new();
    fake.register(
        Resource::new(
            "kubevirt.io",
            "v1",
            "VirtualMachineInstance",
            "virtualmachineinstances",
            true,
        )
        .with_status(),
    );
    fake
}

#[tokio::test]
async fn volumes_of_one_vmi_take_turns_and_others_do_not_wait() {
    let fake = with_kubevirt();
    for (handle, claim) in [
        ("pvc-a", "disk-a"),
        ("pvc-b", "disk-b"),
        ("pvc-c", "disk-c"),
    ] {
        fake.insert(&pv(handle, claim)).unwrap();
    }
    fake.insert(&pv("pvc-free", "scratch")).unwrap();
    fake.insert_json(vmi("vm-1", &["disk-a", "disk-b"]))
        .unwrap();
    fake.insert_json(vmi("vm-2", &["disk-c"])).unwrap();
    let turns = std::sync::Arc::new(VmiTurns::new(fake.client(), DRIVER));

    let first = tokio::time::timeout(BOUND, turns.turn("pvc-a"))
        .await
        .unwrap()
        .expect("pvc-a is used by a VMI");
    assert_eq!(first.vmis, ["vms/vm-1"]);

    // Another VMI's volume, and a volume of no VMI, go ahead while vm-1's turn is held.
    let other = tokio::time::timeout(BOUND, turns.turn("pvc-c"))
        .await
        .expect("another VMI's volume does not wait")
        .unwrap();
    assert_eq!(other.vmis, ["vms/vm-2"]);
    let free = tokio::time::timeout(BOUND, turns.turn("pvc-free"))
        .await
        .expect("a volume of no VMI does not wait");
    assert!(free.is_none());

    // The same VMI's other volume waits until the first publish is done.
    let waiting = tokio::spawn({
        let turns = turns.clone();
        async move { turns.turn("pvc-b").await }
    });
    tokio::time::sleep(STILL_WAITING).await;
    assert!(!waiting.is_finished(), "pvc-b did not wait for vm-1's turn");
    drop(first);
    let second = tokio::time::timeout(BOUND, waiting)
        .await
        .expect("pvc-b gets the turn once pvc-a's publish is done")
        .unwrap()
        .unwrap();
    assert_eq!(second.vmis, ["vms/vm-1"]);
    drop((second, other));
    assert_eq!(turns.busy(), 0, "turns no one holds are not kept");
}

#[tokio::test]
async fn without_kubevirt_or_a_claim_nothing_is_serialized() {
    // No VirtualMachineInstance kind served: the list is a 404, as without KubeVirt.
    let fake = FakeApiServer::new();
    fake.insert(&pv("pvc-a", "disk-a")).unwrap();
    let turns = VmiTurns::new(fake.client(), DRIVER);
    let none = tokio::time::timeout(BOUND, turns.turn("pvc-a"))
        .await
        .unwrap();
    assert!(none.is_none());
    // No PV named like the volume (a static PV under another name).
    let none = tokio::time::timeout(BOUND, turns.turn("pvc-unknown"))
        .await
        .unwrap();
    assert!(none.is_none());

    // A PV of another driver is not ours to look behind.
    let fake = with_kubevirt();
    let mut foreign = pv("pvc-a", "disk-a");
    foreign.spec.as_mut().unwrap().csi.as_mut().unwrap().driver = "other.csi".into();
    fake.insert(&foreign).unwrap();
    fake.insert_json(vmi("vm-1", &["disk-a"])).unwrap();
    let turns = VmiTurns::new(fake.client(), DRIVER);
    assert!(turns.turn("pvc-a").await.is_none());
}
