//! The CSI spec's error tables of the Node service, one test per row, over the real gRPC
//! server on a Unix socket. Rows that need a staged volume run as root with the loop fabric
//! (real loop devices, mkfs and mounts); the others need nothing.
//!
//! NodeGetCapabilities and NodeGetInfo have no rows of their own (`node_grpc` checks that they
//! answer); missing or malformed required fields (INVALID_ARGUMENT, the spec's general table)
//! are checked per RPC in `node_grpc`.

mod node_common;

use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use csi::v1::volume_capability::AccessMode;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::{CapacityRange, NodeExpandVolumeRequest, NodeGetVolumeStatsRequest};
use mounts::fixtures::root_or_skip;
use mounts::tools::ToolPaths;
use node_common::loop_lab::*;
use node_common::*;
use tonic::Code;

/// An id of the driver's shape that the simulator never exported.
fn unknown_id() -> String {
    volume_id(900)
}

/// Ids that this driver never creates.
const FOREIGN_IDS: [&str; 3] = ["nixos-root", "pvc-1", "some-other-driver-volume"];

fn stats(id: &str, path: &str) -> NodeGetVolumeStatsRequest {
    NodeGetVolumeStatsRequest {
        volume_id: id.into(),
        volume_path: path.into(),
        staging_target_path: String::new(),
    }
}

fn expand(id: &str, path: &str, required: i64, limit: i64) -> NodeExpandVolumeRequest {
    NodeExpandVolumeRequest {
        volume_id: id.into(),
        volume_path: path.into(),
        capacity_range: Some(CapacityRange {
            required_bytes: required,
            limit_bytes: limit,
        }),
        ..Default::default()
    }
}

/// Stages `id` (exported with `size` bytes) as ext4 at its staging path.
async fn staged_ext4(lab: &LoopLab, id: &str, size: u64) -> std::path::PathBuf {
    lab.export(id, size);
    let staging = lab.staging(id);
    let request = stage_request(id, &staging, mount_capability("ext4", &[]), lab.context(id));
    expect_code(lab.client().node_stage_volume(request).await, Code::Ok);
    staging
}

// NodeStageVolume

