//! kube's events `Recorder`, unchanged: the first publish POSTs to events.k8s.io/v1, a
//! repeat merge-PATCHes the same event as a series.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::Resource;
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube_fake::{FakeApiServer, Verb};
use serde_json::json;

#[tokio::test]
async fn recorder_creates_then_patches_a_series() {
    let fake = FakeApiServer::new();
    let pods: Api<Pod> = Api::namespaced(fake.client(), "ns1");
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
    let pod = pods.create(&PostParams::default(), &pod).await.unwrap();
    fake.clear_requests();

    let reporter = Reporter {
        controller: "rds-csi-controller".into(),
        instance: Some("ctrl-0".into()),
    };
    let recorder = Recorder::new(fake.client(), reporter);
    let event = Event {
        type_: EventType::Warning,
        reason: "AttachFailed".into(),
        note: Some("volume pvc-1 is attached to another node".into()),
        action: "Attach".into(),
        secondary: None,
    };
    let reference = pod.object_ref(&());
    recorder.publish(&event, &reference).await.unwrap();
    recorder.publish(&event, &reference).await.unwrap();

    let stored: Vec<K8sEvent> = fake.list(Some("ns1"));
    assert_eq!(stored.len(), 1);
    let stored = &stored[0];
    let name = stored.metadata.name.clone().unwrap();
    assert_eq!(stored.series.as_ref().map(|s| s.count), Some(2));
    assert_eq!(stored.reason.as_deref(), Some("AttachFailed"));
    assert_eq!(
        stored.reporting_controller.as_deref(),
        Some("rds-csi-controller")
    );
    let regarding = stored.regarding.as_ref().unwrap();
    assert_eq!(
        (regarding.kind.as_deref(), regarding.name.as_deref()),
        (Some("Pod"), Some("p"))
    );
    assert_eq!(regarding.uid, pod.metadata.uid);

    let seen: Vec<_> = fake
        .requests()
        .into_iter()
        .map(|r| (r.verb, r.path))
        .collect();
    assert_eq!(
        seen,
        [
            (
                Some(Verb::Create),
                "/apis/events.k8s.io/v1/namespaces/ns1/events".to_owned()
            ),
            (
                Some(Verb::Patch),
                format!("/apis/events.k8s.io/v1/namespaces/ns1/events/{name}")
            ),
        ]
    );
}

#[tokio::test]
async fn a_rejected_event_is_an_error_for_the_caller() {
    let fake = FakeApiServer::new();
    fake.fail_next(Verb::Create, "/apis/events.k8s.io/", 403);
    let reporter = Reporter {
        controller: "rds-csi-controller".into(),
        instance: None,
    };
    let recorder = Recorder::new(fake.client(), reporter);
    let event = Event {
        type_: EventType::Normal,
        reason: "Attached".into(),
        note: None,
        action: "Attach".into(),
        secondary: None,
    };
    let pod: Pod =
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns1"}})).unwrap();
    match recorder.publish(&event, &pod.object_ref(&())).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"))
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert!(fake.list::<K8sEvent>(None).is_empty());
}
