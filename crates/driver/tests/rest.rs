//! The controller over the RouterOS REST transport (HTTPS, the simulator's certificate
//! pinned as CA): the volume lifecycle, a leftover image and device faults.

mod common;

use common::*;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::{
    CapacityRange, ControllerExpandVolumeRequest, ControllerGetVolumeRequest, GetCapacityRequest,
    ListVolumesRequest, ProbeRequest, ValidateVolumeCapabilitiesRequest,
};
use rds_sim::Faults;
use tonic::Code;

fn rest() -> Options {
    Options {
        transport: Transport::Rest,
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volume_lifecycle_over_rest() {
    let h = Harness::with(rest()).await;
    let mut controller = h.controller.clone();
    let probe = h
        .identity
        .clone()
        .probe(timed(ProbeRequest {}))
        .await
        .unwrap();
    assert_eq!(probe.into_inner().ready, Some(true));

    let hostile = "rest \"name\"; [find] $x\nü";
    let mut ids = Vec::new();
    for name in [PVC, hostile] {
        let first = h
            .create(create_request(name, GIB + 1))
            .await
            .unwrap()
            .volume
            .unwrap();
        let again = h
            .create(create_request(name, GIB + 1))
            .await
            .unwrap()
            .volume
            .unwrap();
        assert_eq!(first, again);
        assert_eq!(first.capacity_bytes, (GIB + MIB) as i64);
        ids.push(first.volume_id);
    }
    assert_eq!(ids[0], PVC);
    expect_code(
        h.create(create_request(PVC, 4 * GIB)).await,
        Code::AlreadyExists,
    );

    let listed = controller
        .list_volumes(timed(ListVolumesRequest {
            max_entries: 1,
            starting_token: String::new(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    assert!(!listed.next_token.is_empty());

    let grown = controller
        .controller_expand_volume(timed(ControllerExpandVolumeRequest {
            volume_id: PVC.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: (2 * GIB) as i64,
                limit_bytes: 0,
            }),
            volume_capability: Some(block_capability(Mode::SingleNodeWriter)),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(grown.capacity_bytes, (2 * GIB) as i64);
    assert!(!grown.node_expansion_required);

    let got = controller
        .controller_get_volume(timed(ControllerGetVolumeRequest {
            volume_id: PVC.into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!got.status.unwrap().volume_condition.unwrap().abnormal);
    let validated = controller
        .validate_volume_capabilities(timed(ValidateVolumeCapabilitiesRequest {
            volume_id: PVC.into(),
            volume_capabilities: vec![mount_capability(Mode::SingleNodeWriter)],
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(validated.confirmed.is_some());
    let capacity = controller
        .get_capacity(timed(GetCapacityRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(capacity.available_capacity > 0);

    for id in &ids {
        h.delete(id).await.unwrap();
        h.delete(id).await.unwrap();
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftover_image_over_rest() {
    let h = Harness::with(rest()).await;
    h.create(create_request(PVC, GIB)).await.unwrap();
    h.remove_disk_entry(PVC).await;
    h.create(create_request(PVC, GIB)).await.unwrap();
    h.remove_disk_entry(PVC).await;
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_faults_over_rest_end_in_the_right_code_and_a_clean_retry() {
    let h = Harness::warmed_up(Options {
        capacity: 100 * MIB,
        ..rest()
    })
    .await;
    h.sim.faults().update(|f| f.drop_next = 1);
    expect_code(h.create(create_request(PVC, MIB)).await, Code::Unavailable);
    h.sim.faults().update(|f| {
        f.fail_next = 1;
        f.fail_message = "failure: simulated failure".into();
    });
    expect_code(h.create(create_request(PVC, MIB)).await, Code::Internal);
    h.create(create_request(PVC, MIB)).await.unwrap();
    expect_code(
        h.create(create_request("too big", 200 * MIB)).await,
        Code::ResourceExhausted,
    );
    h.delete(PVC).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_cap_over_rest_is_unavailable_then_retries_complete() {
    let h = Harness::with(Options {
        faults: Faults {
            max_sessions: 1,
            latency_ms: 30,
            ..Faults::default()
        },
        ..rest()
    })
    .await;
    let names: Vec<String> = (0..6).map(|n| format!("rest capped {n}")).collect();
    let outcomes =
        futures::future::join_all(names.iter().map(|n| h.create(create_request(n, MIB)))).await;
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(s) if s.code() == Code::Unavailable)),
        "{outcomes:?}"
    );
    for name in &names {
        h.create(create_request(name, MIB)).await.unwrap();
    }
    for name in &names {
        h.delete(&driver::naming::volume_id_for_name(name))
            .await
            .unwrap();
    }
    h.finish().await;
}
