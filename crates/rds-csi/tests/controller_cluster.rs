//! `rds-csi controller` with the Kubernetes attachment state, against the API server double
//! over HTTP (a kubeconfig, real kube-rs requests and watches) and the simulator: attach
//! fencing decides from the cluster's VolumeAttachments — two replicas alike, the second as
//! the first before it, a VolumeAttachment deleted by hand frees the volume, a node the
//! cluster lacks is NOT_FOUND — and one replica leads through a Lease it gives up when it
//! stops, to the other.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use csi::v1::controller_client::ControllerClient;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume, MountVolume};
use csi::v1::{
    CapacityRange, ControllerPublishVolumeRequest, CreateVolumeRequest, VolumeCapability,
};
use driver::server::{self, Endpoint};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube_fake::FakeApiServer;
use rds_sim::{SimConfig, Simulator};
use serde_json::json;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tonic::Code;

const PASSWORD: &str = "cluster-pw";
const DRIVER: &str = "rds.csi.srvlab.io";
const RWO: &str = "pvc-1a2b3c4d-0000-4000-8000-0000000000a1";
const RWX: &str = "pvc-1a2b3c4d-0000-4000-8000-0000000000b2";
const HOST: &str = "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211";

fn pv(volume: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        // Named like the volume, bound to a claim: as the external-provisioner makes them.
        "metadata": {"name": volume},
        "spec": {"csi": {"driver": DRIVER, "volumeHandle": volume},
                 "claimRef": {"namespace": "apps", "name": format!("claim-{volume}"), "uid": "c-1"},
                 "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}
    })
}

fn node(name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
}

fn attachment(volume: &str, node: &str, created: &str) -> serde_json::Value {
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": {"name": format!("csi-{node}-{volume}"), "creationTimestamp": created},
        "spec": {"attacher": DRIVER, "nodeName": node,
                 "source": {"persistentVolumeName": volume}},
        "status": {"attached": true}
    })
}

fn capability(block: bool, mode: Mode) -> VolumeCapability {
    VolumeCapability {
        access_type: Some(if block {
            AccessType::Block(BlockVolume {})
        } else {
            AccessType::Mount(MountVolume::default())
        }),
        access_mode: Some(AccessMode { mode: mode as i32 }),
    }
}

fn publish(volume: &str, node: &str, block: bool, mode: Mode) -> ControllerPublishVolumeRequest {
    ControllerPublishVolumeRequest {
        volume_id: volume.into(),
        node_id: format!("{node}/{HOST}"),
        volume_capability: Some(capability(block, mode)),
        volume_context: HashMap::new(),
        ..Default::default()
    }
}

struct Controller {
    child: Child,
    client: ControllerClient<tonic::transport::Channel>,
}

async fn start(dir: &std::path::Path, sim: &rds_sim::SimHandle, identity: &str) -> Controller {
    let password_file = dir.join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let socket = dir.join(format!("{identity}.sock"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .args(["controller", "--endpoint"])
        .arg(format!("unix://{}", socket.display()))
        .args(["--rds-address", "127.0.0.1", "--rds-user", "admin"])
        .arg("--rds-password-file")
        .arg(&password_file)
        .env("RDS_CSI_RDS_PORT", sim.ssh_addr().port().to_string())
        .env(
            "RDS_CSI_RDS_HOST_KEY_FINGERPRINT",
            sim.host_key_fingerprint(),
        )
        .env("RDS_CSI_NVME_ADDRESS", "192.0.2.44")
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("POD_NAME", identity)
        .env("POD_NAMESPACE", "rds-csi")
        .env("RDS_CSI_METRICS_ADDRESS", "")
        .env("RDS_CSI_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        let mut log = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
            if line.contains("serving CSI") {
                return;
            }
        }
        panic!("controller exited early:\n{log}");
    })
    .await
    .expect("controller starts serving");
    // Keep reading its log so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let channel = server::connect(&Endpoint::Unix(socket)).await.unwrap();
    Controller {
        child,
        client: ControllerClient::new(channel),
    }
}

impl Controller {
    /// Publishes, retrying while the watch is not listed yet (UNAVAILABLE), as the
    /// external-attacher would; returns the final answer.
    async fn publish(
        &mut self,
        request: ControllerPublishVolumeRequest,
    ) -> Result<(), tonic::Status> {
        for _ in 0..200 {
            match self.client.controller_publish_volume(request.clone()).await {
                Err(status) if status.code() == Code::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                other => return other.map(drop),
            }
        }
        panic!("the controller stayed UNAVAILABLE");
    }

    async fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id().unwrap() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("stops after SIGTERM")
            .unwrap();
        assert!(status.success(), "{status:?}");
    }
}

