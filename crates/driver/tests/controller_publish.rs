//! Attach fencing over the real Unix socket against the simulator: the CSI spec's error rows
//! of ControllerPublishVolume and ControllerUnpublishVolume, one test each, and the fencing
//! rules (single-node holders, live migration of raw block volumes, the migration window) as
//! a CO meets them.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use common::*;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::{
    ControllerPublishVolumeRequest, ControllerPublishVolumeResponse,
    ControllerUnpublishVolumeRequest, VolumeCapability,
};
use driver::capabilities;
use driver::controller::fence::{FenceError, MigrationWindow, PublishDecision};
use driver::controller::rules::VolumeId;
use driver::error::DriverError;
use driver::node_id::NodeRef;
use tonic::Code;

const RWO: &str = "pvc-7a1b2c3d-0b7d-4e21-9a55-1d2c3b4a5f60";
const RWX: &str = "pvc-8b2c3d4e-0b7d-4e21-9a55-1d2c3b4a5f60";
const ABSENT: &str = "pvc-00000000-0000-4000-8000-000000000000";

fn publish(
    volume: &str,
    node: &str,
    capability: VolumeCapability,
) -> ControllerPublishVolumeRequest {
    ControllerPublishVolumeRequest {
        volume_id: volume.into(),
        node_id: node.into(),
        volume_capability: Some(capability),
        ..Default::default()
    }
}

fn rwo(node: &str) -> ControllerPublishVolumeRequest {
    publish(RWO, node, mount_capability(Mode::SingleNodeWriter))
}

fn rwx(node: &str) -> ControllerPublishVolumeRequest {
    publish(RWX, node, block_capability(Mode::MultiNodeMultiWriter))
}

fn unpublish(volume: &str, node: &str) -> ControllerUnpublishVolumeRequest {
    ControllerUnpublishVolumeRequest {
        volume_id: volume.into(),
        node_id: node.into(),
        ..Default::default()
    }
}

impl Harness {
    async fn publish(
        &self,
        request: ControllerPublishVolumeRequest,
    ) -> Result<ControllerPublishVolumeResponse, tonic::Status> {
        let mut controller = self.controller.clone();
        controller
            .controller_publish_volume(timed(request))
            .await
            .map(|r| r.into_inner())
    }

    async fn unpublish(
        &self,
        request: ControllerUnpublishVolumeRequest,
    ) -> Result<(), tonic::Status> {
        let mut controller = self.controller.clone();
        controller
            .controller_unpublish_volume(timed(request))
            .await
            .map(drop)
    }

    /// The nodes holding `volume`, oldest first, as the controller's state has them.
    fn holders(&self, volume: &str) -> Vec<String> {
        let holders = self.service.attachments().holders(volume).unwrap();
        holders.holders.into_iter().map(|h| h.node).collect()
    }

    /// A single-node filesystem volume (RWO) and a raw block MULTI_NODE_MULTI_WRITER one.
    async fn volumes(&self) {
        self.create(create_request(RWO, GIB)).await.unwrap();
        let mut block = create_request(RWX, GIB);
        block.volume_capabilities = vec![block_capability(Mode::MultiNodeMultiWriter)];
        self.create(block).await.unwrap();
    }

    async fn finish_volumes(self) {
        for id in [RWO, RWX] {
            self.delete(id).await.unwrap();
        }
        self.finish().await;
    }
}

// --- ControllerPublishVolume: the spec's rows -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_without_volume_node_or_capability_is_invalid_argument() {
    let h = Harness::start().await;
    h.volumes().await;
    let cases = [
        (
            "volume_id",
            publish("", "n1", mount_capability(Mode::SingleNodeWriter)),
        ),
        ("node_id", rwo("")),
        (
            "volume_capability",
            ControllerPublishVolumeRequest {
                volume_capability: None,
                ..rwo("n1")
            },
        ),
    ];
    for (field, request) in cases {
        let message = expect_code(h.publish(request).await, Code::InvalidArgument);
        assert!(message.contains(field), "{field}: {message}");
    }
    assert!(
        h.holders(RWO).is_empty(),
        "a refused publish records nothing"
    );
    h.finish_volumes().await;
}

