//! The node service end to end on this host, as root: the loop fabric attaches files the way
//! the simulator exports them, with real loop devices, real mkfs, real mounts, driven through
//! a real gRPC server on a Unix socket.

mod node_common;

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi::v1::volume_usage::Unit;
use csi::v1::{CapacityRange, NodeExpandVolumeRequest, NodeGetVolumeStatsRequest};
use driver::node::{LoopFabric, NodeConfig};
use mounts::DeviceNumber;
use mounts::fixtures::{require_tool, root_or_skip};
use mounts::mountinfo::{MountTable, read_self_mount_table};
use mounts::tools::ToolPaths;
use node_common::*;
use tonic::Code;

/// A scratch world: a simulator data directory with an export record, a kubelet-like tree,
/// and the node plugin with the loop fabric over them. Dropping it unmounts and detaches
/// whatever a failed test left behind.
struct LoopLab {
    dir: tempfile::TempDir,
    plugin: Option<Plugin>,
    exports: std::sync::Mutex<Vec<serde_json::Value>>,
}

const PORT: u16 = 4420;

impl LoopLab {
    async fn start() -> Self {
        Self::with_tools(ToolPaths::default()).await
    }

    async fn with_tools(tools: ToolPaths) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sim = dir.path().join("sim");
        std::fs::create_dir_all(sim.join("files/storage-pool")).unwrap();
        let mut config = NodeConfig::new("node-1", PREFIX);
        config.block_publish_dir = dir.path().join("kubelet/volumeDevices");
        config.tools = tools;
        let plugin = Plugin::start(dir.path(), config, Arc::new(LoopFabric::new(&sim))).await;
        Self {
            dir,
            plugin: Some(plugin),
            exports: Default::default(),
        }
    }

    fn client(&self) -> csi::v1::node_client::NodeClient<tonic::transport::Channel> {
        self.plugin.as_ref().unwrap().client.clone()
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn write_record(&self) {
        let exports = self.exports.lock().unwrap();
        let record = serde_json::json!({ "exports": *exports });
        std::fs::write(
            self.path("sim/exports.json"),
            serde_json::to_vec_pretty(&record).unwrap(),
        )
        .unwrap();
    }

    /// Exports a new sparse disk of `size` bytes the way the simulator records it.
    fn export(&self, id: &str, size: u64) -> PathBuf {
        let backing = self.path(&format!("sim/files/storage-pool/{id}.img"));
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(size)
            .unwrap();
        self.exports.lock().unwrap().push(serde_json::json!({
            "slot": id,
            "nqn": nqn_of(id),
            "address": "127.0.0.1",
            "port": PORT,
            "file_path": format!("/storage-pool/{id}.img"),
            "backing_file": backing,
            "size": size,
            "nvmet": false,
        }));
        self.write_record();
        backing
    }

    /// A staging directory, created as kubelet does.
    fn staging(&self, id: &str) -> PathBuf {
        let path = self.path(&format!("kubelet/plugins/staging/{id}"));
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// A filesystem publish target: the parent exists, the target does not.
    fn fs_target(&self, id: &str, pod: &str) -> PathBuf {
        let parent = self.path(&format!("kubelet/pods/{pod}/volumes/{id}"));
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("mount")
    }

    /// A block publish target below the publish directory the service scans.
    fn block_target(&self, id: &str, pod: &str) -> PathBuf {
        let parent = self.path(&format!("kubelet/volumeDevices/publish/{id}"));
        std::fs::create_dir_all(&parent).unwrap();
        parent.join(pod)
    }

    fn context(&self, id: &str) -> std::collections::HashMap<String, String> {
        context(&nqn_of(id), PORT)
    }
}

impl Drop for LoopLab {
    fn drop(&mut self) {
        let root = std::fs::canonicalize(self.dir.path()).unwrap();
        if let Ok(text) = std::fs::read("/proc/self/mountinfo")
            && let Ok(table) = MountTable::parse(&text)
        {
            let mut points: Vec<&Path> = table
                .entries()
                .iter()
                .map(|e| e.mount_point.as_path())
                .filter(|p| p.starts_with(&root))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
            for point in points {
                let flags =
                    rustix::mount::UnmountFlags::DETACH | rustix::mount::UnmountFlags::NOFOLLOW;
                let _ = rustix::mount::unmount(point, flags);
            }
        }
        for (device, _) in loops_under(&root) {
            let _ = std::process::Command::new("losetup")
                .arg("-d")
                .arg(device)
                .status();
        }
    }
}

/// Loop devices whose backing file lies below `root`.
fn loops_under(root: &Path) -> Vec<(PathBuf, DeviceNumber)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let Ok(backing) = std::fs::read_to_string(entry.path().join("loop/backing_file")) else {
            continue;
        };
        if Path::new(backing.trim_end()).starts_with(root) {
            let dev = std::fs::read_to_string(entry.path().join("dev")).unwrap();
            found.push((
                Path::new("/dev").join(entry.file_name()),
                dev.parse().unwrap(),
            ));
        }
    }
    found
}

