//! A NodePublishVolume that fails tells the pod that asked (`podInfoOnMount` puts it in the
//! volume context) with a Warning event, against the API server double; one without the pod in
//! its context, or one that succeeds, posts nothing.

mod node_common;

use std::time::Duration;

use driver::node::{ClusterPods, PodRecovery};
use k8s_openapi::api::events::v1::Event;
use kube_fake::FakeApiServer;
use node_common::loop_lab::*;
use node_common::*;
use tonic::Code;

/// Bound on waits that should take milliseconds.
const BOUND: Duration = Duration::from_secs(10);

fn events(cluster: &FakeApiServer) -> Vec<Event> {
    cluster.list::<Event>(Some("apps"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_publish_tells_the_pod_why() {
    let cluster = FakeApiServer::new();
    let pods = ClusterPods::new(cluster.client(), "node-1", PodRecovery::Events);
    let lab = LoopLab::with_cluster_pods(pods).await;
    let mut client = lab.client();
    let id = volume_id(45);
    let (staging, target) = (lab.staging(&id), lab.fs_target(&id, "pod-a"));
    let request = || publish_request(&id, &staging, &target, mount_capability("ext4", &[]), false);

    // Without the pod in the context: only the reply.
    let outcome = client.node_publish_volume(request()).await;
    let failed = code(&outcome);
    assert_ne!(failed, Code::Ok, "{outcome:?}");

    // With it: the reply, and an event on that pod.
    let mut asked = request();
    asked.volume_context.extend(
        [
            ("csi.storage.k8s.io/pod.name", "web-0"),
            ("csi.storage.k8s.io/pod.namespace", "apps"),
            (
                "csi.storage.k8s.io/pod.uid",
                "6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f",
            ),
            ("csi.storage.k8s.io/ephemeral", "false"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let outcome = client.node_publish_volume(asked).await;
    assert_eq!(code(&outcome), failed);
    cluster
        .wait_until(BOUND, || !events(&cluster).is_empty())
        .await
        .expect("an event on the pod");
    let all = events(&cluster);
    assert_eq!(all.len(), 1, "{all:?}");
    let event = &all[0];
    assert_eq!(event.reason.as_deref(), Some("VolumePublishFailed"));
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let regarding = event.regarding.clone().unwrap();
    assert_eq!(regarding.kind.as_deref(), Some("Pod"));
    assert_eq!(regarding.name.as_deref(), Some("web-0"));
    assert_eq!(
        regarding.uid.as_deref(),
        Some("6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f")
    );
    let note = event.note.clone().unwrap();
    let status = outcome.unwrap_err();
    assert!(
        note.contains(&id) && note.contains(status.message()),
        "{note} / {status:?}"
    );
}
