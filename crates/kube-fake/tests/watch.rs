//! kube-rs's watcher and reflector, unchanged, against the fake: initial list, events,
//! BOOKMARKs, re-watches from where they left off, and the relist a 410 Gone forces.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{WatchStreamExt, watcher};
use kube_fake::{FakeApiServer, Verb};
use serde_json::json;

const BOUND: Duration = Duration::from_secs(10);

fn va(name: &str, node: &str) -> VolumeAttachment {
    serde_json::from_value(json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": {"name": name},
        "spec": {"attacher": "rds.csi", "nodeName": node, "source": {"persistentVolumeName": format!("pv-{name}")}},
    }))
    .unwrap()
}

/// The watcher's events by name, errors by their code.
fn describe(item: Result<watcher::Event<VolumeAttachment>, watcher::Error>) -> String {
    let name = |v: &VolumeAttachment| v.metadata.name.clone().unwrap_or_default();
    match item {
        Ok(watcher::Event::Init) => "Init".into(),
        Ok(watcher::Event::InitApply(v)) => format!("InitApply({})", name(&v)),
        Ok(watcher::Event::InitDone) => "InitDone".into(),
        Ok(watcher::Event::Apply(v)) => format!("Apply({})", name(&v)),
        Ok(watcher::Event::Delete(v)) => format!("Delete({})", name(&v)),
        Err(watcher::Error::WatchError(status)) => format!("Err({})", status.code),
        Err(other) => format!("Err({other})"),
    }
}

async fn next<S>(stream: &mut S) -> String
where
    S: Stream<Item = Result<watcher::Event<VolumeAttachment>, watcher::Error>> + Unpin,
{
    let item = tokio::time::timeout(BOUND, stream.next())
        .await
        .expect("a watcher event in time");
    describe(item.expect("the watcher stream never ends"))
}

async fn next_n<S>(stream: &mut S, n: usize) -> Vec<String>
where
    S: Stream<Item = Result<watcher::Event<VolumeAttachment>, watcher::Error>> + Unpin,
{
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next(stream).await);
    }
    out
}

/// Watch requests for VolumeAttachments and the resourceVersion each started from.
fn watches_from(fake: &FakeApiServer) -> Vec<String> {
    fake.requests()
        .into_iter()
        .filter(|r| {
            r.verb == Some(Verb::Watch) && r.path == "/apis/storage.k8s.io/v1/volumeattachments"
        })
        .map(|r| {
            let rv = r
                .query
                .split('&')
                .find_map(|kv| kv.strip_prefix("resourceVersion="));
            rv.unwrap_or_default().to_owned()
        })
        .collect()
}

fn lists(fake: &FakeApiServer) -> usize {
    let is_list = |r: &kube_fake::RequestRecord| {
        r.verb == Some(Verb::List) && r.path == "/apis/storage.k8s.io/v1/volumeattachments"
    };
    fake.requests().iter().filter(|r| is_list(r)).count()
}

