//! The verbs through kube-rs's `Api`, unchanged, against the in-process fake.

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec};
use k8s_openapi::api::storage::v1::VolumeAttachment;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::ObjectMeta;
use kube_fake::{FakeApiServer, Verb};
use serde_json::json;

fn pod(name: &str, node: &str) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some([("app".to_owned(), "db".to_owned())].into()),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn api_code(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason.clone()),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn create_get_and_list_by_node() {
    let fake = FakeApiServer::new();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "ns1");
    let created = pods
        .create(&PostParams::default(), &pod("a", "n1"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert_eq!(meta.namespace.as_deref(), Some("ns1"));
    assert!(meta.uid.is_some() && meta.creation_timestamp.is_some());
    assert_eq!(
        meta.resource_version.as_deref(),
        Some(fake.resource_version().to_string().as_str())
    );
    pods.create(&PostParams::default(), &pod("b", "n2"))
        .await
        .unwrap();
    Api::<Pod>::namespaced(fake.client(), "ns2")
        .create(&PostParams::default(), &pod("c", "n1"))
        .await
        .unwrap();

    assert_eq!(pods.get("a").await.unwrap().metadata.uid, meta.uid);
    let err = pods
        .create(&PostParams::default(), &pod("a", "n1"))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (409, "AlreadyExists".into()));
    assert_eq!(
        api_code(pods.get("zz").await.unwrap_err()),
        (404, "NotFound".into())
    );

    let all: Api<Pod> = Api::all(fake.client());
    let on_n1 = all
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    let names: Vec<_> = on_n1
        .items
        .iter()
        .map(|p| p.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["a", "c"]);
    assert_eq!(
        on_n1.metadata.resource_version,
        Some(fake.resource_version().to_string())
    );
    let in_ns1 = pods
        .list(&ListParams::default().labels("app=db"))
        .await
        .unwrap();
    assert_eq!(in_ns1.items.len(), 2);
    let err = all
        .list(&ListParams::default().fields("spec.hostname=x"))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (400, "BadRequest".into()));
}

#[tokio::test]
async fn generate_name_gives_a_fresh_name() {
    let fake = FakeApiServer::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let mut p = pod("", "n1");
    p.metadata.name = None;
    p.metadata.generate_name = Some("web-".into());
    let created = pods.create(&PostParams::default(), &p).await.unwrap();
    let name = created.metadata.name.unwrap();
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    p.metadata.generate_name = None;
    assert_eq!(
        api_code(pods.create(&PostParams::default(), &p).await.unwrap_err()).0,
        422
    );
}

#[tokio::test]
async fn replace_with_a_stale_resource_version_is_a_conflict() {
    let fake = FakeApiServer::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let first = pods
        .create(&PostParams::default(), &pod("a", "n1"))
        .await
        .unwrap();
    let mut changed = first.clone();
    changed.spec.as_mut().unwrap().node_name = Some("n2".into());
    let second = pods
        .replace("a", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(
        second.metadata.resource_version,
        first.metadata.resource_version
    );
    assert_eq!(second.metadata.generation, Some(2));
    let err = pods
        .replace("a", &PostParams::default(), &first)
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (409, "Conflict".into()));
    // A write that changes nothing keeps the resourceVersion.
    let same = pods
        .replace("a", &PostParams::default(), &second)
        .await
        .unwrap();
    assert_eq!(
        same.metadata.resource_version,
        second.metadata.resource_version
    );
    let err = pods
        .replace("zz", &PostParams::default(), &pod("zz", "n1"))
        .await
        .unwrap_err();
    assert_eq!(api_code(err).0, 404);
}