/// The loop devices over `backing`.
fn loops_over(backing: &Path) -> Vec<(PathBuf, DeviceNumber)> {
    loops_under(&std::fs::canonicalize(backing).unwrap())
}

async fn table() -> MountTable {
    read_self_mount_table(mounts::fixtures::soon())
        .await
        .unwrap()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn grow_file(path: &Path, size: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(size)
        .unwrap();
}

fn stats_request(id: &str, path: &Path) -> NodeGetVolumeStatsRequest {
    NodeGetVolumeStatsRequest {
        volume_id: id.into(),
        volume_path: path.display().to_string(),
        staging_target_path: String::new(),
    }
}

fn expand_request(
    id: &str,
    path: &Path,
    staging: &Path,
    size: u64,
    capability: csi::v1::VolumeCapability,
) -> NodeExpandVolumeRequest {
    NodeExpandVolumeRequest {
        volume_id: id.into(),
        volume_path: path.display().to_string(),
        staging_target_path: staging.display().to_string(),
        capacity_range: Some(CapacityRange {
            required_bytes: size as i64,
            limit_bytes: 0,
        }),
        volume_capability: Some(capability),
        secrets: Default::default(),
    }
}

fn errno_of(error: &std::io::Error) -> i32 {
    error.raw_os_error().unwrap_or(0)
}

/// Stage, publish twice (read-write and read-only), write and read, stats, expand, refuse to
/// unstage while published, tear down, stage again and find the data: every call twice.
async fn filesystem_lifecycle(fs: &str, size: u64, grown: u64) {
    require_tool(&format!("mkfs.{fs}"));
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(1);
    let backing = lab.export(&id, size);
    let staging = lab.staging(&id);
    let capability = mount_capability(fs, &["noatime"]);

    for _ in 0..2 {
        let request = stage_request(&id, &staging, capability.clone(), lab.context(&id));
        expect_code(client.node_stage_volume(request).await, Code::Ok);
    }
    let loops = loops_over(&backing);
    assert_eq!(loops.len(), 1, "one loop device, however often staged");
    let (_, loop_device) = loops[0].clone();
    let table = table().await;
    let staged = table.top_at(&staging).expect("staging is mounted");
    assert_eq!(staged.device, loop_device);
    assert_eq!(staged.fs_type, fs);
    assert!(staged.mount_options.contains("noatime"));

    let writer = lab.fs_target(&id, "pod-a");
    let reader = lab.fs_target(&id, "pod-b");
    for _ in 0..2 {
        let rw = publish_request(&id, &staging, &writer, capability.clone(), false);
        expect_code(client.node_publish_volume(rw).await, Code::Ok);
        let ro = publish_request(&id, &staging, &reader, capability.clone(), true);
        expect_code(client.node_publish_volume(ro).await, Code::Ok);
    }
    // The same target asked read-only after a read-write publish is incompatible.
    let flipped = publish_request(&id, &staging, &writer, capability.clone(), true);
    expect_code(
        client.node_publish_volume(flipped).await,
        Code::AlreadyExists,
    );

    let payload = pattern(3 * MIB as usize, 7);
    std::fs::write(writer.join("data"), &payload).unwrap();
    assert_eq!(std::fs::read(reader.join("data")).unwrap(), payload);
    let denied = std::fs::write(reader.join("other"), b"x").unwrap_err();
    assert_eq!(errno_of(&denied), rustix::io::Errno::ROFS.raw_os_error());

    let stats = client
        .node_get_volume_stats(stats_request(&id, &writer))
        .await
        .unwrap()
        .into_inner();
    let condition = stats.volume_condition.unwrap();
    assert!(!condition.abnormal, "{}", condition.message);
    let bytes = stats
        .usage
        .iter()
        .find(|u| u.unit == Unit::Bytes as i32)
        .unwrap();
    let inodes = stats
        .usage
        .iter()
        .find(|u| u.unit == Unit::Inodes as i32)
        .unwrap();
    assert!(bytes.total > 0 && bytes.total <= size as i64, "{bytes:?}");
    assert!(bytes.used >= payload.len() as i64, "{bytes:?}");
    assert!(inodes.total > 0 && inodes.used > 0, "{inodes:?}");

    // Expand: the simulator grows the file; the node rescans and grows the filesystem.
    grow_file(&backing, grown);
    if fs == "ext4" && !has_capability(CAP_SYS_RESOURCE) {
        // ext4 grows online only with CAP_SYS_RESOURCE, which this sandbox lacks (a node
        // plugin runs privileged): the failure must be reported, and nothing lost.
        let request = expand_request(&id, &writer, &staging, grown, capability.clone());
        let status = client.node_expand_volume(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Internal);
        assert!(
            status.message().contains("resize2fs"),
            "{}",
            status.message()
        );
        assert_eq!(std::fs::read(writer.join("data")).unwrap(), payload);
        eprintln!("note: no CAP_SYS_RESOURCE here; online ext4 growth checked for its error only");
    } else {
        expand_and_check(
            &mut client,
            &id,
            &writer,
            &staging,
            &capability,
            grown,
            bytes.total as u64,
        )
        .await;
    }
    unstage_refused_then_teardown(&mut client, &id, &backing, &staging, &[&writer, &reader]).await;

    // Stage again: the data is still there (no format).
    let request = stage_request(&id, &staging, capability.clone(), lab.context(&id));
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    assert_eq!(std::fs::read(staging.join("data")).unwrap(), payload);
    expect_code(
        client
            .node_unstage_volume(unstage_request(&id, &staging))
            .await,
        Code::Ok,
    );
    assert!(loops_over(&backing).is_empty());
}

const CAP_SYS_RESOURCE: u32 = 24;

fn has_capability(bit: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .unwrap();
    u64::from_str_radix(effective.trim(), 16).unwrap() & (1 << bit) != 0
}

type Client = csi::v1::node_client::NodeClient<tonic::transport::Channel>;

/// Expands twice (the second is a no-op) and checks the filesystem grew.
async fn expand_and_check(
    client: &mut Client,
    id: &str,
    path: &Path,
    staging: &Path,
    capability: &csi::v1::VolumeCapability,
    grown: u64,
    total_before: u64,
) {
    for _ in 0..2 {
        let request = expand_request(id, path, staging, grown, capability.clone());
        let response = client
            .node_expand_volume(request)
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.capacity_bytes, grown as i64);
    }
    let total = mounts::stats::filesystem_stats(path, mounts::fixtures::soon())
        .await
        .unwrap()
        .total_bytes;
    assert!(
        total > total_before,
        "filesystem grew from {total_before} to {total}"
    );
}

