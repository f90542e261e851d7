//! Snapshots, restores and clones of volumes whose image lies flat, by the copy methods
//! (`/file copy` on RouterOS 7.23+, `/disk copy` on any version), over a real Unix socket
//! against the simulator: the data of the snapshot's moment, the record on the device,
//! idempotency, copies cut off half-way completed by the retry, and the refusals.

mod common;

use common::snapshot_rpcs::*;
use common::*;
use csi::v1::{CreateSnapshotRequest, ListSnapshotsRequest};
use tonic::Code;

const FLAT: &str = "pvc-22222222-2222-4333-8444-555555555555";
const OTHER: &str = "pvc-11111111-2222-4333-8444-555555555555";
const RESTORED: &str = "pvc-33333333-2222-4333-8444-555555555555";
const CLONE: &str = "pvc-44444444-2222-4333-8444-555555555555";
const SNAPSHOT: &str = "snapshot-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
const SNAPSHOT_ID: &str = "snap-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
/// Past the middle of a 1 GiB image: a copy cut off half-way never reaches it.
const LATE: u64 = 900 * MIB;

fn image_of(h: &Harness, id: &str) -> std::path::PathBuf {
    h.sim.backing_file(&format!("storage-pool/{id}.img"))
}

fn write_at(path: &std::path::Path, offset: u64, byte: u8) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(&[byte; 4096]).unwrap();
}

fn read_at(path: &std::path::Path, offset: u64) -> u8 {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = [0];
    file.read_exact(&mut buf).unwrap();
    buf[0]
}

fn by_method(name: &str, source: &str, method: &str) -> CreateSnapshotRequest {
    let mut request = snapshot_request(name, source);
    request
        .parameters
        .insert("snapshotMethod".into(), method.into());
    request
}

async fn snapshot_by(
    h: &Harness,
    request: CreateSnapshotRequest,
) -> Result<csi::v1::Snapshot, tonic::Status> {
    h.controller
        .clone()
        .create_snapshot(timed(request))
        .await
        .map(|r| r.into_inner().snapshot.expect("a snapshot"))
}

fn on(version: &'static str) -> Options {
    Options {
        routeros_version: Some(version),
        ..Options::default()
    }
}

/// The record disk's comment of snapshot `id`.
fn record(h: &Harness, id: &str) -> Option<String> {
    let state = h.sim.snapshot();
    let disk = state.disk_by_slot(id)?;
    assert!(!disk.nvme_tcp_export, "a snapshot is never exported");
    Some(disk.comment.clone())
}