fn lease_holder(api: &FakeApiServer) -> Option<String> {
    api.get::<Lease>(Some("rds-csi"), "rds-csi-srvlab-io-controller")
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_decides_from_the_clusters_volume_attachments_across_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::new(dir.path().join("rds")).with_password(PASSWORD))
        .await
        .unwrap();
    let api = FakeApiServer::new();
    let http = api.serve_http().await.unwrap();
    http.write_kubeconfig(&dir.path().join("kubeconfig"))
        .unwrap();

    // What the cluster says: node-a holds the RWO volume; the RWX one is mid-migration from
    // node-a to node-b (node-b's attachment is the newer).
    for object in [
        node("node-a"),
        node("node-b"),
        node("node-c"),
        pv(RWO),
        pv(RWX),
        attachment(RWO, "node-a", "2026-12-05T01:00:00Z"),
        attachment(RWX, "node-a", "2026-12-05T01:00:00Z"),
        attachment(RWX, "node-b", "2026-12-05T01:01:00Z"),
    ] {
        api.insert_json(object).unwrap();
    }

    let mut first = start(dir.path(), &sim, "controller-1").await;
    for (id, block, mode) in [
        (RWO, false, Mode::SingleNodeWriter),
        (RWX, true, Mode::MultiNodeMultiWriter),
    ] {
        first
            .client
            .create_volume(CreateVolumeRequest {
                name: id.into(),
                capacity_range: Some(CapacityRange {
                    required_bytes: 1 << 30,
                    limit_bytes: 0,
                }),
                volume_capabilities: vec![capability(block, mode)],
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let refused = first
        .publish(publish(RWO, "node-b", false, Mode::SingleNodeWriter))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("node-a"),
        "{}",
        refused.message()
    );
    // A person reading the claim's events learns why, and who holds it.
    api.wait_until(Duration::from_secs(10), || {
        api.list::<Event>(Some("apps")).iter().any(|e| {
            e.reason.as_deref() == Some("PublishRefused")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref())
                    == Some(format!("claim-{RWO}").as_str())
                && e.note.as_deref().is_some_and(|n| n.contains("node-a"))
        })
    })
    .await
    .expect("a PublishRefused event on the claim");
    // The spec's row "node does not exist": a node the cluster does not have.
    let gone = first
        .publish(publish(RWX, "node-gone", true, Mode::MultiNodeMultiWriter))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound, "{gone:?}");
    assert!(gone.message().contains("node-gone"), "{}", gone.message());
    first
        .publish(publish(RWO, "node-a", false, Mode::SingleNodeWriter))
        .await
        .unwrap();
    api.wait_until(Duration::from_secs(10), || lease_holder(&api).is_some())
        .await
        .expect("the controller takes the Lease");
    assert_eq!(lease_holder(&api).as_deref(), Some("controller-1"));

    // A second replica serves CSI too, from its own watch, while the first leads.
    let mut second = start(dir.path(), &sim, "controller-2").await;
    let refused = second
        .publish(publish(RWO, "node-b", false, Mode::SingleNodeWriter))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(lease_holder(&api).as_deref(), Some("controller-1"));

    // The leader stops: it gives the Lease up and the other replica leads at once; the
    // same facts give the same answers (a third node during the migration too).
    first.stop().await;
    api.wait_until(Duration::from_secs(10), || {
        lease_holder(&api).as_deref() == Some("controller-2")
    })
    .await
    .expect("the second replica takes the Lease");
    let refused = second
        .publish(publish(RWO, "node-b", false, Mode::SingleNodeWriter))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let crowded = second
        .publish(publish(RWX, "node-c", true, Mode::MultiNodeMultiWriter))
        .await
        .unwrap_err();
    assert_eq!(crowded.code(), Code::FailedPrecondition);
    let message = crowded.message();
    assert!(
        message.contains("node-a") && message.contains("node-b"),
        "{message}"
    );

    // Someone deletes node-a's VolumeAttachment by hand: the volume is free within a second.
    api.delete::<VolumeAttachment>(None, &format!("csi-node-a-{RWO}"))
        .unwrap();
    let started = tokio::time::Instant::now();
    loop {
        match second
            .publish(publish(RWO, "node-b", false, Mode::SingleNodeWriter))
            .await
        {
            Ok(()) => break,
            Err(status) if status.code() == Code::FailedPrecondition => {
                assert!(
                    started.elapsed() < Duration::from_secs(1),
                    "still refused after {:?}: {}",
                    started.elapsed(),
                    status.message()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(status) => panic!("{status}"),
        }
    }
    second.stop().await;
    sim.shutdown().await;
}