/// Row "Volume does not exist": NOT_FOUND, for an absent volume and an id the driver never
/// issues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_of_a_volume_that_does_not_exist_is_not_found() {
    let h = Harness::start().await;
    for id in [ABSENT, "not-a-volume-id-of-this-driver!"] {
        let request = publish(id, "n1", mount_capability(Mode::SingleNodeWriter));
        expect_code(h.publish(request).await, Code::NotFound);
        assert!(h.holders(id).is_empty());
    }
    h.finish().await;
}

/// A capability the volume cannot be used with: INVALID_ARGUMENT, as at CreateVolume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_with_an_unsupported_capability_is_invalid_argument() {
    let h = Harness::start().await;
    h.volumes().await;
    let message = expect_code(
        h.publish(publish(
            RWO,
            "n1",
            mount_capability(Mode::MultiNodeMultiWriter),
        ))
        .await,
        Code::InvalidArgument,
    );
    assert!(message.contains("not cluster filesystems"), "{message}");
    expect_code(
        h.publish(publish(
            RWX,
            "n1",
            block_capability(Mode::MultiNodeReaderOnly),
        ))
        .await,
        Code::InvalidArgument,
    );
    h.finish_volumes().await;
}

/// Idempotency: the same node again is OK, with the same publish_context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_the_same_node_again_is_ok_with_the_same_context() {
    let h = Harness::start().await;
    h.volumes().await;
    let first = h.publish(rwo("n1")).await.unwrap();
    let again = h.publish(rwo("n1")).await.unwrap();
    assert_eq!(first.publish_context, again.publish_context);
    assert_eq!(first.publish_context, HashMap::new());
    assert_eq!(h.holders(RWO), ["n1"]);
    h.finish_volumes().await;
}

/// Row "Volume published but is incompatible": ALREADY_EXISTS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_the_same_node_with_another_capability_is_already_exists() {
    let h = Harness::start().await;
    h.volumes().await;
    h.publish(rwo("n1")).await.unwrap();
    let other = publish(RWO, "n1", mount_capability(Mode::SingleNodeSingleWriter));
    let message = expect_code(h.publish(other).await, Code::AlreadyExists);
    assert!(message.contains("SINGLE_NODE_SINGLE_WRITER"), "{message}");
    h.finish_volumes().await;
}

/// Row "Volume published to another node": FAILED_PRECONDITION naming the holder, for every
/// single-node mode (RWOP included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_another_node_of_a_single_node_volume_is_failed_precondition() {
    let h = Harness::start().await;
    h.volumes().await;
    for mode in [Mode::SingleNodeWriter, Mode::SingleNodeSingleWriter] {
        h.publish(publish(RWO, "node-a", mount_capability(mode)))
            .await
            .unwrap();
        let message = expect_code(
            h.publish(publish(RWO, "node-b", mount_capability(mode)))
                .await,
            Code::FailedPrecondition,
        );
        assert!(message.contains("node-a"), "the holder is named: {message}");
        assert_eq!(h.holders(RWO), ["node-a"]);
        h.unpublish(unpublish(RWO, "node-a")).await.unwrap();
    }
    // Once the holder let go, the other node may have it.
    h.publish(rwo("node-b")).await.unwrap();
    assert_eq!(h.holders(RWO), ["node-b"]);
    h.finish_volumes().await;
}

/// A node id carries the node's host NQN after its name (node_id.rs); attachments go by the
/// name, so a node whose plugin was upgraded (plain name, then name/NQN) is the same node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_ids_are_compared_by_node_name() {
    let h = Harness::start().await;
    h.volumes().await;
    let host = "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211";
    h.publish(rwo("node-a")).await.unwrap();
    h.publish(rwo(&format!("node-a/{host}"))).await.unwrap();
    assert_eq!(h.holders(RWO), ["node-a"]);
    let message = expect_code(
        h.publish(rwo(&format!("node-b/{host}"))).await,
        Code::FailedPrecondition,
    );
    assert!(message.contains("node-a"), "{message}");
    h.unpublish(unpublish(RWO, &format!("node-a/{host}")))
        .await
        .unwrap();
    assert!(h.holders(RWO).is_empty());
    h.finish_volumes().await;
}

