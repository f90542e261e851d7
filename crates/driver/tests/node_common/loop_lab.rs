//! The loop-fabric world of the root tests: a simulator data directory with an export record,
//! a kubelet-like tree, and the node plugin with the loop fabric over them, plus what the tests
//! look at (loop devices, the mount table) and tools that stand in for real ones.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use csi::v1::{CapacityRange, NodeExpandVolumeRequest, NodeGetVolumeStatsRequest};
use driver::node::{ClusterPods, LoopFabric, NodeConfig};
use mounts::DeviceNumber;
use mounts::mountinfo::{MountTable, read_self_mount_table};
use mounts::tools::ToolPaths;

use super::{PREFIX, Plugin, context, nqn_of};

/// A scratch world: a simulator data directory with an export record, a kubelet-like tree,
/// and the node plugin with the loop fabric over them. Dropping it unmounts and detaches
/// whatever a failed test left behind.
pub struct LoopLab {
    pub dir: tempfile::TempDir,
    plugin: Option<Plugin>,
    exports: std::sync::Mutex<Vec<serde_json::Value>>,
}

pub const PORT: u16 = 4420;

impl LoopLab {
    pub async fn start() -> Self {
        Self::with_tools(ToolPaths::default()).await
    }

    pub async fn with_tools(tools: ToolPaths) -> Self {
        Self::build(tools, Duration::ZERO, None).await
    }

    /// With the node's access to the cluster's pods.
    pub async fn with_cluster_pods(pods: ClusterPods) -> Self {
        Self::build(ToolPaths::default(), Duration::ZERO, Some(pods)).await
    }

    /// With the background check of staged volumes running every `interval` (the other labs
    /// run none, so that it never races a test's own calls).
    pub async fn with_health_check(interval: Duration) -> Self {
        Self::build(ToolPaths::default(), interval, None).await
    }

    /// With the node's configuration changed by `adjust`.
    pub async fn with_config(adjust: impl FnOnce(&mut NodeConfig)) -> Self {
        Self::build_with(ToolPaths::default(), Duration::ZERO, None, adjust).await
    }

    async fn build(tools: ToolPaths, health_interval: Duration, pods: Option<ClusterPods>) -> Self {
        Self::build_with(tools, health_interval, pods, |_| {}).await
    }

    async fn build_with(
        tools: ToolPaths,
        health_interval: Duration,
        pods: Option<ClusterPods>,
        adjust: impl FnOnce(&mut NodeConfig),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sim = dir.path().join("sim");
        std::fs::create_dir_all(sim.join("files/storage-pool")).unwrap();
        let mut config = NodeConfig::new("node-1", PREFIX);
        config.block_publish_dir = dir.path().join("kubelet/volumeDevices");
        config.tools = tools;
        config.health_interval = health_interval;
        adjust(&mut config);
        let fabric = Arc::new(LoopFabric::new(&sim));
        let plugin = Plugin::start_with_pods(dir.path(), config, fabric, pods).await;
        Self {
            dir,
            plugin: Some(plugin),
            exports: Default::default(),
        }
    }

