//! The CSI spec's error tables for the Controller service, one test per row, over the real
//! Unix socket against the simulator. Rows the driver cannot meet yet are named at the end.
//!
//! General rules of the spec covered here too: a missing required field is
//! INVALID_ARGUMENT, a call for a volume with an operation in flight is ABORTED, and an RPC
//! the plugin does not offer is UNIMPLEMENTED.

mod common;

use common::*;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::{
    CapacityRange, ControllerExpandVolumeRequest, ControllerGetVolumeRequest, CreateVolumeRequest,
    ListVolumesRequest, ValidateVolumeCapabilitiesRequest, VolumeContentSource,
    volume_content_source,
};
use rds_sim::Faults;
use tonic::Code;

const GIB: u64 = 1 << 30;
const PVC: &str = "pvc-5d2c3b4a-0b7d-4e21-9a55-3f2a1c9e5f60";
const ABSENT: &str = "pvc-00000000-0000-4000-8000-000000000000";

fn range(required: u64, limit: u64) -> Option<CapacityRange> {
    Some(CapacityRange {
        required_bytes: required as i64,
        limit_bytes: limit as i64,
    })
}

fn expand(id: &str, required: u64, limit: u64) -> ControllerExpandVolumeRequest {
    ControllerExpandVolumeRequest {
        volume_id: id.into(),
        capacity_range: range(required, limit),
        volume_capability: Some(mount_capability(Mode::SingleNodeWriter)),
        ..Default::default()
    }
}

// --- CreateVolume ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_without_a_name_or_capabilities_is_invalid_argument() {
    let h = Harness::start().await;
    let mut nameless = create_request(PVC, GIB);
    nameless.name.clear();
    expect_code(h.create(nameless).await, Code::InvalidArgument);
    let mut capless = create_request(PVC, GIB);
    capless.volume_capabilities.clear();
    expect_code(h.create(capless).await, Code::InvalidArgument);
    h.finish().await;
}

/// Rows "Source incompatible or not supported" and "Source does not exist".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_from_an_unsupported_source_is_invalid_argument() {
    let h = Harness::start().await;
    let from = |volume_id: &str| CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Volume(
                volume_content_source::VolumeSource {
                    volume_id: volume_id.into(),
                },
            )),
        }),
        ..create_request(PVC, GIB)
    };
    // Row "Source incompatible or not supported": a snapshot of the Go driver, made with
    // copy-from, which copied no data; and a source without an id.
    let go_snapshot = CreateVolumeRequest {
        volume_content_source: Some(VolumeContentSource {
            r#type: Some(volume_content_source::Type::Snapshot(
                volume_content_source::SnapshotSource {
                    snapshot_id: "snap-22222222-2222-4333-8444-555555555555-at-3a9f8c02d1".into(),
                },
            )),
        }),
        ..create_request(PVC, GIB)
    };
    let refused = expect_code(h.create(go_snapshot).await, Code::InvalidArgument);
    assert!(refused.contains("copy-from"), "{refused}");
    expect_code(h.create(from("")).await, Code::InvalidArgument);
    // Row "Source does not exist".
    expect_code(h.create(from(ABSENT)).await, Code::NotFound);
    h.finish().await;
}

/// Row "Volume already exists but is incompatible".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_of_an_existing_name_with_another_request_is_already_exists() {
    let h = Harness::start().await;
    h.create(create_request(PVC, GIB)).await.unwrap();
    let other = CreateVolumeRequest {
        capacity_range: range(2 * GIB, 2 * GIB),
        ..create_request(PVC, GIB)
    };
    expect_code(h.create(other).await, Code::AlreadyExists);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

/// Row "Unable to provision in accessible_topology" / out of capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_beyond_the_capacity_budget_is_resource_exhausted() {
    let h = Harness::with(Options {
        capacity: 4 * GIB,
        ..Options::default()
    })
    .await;
    let message = expect_code(
        h.create(create_request(PVC, 8 * GIB)).await,
        Code::ResourceExhausted,
    );
    assert!(message.contains("overcommit ratio 1"), "{message}");
    assert_eq!(h.sim.snapshot().file_disks().count(), 0);
    h.finish().await;
}

/// Row "Unsupported capacity_range".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_with_an_impossible_range_is_out_of_range() {
    let h = Harness::start().await;
    let request = CreateVolumeRequest {
        capacity_range: range(2 * GIB, GIB),
        ..create_request(PVC, GIB)
    };
    expect_code(h.create(request).await, Code::OutOfRange);
    h.finish().await;
}

/// General row: an operation pending for the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_while_another_call_for_the_volume_runs_is_aborted() {
    let h = Harness::with(Options {
        faults: Faults {
            slow_add_ms: 400,
            ..quirks_from_env()
        },
        ..Options::default()
    })
    .await;
    let first = h.create(create_request(PVC, GIB));
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        h.create(create_request(PVC, GIB)).await
    };
    let (first, second) = tokio::join!(first, second);
    first.unwrap();
    expect_code(second, Code::Aborted);
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

