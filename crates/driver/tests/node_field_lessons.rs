//! Incidents of peer drivers (see `docs/field-lessons.md`), reproduced end to end on this host
//! as root: the loop fabric over real loop devices, real mkfs and mounts, driven over the
//! real gRPC server. Lessons proven below the gRPC layer are tested in `mounts` and `nvme`.

mod node_common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::time::Duration;

use mounts::DeviceNumber;
use mounts::fixtures::root_or_skip;
use mounts::tools::ToolPaths;
use node_common::loop_lab::*;
use node_common::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_01_a_blkid_error_never_leads_to_mkfs() {
    if !root_or_skip("field_lesson_01_a_blkid_error_never_leads_to_mkfs") {
        return;
    }
    let tools_dir = tempfile::tempdir().unwrap();
    let marker = tools_dir.path().join("mkfs-ran");
    let tools = ToolPaths {
        // Exit 1 is what blkid said for a device not ready after a reconnect.
        blkid: script(tools_dir.path(), "blkid", "echo 'probe failed' >&2; exit 1"),
        mkfs_ext4: script(
            tools_dir.path(),
            "mkfs.ext4",
            &format!("touch {}", marker.display()),
        ),
        ..ToolPaths::default()
    };
    let lab = LoopLab::with_tools(tools).await;
    let mut client = lab.client();
    let id = volume_id(4);
    let backing = lab.export(&id, 8 * MIB);
    let staging = lab.staging(&id);
    let request = stage_request(
        &id,
        &staging,
        mount_capability("ext4", &[]),
        lab.context(&id),
    );
    let status = client.node_stage_volume(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal);
    assert!(status.message().contains("blkid"), "{}", status.message());
    assert!(!marker.exists(), "mkfs must not run after a blkid error");
    assert!(!table().await.is_mount_point(&staging));
    // The attachment made by the failed stage is undone: nothing uses it.
    assert!(loops_over(&backing).is_empty());
    // The device still holds nothing at all.
    let bytes = std::fs::read(&backing).unwrap();
    assert!(bytes.iter().all(|b| *b == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_05_a_busy_target_is_neither_unpublished_nor_removed() {
    if !root_or_skip("field_lesson_05_a_busy_target_is_neither_unpublished_nor_removed") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(8);
    lab.export(&id, 32 * MIB);
    let staging = lab.staging(&id);
    let capability = mount_capability("ext4", &[]);
    let request = stage_request(&id, &staging, capability.clone(), lab.context(&id));
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    let target = lab.fs_target(&id, "pod-a");
    let request = publish_request(&id, &staging, &target, capability, false);
    expect_code(client.node_publish_volume(request).await, Code::Ok);

    // A process keeps its working directory inside the mount: unmount gets EBUSY.
    std::fs::write(target.join("file"), b"in use").unwrap();
    let mut holder = std::process::Command::new("sleep")
        .arg("60")
        .current_dir(&target)
        .spawn()
        .unwrap();
    let status = client
        .node_unpublish_volume(unpublish_request(&id, &target))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("busy"), "{}", status.message());
    assert!(table().await.is_mount_point(&target));
    assert_eq!(std::fs::read(target.join("file")).unwrap(), b"in use");

    holder.kill().unwrap();
    holder.wait().unwrap();
    expect_code(
        client
            .node_unpublish_volume(unpublish_request(&id, &target))
            .await,
        Code::Ok,
    );
    assert!(!target.exists());
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_05_a_target_with_content_is_left_in_place() {
    if !root_or_skip("field_lesson_05_a_target_with_content_is_left_in_place") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let target = lab.fs_target("x", "pod-a");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("data"), b"not ours to delete").unwrap();
    let status = client
        .node_unpublish_volume(unpublish_request(&volume_id(9), &target))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        std::fs::read(target.join("data")).unwrap(),
        b"not ours to delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_15_a_hung_tool_ends_at_the_callers_deadline() {
    if !root_or_skip("field_lesson_15_a_hung_tool_ends_at_the_callers_deadline") {
        return;
    }
    let tools_dir = tempfile::tempdir().unwrap();
    let lab = LoopLab::with_tools(ToolPaths {
        // A probe that hangs, as blkid did on a device stuck in I/O.
        blkid: script(tools_dir.path(), "blkid", "exec sleep 60"),
        ..ToolPaths::default()
    })
    .await;
    let mut client = lab.client();
    let id = volume_id(12);
    let backing = lab.export(&id, 32 * MIB);
    let staging = lab.staging(&id);
    let mut request = tonic::Request::new(stage_request(
        &id,
        &staging,
        mount_capability("ext4", &[]),
        lab.context(&id),
    ));
    request.set_timeout(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let status = client.node_stage_volume(request).await.unwrap_err();
    // tonic's server enforces grpc-timeout too and answers CANCELLED when it expires.
    assert!(
        matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{status:?}"
    );
    // The server gave up at the same deadline (the hung blkid was killed), so the volume's
    // lock is released long before blkid's 60 s: an unstage gets through within seconds.
    let unstaged = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match client
                .node_unstage_volume(unstage_request(&id, &staging))
                .await
            {
                Err(status) if status.code() == Code::Aborted => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => return other,
            }
        }
    })
    .await
    .expect("the operation ended at the caller's deadline");
    expect_code(unstaged, Code::Ok);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(loops_over(&backing).is_empty());
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_07_a_block_volume_is_published_by_mknod_never_by_a_bind_mount() {
    if !root_or_skip("field_lesson_07_a_block_volume_is_published_by_mknod_never_by_a_bind_mount") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(13);
    let backing = lab.export(&id, 8 * MIB);
    let staging = lab.staging(&id);
    let request = stage_request(&id, &staging, block_capability(), lab.context(&id));
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    let (_, device) = loops_over(&backing)[0].clone();
    let targets: Vec<_> = (0..4)
        .map(|pod| lab.block_target(&id, &format!("pod-{pod}")))
        .collect();
    for target in &targets {
        let request = publish_request(&id, &staging, target, block_capability(), false);
        expect_code(client.node_publish_volume(request).await, Code::Ok);
        // A node of its own with the device's number...
        let meta = std::fs::symlink_metadata(target).unwrap();
        assert!(meta.file_type().is_block_device());
        assert_eq!(DeviceNumber::from_raw(meta.rdev()), device);
    }
    // ...and not a single mount: nothing for propagation to multiply.
    let after = table().await;
    let publish_dir = std::fs::canonicalize(lab.path("kubelet/volumeDevices")).unwrap();
    let below: Vec<_> = after
        .entries()
        .iter()
        .filter(|e| e.mount_point.starts_with(&publish_dir))
        .collect();
    assert!(below.is_empty(), "{below:?}");
    assert_eq!(after.mount_count(device), 0);
    assert!(targets.iter().all(|t| !after.is_mount_point(t)));
    for target in &targets {
        expect_code(
            client
                .node_unpublish_volume(unpublish_request(&id, target))
                .await,
            Code::Ok,
        );
    }
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_08_a_block_stage_creates_nothing_at_the_staging_path() {
    if !root_or_skip("field_lesson_08_a_block_stage_creates_nothing_at_the_staging_path") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(14);
    let backing = lab.export(&id, 8 * MIB);
    // Kubelet made the directory; a missing one must stay missing too.
    let made = lab.staging(&id);
    let absent = lab.path("kubelet/plugins/staging/never-made");
    for staging in [&made, &absent] {
        for _ in 0..2 {
            let request = stage_request(&id, staging, block_capability(), lab.context(&id));
            expect_code(client.node_stage_volume(request).await, Code::Ok);
        }
    }
    assert_eq!(loops_over(&backing).len(), 1, "attached once");
    assert_eq!(std::fs::read_dir(&made).unwrap().count(), 0);
    assert!(std::fs::symlink_metadata(&absent).is_err());
    assert!(!table().await.is_mount_point(&made));
    for staging in [&made, &absent] {
        expect_code(
            client
                .node_unstage_volume(unstage_request(&id, staging))
                .await,
            Code::Ok,
        );
    }
    assert!(loops_over(&backing).is_empty());
}

/// The UUID blkid reads on `device`.
fn fs_uuid(device: &std::path::Path) -> String {
    let out = std::process::Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "UUID"])
        .arg(device)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_06_an_xfs_copy_mounts_beside_its_source() {
    if !root_or_skip("field_lesson_06_an_xfs_copy_mounts_beside_its_source") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    // mkfs.xfs refuses filesystems below 300 MiB.
    let size = 320 * MIB;
    let source = volume_id(61);
    let source_backing = lab.export(&source, size);
    let source_staging = lab.staging(&source);
    client
        .node_stage_volume(stage_request(
            &source,
            &source_staging,
            mount_capability("xfs", &[]),
            lab.context(&source),
        ))
        .await
        .unwrap();
    std::fs::write(source_staging.join("data"), b"from the source").unwrap();
    rustix::fs::sync();

    // Copies taken while the source is mounted (as a snapshot is): its UUID, a dirty log.
    let copy_of = |n: u32| {
        let id = volume_id(n);
        let backing = lab.export(&id, size);
        std::fs::remove_file(&backing).unwrap();
        rds_sim::copy::copy_file(&source_backing, &backing).unwrap();
        id
    };
    let (copy, plain) = (copy_of(62), copy_of(63));

    // Staged as what it is, a copy: a UUID of its own first, then it mounts beside the source.
    let staging = lab.staging(&copy);
    let mut context = lab.context(&copy);
    context.insert("copyOf".into(), source.clone());
    client
        .node_stage_volume(stage_request(
            &copy,
            &staging,
            mount_capability("xfs", &[]),
            context,
        ))
        .await
        .unwrap();
    assert!(table().await.is_mount_point(&staging));
    assert_eq!(
        std::fs::read(staging.join("data")).unwrap(),
        b"from the source"
    );
    let source_device = &loops_over(&source_backing)[0].0;
    let copy_device = &loops_over(&lab.path(&format!("sim/files/storage-pool/{copy}.img")))[0].0;
    assert_ne!(fs_uuid(source_device), fs_uuid(copy_device));
    assert_eq!(
        lab.staged_record(&copy).unwrap()["layout"]["fs_uuid"],
        fs_uuid(copy_device),
        "the record holds the new UUID a re-stage must find"
    );

    // The same copy staged without saying so keeps its source's UUID, which XFS refuses.
    let plain_staging = lab.staging(&plain);
    let refused = client
        .node_stage_volume(stage_request(
            &plain,
            &plain_staging,
            mount_capability("xfs", &[]),
            lab.context(&plain),
        ))
        .await
        .unwrap_err();
    assert!(!table().await.is_mount_point(&plain_staging), "{refused:?}");
    assert_eq!(
        std::fs::read(source_staging.join("data")).unwrap(),
        b"from the source",
        "the source is untouched"
    );
}
