//! The fake over real HTTP, reached through a kubeconfig as a separate binary would reach it.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube_fake::FakeApiServer;
use serde_json::json;

const BOUND: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_client_from_the_kubeconfig_lists_and_watches_over_http() {
    let fake = FakeApiServer::new();
    let server = fake.serve_http().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).unwrap();

    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(config.default_namespace, "default");
    let client = kube::Client::try_from(config).unwrap();
    assert_eq!(client.apiserver_version().await.unwrap().minor, "33");

    let pods: Api<Pod> = Api::default_namespaced(client);
    let start = fake.resource_version().to_string();
    let mut stream = pods
        .watch(&WatchParams::default().timeout(60), &start)
        .await
        .unwrap()
        .boxed();
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}})).unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(
        pods.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
    match tokio::time::timeout(BOUND, stream.next()).await.unwrap() {
        Some(Ok(WatchEvent::Added(p))) => assert_eq!(p.metadata.name.as_deref(), Some("p")),
        other => panic!("expected ADDED over HTTP, got {other:?}"),
    }

    // Stopping the server closes open watches instead of leaving them to their timeout.
    drop(server);
    let end = tokio::time::timeout(BOUND, stream.next())
        .await
        .expect("the watch ends when the server stops");
    assert!(!matches!(end, Some(Ok(_))), "{end:?}");
}