// --- DeleteVolume ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_without_an_id_is_invalid_argument_and_of_an_absent_volume_ok() {
    let h = Harness::start().await;
    expect_code(h.delete("").await, Code::InvalidArgument);
    h.delete(ABSENT).await.unwrap();
    h.delete("not-one-of-ours").await.unwrap();
    h.finish().await;
}

// --- ValidateVolumeCapabilities ------------------------------------------------------

/// Row "Volume does not exist".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_of_an_absent_volume_is_not_found_and_without_fields_invalid() {
    let h = Harness::start().await;
    let mut controller = h.controller.clone();
    let request = |id: &str, caps| ValidateVolumeCapabilitiesRequest {
        volume_id: id.into(),
        volume_capabilities: caps,
        ..Default::default()
    };
    expect_code(
        controller
            .validate_volume_capabilities(timed(request(
                ABSENT,
                vec![mount_capability(Mode::SingleNodeWriter)],
            )))
            .await,
        Code::NotFound,
    );
    expect_code(
        controller
            .validate_volume_capabilities(timed(request(
                "",
                vec![mount_capability(Mode::SingleNodeWriter)],
            )))
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        controller
            .validate_volume_capabilities(timed(request(ABSENT, vec![])))
            .await,
        Code::InvalidArgument,
    );
    h.finish().await;
}

// --- ListVolumes ---------------------------------------------------------------------

/// Row "Invalid starting_token".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_with_a_token_not_issued_is_aborted() {
    let h = Harness::start().await;
    let mut controller = h.controller.clone();
    expect_code(
        controller
            .list_volumes(timed(ListVolumesRequest {
                starting_token: "garbage".into(),
                max_entries: 1,
            }))
            .await,
        Code::Aborted,
    );
    expect_code(
        controller
            .list_volumes(timed(ListVolumesRequest {
                starting_token: String::new(),
                max_entries: -1,
            }))
            .await,
        Code::InvalidArgument,
    );
    h.finish().await;
}

// --- ControllerExpandVolume ----------------------------------------------------------

/// Row "Volume does not exist".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_of_an_absent_volume_is_not_found() {
    let h = Harness::start().await;
    expect_code(
        h.controller
            .clone()
            .controller_expand_volume(timed(expand(ABSENT, GIB, 0)))
            .await,
        Code::NotFound,
    );
    h.finish().await;
}

/// Rows "Unsupported capacity_range" and missing fields / capabilities it cannot serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expand_with_a_bad_range_or_request_is_out_of_range_or_invalid() {
    let h = Harness::start().await;
    h.create(create_request(PVC, 2 * GIB)).await.unwrap();
    let mut controller = h.controller.clone();
    // A limit below the current size would need a shrink.
    expect_code(
        controller
            .controller_expand_volume(timed(expand(PVC, GIB, GIB)))
            .await,
        Code::OutOfRange,
    );
    expect_code(
        controller
            .controller_expand_volume(timed(ControllerExpandVolumeRequest {
                capacity_range: None,
                ..expand(PVC, GIB, 0)
            }))
            .await,
        Code::InvalidArgument,
    );
    expect_code(
        controller
            .controller_expand_volume(timed(expand("", GIB, 0)))
            .await,
        Code::InvalidArgument,
    );
    // Row "Exceeds capabilities": a filesystem shared by several nodes is never offered.
    expect_code(
        controller
            .controller_expand_volume(timed(ControllerExpandVolumeRequest {
                volume_capability: Some(mount_capability(Mode::MultiNodeMultiWriter)),
                ..expand(PVC, 3 * GIB, 0)
            }))
            .await,
        Code::InvalidArgument,
    );
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

// --- ControllerGetVolume -------------------------------------------------------------

/// Row "Volume does not exist".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_volume_of_an_absent_volume_is_not_found() {
    let h = Harness::start().await;
    let mut controller = h.controller.clone();
    expect_code(
        controller
            .controller_get_volume(timed(ControllerGetVolumeRequest {
                volume_id: ABSENT.into(),
            }))
            .await,
        Code::NotFound,
    );
    expect_code(
        controller
            .controller_get_volume(timed(ControllerGetVolumeRequest {
                volume_id: String::new(),
            }))
            .await,
        Code::InvalidArgument,
    );
    h.finish().await;
}

// --- Not offered ---------------------------------------------------------------------

/// RPCs the plugin does not advertise answer UNIMPLEMENTED. The publish/unpublish rows are
/// in `controller_publish.rs`, the snapshot rows in `snapshots.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpcs_not_offered_are_unimplemented() {
    let h = Harness::start().await;
    let mut controller = h.controller.clone();
    expect_code(
        controller
            .controller_modify_volume(timed(csi::v1::ControllerModifyVolumeRequest::default()))
            .await,
        Code::Unimplemented,
    );
    h.finish().await;
}