#[tokio::test]
async fn node_stage_volume_does_not_exist_is_not_found() {
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let staging = lab.staging("x");
    let mut ids: Vec<String> = FOREIGN_IDS.iter().map(|id| id.to_string()).collect();
    ids.push(unknown_id());
    for id in ids {
        let request = stage_request(
            &id,
            &staging,
            mount_capability("ext4", &[]),
            lab.context(&id),
        );
        let outcome = client.node_stage_volume(request).await;
        assert_eq!(code(&outcome), Code::NotFound, "{id}: {outcome:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stage_volume_staged_but_incompatible_is_already_exists() {
    if !root_or_skip("node_stage_volume_staged_but_incompatible_is_already_exists") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(20);
    let staging = staged_ext4(&lab, &id, 32 * MIB).await;
    for capability in [mount_capability("xfs", &[]), block_capability()] {
        let request = stage_request(&id, &staging, capability, lab.context(&id));
        let outcome = client.node_stage_volume(request).await;
        assert_eq!(code(&outcome), Code::AlreadyExists, "{outcome:?}");
    }
    assert_eq!(table().await.top_at(&staging).unwrap().fs_type, "ext4");
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_stage_exceeds_capabilities_is_failed_precondition() {
    if !root_or_skip("node_stage_exceeds_capabilities_is_failed_precondition") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(6);
    let backing = lab.export(&id, 32 * MIB);
    let staging = lab.staging(&id);
    let request = stage_request(
        &id,
        &staging,
        mount_capability("ext4", &[]),
        lab.context(&id),
    );
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    std::fs::write(staging.join("keep"), b"precious").unwrap();
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );

    let request = stage_request(
        &id,
        &staging,
        mount_capability("xfs", &[]),
        lab.context(&id),
    );
    let status = client.node_stage_volume(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("holds ext4"),
        "{}",
        status.message()
    );
    assert!(loops_over(&backing).is_empty(), "rolled back");

    let request = stage_request(
        &id,
        &staging,
        mount_capability("ext4", &[]),
        lab.context(&id),
    );
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    assert_eq!(std::fs::read(staging.join("keep")).unwrap(), b"precious");

    // A second stage of the same volume at another path fails on a bad mount option, and
    // leaves the device (mounted at the first path) attached.
    let other = lab.staging("second-path");
    let request = stage_request(
        &id,
        &other,
        mount_capability("ext4", &["data=bogus"]),
        lab.context(&id),
    );
    assert_ne!(code(&client.node_stage_volume(request).await), Code::Ok);
    assert_eq!(loops_over(&backing).len(), 1);
    assert_eq!(std::fs::read(staging.join("keep")).unwrap(), b"precious");
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );

    // A volume a pod uses raw (staged and published as a block device) is never staged as a
    // filesystem: its data carries no signature for blkid, and a format would destroy it.
    let raw = volume_id(16);
    let raw_backing = lab.export(&raw, 32 * MIB);
    let (raw_staging, target) = (lab.staging(&raw), lab.block_target(&raw, "pod-a"));
    let request = stage_request(&raw, &raw_staging, block_capability(), lab.context(&raw));
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    let request = publish_request(&raw, &raw_staging, &target, block_capability(), false);
    expect_code(client.node_publish_volume(request).await, Code::Ok);
    let data = pattern(4096, 9);
    std::fs::write(&target, &data).unwrap();
    let fs_staging = lab.staging("raw-as-fs");
    let request = stage_request(
        &raw,
        &fs_staging,
        mount_capability("ext4", &[]),
        lab.context(&raw),
    );
    let status = client.node_stage_volume(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("published as a block device"),
        "{}",
        status.message()
    );
    assert_eq!(std::fs::read(&raw_backing).unwrap()[..4096], data[..]);
    expect_code(
        client
            .node_unpublish_volume(unpublish_request(&raw, &target))
            .await,
        Code::Ok,
    );
    expect_code(
        client
            .node_unstage_volume(unstage_request(&raw, &raw_staging))
            .await,
        Code::Ok,
    );
}

// NodeUnstageVolume

#[tokio::test]
async fn node_unstage_volume_does_not_exist_is_not_found() {
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let staging = lab.staging("x");
    std::fs::write(staging.join("left-alone"), b"x").unwrap();
    for id in FOREIGN_IDS {
        let outcome = client
            .node_unstage_volume(unstage_request(id, &staging))
            .await;
        assert_eq!(code(&outcome), Code::NotFound, "{id}: {outcome:?}");
    }
    assert!(staging.join("left-alone").exists());
    // An id of ours that is not staged here is already unstaged: OK, as the spec asks.
    expect_code(
        client
            .node_unstage_volume(unstage_request(&unknown_id(), &staging))
            .await,
        Code::Ok,
    );
}

// NodePublishVolume

#[tokio::test]
async fn node_publish_volume_does_not_exist_is_not_found() {
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let (staging, target) = (lab.staging("x"), lab.fs_target("x", "pod-a"));
    for id in FOREIGN_IDS {
        let request = publish_request(id, &staging, &target, mount_capability("ext4", &[]), false);
        let outcome = client.node_publish_volume(request).await;
        assert_eq!(code(&outcome), Code::NotFound, "{id}: {outcome:?}");
    }
    assert!(!target.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_publish_published_but_incompatible_is_already_exists() {
    if !root_or_skip("node_publish_published_but_incompatible_is_already_exists") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(21);
    let staging = staged_ext4(&lab, &id, 32 * MIB).await;
    let target = lab.fs_target(&id, "pod-a");
    let capability = mount_capability("ext4", &[]);
    let request = publish_request(&id, &staging, &target, capability.clone(), false);
    expect_code(client.node_publish_volume(request).await, Code::Ok);
    let flipped = publish_request(&id, &staging, &target, capability, true);
    let outcome = client.node_publish_volume(flipped).await;
    assert_eq!(code(&outcome), Code::AlreadyExists, "{outcome:?}");
    expect_code(
        client
            .node_unpublish_volume(unpublish_request(&id, &target))
            .await,
        Code::Ok,
    );
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_publish_exceeds_capabilities_is_failed_precondition() {
    if !root_or_skip("node_publish_exceeds_capabilities_is_failed_precondition") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    // Staged as a filesystem, asked for as a raw device: two writers unaware of each other.
    let id = volume_id(22);
    let staging = staged_ext4(&lab, &id, 32 * MIB).await;
    let node = lab.block_target(&id, "pod-a");
    let request = publish_request(&id, &staging, &node, block_capability(), false);
    let outcome = client.node_publish_volume(request).await;
    assert_eq!(code(&outcome), Code::FailedPrecondition, "{outcome:?}");
    assert!(std::fs::symlink_metadata(&node).is_err(), "no node made");
    // Staged as a block volume, asked for as a filesystem.
    let raw = volume_id(23);
    lab.export(&raw, 8 * MIB);
    let raw_staging = lab.staging(&raw);
    let request = stage_request(&raw, &raw_staging, block_capability(), lab.context(&raw));
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    let target = lab.fs_target(&raw, "pod-b");
    let request = publish_request(
        &raw,
        &raw_staging,
        &target,
        mount_capability("ext4", &[]),
        false,
    );
    let outcome = client.node_publish_volume(request).await;
    assert_eq!(code(&outcome), Code::FailedPrecondition, "{outcome:?}");
    for (id, staging) in [(&id, &staging), (&raw, &raw_staging)] {
        expect_code(
            client
                .node_unstage_volume(unstage_request(id, staging))
                .await,
            Code::Ok,
        );
    }
}

#[tokio::test]
async fn node_publish_staging_target_path_not_set_is_failed_precondition() {
    let lab = LoopLab::start().await;
    let id = volume_id(24);
    let target = lab.fs_target(&id, "pod-a");
    let mut request = publish_request(&id, &target, &target, mount_capability("ext4", &[]), false);
    request.staging_target_path.clear();
    let outcome = lab.client().node_publish_volume(request).await;
    assert_eq!(code(&outcome), Code::FailedPrecondition, "{outcome:?}");
}

// NodeUnpublishVolume

#[tokio::test]
async fn node_unpublish_volume_does_not_exist_is_not_found() {
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let target = lab.fs_target("x", "pod-a");
    std::fs::create_dir(&target).unwrap();
    for id in FOREIGN_IDS {
        let outcome = client
            .node_unpublish_volume(unpublish_request(id, &target))
            .await;
        assert_eq!(code(&outcome), Code::NotFound, "{id}: {outcome:?}");
    }
    assert!(
        target.is_dir(),
        "nothing removed for a volume that is not ours"
    );
}

// NodeGetVolumeStats

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_get_volume_stats_volume_does_not_exist_is_not_found() {
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(25);
    let plain = lab.path("kubelet").display().to_string();
    let absent = lab.path("absent").display().to_string();
    let mut cases = vec![
        stats(&id, &absent),
        stats(&id, "some/path"),
        // A directory with nothing mounted holds no volume.
        stats(&id, &plain),
    ];
    cases.extend(FOREIGN_IDS.iter().map(|foreign| stats(foreign, &plain)));
    for request in cases {
        let outcome = client.node_get_volume_stats(request.clone()).await;
        assert_eq!(code(&outcome), Code::NotFound, "{request:?}: {outcome:?}");
    }
    // Another volume is mounted at the path.
    if mounts::fixtures::root_or_skip("stats of a path holding another volume") {
        let mine = staged_ext4(&lab, &id, 32 * MIB).await;
        let theirs = volume_id(26);
        let other = staged_ext4(&lab, &theirs, 32 * MIB).await;
        let request = stats(&id, &other.display().to_string());
        let outcome = client.node_get_volume_stats(request).await;
        assert_eq!(code(&outcome), Code::NotFound, "{outcome:?}");
        expect_code(
            client
                .node_get_volume_stats(stats(&id, &mine.display().to_string()))
                .await,
            Code::Ok,
        );
        for (id, staging) in [(&id, &mine), (&theirs, &other)] {
            expect_code(
                client
                    .node_unstage_volume(unstage_request(id, staging))
                    .await,
                Code::Ok,
            );
        }
    }
}

// NodeExpandVolume

#[tokio::test]
async fn node_expand_exceeds_capabilities_is_invalid_argument() {
    let lab = LoopLab::start().await;
    let id = volume_id(27);
    let mut request = expand(&id, &lab.path("kubelet").display().to_string(), 1, 0);
    let mut capability = mount_capability("ext4", &[]);
    capability.access_mode = Some(AccessMode {
        mode: Mode::MultiNodeMultiWriter.into(),
    });
    request.volume_capability = Some(capability);
    let outcome = lab.client().node_expand_volume(request).await;
    assert_eq!(code(&outcome), Code::InvalidArgument, "{outcome:?}");
}

#[tokio::test]
async fn node_expand_volume_does_not_exist_is_not_found() {
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(28);
    let plain = lab.path("kubelet").display().to_string();
    let mut cases = vec![
        // Not attached on this node.
        expand(&id, &plain, 1, 0),
        expand(&id, "some/path", 1, 0),
    ];
    cases.extend(
        FOREIGN_IDS
            .iter()
            .map(|foreign| expand(foreign, &plain, 1, 0)),
    );
    for request in cases {
        let outcome = client.node_expand_volume(request.clone()).await;
        assert_eq!(code(&outcome), Code::NotFound, "{request:?}: {outcome:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_expand_volume_in_use_is_failed_precondition() {
    if !root_or_skip("node_expand_volume_in_use_is_failed_precondition") {
        return;
    }
    mounts::fixtures::require_tool("mkfs.ext2");
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(29);
    let backing = lab.export(&id, 16 * MIB);
    let staging = lab.staging(&id);
    let request = stage_request(&id, &staging, block_capability(), lab.context(&id));
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    // The volume in use with a filesystem this driver cannot grow while it is mounted.
    let (device, _) = loops_over(&backing)[0].clone();
    let made = std::process::Command::new("mkfs.ext2")
        .args(["-q", "-F"])
        .arg(&device)
        .status()
        .unwrap();
    assert!(made.success());
    let mount_point = lab.path("by-hand");
    std::fs::create_dir(&mount_point).unwrap();
    rustix::mount::mount(
        &device,
        &mount_point,
        "ext2",
        rustix::mount::MountFlags::empty(),
        c"",
    )
    .unwrap();
    let request = expand(&id, &mount_point.display().to_string(), 16 * MIB as i64, 0);
    let status = client.node_expand_volume(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("ext2"), "{}", status.message());
    rustix::mount::unmount(&mount_point, rustix::mount::UnmountFlags::empty()).unwrap();
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
}

#[tokio::test]
async fn node_expand_unsupported_capacity_range_is_out_of_range() {
    let lab = LoopLab::start().await;
    let request = expand(
        &volume_id(30),
        &lab.path("kubelet").display().to_string(),
        10,
        5,
    );
    let outcome = lab.client().node_expand_volume(request).await;
    assert_eq!(code(&outcome), Code::OutOfRange, "{outcome:?}");
}

// Any RPC on a volume (the spec's general table)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_call_for_a_volume_with_an_operation_pending_is_aborted() {
    if !root_or_skip("any_call_for_a_volume_with_an_operation_pending_is_aborted") {
        return;
    }
    let tools_dir = tempfile::tempdir().unwrap();
    let (blkid, started, release) = gated_blkid(tools_dir.path());
    let lab = LoopLab::with_tools(ToolPaths {
        blkid,
        ..ToolPaths::default()
    })
    .await;
    let id = volume_id(10);
    lab.export(&id, 32 * MIB);
    let staging = lab.staging(&id);
    let request = stage_request(
        &id,
        &staging,
        mount_capability("ext4", &[]),
        lab.context(&id),
    );
    let mut first_client = lab.client();
    let first = tokio::spawn({
        let request = request.clone();
        async move { first_client.node_stage_volume(request).await }
    });
    // Wait until the first stage sits in blkid (opening the FIFO blocks until it writes).
    let reader = tokio::task::spawn_blocking({
        let started = started.clone();
        move || std::fs::read_to_string(started)
    });
    let started_line = match tokio::time::timeout(Duration::from_secs(30), reader).await {
        Ok(read) => read.unwrap().unwrap(),
        Err(_) => {
            // Unblock the reader thread (a writer that opens and closes), then fail.
            drop(
                std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
                    .open(&started),
            );
            panic!("the first stage never reached blkid");
        }
    };
    assert_eq!(started_line.trim(), "started");

    let mut client = lab.client();
    for busy in [
        code(&client.node_stage_volume(request.clone()).await),
        code(
            &client
                .node_unstage_volume(unstage_request(&id, &staging))
                .await,
        ),
        code(
            &client
                .node_unpublish_volume(unpublish_request(&id, &lab.fs_target(&id, "p")))
                .await,
        ),
    ] {
        assert_eq!(busy, Code::Aborted);
    }
    // Other volumes are not held up.
    expect_code(
        client
            .node_unpublish_volume(unpublish_request(&volume_id(11), &lab.fs_target("v", "p")))
            .await,
        Code::Ok,
    );

    tokio::task::spawn_blocking(move || std::fs::write(release, "go\n"))
        .await
        .unwrap()
        .unwrap();
    expect_code(first.await.unwrap(), Code::Ok);
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
}
