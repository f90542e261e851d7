//! The attachment index against the fake API server, through kube-rs unchanged: the initial
//! list, watch events, deletion by hand and by finalizer, PVs arriving late or of another
//! driver, dropped and compacted watches, and a restart.

use std::time::Duration;

use driver::cluster::{AttachmentIndex, ClusterAttachment, IndexStopped};
use k8s_openapi::api::core::v1::PersistentVolume;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube_fake::{FakeApiServer, Verb};
use serde_json::json;

const DRIVER: &str = "rds.csi.srvlab.io";
/// Bound on waits that should take milliseconds.
const BOUND: Duration = Duration::from_secs(10);
/// How fast a change must be seen (the "within a second").
const SEEN_WITHIN: Duration = Duration::from_secs(1);

fn va(name: &str, pv: &str, node: &str) -> VolumeAttachment {
    serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": {"name": name},
        "spec": {"attacher": DRIVER, "nodeName": node, "source": {"persistentVolumeName": pv}},
    }))
    .unwrap()
}

fn pv(name: &str, handle: &str, driver: &str) -> PersistentVolume {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "csi": {"driver": driver, "volumeHandle": handle}},
    }))
    .unwrap()
}

/// `(node, attachment)` of each holder, oldest first.
fn who(holders: &[ClusterAttachment]) -> Vec<(String, String)> {
    holders
        .iter()
        .map(|h| (h.node_name.clone(), h.attachment_name.clone()))
        .collect()
}

fn pair(node: &str, name: &str) -> (String, String) {
    (node.to_owned(), name.to_owned())
}

async fn started(fake: &FakeApiServer) -> (AttachmentIndex, tokio::task::JoinHandle<()>) {
    let (index, task) = AttachmentIndex::spawn(fake.client(), DRIVER);
    tokio::time::timeout(BOUND, index.ready())
        .await
        .expect("ready in time")
        .expect("running");
    (index, task)
}

/// Waits (bounded) until the holders of `volume` satisfy `cond`.
async fn until(
    index: &AttachmentIndex,
    within: Duration,
    volume: &str,
    cond: impl FnMut(&[ClusterAttachment]) -> bool,
) -> Vec<ClusterAttachment> {
    tokio::time::timeout(within, index.wait_for(volume, cond))
        .await
        .unwrap_or_else(|_| panic!("holders of {volume} not as expected within {within:?}"))
        .expect("the index runs")
}

fn va_lists(fake: &FakeApiServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| {
            r.verb == Some(Verb::List) && r.path == "/apis/storage.k8s.io/v1/volumeattachments"
        })
        .count()
}

#[tokio::test]
async fn the_initial_list_builds_the_index() {
    let fake = FakeApiServer::new();
    fake.insert(&pv("pv-a", "vol-a", DRIVER)).unwrap();
    fake.insert(&pv("pv-b", "vol-b", DRIVER)).unwrap();
    fake.insert(&va("va-2", "pv-a", "n2")).unwrap();
    fake.insert(&va("va-1", "pv-a", "n1")).unwrap();
    fake.insert(&va("va-3", "pv-b", "n3")).unwrap();
    let mut foreign = va("va-x", "pv-b", "n9");
    foreign.spec.attacher = "other.csi".into();
    fake.insert(&foreign).unwrap();

    let (index, _task) = started(&fake).await;
    // Same creation second: the name orders them, as on every controller.
    assert_eq!(
        who(&index.holders("vol-a")),
        [pair("n1", "va-1"), pair("n2", "va-2")]
    );
    assert_eq!(who(&index.holders("vol-b")), [pair("n3", "va-3")]);
    assert!(index.holders("vol-c").is_empty());
    assert!(index.unresolved().is_empty());
}

