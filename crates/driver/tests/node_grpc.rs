//! The node service's contract at the gRPC boundary that needs no root: request checks with
//! the spec's codes, idempotent no-ops, NodeGetInfo and NodeGetCapabilities, and Identity.

mod node_common;

use std::sync::Arc;

use csi::v1::identity_client::IdentityClient;
use csi::v1::node_service_capability::Type as CapabilityType;
use csi::v1::node_service_capability::rpc::Type as Rpc;
use csi::v1::{
    CapacityRange, GetPluginInfoRequest, NodeExpandVolumeRequest, NodeGetCapabilitiesRequest,
    NodeGetInfoRequest, NodeGetVolumeStatsRequest, ProbeRequest,
};
use driver::node::{LoopFabric, NodeConfig};
use node_common::*;
use tonic::Code;

struct Lab {
    dir: tempfile::TempDir,
    plugin: Plugin,
}

impl Lab {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sim = dir.path().join("sim");
        std::fs::create_dir(&sim).unwrap();
        let mut config = NodeConfig::new("node-7", PREFIX);
        config.max_volumes_per_node = 42;
        config.block_publish_dir = dir.path().join("volumeDevices");
        let plugin = Plugin::start(dir.path(), config, Arc::new(LoopFabric::new(sim))).await;
        Self { dir, plugin }
    }

    fn path(&self, relative: &str) -> std::path::PathBuf {
        self.dir.path().join(relative)
    }
}

#[tokio::test]
async fn stage_requests_are_checked_before_anything_happens() {
    let lab = Lab::start().await;
    let mut client = lab.plugin.client.clone();
    let id = volume_id(1);
    let staging = lab.path("staging");
    let good = || {
        stage_request(
            &id,
            &staging,
            mount_capability("ext4", &[]),
            context(&nqn_of(&id), 4420),
        )
    };
    let mut cases: Vec<(&str, csi::v1::NodeStageVolumeRequest, Code)> = Vec::new();
    let mut r = good();
    r.volume_id.clear();
    cases.push(("no volume id", r, Code::InvalidArgument));
    let mut r = good();
    r.staging_target_path.clear();
    cases.push(("no staging path", r, Code::InvalidArgument));
    let mut r = good();
    r.staging_target_path = "relative/staging".into();
    cases.push(("relative staging path", r, Code::InvalidArgument));
    let mut r = good();
    r.volume_capability = None;
    cases.push(("no capability", r, Code::InvalidArgument));
    cases.push((
        "unsupported filesystem",
        stage_request(
            &id,
            &staging,
            mount_capability("ntfs", &[]),
            context(&nqn_of(&id), 4420),
        ),
        Code::InvalidArgument,
    ));
    let mut r = good();
    r.volume_context.remove("nqn");
    cases.push(("no NQN in the context", r, Code::InvalidArgument));
    let mut r = good();
    r.volume_context.insert("nqn".into(), nqn_of(&volume_id(2)));
    cases.push(("another volume's NQN", r, Code::InvalidArgument));
    let mut r = good();
    r.volume_context.insert("nvmePort".into(), "0".into());
    cases.push(("bad port", r, Code::InvalidArgument));
    let mut r = good();
    r.volume_id = "not-a-driver-volume".into();
    cases.push(("an id this driver never creates", r, Code::NotFound));
    cases.push((
        "a volume the target does not export",
        good(),
        Code::NotFound,
    ));
    for (what, request, expected) in cases {
        let outcome = client.node_stage_volume(request).await;
        assert_eq!(code(&outcome), expected, "{what}: {outcome:?}");
    }
}