/// Unstage refuses while `targets` are published; then every target is unpublished and the
/// volume unstaged, each call twice, leaving no mount and no loop device.
async fn unstage_refused_then_teardown(
    client: &mut Client,
    id: &str,
    backing: &Path,
    staging: &Path,
    targets: &[&Path],
) {
    expect_code(
        client
            .node_unstage_volume(unstage_request(id, staging))
            .await,
        Code::FailedPrecondition,
    );
    assert_eq!(loops_over(backing).len(), 1);
    for _ in 0..2 {
        for target in targets {
            expect_code(
                client
                    .node_unpublish_volume(unpublish_request(id, target))
                    .await,
                Code::Ok,
            );
            assert!(
                std::fs::symlink_metadata(target).is_err(),
                "{target:?} removed"
            );
        }
    }
    for _ in 0..2 {
        expect_code(
            client
                .node_unstage_volume(unstage_request(id, staging))
                .await,
            Code::Ok,
        );
    }
    assert!(!table().await.is_mount_point(staging));
    assert!(
        staging.is_dir(),
        "the CO's staging directory is left to the CO"
    );
    assert!(loops_over(backing).is_empty(), "detached after unstage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext4_volume_lifecycle() {
    if !root_or_skip("ext4_volume_lifecycle") {
        return;
    }
    filesystem_lifecycle("ext4", 64 * MIB, 96 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xfs_volume_lifecycle() {
    if !root_or_skip("xfs_volume_lifecycle") {
        return;
    }
    // mkfs.xfs refuses filesystems below 300 MiB.
    filesystem_lifecycle("xfs", 320 * MIB, 400 * MIB).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_volume_lifecycle() {
    if !root_or_skip("block_volume_lifecycle") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(2);
    let size = 16 * MIB;
    let backing = lab.export(&id, size);
    let staging = lab.staging(&id);
    let capability = block_capability();

    for _ in 0..2 {
        let request = stage_request(&id, &staging, capability.clone(), lab.context(&id));
        expect_code(client.node_stage_volume(request).await, Code::Ok);
    }
    // Nothing at the staging path: still the empty directory kubelet made.
    assert_eq!(std::fs::read_dir(&staging).unwrap().count(), 0);
    assert!(!table().await.is_mount_point(&staging));
    let loops = loops_over(&backing);
    assert_eq!(loops.len(), 1);
    let (loop_path, loop_device) = loops[0].clone();

    let target = lab.block_target(&id, "pod-a");
    let reader = lab.block_target(&id, "pod-b");
    for _ in 0..2 {
        let rw = publish_request(&id, &staging, &target, capability.clone(), false);
        expect_code(client.node_publish_volume(rw).await, Code::Ok);
        let ro = publish_request(&id, &staging, &reader, capability.clone(), true);
        expect_code(client.node_publish_volume(ro).await, Code::Ok);
    }
    for (node, mode) in [(&target, 0o660), (&reader, 0o440)] {
        let meta = std::fs::symlink_metadata(node).unwrap();
        assert!(meta.file_type().is_block_device());
        assert_eq!(DeviceNumber::from_raw(meta.rdev()), loop_device);
        assert_eq!(meta.permissions().mode() & 0o777, mode);
    }
    // A device node, not a mount: nothing of the volume appears in the mount table.
    assert_eq!(table().await.mount_count(loop_device), 0);
    let flipped = publish_request(&id, &staging, &target, capability.clone(), true);
    expect_code(
        client.node_publish_volume(flipped).await,
        Code::AlreadyExists,
    );

    // Raw I/O through the published node lands on the device.
    let data = pattern(MIB as usize, 3);
    {
        let mut node = std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .unwrap();
        node.seek(SeekFrom::Start(4 * MIB)).unwrap();
        node.write_all(&data).unwrap();
        node.sync_all().unwrap();
    }
    let mut back = vec![0u8; data.len()];
    // Read back through the loop device itself.
    let mut device = std::fs::File::open(&loop_path).unwrap();
    device.seek(SeekFrom::Start(4 * MIB)).unwrap();
    device.read_exact(&mut back).unwrap();
    assert_eq!(back, data);

    let stats = client
        .node_get_volume_stats(stats_request(&id, &target))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stats.usage.len(), 1);
    assert_eq!(stats.usage[0].total, size as i64);
    assert!(!stats.volume_condition.unwrap().abnormal);

    let grown = 24 * MIB;
    grow_file(&backing, grown);
    let request = expand_request(&id, &target, &staging, grown, capability.clone());
    let response = client
        .node_expand_volume(request)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.capacity_bytes, grown as i64);
    assert_eq!(
        mounts::stats::block_device_size(&target, mounts::fixtures::soon())
            .await
            .unwrap(),
        grown
    );

    drop(device);
    unstage_refused_then_teardown(&mut client, &id, &backing, &staging, &[&target, &reader]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condition_turns_abnormal_when_the_device_goes_away() {
    if !root_or_skip("condition_turns_abnormal_when_the_device_goes_away") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(3);
    let backing = lab.export(&id, 8 * MIB);
    let staging = lab.staging(&id);
    let capability = block_capability();
    let request = stage_request(&id, &staging, capability.clone(), lab.context(&id));
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    let target = lab.block_target(&id, "pod-a");
    let request = publish_request(&id, &staging, &target, capability, false);
    expect_code(client.node_publish_volume(request).await, Code::Ok);

    // The device disappears under the published node.
    let (loop_path, _) = loops_over(&backing)[0].clone();
    let status = std::process::Command::new("losetup")
        .arg("-d")
        .arg(&loop_path)
        .status()
        .unwrap();
    assert!(status.success());
    // The kernel clears a detached loop device asynchronously.
    tokio::time::timeout(Duration::from_secs(5), async {
        while !loops_over(&backing).is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the loop device goes away");
    let stats = client
        .node_get_volume_stats(stats_request(&id, &target))
        .await
        .unwrap()
        .into_inner();
    let condition = stats.volume_condition.unwrap();
    assert!(condition.abnormal);
    assert!(
        condition.message.contains("no loop device"),
        "{}",
        condition.message
    );

    // Teardown still works, and says nothing is left.
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

/// Writes an executable shell script standing in for a tool.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blkid_error_never_leads_to_mkfs() {
    if !root_or_skip("a_blkid_error_never_leads_to_mkfs") {
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
async fn wrong_content_at_the_staging_path_is_a_failed_precondition() {
    if !root_or_skip("wrong_content_at_the_staging_path_is_a_failed_precondition") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(5);
    let backing = lab.export(&id, 8 * MIB);

    // Something else mounted at the staging path.
    let staging = lab.staging(&id);
    rustix::mount::mount(
        "tmpfs",
        &staging,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        c"size=1m",
    )
    .unwrap();
    for capability in [mount_capability("ext4", &[]), block_capability()] {
        let request = stage_request(&id, &staging, capability, lab.context(&id));
        let status = client.node_stage_volume(request).await.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    }
    assert_eq!(table().await.top_at(&staging).unwrap().fs_type, "tmpfs");
    assert!(loops_over(&backing).is_empty(), "nothing attached");

    // A regular file where a directory is expected.
    let file = lab.path("kubelet/plugins/staging/file");
    std::fs::write(&file, b"not a directory").unwrap();
    let request = stage_request(&id, &file, mount_capability("ext4", &[]), lab.context(&id));
    let status = client.node_stage_volume(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");
    assert!(loops_over(&backing).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filesystem_of_another_type_is_neither_mounted_nor_formatted() {
    if !root_or_skip("a_filesystem_of_another_type_is_neither_mounted_nor_formatted") {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_mount_detaches_what_the_stage_attached() {
    if !root_or_skip("a_failed_mount_detaches_what_the_stage_attached") {
        return;
    }
    let lab = LoopLab::start().await;
    let mut client = lab.client();
    let id = volume_id(7);
    let backing = lab.export(&id, 32 * MIB);
    let staging = lab.staging(&id);
    let request = stage_request(
        &id,
        &staging,
        mount_capability("ext4", &["data=bogus"]),
        lab.context(&id),
    );
    let status = client.node_stage_volume(request).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert!(!table().await.is_mount_point(&staging));
    assert!(loops_over(&backing).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_target_is_not_unpublished_and_not_removed() {
    if !root_or_skip("a_busy_target_is_not_unpublished_and_not_removed") {
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
async fn a_target_directory_with_content_is_left_in_place() {
    if !root_or_skip("a_target_directory_with_content_is_left_in_place") {
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

/// A blkid whose first run reports through one FIFO that it started, then waits for a line
/// on another before running the real blkid: it holds a stage open as long as the test wants.
fn gated_blkid(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let started = dir.join("started");
    let release = dir.join("release");
    for fifo in [&started, &release] {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
    }
    let blkid = script(
        dir,
        "blkid",
        &format!(
            "if [ ! -e {gated} ]; then touch {gated}; echo started > {}; read line < {}; fi\n\
             exec blkid \"$@\"",
            started.display(),
            release.display(),
            gated = dir.join("gated").display(),
        ),
    );
    (blkid, started, release)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_call_for_a_busy_volume_is_aborted() {
    if !root_or_skip("a_second_call_for_a_busy_volume_is_aborted") {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_callers_timeout_bounds_the_operation() {
    if !root_or_skip("the_callers_timeout_bounds_the_operation") {
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