/// Publishes of one volume are serialized: while another operation holds the volume, a
/// publish is ABORTED (the CO retries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_while_the_volume_is_busy_is_aborted() {
    let h = Harness::start().await;
    h.volumes().await;
    let guard = h.service.locks().try_lock(RWO).expect("free");
    expect_code(h.publish(rwo("n1")).await, Code::Aborted);
    expect_code(h.unpublish(unpublish(RWO, "n1")).await, Code::Aborted);
    drop(guard);
    h.publish(rwo("n1")).await.unwrap();
    h.finish_volumes().await;
}

// --- Live migration of a raw block volume ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_completes_when_the_source_unpublishes() {
    let h = Harness::start().await;
    h.volumes().await;
    h.publish(rwx("src")).await.unwrap();
    h.publish(rwx("dst")).await.unwrap();
    assert_eq!(h.holders(RWX), ["src", "dst"]);
    let message = expect_code(h.publish(rwx("third")).await, Code::FailedPrecondition);
    assert!(
        message.contains("src") && message.contains("dst"),
        "{message}"
    );
    h.unpublish(unpublish(RWX, "src")).await.unwrap();
    assert_eq!(h.holders(RWX), ["dst"], "the target holds it alone");
    h.finish_volumes().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_migration_rolls_back_when_the_target_unpublishes() {
    let h = Harness::start().await;
    h.volumes().await;
    h.publish(rwx("src")).await.unwrap();
    h.publish(rwx("dst")).await.unwrap();
    h.unpublish(unpublish(RWX, "dst")).await.unwrap();
    assert_eq!(h.holders(RWX), ["src"], "the source keeps it");
    h.finish_volumes().await;
}

/// Past its window (the volume's `migrationTimeoutSeconds`, clamped to at least 30 s) a
/// migration is overdue: listed for warnings, new targets refused saying who must detach,
/// and both holders kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overdue_migration_is_listed_and_refuses_new_targets_but_keeps_both_holders() {
    let h = Harness::start().await;
    h.volumes().await;
    let mut with_window = rwx("src");
    with_window.volume_context = HashMap::from([("migrationTimeoutSeconds".into(), "5".into())]);
    h.publish(with_window.clone()).await.unwrap();
    with_window.node_id = "dst".into();
    h.publish(with_window).await.unwrap();

    let now = SystemTime::now();
    assert!(h.service.overdue_migrations(now).unwrap().is_empty());
    let late = now + Duration::from_secs(31);
    let overdue = h.service.overdue_migrations(late).unwrap();
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    let (volume, migration) = &overdue[0];
    assert_eq!(volume, RWX);
    assert_eq!(
        (migration.source.as_str(), migration.target.as_str()),
        ("src", "dst")
    );
    assert_eq!(
        migration.window,
        Duration::from_secs(30),
        "5 s is clamped to 30 s"
    );

    // The clock is the service's argument: ask it as the handler would, 31 s later.
    let id = VolumeId::parse(RWX).unwrap();
    let access = capabilities::inspect(&block_capability(Mode::MultiNodeMultiWriter)).unwrap();
    let window = MigrationWindow::from_seconds(Some(5));
    let refused = h
        .service
        .publish_volume(&id, &NodeRef::parse("third"), access, window, late)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, DriverError::Fence(f) if matches!(**f, FenceError::MigrationOverdue { .. })),
        "{refused:?}"
    );
    let status = tonic::Status::from(refused);
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("overdue") && status.message().contains("Unpublish src"));
    let kept = h
        .service
        .publish_volume(&id, &NodeRef::parse("src"), access, window, late)
        .await
        .unwrap();
    assert_eq!(kept, PublishDecision::Already);
    assert_eq!(
        h.holders(RWX),
        ["src", "dst"],
        "the driver removes no holder itself"
    );
    h.finish_volumes().await;
}

// --- ControllerUnpublishVolume: the spec's rows ---------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublish_without_a_volume_id_is_invalid_argument() {
    let h = Harness::start().await;
    let message = expect_code(
        h.unpublish(unpublish("", "n1")).await,
        Code::InvalidArgument,
    );
    assert!(message.contains("volume_id"), "{message}");
    h.finish().await;
}