#[tokio::test]
async fn creates_status_and_deletes_update_the_holders() {
    let fake = FakeApiServer::new();
    fake.insert(&pv("pv-a", "vol-a", DRIVER)).unwrap();
    let (index, _task) = started(&fake).await;
    let api: Api<VolumeAttachment> = Api::all(fake.client());

    api.create(&PostParams::default(), &va("va-1", "pv-a", "n1"))
        .await
        .unwrap();
    let holders = until(&index, SEEN_WITHIN, "vol-a", |h| h.len() == 1).await;
    assert!(!holders[0].attached && !holders[0].deleting);

    let attached = Patch::Merge(json!({"status": {"attached": true}}));
    api.patch_status("va-1", &PatchParams::default(), &attached)
        .await
        .unwrap();
    until(&index, SEEN_WITHIN, "vol-a", |h| {
        h.first().is_some_and(|a| a.attached)
    })
    .await;

    api.create(&PostParams::default(), &va("va-2", "pv-a", "n2"))
        .await
        .unwrap();
    let holders = until(&index, SEEN_WITHIN, "vol-a", |h| h.len() == 2).await;
    assert_eq!(who(&holders), [pair("n1", "va-1"), pair("n2", "va-2")]);

    api.delete("va-1", &DeleteParams::default()).await.unwrap();
    let holders = until(&index, SEEN_WITHIN, "vol-a", |h| h.len() == 1).await;
    assert_eq!(who(&holders), [pair("n2", "va-2")]);
}

#[tokio::test]
async fn a_volume_attachment_deleted_by_hand_frees_the_volume_within_a_second() {
    let fake = FakeApiServer::new();
    fake.insert(&pv("pv-a", "vol-a", DRIVER)).unwrap();
    fake.insert(&va("va-1", "pv-a", "n1")).unwrap();
    let (index, _task) = started(&fake).await;
    assert_eq!(index.holders("vol-a").len(), 1);

    let api: Api<VolumeAttachment> = Api::all(fake.client());
    api.delete("va-1", &DeleteParams::default()).await.unwrap();
    until(&index, SEEN_WITHIN, "vol-a", <[_]>::is_empty).await;
}

#[tokio::test]
async fn a_finalizer_keeps_a_deleted_attachment_as_deleting_until_it_goes() {
    let fake = FakeApiServer::new();
    fake.insert(&pv("pv-a", "vol-a", DRIVER)).unwrap();
    let mut held = va("va-1", "pv-a", "n1");
    held.metadata.finalizers = Some(vec![format!("external-attacher/{DRIVER}")]);
    fake.insert(&held).unwrap();
    let (index, _task) = started(&fake).await;

    let api: Api<VolumeAttachment> = Api::all(fake.client());
    api.delete("va-1", &DeleteParams::default()).await.unwrap();
    let holders = until(&index, SEEN_WITHIN, "vol-a", |h| {
        h.first().is_some_and(|a| a.deleting)
    })
    .await;
    assert_eq!(
        who(&holders),
        [pair("n1", "va-1")],
        "still held while detaching"
    );

    let detached = Patch::Merge(json!({"metadata": {"finalizers": null}}));
    api.patch("va-1", &PatchParams::default(), &detached)
        .await
        .unwrap();
    until(&index, SEEN_WITHIN, "vol-a", <[_]>::is_empty).await;
}

#[tokio::test]
async fn an_attachment_before_its_volume_resolves_when_the_volume_arrives() {
    let fake = FakeApiServer::new();
    fake.insert(&va("va-1", "pv-a", "n1")).unwrap();
    let (index, _task) = started(&fake).await;
    assert!(index.holders("vol-a").is_empty());
    assert_eq!(index.unresolved(), ["va-1"]);

    let pvs: Api<PersistentVolume> = Api::all(fake.client());
    pvs.create(&PostParams::default(), &pv("pv-a", "vol-a", DRIVER))
        .await
        .unwrap();
    let holders = until(&index, SEEN_WITHIN, "vol-a", |h| h.len() == 1).await;
    assert_eq!(who(&holders), [pair("n1", "va-1")]);
    assert!(index.unresolved().is_empty());
}

#[tokio::test]
async fn a_volume_of_another_driver_is_ignored() {
    let fake = FakeApiServer::new();
    fake.insert(&pv("pv-x", "vol-x", "other.csi")).unwrap();
    fake.insert(&va("va-1", "pv-x", "n1")).unwrap();
    let (index, _task) = started(&fake).await;
    assert!(index.holders("vol-x").is_empty());
    assert_eq!(index.unresolved(), ["va-1"]);
}