    pub fn client(&self) -> csi::v1::node_client::NodeClient<tonic::transport::Channel> {
        self.plugin.as_ref().unwrap().client.clone()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// Writes the export records as the simulator does: one `exports/<nqn>.json` each, and
    /// none for an export no longer listed.
    pub fn write_record(&self) {
        let exports = self.exports.lock().unwrap();
        let dir = self.path("sim/exports");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for export in exports.iter() {
            let nqn = export["nqn"].as_str().unwrap();
            std::fs::write(
                dir.join(format!("{nqn}.json")),
                serde_json::to_vec_pretty(export).unwrap(),
            )
            .unwrap();
        }
    }

    /// Exports a new sparse disk of `size` bytes the way the simulator records it.
    pub fn export(&self, id: &str, size: u64) -> PathBuf {
        self.export_as(id, &nqn_of(id), size)
    }

    /// [`Self::export`] under another NQN (one the driver does not manage, say).
    pub fn export_as(&self, id: &str, nqn: &str, size: u64) -> PathBuf {
        let backing = self.path(&format!("sim/files/storage-pool/{id}.img"));
        std::fs::File::create(&backing)
            .unwrap()
            .set_len(size)
            .unwrap();
        self.exports.lock().unwrap().push(serde_json::json!({
            "slot": id,
            "nqn": nqn,
            "address": "127.0.0.1",
            "port": PORT,
            "file_path": format!("/storage-pool/{id}.img"),
            "backing_file": backing,
            "size": size,
            "nvmet": false,
            "uuid": "00000000-0000-4000-8000-00000000000a",
        }));
        self.write_record();
        backing
    }

    /// Makes the record say that `id` is now served from `backing` with namespace `uuid`: what
    /// a host sees when the RDS comes back with a new namespace for the disk.
    pub fn replace_export(&self, id: &str, backing: &Path, uuid: &str) {
        for entry in self.exports.lock().unwrap().iter_mut() {
            if entry["slot"] == id {
                entry["backing_file"] = serde_json::json!(backing);
                entry["uuid"] = serde_json::json!(uuid);
            }
        }
        self.write_record();
    }

    /// The node's record of a staged volume, as stored in its state directory.
    pub fn staged_record(&self, id: &str) -> Option<serde_json::Value> {
        let text = std::fs::read(self.path(&format!("state/{id}.json"))).ok()?;
        Some(serde_json::from_slice(&text).unwrap())
    }

    /// A staging directory, created as kubelet does.
    pub fn staging(&self, id: &str) -> PathBuf {
        let path = self.path(&format!("kubelet/plugins/staging/{id}"));
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// A filesystem publish target: the parent exists, the target does not.
    pub fn fs_target(&self, id: &str, pod: &str) -> PathBuf {
        let parent = self.path(&format!("kubelet/pods/{pod}/volumes/{id}"));
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("mount")
    }

    /// A filesystem publish target where kubelet puts it for pod `pod_uid`.
    pub fn kubelet_fs_target(&self, id: &str, pod_uid: &str) -> PathBuf {
        let parent = self.path(&format!(
            "kubelet/pods/{pod_uid}/volumes/kubernetes.io~csi/{id}"
        ));
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("mount")
    }

    /// A block publish target below the publish directory the service scans.
    pub fn block_target(&self, id: &str, pod: &str) -> PathBuf {
        let parent = self.path(&format!("kubelet/volumeDevices/publish/{id}"));
        std::fs::create_dir_all(&parent).unwrap();
        parent.join(pod)
    }

    pub fn context(&self, id: &str) -> std::collections::HashMap<String, String> {
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
pub fn loops_under(root: &Path) -> Vec<(PathBuf, DeviceNumber)> {
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
pub fn loops_over(backing: &Path) -> Vec<(PathBuf, DeviceNumber)> {
    loops_under(&std::fs::canonicalize(backing).unwrap())
}

pub async fn table() -> MountTable {
    read_self_mount_table(mounts::fixtures::soon())
        .await
        .unwrap()
}

pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn grow_file(path: &Path, size: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(size)
        .unwrap();
}

pub fn stats_request(id: &str, path: &Path) -> NodeGetVolumeStatsRequest {
    NodeGetVolumeStatsRequest {
        volume_id: id.into(),
        volume_path: path.display().to_string(),
        staging_target_path: String::new(),
    }
}

pub fn expand_request(
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

pub fn errno_of(error: &std::io::Error) -> i32 {
    error.raw_os_error().unwrap_or(0)
}

/// Writes an executable shell script standing in for a tool.
pub fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// A blkid whose first run reports through one FIFO that it started, then waits for a line
/// on another before running the real blkid: it holds a stage open as long as the test wants.
pub fn gated_blkid(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
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
