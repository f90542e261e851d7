//! Is anything of the demo still there? On the host: mounts under the work directory, loop
//! devices over its files, NVMe controllers and nvmet subsystems of its volumes. On the
//! (simulated) RDS: file disks, volume images, used pool space. Views are gathered by the
//! `*_view` functions; the judgements are pure.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mounts::mountinfo::{MountEntry, read_self_mount_table};
use routeros::{Client, FileDisk, FilePath, Pool};

use crate::error::Result;
use crate::render::bytes;

/// Where the kernel lists nvmet subsystems.
const NVMET_SUBSYSTEMS: &str = "/sys/kernel/config/nvmet/subsystems";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    Mount { path: PathBuf, source: String },
    Loop { device: String, backing: PathBuf },
    NvmeController { name: String, nqn: String },
    NvmetSubsystem { nqn: String },
    Disk { slot: String },
    File { path: String },
    Subvolume { name: String },
    PoolInUse { free: u64, size: u64 },
}

impl fmt::Display for Leftover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Leftover::Mount { path, source } => {
                write!(f, "{source} still mounted at {}", path.display())
            }
            Leftover::Loop { device, backing } => {
                write!(f, "/dev/{device} still attached to {}", backing.display())
            }
            Leftover::NvmeController { name, nqn } => {
                write!(f, "NVMe controller {name} still connected to {nqn}")
            }
            Leftover::NvmetSubsystem { nqn } => write!(f, "nvmet subsystem {nqn} still exported"),
            Leftover::Disk { slot } => write!(f, "the RDS still has disk {slot}"),
            Leftover::File { path } => write!(f, "the RDS still has file {path}"),
            Leftover::Subvolume { name } => write!(f, "the RDS still has subvolume {name}"),
            Leftover::PoolInUse { free, size } => write!(
                f,
                "{} of the RDS pool is still in use: files are left in it",
                bytes(size.saturating_sub(*free))
            ),
        }
    }
}

/// A loop device and the file it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopBinding {
    pub device: String,
    pub backing: PathBuf,
}

/// What the host shows.
#[derive(Debug, Clone, Default)]
pub struct HostView {
    pub mounts: Vec<MountEntry>,
    pub loops: Vec<LoopBinding>,
    /// `(controller, subsystem NQN)`.
    pub controllers: Vec<(String, String)>,
    pub nvmet_subsystems: Vec<String>,
}

/// The host's leftovers: anything under `work_dir` (which must be canonical: the kernel
/// shows resolved paths), and NVMe objects of the demo's volumes (`nqns`) only, since a
/// Kubernetes node running the demo may have volumes of its own.
pub fn host_leftovers(view: &HostView, work_dir: &Path, nqns: &BTreeSet<String>) -> Vec<Leftover> {
    let mut found = Vec::new();
    let mut mounts: Vec<&MountEntry> = view
        .mounts
        .iter()
        .filter(|m| m.mount_point.starts_with(work_dir))
        .collect();
    // Deepest first, later mounts first: the order in which they can be unmounted.
    mounts.sort_by_key(|m| {
        (
            std::cmp::Reverse(m.mount_point.components().count()),
            std::cmp::Reverse(m.mount_id),
        )
    });
    found.extend(mounts.into_iter().map(|m| Leftover::Mount {
        path: m.mount_point.clone(),
        source: m.source.clone(),
    }));
    found.extend(
        view.loops
            .iter()
            .filter(|l| l.backing.starts_with(work_dir))
            .map(|l| Leftover::Loop {
                device: l.device.clone(),
                backing: l.backing.clone(),
            }),
    );
    found.extend(
        view.controllers
            .iter()
            .filter(|(_, nqn)| nqns.contains(nqn))
            .map(|(name, nqn)| Leftover::NvmeController {
                name: name.clone(),
                nqn: nqn.clone(),
            }),
    );
    found.extend(
        view.nvmet_subsystems
            .iter()
            .filter(|nqn| nqns.contains(*nqn))
            .map(|nqn| Leftover::NvmetSubsystem { nqn: nqn.clone() }),
    );
    found
}

/// What the simulated RDS shows.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub disks: Vec<FileDisk>,
    /// The demo's volume images that still exist.
    pub files: Vec<String>,
    /// Every btrfs subvolume (the simulator is the demo's own: any is a leftover).
    pub subvolumes: Vec<String>,
    pub pool: Pool,
}

/// The device's leftovers. The simulator is the demo's own, so any file disk is one, and
/// its pool is empty exactly when its free space equals its size.
pub fn device_leftovers(view: &DeviceView) -> Vec<Leftover> {
    let mut found: Vec<Leftover> = view
        .disks
        .iter()
        .map(|d| Leftover::Disk {
            slot: d.slot.clone(),
        })
        .collect();
    found.extend(
        view.files
            .iter()
            .map(|path| Leftover::File { path: path.clone() }),
    );
    found.extend(
        view.subvolumes
            .iter()
            .map(|name| Leftover::Subvolume { name: name.clone() }),
    );
    if view.pool.free != view.pool.size {
        found.push(Leftover::PoolInUse {
            free: view.pool.free,
            size: view.pool.size,
        });
    }
    found
}

/// `loop/backing_file` shows `<path> (deleted)` once the file is gone.
fn backing_path(text: &str) -> PathBuf {
    let text = text.trim_end_matches('\n');
    PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(text))
}

