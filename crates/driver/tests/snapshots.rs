//! CreateSnapshot, DeleteSnapshot and ListSnapshots by btrfs subvolume snapshot, over a real
//! Unix socket against the simulator: the data of the snapshot's moment, idempotency, a test
//! per row of the spec's error tables, and snapshots that outlive their source.

mod common;

use common::snapshot_rpcs::*;
use common::*;
use csi::v1::ListSnapshotsRequest;
use tonic::Code;

const OTHER: &str = "pvc-11111111-2222-4333-8444-555555555555";
const FLAT: &str = "pvc-22222222-2222-4333-8444-555555555555";
const SNAPSHOT: &str = "snapshot-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
const SNAPSHOT_ID: &str = "snap-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";

fn in_subvolume(name: &str) -> csi::v1::CreateVolumeRequest {
    with_params(
        create_request(name, GIB),
        &[("snapshotMethod", "subvolume")],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_keeps_its_moment_and_outlives_its_source() {
    let h = Harness::start().await;
    h.create(in_subvolume(PVC)).await.unwrap();
    let image = h.sim.backing_file(&format!("storage-pool/{PVC}/{PVC}.img"));
    write_byte(&image, 0x51);

    let taken = snapshot(&h, SNAPSHOT, PVC).await.unwrap();
    assert_eq!(taken.snapshot_id, SNAPSHOT_ID);
    assert_eq!(taken.source_volume_id, PVC);
    assert_eq!(taken.size_bytes, GIB as i64);
    assert!(taken.ready_to_use);
    let created = taken.creation_time.expect("a creation time");
    assert!(created.seconds > 1_700_000_000, "{created:?}");
    write_byte(&image, 0x52);
    let copy = h
        .sim
        .backing_file(&format!("storage-pool/{SNAPSHOT_ID}/{PVC}.img"));
    assert_eq!(read_byte(&copy), 0x51, "the data of its moment");

    // The same request again: the same snapshot, taken at the same time.
    let again = snapshot(&h, SNAPSHOT, PVC).await.unwrap();
    assert_eq!(again, taken);

    // Listed whole, by id, by source; an id or source that names nothing lists nothing.
    let all = list(&h, ListSnapshotsRequest::default()).await.unwrap();
    assert_eq!(all.entries.len(), 1);
    assert_eq!(all.entries[0].snapshot.as_ref(), Some(&taken));
    let by_id = list(
        &h,
        ListSnapshotsRequest {
            snapshot_id: SNAPSHOT_ID.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(by_id.entries.len(), 1);
    for request in [
        ListSnapshotsRequest {
            snapshot_id: "snap-00000000-0000-4000-8000-000000000000".into(),
            ..Default::default()
        },
        ListSnapshotsRequest {
            snapshot_id: "not-ours".into(),
            ..Default::default()
        },
        ListSnapshotsRequest {
            source_volume_id: OTHER.into(),
            ..Default::default()
        },
    ] {
        assert!(list(&h, request).await.unwrap().entries.is_empty());
    }

    // The source goes; the snapshot stays whole.
    h.delete(PVC).await.unwrap();
    assert_eq!(read_byte(&copy), 0x51);
    let left = list(
        &h,
        ListSnapshotsRequest {
            source_volume_id: PVC.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(left.entries.len(), 1);

    delete_snapshot(&h, SNAPSHOT_ID).await.unwrap();
    assert!(!copy.exists());
    delete_snapshot(&h, SNAPSHOT_ID).await.unwrap();
    assert!(
        list(&h, ListSnapshotsRequest::default())
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_rpcs_answer_the_spec_s_codes() {
    let h = Harness::start().await;
    h.create(in_subvolume(PVC)).await.unwrap();
    h.create(in_subvolume(OTHER)).await.unwrap();
    h.create(create_request(FLAT, GIB)).await.unwrap();

    // CreateSnapshot: missing name or source, INVALID_ARGUMENT; unknown parameter likewise.
    expect_code(snapshot(&h, "", PVC).await, Code::InvalidArgument);
    expect_code(snapshot(&h, "s", "").await, Code::InvalidArgument);
    let mut bad_params = snapshot_request("s", PVC);
    bad_params.parameters.insert("bogus".into(), "1".into());
    expect_code(
        h.controller
            .clone()
            .create_snapshot(timed(bad_params))
            .await,
        Code::InvalidArgument,
    );
    // A source the device does not have (or no id of ours), NOT_FOUND.
    expect_code(
        snapshot(&h, "s", "pvc-00000000-0000-4000-8000-000000000000").await,
        Code::NotFound,
    );
    expect_code(snapshot(&h, "s", "someone-else").await, Code::NotFound);
    // A volume whose image is not in a subvolume of its own, by subvolume snapshot:
    // FAILED_PRECONDITION (the copy methods take it: tests/copy_snapshots.rs).
    let mut by_subvolume = snapshot_request("s", FLAT);
    by_subvolume
        .parameters
        .insert("snapshotMethod".into(), "subvolume".into());
    let flat = expect_code(
        h.controller
            .clone()
            .create_snapshot(timed(by_subvolume))
            .await,
        Code::FailedPrecondition,
    );
    assert!(flat.contains("snapshotMethod"), "{flat}");
    // The name taken for another source, ALREADY_EXISTS.
    snapshot(&h, SNAPSHOT, PVC).await.unwrap();
    expect_code(snapshot(&h, SNAPSHOT, OTHER).await, Code::AlreadyExists);

    // DeleteSnapshot: no id, INVALID_ARGUMENT; ids that name nothing of ours, OK.
    expect_code(delete_snapshot(&h, "").await, Code::InvalidArgument);
    delete_snapshot(&h, "not-ours").await.unwrap();
    delete_snapshot(&h, "snap-00000000-0000-4000-8000-000000000000")
        .await
        .unwrap();

    // ListSnapshots: pages by one; a token not issued, ABORTED; negative max, INVALID_ARGUMENT.
    snapshot(&h, "nightly", OTHER).await.unwrap();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(
            &h,
            ListSnapshotsRequest {
                max_entries: 1,
                starting_token: token.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(page.entries.len() <= 1);
        seen.extend(
            page.entries
                .into_iter()
                .map(|e| e.snapshot.unwrap().snapshot_id),
        );
        if page.next_token.is_empty() {
            break;
        }
        token = page.next_token;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.is_sorted());
    expect_code(
        list(
            &h,
            ListSnapshotsRequest {
                starting_token: "garbage".into(),
                ..Default::default()
            },
        )
        .await,
        Code::Aborted,
    );
    expect_code(
        list(
            &h,
            ListSnapshotsRequest {
                max_entries: -1,
                ..Default::default()
            },
        )
        .await,
        Code::InvalidArgument,
    );

    for id in seen {
        delete_snapshot(&h, &id).await.unwrap();
    }
    for volume in [PVC, OTHER, FLAT] {
        h.delete(volume).await.unwrap();
    }
    h.finish().await;
}

const RESTORED: &str = "pvc-33333333-2222-4333-8444-555555555555";
const CLONE: &str = "pvc-44444444-2222-4333-8444-555555555555";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_restores_and_a_volume_clones_into_independent_volumes() {
    let h = Harness::start().await;
    h.create(in_subvolume(PVC)).await.unwrap();
    let image = h.sim.backing_file(&format!("storage-pool/{PVC}/{PVC}.img"));
    write_byte(&image, 0x61);
    snapshot(&h, SNAPSHOT, PVC).await.unwrap();
    write_byte(&image, 0x62);

    // A restore at twice the size: the snapshot's data, grown; the source's later write absent.
    let restored = h
        .create(from_source(RESTORED, 2 * GIB, of_snapshot(SNAPSHOT_ID)))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(restored.capacity_bytes, 2 * GIB as i64);
    assert_eq!(
        restored.content_source,
        Some(csi::v1::VolumeContentSource {
            r#type: Some(of_snapshot(SNAPSHOT_ID))
        })
    );
    let restored_image = h
        .sim
        .backing_file(&format!("storage-pool/{RESTORED}/{PVC}.img"));
    assert_eq!(read_byte(&restored_image), 0x61);
    let disk = h.sim.snapshot();
    let disk = disk.disk_by_slot(RESTORED).unwrap();
    assert!(disk.nvme_tcp_export);
    // The same request again is the same volume.
    let again = h
        .create(from_source(RESTORED, 2 * GIB, of_snapshot(SNAPSHOT_ID)))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(again.volume_id, RESTORED);
    assert_eq!(again.capacity_bytes, 2 * GIB as i64);

    // A clone of the volume as it is now.
    h.create(from_source(CLONE, GIB, of_volume(PVC)))
        .await
        .unwrap();
    let clone_image = h
        .sim
        .backing_file(&format!("storage-pool/{CLONE}/{PVC}.img"));
    assert_eq!(read_byte(&clone_image), 0x62);
    write_byte(&clone_image, 0x63);
    assert_eq!(read_byte(&image), 0x62, "the clone is its own");

    // Sources that do not exist: NOT_FOUND; a limit below the source: OUT_OF_RANGE.
    expect_code(
        h.create(from_source(
            "pvc-55555555-2222-4333-8444-555555555555",
            GIB,
            of_snapshot("snap-00000000-0000-4000-8000-000000000000"),
        ))
        .await,
        Code::NotFound,
    );
    let mut small = from_source(
        "pvc-66666666-2222-4333-8444-555555555555",
        MIB,
        of_volume(PVC),
    );
    small.capacity_range = Some(csi::v1::CapacityRange {
        required_bytes: MIB as i64,
        limit_bytes: MIB as i64,
    });
    expect_code(h.create(small).await, Code::OutOfRange);
    assert!(
        h.sim
            .snapshot()
            .subvolumes
            .iter()
            .all(|s| !s.name.starts_with("pvc-66666666")),
        "a refused copy leaves nothing"
    );

    // Deleting the source and the snapshot leaves the copies working; each goes on its own.
    h.delete(PVC).await.unwrap();
    delete_snapshot(&h, SNAPSHOT_ID).await.unwrap();
    assert_eq!(read_byte(&restored_image), 0x61);
    assert_eq!(read_byte(&clone_image), 0x63);
    for volume in [RESTORED, CLONE] {
        h.delete(volume).await.unwrap();
        h.delete(volume).await.unwrap();
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_cut_short_before_its_grow_is_grown_by_the_retry() {
    let h = Harness::start().await;
    h.create(in_subvolume(PVC)).await.unwrap();
    let taken = snapshot(&h, SNAPSHOT, PVC).await.unwrap();
    // What a first try left: the copy's subvolume and a disk over its image at the copy's size.
    let name = |s: &str| routeros::SubvolumeName::try_from(s).unwrap();
    h.rds
        .snapshot_subvolume(
            "storage-pool",
            &name(&taken.snapshot_id),
            &name(RESTORED),
            false,
        )
        .await
        .unwrap();
    let digest = driver::params::VolumeParams::default().digest();
    let spec = routeros::DiskSpec {
        slot: routeros::Slot::try_from(RESTORED).unwrap(),
        file_path: routeros::FilePath::try_from(format!("storage-pool/{RESTORED}/{PVC}.img"))
            .unwrap(),
        size: GIB,
        port: 4420,
        nqn: routeros::Nqn::try_from(format!("nqn.2000-02.com.mikrotik:{RESTORED}")).unwrap(),
        comment: Some(
            driver::naming::VolumeComment {
                params_digest: &digest,
                name: RESTORED,
            }
            .render(),
        ),
    };
    assert!(matches!(
        h.rds.attach_image(&spec).await.unwrap(),
        routeros::AttachOutcome::Attached(_)
    ));
    // The retry completes it: the same volume, grown to what was asked.
    let volume = h
        .create(from_source(RESTORED, 2 * GIB, of_snapshot(SNAPSHOT_ID)))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(volume.capacity_bytes, 2 * GIB as i64);
    h.delete(RESTORED).await.unwrap();
    h.delete(PVC).await.unwrap();
    delete_snapshot(&h, SNAPSHOT_ID).await.unwrap();
    h.finish().await;
}