#[tokio::test]
async fn merge_and_json_patches() {
    let fake = FakeApiServer::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let created = pods
        .create(&PostParams::default(), &pod("a", "n1"))
        .await
        .unwrap();
    let patch = json!({"metadata": {"labels": {"app": null, "tier": "x"}}});
    let patched = pods
        .patch("a", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.labels,
        Some([("tier".to_owned(), "x".to_owned())].into())
    );
    assert_eq!(patched.metadata.uid, created.metadata.uid);

    let stale = json!({"metadata": {"resourceVersion": created.metadata.resource_version}});
    let err = pods
        .patch("a", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (409, "Conflict".into()));

    // kube builds JSON patches only with its `jsonpatch` feature, so this one is sent raw.
    let ops = json!([{"op": "replace", "path": "/spec/nodeName", "value": "n9"}]);
    let request = axum::http::Request::patch("/api/v1/namespaces/default/pods/a")
        .header("content-type", "application/json-patch+json")
        .body(serde_json::to_vec(&ops).unwrap())
        .unwrap();
    let patched: Pod = fake.client().request(request).await.unwrap();
    assert_eq!(patched.spec.unwrap().node_name.as_deref(), Some("n9"));

    let err = pods
        .patch("a", &PatchParams::apply("me"), &Patch::Apply(&patch))
        .await
        .unwrap_err();
    assert_eq!(api_code(err).0, 415);
    let err = pods
        .patch("zz", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap_err();
    assert_eq!(api_code(err).0, 404);
}

#[tokio::test]
async fn delete_checks_uid_preconditions() {
    let fake = FakeApiServer::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let created = pods
        .create(&PostParams::default(), &pod("a", "n1"))
        .await
        .unwrap();
    let wrong = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("not-it".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    assert_eq!(
        api_code(pods.delete("a", &wrong).await.unwrap_err()),
        (409, "Conflict".into())
    );
    assert!(fake.get::<Pod>(Some("default"), "a").is_some());

    let right = DeleteParams {
        preconditions: Some(Preconditions {
            uid: created.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    let deleted = pods
        .delete("a", &right)
        .await
        .unwrap()
        .left()
        .expect("the deleted object");
    assert_eq!(deleted.metadata.uid, created.metadata.uid);
    assert!(fake.get::<Pod>(Some("default"), "a").is_none());
    assert_eq!(
        api_code(pods.delete("a", &right).await.unwrap_err()),
        (404, "NotFound".into())
    );
}

#[tokio::test]
async fn finalizers_hold_a_deleted_object_until_removed() {
    let fake = FakeApiServer::new();
    let vas: Api<VolumeAttachment> = Api::all(fake.client());
    let va = json!({"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": {"name": "csi-1", "finalizers": ["external-attacher/rds"]},
        "spec": {"attacher": "rds", "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}}});
    vas.create(&PostParams::default(), &serde_json::from_value(va).unwrap())
        .await
        .unwrap();
    let held = vas
        .delete("csi-1", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(fake.get::<VolumeAttachment>(None, "csi-1").is_some());
    let patch = json!({"metadata": {"finalizers": null}});
    vas.patch("csi-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert!(fake.get::<VolumeAttachment>(None, "csi-1").is_none());
}

#[tokio::test]
async fn status_subresource_writes_only_the_status() {
    let fake = FakeApiServer::new();
    let vas: Api<VolumeAttachment> = Api::all(fake.client());
    let va = json!({"apiVersion": "storage.k8s.io/v1", "kind": "VolumeAttachment",
        "metadata": {"name": "csi-1"},
        "spec": {"attacher": "rds", "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}},
        "status": {"attached": true}});
    let created = vas
        .create(&PostParams::default(), &serde_json::from_value(va).unwrap())
        .await
        .unwrap();
    assert!(created.status.is_none(), "create drops the status");
    let patch = json!({"status": {"attached": true}, "spec": {"nodeName": "other"}});
    let patched = vas
        .patch_status("csi-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    assert!(patched.status.unwrap().attached);
    assert_eq!(patched.spec.node_name, "n1");
    let main = json!({"status": {"attached": false}});
    let patched = vas
        .patch("csi-1", &PatchParams::default(), &Patch::Merge(&main))
        .await
        .unwrap();
    assert!(
        patched.status.unwrap().attached,
        "the main resource keeps the status"
    );
}

#[tokio::test]
async fn pagination_with_limit_and_continue() {
    let fake = FakeApiServer::new();
    for i in 0..5 {
        let node = Node {
            metadata: ObjectMeta {
                name: Some(format!("n{i}")),
                ..Default::default()
            },
            ..Default::default()
        };
        fake.insert(&node).unwrap();
    }
    let nodes: Api<Node> = Api::all(fake.client());
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = nodes.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|n| n.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => {
                assert_eq!(
                    page.metadata.remaining_item_count,
                    Some(5 - names.len() as i64)
                );
                lp = lp.continue_token(&token);
            }
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names, ["n0", "n1", "n2", "n3", "n4"]);

    // A continue token from before a compaction has expired.
    let page = nodes.list(&ListParams::default().limit(2)).await.unwrap();
    fake.compact();
    let err = nodes
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(&page.metadata.continue_.unwrap()),
        )
        .await;
    assert_eq!(api_code(err.unwrap_err()), (410, "Expired".into()));
}

#[tokio::test]
async fn injected_faults_fire_once_and_requests_are_logged() {
    let fake = FakeApiServer::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    fake.fail_next(Verb::Create, "/api/v1/namespaces/default/pods", 500);
    let err = pods
        .create(&PostParams::default(), &pod("a", "n1"))
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (500, "InternalError".into()));
    pods.create(&PostParams::default(), &pod("a", "n1"))
        .await
        .unwrap();
    pods.list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    let log = fake.requests();
    let seen: Vec<_> = log
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str(), r.verb))
        .collect();
    assert_eq!(
        seen,
        [
            (
                "POST",
                "/api/v1/namespaces/default/pods",
                Some(Verb::Create)
            ),
            (
                "POST",
                "/api/v1/namespaces/default/pods",
                Some(Verb::Create)
            ),
            ("GET", "/api/v1/namespaces/default/pods", Some(Verb::List)),
        ]
    );
    assert!(
        log[2].query.contains("fieldSelector=spec.nodeName%3Dn1"),
        "{}",
        log[2].query
    );
}

#[tokio::test]
async fn wait_until_wakes_on_writes() {
    let fake = FakeApiServer::new();
    let writer = fake.clone();
    tokio::spawn(async move {
        Api::<Pod>::default_namespaced(writer.client())
            .create(&PostParams::default(), &pod("a", "n1"))
            .await
            .unwrap();
    });
    let seen = fake.clone();
    fake.wait_until(std::time::Duration::from_secs(5), || {
        seen.get::<Pod>(Some("default"), "a").is_some()
    })
    .await
    .unwrap();
    let never = fake
        .wait_until(std::time::Duration::from_millis(50), || false)
        .await;
    assert!(never.is_err());
}

#[tokio::test]
async fn dry_run_is_refused_rather_than_written() {
    let fake = FakeApiServer::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    let err = pods
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &pod("a", "n1"),
        )
        .await
        .unwrap_err();
    assert_eq!(api_code(err).0, 400);
    assert!(fake.list::<Pod>(None).is_empty());
}

#[tokio::test]
async fn delete_collection_by_label() {
    let fake = FakeApiServer::new();
    let pods: Api<Pod> = Api::default_namespaced(fake.client());
    pods.create(&PostParams::default(), &pod("a", "n1"))
        .await
        .unwrap();
    let mut other = pod("b", "n1");
    other.metadata.labels = None;
    pods.create(&PostParams::default(), &other).await.unwrap();
    let gone = pods
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=db"),
        )
        .await
        .unwrap();
    let names: Vec<_> = gone
        .left()
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(names, ["a"]);
    let left: Vec<_> = fake
        .list::<Pod>(None)
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();
    assert_eq!(left, ["b"]);
}

#[tokio::test]
async fn of_two_lease_renewals_from_one_read_only_the_first_wins() {
    use k8s_openapi::api::coordination::v1::Lease;
    let fake = FakeApiServer::new();
    let leases: Api<Lease> = Api::namespaced(fake.client(), "kube-system");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "rds-csi"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}}))
    .unwrap();
    leases.create(&PostParams::default(), &lease).await.unwrap();
    let err = leases
        .create(&PostParams::default(), &lease)
        .await
        .unwrap_err();
    assert_eq!(api_code(err).1, "AlreadyExists");
    let read = leases.get("rds-csi").await.unwrap();
    let mut by_b = read.clone();
    by_b.spec.as_mut().unwrap().holder_identity = Some("b".into());
    let mut by_c = read;
    by_c.spec.as_mut().unwrap().holder_identity = Some("c".into());
    leases
        .replace("rds-csi", &PostParams::default(), &by_b)
        .await
        .unwrap();
    let err = leases
        .replace("rds-csi", &PostParams::default(), &by_c)
        .await
        .unwrap_err();
    assert_eq!(api_code(err), (409, "Conflict".into()));
    let held = fake.get::<Lease>(Some("kube-system"), "rds-csi").unwrap();
    assert_eq!(held.spec.unwrap().holder_identity.as_deref(), Some("b"));
}