#[tokio::test]
async fn reflector_follows_creates_deletes_bookmarks_and_relists_after_compaction() {
    let fake = FakeApiServer::new();
    fake.set_bookmark_interval(Duration::from_millis(50));
    fake.insert(&va("a", "n1")).unwrap();
    let api: Api<VolumeAttachment> = Api::all(fake.client());
    let (reader, writer) = reflector::store();
    // Short watches, so the re-watch shows where the bookmarks left the watcher.
    let mut events = watcher(api.clone(), watcher::Config::default().timeout(1))
        .reflect(writer)
        .boxed();

    assert_eq!(
        next_n(&mut events, 3).await,
        ["Init", "InitApply(a)", "InitDone"]
    );
    assert!(reader.get(&ObjectRef::new("a")).is_some());

    api.create(&PostParams::default(), &va("b", "n2"))
        .await
        .unwrap();
    assert_eq!(next(&mut events).await, "Apply(b)");
    assert_eq!(reader.state().len(), 2);

    // Writes elsewhere move the resourceVersion on; only bookmarks tell the watcher.
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let latest = fake.resource_version().to_string();
    let driver = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(item) = events.next().await {
            let done = matches!(&item, Ok(watcher::Event::Delete(_)));
            seen.push(describe(item));
            if done {
                break;
            }
        }
        (events, seen)
    });
    let watcher_fake = fake.clone();
    fake.wait_until(BOUND, || watches_from(&watcher_fake).contains(&latest))
        .await
        .expect("a re-watch from the bookmark's resourceVersion");

    api.delete("b", &DeleteParams::default()).await.unwrap();
    let (mut events, seen) = tokio::time::timeout(BOUND, driver).await.unwrap().unwrap();
    assert_eq!(
        seen,
        ["Delete(b)"],
        "re-watches and bookmarks yield nothing else"
    );
    assert!(reader.get(&ObjectRef::new("b")).is_none());
    assert_eq!(lists(&fake), 1);

    // Compaction ends the open watch with 410 Gone: the watcher reports it and relists.
    fake.insert(&va("c", "n3")).unwrap();
    assert_eq!(next(&mut events).await, "Apply(c)");
    fake.compact();
    assert_eq!(
        next_n(&mut events, 5).await,
        [
            "Err(410)",
            "Init",
            "InitApply(a)",
            "InitApply(c)",
            "InitDone"
        ]
    );
    assert_eq!(lists(&fake), 2);
    let mut names: Vec<_> = reader
        .state()
        .iter()
        .map(|v| v.metadata.name.clone().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "c"]);
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_gets_410() {
    let fake = FakeApiServer::new();
    let api: Api<VolumeAttachment> = Api::all(fake.client());
    let first = api
        .create(&PostParams::default(), &va("a", "n1"))
        .await
        .unwrap();
    let rv = first.metadata.resource_version.unwrap();
    fake.compact();
    let mut stream = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    let event = tokio::time::timeout(BOUND, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match event {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(
        tokio::time::timeout(BOUND, stream.next())
            .await
            .unwrap()
            .is_none(),
        "the watch ends after it"
    );
}

#[tokio::test]
async fn a_filtered_watch_sees_objects_enter_and_leave_its_selection() {
    let fake = FakeApiServer::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let start = fake.resource_version().to_string();
    let wp = WatchParams::default().labels("app=db").timeout(5);
    let mut stream = pods.watch(&wp, &start).await.unwrap().boxed();
    let pod = |labels: serde_json::Value| {
        serde_json::from_value::<Pod>(json!({"metadata": {"name": "p", "labels": labels}})).unwrap()
    };
    pods.create(&PostParams::default(), &pod(json!({"app": "web"})))
        .await
        .unwrap();
    let patch = |app: &str| kube::api::Patch::Merge(json!({"metadata": {"labels": {"app": app}}}));
    pods.patch("p", &Default::default(), &patch("db"))
        .await
        .unwrap();
    pods.patch("p", &Default::default(), &patch("web"))
        .await
        .unwrap();
    let mut kinds = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(BOUND, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        kinds.push(match event {
            WatchEvent::Added(_) => "ADDED",
            WatchEvent::Deleted(_) => "DELETED",
            WatchEvent::Modified(_) => "MODIFIED",
            _ => "OTHER",
        });
    }
    assert_eq!(kinds, ["ADDED", "DELETED"]);
}

#[tokio::test]
async fn streaming_list_initial_events_end_with_a_bookmark() {
    let fake = FakeApiServer::new();
    fake.insert(&va("a", "n1")).unwrap();
    fake.insert(&va("b", "n1")).unwrap();
    let api: Api<VolumeAttachment> = Api::all(fake.client());
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher(api, config).reflect(writer).boxed();
    assert_eq!(
        next_n(&mut events, 4).await,
        ["Init", "InitApply(a)", "InitApply(b)", "InitDone"]
    );
    assert_eq!(reader.state().len(), 2);
    assert_eq!(lists(&fake), 0, "a streaming list sends no LIST");
}

#[tokio::test]
async fn dropped_watches_resume_from_where_they_were() {
    let fake = FakeApiServer::new();
    fake.insert(&va("a", "n1")).unwrap();
    let api: Api<VolumeAttachment> = Api::all(fake.client());
    let mut events = watcher(api, watcher::Config::default()).boxed();
    assert_eq!(
        next_n(&mut events, 3).await,
        ["Init", "InitApply(a)", "InitDone"]
    );
    fake.insert(&va("b", "n1")).unwrap();
    assert_eq!(next(&mut events).await, "Apply(b)");
    let seen = fake.resource_version().to_string();

    fake.drop_watches();
    fake.delete::<VolumeAttachment>(None, "a").unwrap();
    assert_eq!(next(&mut events).await, "Delete(a)");
    assert_eq!(
        watches_from(&fake).last(),
        Some(&seen),
        "re-watched from the last resourceVersion seen"
    );
    assert_eq!(lists(&fake), 1, "no relist");
}

#[tokio::test]
async fn held_watches_replay_what_they_missed_or_get_410_after_compaction() {
    let fake = FakeApiServer::new();
    for name in ["a", "b", "c"] {
        fake.insert(&va(name, "n1")).unwrap();
    }
    let api: Api<VolumeAttachment> = Api::all(fake.client());
    let mut events = watcher(api, watcher::Config::default()).boxed();
    assert_eq!(next_n(&mut events, 5).await[4], "InitDone");
    fake.insert(&va("d", "n1")).unwrap();
    assert_eq!(next(&mut events).await, "Apply(d)", "the watch is open");

    // Missed while held, replayed on release from the watcher's resourceVersion.
    let hold = fake.hold_watches();
    fake.delete::<VolumeAttachment>(None, "a").unwrap();
    let quiet = tokio::time::timeout(Duration::from_millis(200), events.next()).await;
    assert!(quiet.is_err(), "a held watch sends nothing: {quiet:?}");
    assert_eq!(watches_from(&fake).len(), 2, "re-watched into the hold");
    drop(hold);
    assert_eq!(next(&mut events).await, "Delete(a)");

    // Missed while held and compacted away: 410 on release, and the relist has the truth.
    let hold = fake.hold_watches();
    fake.delete::<VolumeAttachment>(None, "b").unwrap();
    fake.compact();
    drop(hold);
    assert_eq!(
        next_n(&mut events, 5).await,
        [
            "Err(410)",
            "Init",
            "InitApply(c)",
            "InitApply(d)",
            "InitDone"
        ]
    );
    assert_eq!(lists(&fake), 2);
}