#[tokio::test]
async fn publish_unpublish_and_unstage_checks() {
    let lab = Lab::start().await;
    let mut client = lab.plugin.client.clone();
    let id = volume_id(1);
    let staging = lab.path("staging");
    let target = lab.path("target");
    let good = || publish_request(&id, &staging, &target, mount_capability("ext4", &[]), false);

    let mut r = good();
    r.volume_id.clear();
    assert_eq!(
        code(&client.node_publish_volume(r).await),
        Code::InvalidArgument
    );
    let mut r = good();
    r.target_path.clear();
    assert_eq!(
        code(&client.node_publish_volume(r).await),
        Code::InvalidArgument
    );
    let mut r = good();
    r.volume_capability = None;
    assert_eq!(
        code(&client.node_publish_volume(r).await),
        Code::InvalidArgument
    );
    // The spec's "staging target path not set" for a plugin that stages.
    let mut r = good();
    r.staging_target_path.clear();
    assert_eq!(
        code(&client.node_publish_volume(r).await),
        Code::FailedPrecondition
    );
    // Not staged on this node.
    assert_eq!(
        code(&client.node_publish_volume(good()).await),
        Code::FailedPrecondition
    );
    assert!(!target.exists(), "nothing created for a refused publish");

    let mut r = unpublish_request(&id, &target);
    r.target_path.clear();
    assert_eq!(
        code(&client.node_unpublish_volume(r).await),
        Code::InvalidArgument
    );
    let mut r = unpublish_request(&id, &target);
    r.volume_id.clear();
    assert_eq!(
        code(&client.node_unpublish_volume(r).await),
        Code::InvalidArgument
    );
    // Nothing there: done already.
    for _ in 0..2 {
        expect_code(
            client
                .node_unpublish_volume(unpublish_request(&id, &target))
                .await,
            Code::Ok,
        );
    }

    let mut r = unstage_request(&id, &staging);
    r.staging_target_path.clear();
    assert_eq!(
        code(&client.node_unstage_volume(r).await),
        Code::InvalidArgument
    );
    let mut r = unstage_request(&id, &staging);
    r.volume_id.clear();
    assert_eq!(
        code(&client.node_unstage_volume(r).await),
        Code::InvalidArgument
    );
    for _ in 0..2 {
        expect_code(
            client
                .node_unstage_volume(unstage_request(&id, &staging))
                .await,
            Code::Ok,
        );
    }
}

#[tokio::test]
async fn stats_and_expand_checks() {
    let lab = Lab::start().await;
    let mut client = lab.plugin.client.clone();
    let id = volume_id(1);
    let stats = |volume_id: &str, path: &str| NodeGetVolumeStatsRequest {
        volume_id: volume_id.into(),
        volume_path: path.into(),
        staging_target_path: String::new(),
    };
    let absent = lab.path("absent").display().to_string();
    let plain = lab.dir.path().display().to_string();
    for (request, expected) in [
        (stats("", &plain), Code::InvalidArgument),
        (stats(&id, ""), Code::InvalidArgument),
        (stats(&id, &absent), Code::NotFound),
        // A directory with nothing mounted is not a volume.
        (stats(&id, &plain), Code::NotFound),
    ] {
        let outcome = client.node_get_volume_stats(request).await;
        assert_eq!(code(&outcome), expected, "{outcome:?}");
    }

    let expand = |volume_id: &str, path: &str, required: i64, limit: i64| NodeExpandVolumeRequest {
        volume_id: volume_id.into(),
        volume_path: path.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }),
        ..Default::default()
    };
    for (request, expected) in [
        (expand("", &plain, 1, 0), Code::InvalidArgument),
        (expand(&id, "", 1, 0), Code::InvalidArgument),
        (expand(&id, &plain, -1, 0), Code::InvalidArgument),
        (expand(&id, &plain, 10, 5), Code::OutOfRange),
        (expand(&id, &plain, 10, 0), Code::NotFound),
    ] {
        let outcome = client.node_expand_volume(request).await;
        assert_eq!(code(&outcome), expected, "{outcome:?}");
    }
}

#[tokio::test]
async fn info_capabilities_and_identity() {
    let lab = Lab::start().await;
    let mut client = lab.plugin.client.clone();
    let info = client
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, "node-7");
    assert_eq!(info.max_volumes_per_node, 42);
    assert!(info.accessible_topology.is_none());

    let capabilities = client
        .node_get_capabilities(NodeGetCapabilitiesRequest {})
        .await
        .unwrap()
        .into_inner()
        .capabilities;
    let mut rpcs: Vec<Rpc> = capabilities
        .iter()
        .map(|c| match c.r#type {
            Some(CapabilityType::Rpc(rpc)) => Rpc::try_from(rpc.r#type).unwrap(),
            other => panic!("unexpected capability {other:?}"),
        })
        .collect();
    rpcs.sort();
    assert_eq!(
        rpcs,
        vec![
            Rpc::StageUnstageVolume,
            Rpc::GetVolumeStats,
            Rpc::ExpandVolume,
            Rpc::VolumeCondition,
            Rpc::SingleNodeMultiWriter,
        ]
    );

    let channel =
        tonic::transport::Endpoint::from_shared(format!("unix://{}", lab.plugin.socket.display()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut identity = IdentityClient::new(channel);
    let plugin = identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plugin.name, "rds.csi.test");
    let probe = identity.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(probe.ready, Some(true));
    lab.plugin.stop().await;
}