fn loop_bindings() -> Vec<LoopBinding> {
    let Ok(entries) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    let mut found: Vec<LoopBinding> = entries
        .flatten()
        .filter_map(|entry| {
            let device = entry.file_name().to_string_lossy().into_owned();
            if !device.starts_with("loop") {
                return None;
            }
            // Only bound loop devices have the attribute.
            let text = std::fs::read_to_string(entry.path().join("loop/backing_file")).ok()?;
            Some(LoopBinding {
                device,
                backing: backing_path(&text),
            })
        })
        .collect();
    found.sort_by(|a, b| a.device.cmp(&b.device));
    found
}

fn nvmet_subsystems() -> Vec<String> {
    std::fs::read_dir(NVMET_SUBSYSTEMS)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the mount table, loop devices, NVMe controllers and nvmet subsystems.
pub async fn host_view() -> Result<HostView> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mounts = read_self_mount_table(deadline).await?.entries().to_vec();
    let controllers = nvme::Sysfs::default()
        .scan()?
        .controllers
        .into_iter()
        .map(|c| (c.name, c.subsystem_nqn))
        .collect();
    Ok(HostView {
        mounts,
        loops: loop_bindings(),
        controllers,
        nvmet_subsystems: nvmet_subsystems(),
    })
}

/// Asks the simulator over its SSH CLI, as the controller does.
pub async fn device_view(client: &Client, pool: &str, images: &[FilePath]) -> Result<DeviceView> {
    let disks = client.list_disks("").await?;
    let mut files = Vec::new();
    for image in images {
        if let Some(file) = client.get_file(image).await? {
            files.push(file.name);
        }
    }
    Ok(DeviceView {
        disks,
        files,
        subvolumes: client
            .subvolumes()
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect(),
        pool: client.pool(pool).await?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(id: u64, path: &str) -> MountEntry {
        let line = format!("{id} 1 7:3 / {path} rw,relatime shared:1 - ext4 /dev/loop3 rw\n");
        mounts::mountinfo::MountTable::parse(line.as_bytes())
            .unwrap()
            .entries()[0]
            .clone()
    }

    fn nqns(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn only_what_lies_under_the_work_dir_or_belongs_to_its_volumes_counts() {
        let view = HostView {
            mounts: vec![
                mount(30, "/w/kubelet/staging/pvc-a"),
                mount(31, "/w/kubelet/pods/pvc-a/mount"),
                mount(32, "/var/lib/kubelet/pods/x/mount"),
                mount(33, "/w2/other"),
            ],
            loops: vec![
                LoopBinding {
                    device: "loop3".into(),
                    backing: "/w/sim/files/storage-pool/pvc-a.img".into(),
                },
                LoopBinding {
                    device: "loop0".into(),
                    backing: "/var/lib/images/disk.img".into(),
                },
            ],
            controllers: vec![
                ("nvme0".into(), "nqn.2000-02.com.mikrotik:pvc-a".into()),
                ("nvme1".into(), "nqn.2000-02.com.mikrotik:pvc-real".into()),
            ],
            nvmet_subsystems: vec!["nqn.2000-02.com.mikrotik:pvc-a".into(), "other".into()],
        };
        let found = host_leftovers(
            &view,
            Path::new("/w"),
            &nqns(&["nqn.2000-02.com.mikrotik:pvc-a"]),
        );
        let text: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            [
                "/dev/loop3 still mounted at /w/kubelet/pods/pvc-a/mount",
                "/dev/loop3 still mounted at /w/kubelet/staging/pvc-a",
                "/dev/loop3 still attached to /w/sim/files/storage-pool/pvc-a.img",
                "NVMe controller nvme0 still connected to nqn.2000-02.com.mikrotik:pvc-a",
                "nvmet subsystem nqn.2000-02.com.mikrotik:pvc-a still exported",
            ]
        );
        assert!(host_leftovers(&view, Path::new("/elsewhere"), &nqns(&[])).is_empty());
    }

    fn pool(free: u64, size: u64) -> Pool {
        Pool {
            slot: "storage-pool".into(),
            mount_point: "storage-pool".into(),
            fs: "btrfs".into(),
            size,
            free,
            mounted: true,
            state: Some("clean".into()),
        }
    }

    #[test]
    fn the_device_is_clean_only_without_disks_files_or_used_space() {
        let clean = DeviceView {
            disks: Vec::new(),
            files: Vec::new(),
            subvolumes: Vec::new(),
            pool: pool(10 << 40, 10 << 40),
        };
        assert!(device_leftovers(&clean).is_empty());
        let used = DeviceView {
            files: vec!["storage-pool/pvc-a.img".into()],
            subvolumes: vec!["snap-a".into()],
            pool: pool((10 << 40) - (1 << 30), 10 << 40),
            ..clean
        };
        let text: Vec<String> = device_leftovers(&used)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            text,
            [
                "the RDS still has file storage-pool/pvc-a.img",
                "the RDS still has subvolume snap-a",
                "1 GiB of the RDS pool is still in use: files are left in it",
            ]
        );
    }

    #[test]
    fn deleted_backing_files_still_name_their_path() {
        assert_eq!(
            backing_path("/w/sim/a.img (deleted)\n"),
            Path::new("/w/sim/a.img")
        );
        assert_eq!(backing_path("/w/sim/a.img\n"), Path::new("/w/sim/a.img"));
    }
}