#[tokio::test]
async fn a_dropped_watch_replays_what_it_missed() {
    let fake = FakeApiServer::new();
    fake.insert(&pv("pv-a", "vol-a", DRIVER)).unwrap();
    fake.insert(&va("va-1", "pv-a", "n1")).unwrap();
    let (index, _task) = started(&fake).await;

    let hold = fake.hold_watches();
    fake.delete::<VolumeAttachment>(None, "va-1").unwrap();
    fake.insert(&va("va-2", "pv-a", "n2")).unwrap();
    drop(hold);
    let holders = until(&index, SEEN_WITHIN, "vol-a", |h| {
        who(h) == [pair("n2", "va-2")]
    })
    .await;
    assert_eq!(holders.len(), 1);
    assert_eq!(va_lists(&fake), 1, "a replay, not a relist");
}

#[tokio::test]
async fn after_410_gone_the_relist_forgets_what_was_deleted_meanwhile() {
    let fake = FakeApiServer::new();
    for (name, vol) in [("a", "vol-a"), ("b", "vol-b"), ("c", "vol-c")] {
        fake.insert(&pv(&format!("pv-{name}"), vol, DRIVER))
            .unwrap();
        fake.insert(&va(&format!("va-{name}"), &format!("pv-{name}"), "n1"))
            .unwrap();
    }
    let (index, _task) = started(&fake).await;

    // A partition during which objects go and the server compacts its history away.
    let hold = fake.hold_watches();
    fake.delete::<VolumeAttachment>(None, "va-a").unwrap();
    fake.delete::<PersistentVolume>(None, "pv-b").unwrap();
    fake.insert(&va("va-c2", "pv-c", "n2")).unwrap();
    fake.compact();
    drop(hold);

    // The relist follows the 410 at once, not after a backoff.
    until(&index, SEEN_WITHIN, "vol-a", <[_]>::is_empty).await;
    until(&index, SEEN_WITHIN, "vol-b", <[_]>::is_empty).await;
    let holders = until(&index, SEEN_WITHIN, "vol-c", |h| h.len() == 2).await;
    assert_eq!(who(&holders), [pair("n1", "va-c"), pair("n2", "va-c2")]);
    tokio::time::timeout(BOUND, async {
        while index.unresolved() != ["va-b"] {
            index.changes().changed().await.unwrap();
        }
    })
    .await
    .expect("va-b waits for its deleted PV");
    assert_eq!(va_lists(&fake), 2, "the 410 made it relist");
}

#[tokio::test]
async fn a_restarted_index_yields_the_same_holders() {
    let fake = FakeApiServer::new();
    fake.insert(&pv("pv-a", "vol-a", DRIVER)).unwrap();
    fake.insert(&pv("pv-b", "vol-b", DRIVER)).unwrap();
    fake.insert(&va("va-1", "pv-a", "n1")).unwrap();
    fake.insert(&va("va-2", "pv-a", "n2")).unwrap();
    fake.insert(&va("va-3", "pv-b", "n1")).unwrap();
    let (first, task) = started(&fake).await;
    let api: Api<VolumeAttachment> = Api::all(fake.client());
    api.delete("va-3", &DeleteParams::default()).await.unwrap();
    until(&first, SEEN_WITHIN, "vol-b", <[_]>::is_empty).await;
    let before = (first.holders("vol-a"), first.holders("vol-b"));

    task.abort();
    let stopped = tokio::time::timeout(BOUND, first.wait_for("vol-a", |_| false)).await;
    assert_eq!(stopped.expect("ends in time"), Err(IndexStopped));

    let (second, _task) = started(&fake).await;
    assert_eq!((second.holders("vol-a"), second.holders("vol-b")), before);
}

#[tokio::test]
async fn failed_lists_are_retried_before_the_index_is_ready() {
    let fake = FakeApiServer::new();
    fake.insert(&pv("pv-a", "vol-a", DRIVER)).unwrap();
    fake.insert(&va("va-1", "pv-a", "n1")).unwrap();
    fake.fail_next(Verb::List, "/apis/storage.k8s.io/v1/volumeattachments", 500);
    fake.fail_next(Verb::List, "/api/v1/persistentvolumes", 503);
    let (index, _task) = AttachmentIndex::spawn(fake.client(), DRIVER);
    assert!(!index.is_ready());
    tokio::time::timeout(BOUND, index.ready())
        .await
        .expect("ready in time")
        .expect("running");
    assert_eq!(who(&index.holders("vol-a")), [pair("n1", "va-1")]);
    assert_eq!(va_lists(&fake), 2);
}