/// "If the volume ... is not attached to the node ..., the Plugin MUST reply 0 OK."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublish_from_a_node_that_does_not_hold_it_is_ok() {
    let h = Harness::start().await;
    h.volumes().await;
    h.unpublish(unpublish(RWO, "n1")).await.unwrap();
    h.publish(rwo("n1")).await.unwrap();
    h.unpublish(unpublish(RWO, "n2")).await.unwrap();
    assert_eq!(
        h.holders(RWO),
        ["n1"],
        "another node's unpublish leaves the holder"
    );
    h.unpublish(unpublish(RWO, "n1")).await.unwrap();
    h.unpublish(unpublish(RWO, "n1")).await.unwrap();
    assert!(h.holders(RWO).is_empty());
    h.finish_volumes().await;
}

/// Rows "Volume does not exist ...": a volume the driver cannot find is safely regarded as
/// unpublished, so OK (the spec's SHOULD); a holder recorded for it is let go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublish_of_a_volume_that_does_not_exist_is_ok() {
    let h = Harness::start().await;
    h.unpublish(unpublish(ABSENT, "n1")).await.unwrap();
    h.unpublish(unpublish("not-a-volume-id-of-this-driver!", "n1"))
        .await
        .unwrap();
    // Deleted behind the controller's back while published: the unpublish still lets go.
    h.create(create_request(RWO, GIB)).await.unwrap();
    h.publish(rwo("n1")).await.unwrap();
    h.delete(RWO).await.unwrap();
    h.unpublish(unpublish(RWO, "n1")).await.unwrap();
    assert!(h.holders(RWO).is_empty());
    h.finish().await;
}

/// An empty node_id: "the SP MUST unpublish the volume from all nodes it is published to."
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpublish_without_a_node_id_unpublishes_every_node() {
    let h = Harness::start().await;
    h.volumes().await;
    h.publish(rwx("src")).await.unwrap();
    h.publish(rwx("dst")).await.unwrap();
    h.unpublish(unpublish(RWX, "")).await.unwrap();
    assert!(h.holders(RWX).is_empty());
    // Now free for anyone.
    h.publish(rwx("other")).await.unwrap();
    assert_eq!(h.holders(RWX), ["other"]);
    h.finish_volumes().await;
}

// --- --export-acl: the export admits only the nodes the volume is published to ----------

const HOST_A: &str = "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211";
const HOST_B: &str = "nqn.2014-08.org.nvmexpress:uuid:0a1b2c3d-4e5f-4a6b-8c7d-8e9f0a1b2c3d";

impl Harness {
    /// The disk's `nvme-tcp-server-allow-host-name` as the simulator holds it.
    fn admitted(&self, volume: &str) -> String {
        self.sim
            .snapshot()
            .disk_by_slot(volume)
            .unwrap()
            .nvme_tcp_server_allow_host_name
            .clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_export_acl_the_export_admits_exactly_the_nodes_holding_the_volume() {
    let h = Harness::with(Options {
        configure: |c| c.export_acl = true,
        ..Options::default()
    })
    .await;
    h.volumes().await;
    assert_eq!(
        h.admitted(RWX),
        "",
        "a new export admits anyone until published"
    );
    h.publish(rwx(&format!("node-a/{HOST_A}"))).await.unwrap();
    assert_eq!(h.admitted(RWX), HOST_A);
    // A live migration admits both; its end only the node left.
    h.publish(rwx(&format!("node-b/{HOST_B}"))).await.unwrap();
    assert_eq!(h.admitted(RWX), format!("{HOST_A},{HOST_B}"));
    h.unpublish(unpublish(RWX, &format!("node-a/{HOST_A}")))
        .await
        .unwrap();
    assert_eq!(h.admitted(RWX), HOST_B);
    // Detached from every node: no one, never anyone.
    h.unpublish(unpublish(RWX, "")).await.unwrap();
    assert_eq!(h.admitted(RWX), driver::controller::export_acl::NO_HOST);

    // A node whose id carries no host NQN cannot be admitted: refused, nothing written.
    let message = expect_code(h.publish(rwo("old-node")).await, Code::FailedPrecondition);
    assert!(message.contains("host NQN"), "{message}");
    assert_eq!(h.admitted(RWO), "");
    assert!(h.holders(RWO).is_empty());
    h.finish_volumes().await;
}
