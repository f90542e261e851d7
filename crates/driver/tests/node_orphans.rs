//! Node-side orphans over the loop fabric (root: loop devices, mounts): an attachment of the
//! driver's own volume that no staged volume uses is disconnected after the grace period;
//! one in use, one staged, and one under a foreign NQN are never touched; `report` only
//! counts.

mod node_common;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use driver::node::OrphanPolicy;
use mounts::DeviceNumber;
use mounts::fixtures::root_or_skip;
use node_common::loop_lab::*;
use node_common::*;
use tonic::Code;

const MIB: u64 = 1 << 20;

fn attach_loop(file: &Path) -> PathBuf {
    let out = Command::new("losetup")
        .args(["--find", "--show"])
        .arg(file)
        .output()
        .unwrap();
    assert!(out.status.success(), "losetup: {out:?}");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn detach_loop(device: &Path) {
    let _ = Command::new("losetup").arg("-d").arg(device).status();
}

/// Waits (bounded) until `done` holds; false when it never did.
async fn eventually(limit: Duration, done: impl Fn() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_attachment_of_ours_is_disconnected_after_the_grace_period_and_nothing_else() {
    if !root_or_skip("an_unused_attachment_of_ours_is_disconnected") {
        return;
    }
    let lab = LoopLab::with_config(|config| {
        config.health_interval = Duration::from_millis(50);
        config.orphan_grace = Duration::from_millis(300);
    })
    .await;
    let mut client = lab.client();

    // Staged through the CSI calls: recorded, never an orphan.
    let staged = volume_id(61);
    lab.export(&staged, 32 * MIB);
    let staging = lab.staging(&staged);
    let request = stage_request(
        &staged,
        &staging,
        mount_capability("ext4", &[]),
        lab.context(&staged),
    );
    expect_code(client.node_stage_volume(request).await, Code::Ok);

    // Attached with no record and unused: the orphan.
    let orphan = volume_id(62);
    let orphan_file = lab.export(&orphan, 16 * MIB);
    attach_loop(&orphan_file);

    // Attached with no record but mounted (a stage from before records existed).
    let in_use = volume_id(63);
    let in_use_file = lab.export(&in_use, 16 * MIB);
    let in_use_loop = attach_loop(&in_use_file);
    assert!(
        Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&in_use_loop)
            .status()
            .unwrap()
            .success()
    );
    let mount_point = lab.path("elsewhere");
    std::fs::create_dir_all(&mount_point).unwrap();
    assert!(
        Command::new("mount")
            .arg(&in_use_loop)
            .arg(&mount_point)
            .status()
            .unwrap()
            .success()
    );

    // Not the driver's: exported under another NQN.
    let foreign_file = lab.export_as("boot-disk", "nqn.2000-02.com.mikrotik:boot-disk", 16 * MIB);
    let foreign_loop = attach_loop(&foreign_file);

    assert!(
        eventually(Duration::from_secs(20), || loops_over(&orphan_file)
            .is_empty())
        .await,
        "the orphan was not disconnected"
    );
    // Several more passes: the others stay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        loops_over(&in_use_file).len(),
        1,
        "an attachment in use was disconnected"
    );
    assert_eq!(
        loops_over(&foreign_file).len(),
        1,
        "a foreign attachment was disconnected"
    );
    let staged_device = std::fs::metadata(&staging).unwrap().dev();
    assert_eq!(
        table()
            .await
            .mount_count(DeviceNumber::from_raw(staged_device)),
        1,
        "the staged volume lost its mount"
    );

    assert!(
        Command::new("umount")
            .arg(&mount_point)
            .status()
            .unwrap()
            .success()
    );
    detach_loop(&in_use_loop);
    detach_loop(&foreign_loop);
    // The background check may hold the volume a moment: ABORTED, retried as a CO does.
    let unstage = as_a_co_retries(|| {
        let (mut client, request) = (client.clone(), unstage_request(&staged, &staging));
        async move { client.node_unstage_volume(request).await }
    });
    expect_code(unstage.await, Code::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_report_an_orphan_is_only_counted() {
    if !root_or_skip("with_report_an_orphan_is_only_counted") {
        return;
    }
    let lab = LoopLab::with_config(|config| {
        config.health_interval = Duration::from_millis(50);
        config.orphan_grace = Duration::ZERO;
        config.orphans = OrphanPolicy::Report;
    })
    .await;
    let orphan = volume_id(64);
    let file = lab.export(&orphan, 16 * MIB);
    let device = attach_loop(&file);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        loops_over(&file).len(),
        1,
        "report mode disconnected an orphan"
    );
    detach_loop(&device);
}