async fn snapshot_restore_clone(h: &Harness, method: &str) {
    h.create(create_request(FLAT, GIB)).await.unwrap();
    let source = image_of(h, FLAT);
    write_at(&source, MIB, 0x71);
    write_at(&source, LATE, 0x72);

    let taken = snapshot(h, SNAPSHOT, FLAT).await.unwrap();
    assert_eq!(taken.snapshot_id, SNAPSHOT_ID);
    assert_eq!(taken.source_volume_id, FLAT);
    assert_eq!(taken.size_bytes, GIB as i64);
    assert!(taken.ready_to_use);
    assert!(taken.creation_time.is_some());
    let comment = record(h, SNAPSHOT_ID).expect("the snapshot's record");
    assert_eq!(
        comment,
        format!("rds-csi:snapshot v1 source={FLAT} method={method} state=ready")
    );
    let copy = image_of(h, SNAPSHOT_ID);
    assert_eq!((read_at(&copy, MIB), read_at(&copy, LATE)), (0x71, 0x72));
    write_at(&source, MIB, 0x73);
    assert_eq!(read_at(&copy, MIB), 0x71, "the data of its moment");

    // The same request again: the same snapshot; listed by id and by source.
    assert_eq!(snapshot(h, SNAPSHOT, FLAT).await.unwrap(), taken);
    let listed = list(
        h,
        ListSnapshotsRequest {
            source_volume_id: FLAT.into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(listed.entries.len(), 1);
    assert_eq!(listed.entries[0].snapshot.as_ref(), Some(&taken));
    // The name for another source: ALREADY_EXISTS.
    h.create(create_request(OTHER, GIB)).await.unwrap();
    expect_code(snapshot(h, SNAPSHOT, OTHER).await, Code::AlreadyExists);

    // A restore at twice the size holds the snapshot's data; a clone the source's now.
    let restored = h
        .create(from_source(RESTORED, 2 * GIB, of_snapshot(SNAPSHOT_ID)))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(restored.capacity_bytes, 2 * GIB as i64);
    assert_eq!(
        restored.volume_context.get("copyOf").map(String::as_str),
        Some(SNAPSHOT_ID)
    );
    let restored_image = image_of(h, RESTORED);
    assert_eq!(read_at(&restored_image, MIB), 0x71);
    assert_eq!(read_at(&restored_image, LATE), 0x72);
    let again = h
        .create(from_source(RESTORED, 2 * GIB, of_snapshot(SNAPSHOT_ID)))
        .await
        .unwrap()
        .volume
        .unwrap();
    assert_eq!(again.capacity_bytes, 2 * GIB as i64);
    h.create(from_source(CLONE, GIB, of_volume(FLAT)))
        .await
        .unwrap();
    let clone_image = image_of(h, CLONE);
    assert_eq!(read_at(&clone_image, MIB), 0x73);
    {
        let state = h.sim.snapshot();
        for id in [RESTORED, CLONE] {
            let disk = state.disk_by_slot(id).unwrap();
            assert!(disk.nvme_tcp_export, "{id} is a volume like any other");
            assert!(disk.comment.starts_with("rds-csi:v1 "), "{}", disk.comment);
        }
    }

    // The source goes; the snapshot stays whole and restorable; then each goes on its own.
    h.delete(FLAT).await.unwrap();
    assert_eq!(read_at(&copy, MIB), 0x71);
    assert!(snapshot(h, SNAPSHOT, FLAT).await.unwrap().ready_to_use);
    delete_snapshot(h, SNAPSHOT_ID).await.unwrap();
    delete_snapshot(h, SNAPSHOT_ID).await.unwrap();
    assert!(!copy.exists());
    for volume in [RESTORED, CLONE, OTHER] {
        h.delete(volume).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn before_7_23_flat_volumes_copy_by_block_copy() {
    let h = Harness::with(on("7.21.5")).await;
    snapshot_restore_clone(&h, "disk-copy").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn from_7_23_flat_volumes_copy_by_file_copy() {
    let h = Harness::with(on("7.23.1")).await;
    snapshot_restore_clone(&h, "file-copy").await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flat_snapshot_restores_into_a_subvolume_and_snapshots_instantly_from_then_on() {
    let h = Harness::with(on("7.21.5")).await;
    h.create(create_request(FLAT, GIB)).await.unwrap();
    write_at(&image_of(&h, FLAT), LATE, 0xa1);
    snapshot(&h, SNAPSHOT, FLAT).await.unwrap();
    let restore = with_params(
        from_source(RESTORED, GIB, of_snapshot(SNAPSHOT_ID)),
        &[("snapshotMethod", "subvolume")],
    );
    h.create(restore).await.unwrap();
    let image = h
        .sim
        .backing_file(&format!("storage-pool/{RESTORED}/{RESTORED}.img"));
    assert_eq!(read_at(&image, LATE), 0xa1, "copied into its own subvolume");
    // Now a subvolume snapshot: no record disk, a read-only subvolume.
    let later = "snapshot-4f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";
    let taken = snapshot(&h, later, RESTORED).await.unwrap();
    let state = h.sim.snapshot();
    assert!(state.disk_by_slot(&taken.snapshot_id).is_none());
    assert!(
        state
            .subvolumes
            .iter()
            .any(|s| s.name == taken.snapshot_id && s.read_only)
    );
    delete_snapshot(&h, &taken.snapshot_id).await.unwrap();
    delete_snapshot(&h, SNAPSHOT_ID).await.unwrap();
    for volume in [RESTORED, FLAT] {
        h.delete(volume).await.unwrap();
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_copy_runs_the_snapshot_is_listed_not_ready_and_a_repeat_is_aborted() {
    let h = Harness::with(on("7.21.5")).await;
    h.create(create_request(FLAT, GIB)).await.unwrap();
    // A block copy of eight slow steps (the device is busy).
    h.sim.faults().update(|f| f.slow_copy_ms = 250);
    let mut controller = h.controller.clone();
    let first = tokio::spawn(async move {
        controller
            .create_snapshot(timed(snapshot_request(SNAPSHOT, FLAT)))
            .await
    });
    let pending = loop {
        let listed = list(&h, ListSnapshotsRequest::default()).await.unwrap();
        if let Some(entry) = listed.entries.first() {
            break entry.snapshot.clone().unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(pending.snapshot_id, SNAPSHOT_ID);
    assert!(!pending.ready_to_use, "listed, not ready, while it copies");
    expect_code(snapshot(&h, SNAPSHOT, FLAT).await, Code::Aborted);
    let taken = first.await.unwrap().unwrap().into_inner().snapshot.unwrap();
    assert!(taken.ready_to_use);
    h.sim.faults().update(|f| f.slow_copy_ms = 0);
    delete_snapshot(&h, SNAPSHOT_ID).await.unwrap();
    h.delete(FLAT).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_cut_off_half_way_are_completed_by_the_retry() {
    let h = Harness::with(on("7.21.5")).await;
    h.create(create_request(FLAT, GIB)).await.unwrap();
    let source = image_of(&h, FLAT);
    write_at(&source, MIB, 0x81);
    write_at(&source, LATE, 0x82);

    // The device goes down half-way through the block copy: no snapshot yet, listed as not
    // ready, its second half missing.
    h.sim.faults().update(|f| f.interrupt_copies = true);
    expect_code(snapshot(&h, SNAPSHOT, FLAT).await, Code::Unavailable);
    let listed = list(&h, ListSnapshotsRequest::default()).await.unwrap();
    let pending = listed.entries[0].snapshot.clone().unwrap();
    assert_eq!(pending.snapshot_id, SNAPSHOT_ID);
    assert!(!pending.ready_to_use);
    assert_eq!(read_at(&image_of(&h, SNAPSHOT_ID), LATE), 0);
    // A restore from it waits for it.
    expect_code(
        h.create(from_source(RESTORED, GIB, of_snapshot(SNAPSHOT_ID)))
            .await,
        Code::Unavailable,
    );
    h.sim.faults().update(|f| f.interrupt_copies = false);
    let taken = snapshot(&h, SNAPSHOT, FLAT).await.unwrap();
    assert!(taken.ready_to_use);
    assert_eq!(read_at(&image_of(&h, SNAPSHOT_ID), LATE), 0x82);

    // A restore cut off likewise: its disk says a copy is under way until the retry ends it.
    h.sim.faults().update(|f| f.interrupt_copies = true);
    expect_code(
        h.create(from_source(RESTORED, GIB, of_snapshot(SNAPSHOT_ID)))
            .await,
        Code::Unavailable,
    );
    let marked = h
        .sim
        .snapshot()
        .disk_by_slot(RESTORED)
        .unwrap()
        .comment
        .clone();
    assert!(marked.starts_with("rds-csi:copying "), "{marked}");
    h.sim.faults().update(|f| f.interrupt_copies = false);
    h.create(from_source(RESTORED, GIB, of_snapshot(SNAPSHOT_ID)))
        .await
        .unwrap();
    let restored = image_of(&h, RESTORED);
    assert_eq!(
        (read_at(&restored, MIB), read_at(&restored, LATE)),
        (0x81, 0x82)
    );
    let done = h
        .sim
        .snapshot()
        .disk_by_slot(RESTORED)
        .unwrap()
        .comment
        .clone();
    assert!(done.starts_with("rds-csi:v1 "), "{done}");

    // A volume whose restore was cut off and then abandoned deletes like any other.
    h.sim.faults().update(|f| f.interrupt_copies = true);
    expect_code(
        h.create(from_source(CLONE, GIB, of_volume(FLAT))).await,
        Code::Unavailable,
    );
    h.sim.faults().update(|f| f.interrupt_copies = false);
    h.delete(CLONE).await.unwrap();

    delete_snapshot(&h, SNAPSHOT_ID).await.unwrap();
    for volume in [RESTORED, FLAT] {
        h.delete(volume).await.unwrap();
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_left_without_its_record_is_copied_afresh() {
    // 7.23: by file-copy; 7.21: by disk-copy, whose new image must not meet the old one.
    for version in ["7.23.1", "7.21.5"] {
        left_image_copied_afresh(version).await;
    }
}

async fn left_image_copied_afresh(version: &'static str) {
    let h = Harness::with(on(version)).await;
    h.create(create_request(FLAT, GIB)).await.unwrap();
    write_at(&image_of(&h, FLAT), LATE, 0x91);
    // What a `/file copy` cut off before its record left: an image of the name, no disk.
    h.rds
        .run_script(&format!(
            "/disk add type=file slot=stray file-path=storage-pool/{SNAPSHOT_ID}.img \
             file-size=1M; /disk remove [find slot=stray]"
        ))
        .await
        .unwrap();
    let listed = list(&h, ListSnapshotsRequest::default()).await.unwrap();
    assert!(
        listed.entries.is_empty(),
        "an image without its record is no snapshot"
    );
    let taken = snapshot(&h, SNAPSHOT, FLAT).await.unwrap();
    assert_eq!(taken.size_bytes, GIB as i64);
    assert_eq!(read_at(&image_of(&h, SNAPSHOT_ID), LATE), 0x91);
    // DeleteSnapshot also removes such a leftover.
    delete_snapshot(&h, SNAPSHOT_ID).await.unwrap();
    h.rds
        .run_script(&format!(
            "/disk add type=file slot=stray file-path=storage-pool/{SNAPSHOT_ID}.img \
             file-size=1M; /disk remove [find slot=stray]"
        ))
        .await
        .unwrap();
    delete_snapshot(&h, SNAPSHOT_ID).await.unwrap();
    assert!(!image_of(&h, SNAPSHOT_ID).exists());
    h.delete(FLAT).await.unwrap();
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_methods_the_device_cannot_run_are_refused() {
    let h = Harness::with(on("7.21.5")).await;
    h.create(create_request(FLAT, GIB)).await.unwrap();
    let refused = expect_code(
        snapshot_by(&h, by_method(SNAPSHOT, FLAT, "file-copy")).await,
        Code::FailedPrecondition,
    );
    assert!(refused.contains("7.23"), "{refused}");
    let refused = expect_code(
        h.create(with_params(
            from_source(RESTORED, GIB, of_volume(FLAT)),
            &[("snapshotMethod", "file-copy")],
        ))
        .await,
        Code::FailedPrecondition,
    );
    assert!(refused.contains("7.23"), "{refused}");
    h.delete(FLAT).await.unwrap();
    h.finish().await;

    // Over REST a block copy would outlast the API's 60 seconds.
    let h = Harness::with(Options {
        transport: Transport::Rest,
        ..on("7.21.5")
    })
    .await;
    h.create(create_request(FLAT, GIB)).await.unwrap();
    for method in ["disk-copy", "auto"] {
        let refused = expect_code(
            snapshot_by(&h, by_method(SNAPSHOT, FLAT, method)).await,
            Code::FailedPrecondition,
        );
        assert!(refused.contains("SSH"), "{method}: {refused}");
    }
    h.delete(FLAT).await.unwrap();
    h.finish().await;
}
