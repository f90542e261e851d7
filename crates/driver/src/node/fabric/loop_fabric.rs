//! TEST AND DEMO ONLY: attaches volumes exported by the RDS simulator on this same host
//! through loop devices over the simulator's backing files.
//!
//! It exists so that the whole node path (format, mount, publish, expand, teardown) can run
//! on machines without NVMe/TCP. It offers none of the guarantees of a real fabric (no
//! network, no host identity, no access control) and must never be used on a real node.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use mounts::DeviceNumber;
use mounts::blocking::run_blocking;
use mounts::devnode::{NodeState, inspect_block_node};
use mounts::phase;
use mounts::stats::{block_device_size, is_claimed_exclusively};
use mounts::tools::run_expecting;
use nvme::NamespaceIds;
use tokio::time::Instant;

use super::exports::{ExportEntry, read_export, read_exports};
use super::{AttachedDevice, Condition, Fabric, FabricError, ManagedController};
use crate::params::VolumeContext;

/// How long a detached loop device may take to be cleared by the kernel.
const DETACH_SETTLE_TIME: Duration = Duration::from_secs(2);
/// Sysfs is re-read in steps this small while waiting.
const POLL_STEP: Duration = Duration::from_millis(5);

/// A loop device bound to a backing file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BoundLoop {
    name: String,
    device: DeviceNumber,
}

/// The loop fabric (see the module documentation: test and demo only).
#[derive(Debug)]
pub struct LoopFabric {
    sim_data_dir: PathBuf,
    sysfs_root: PathBuf,
    dev_root: PathBuf,
    losetup: PathBuf,
    /// NQN → backing file of attachments made by this process, so that a volume whose
    /// export has vanished from the record can still be detached.
    attached: Mutex<HashMap<String, PathBuf>>,
}

impl LoopFabric {
    /// A loop fabric over the simulator whose data directory is `sim_data_dir`.
    pub fn new(sim_data_dir: impl Into<PathBuf>) -> Self {
        let sim_data_dir = sim_data_dir.into();
        tracing::warn!(
            sim_data_dir = %sim_data_dir.display(),
            "fabric `loop` is for TESTS AND DEMONSTRATIONS ONLY: volumes are attached as loop \
             devices over the RDS simulator's files on this host; never use it on a real node"
        );
        Self {
            sim_data_dir,
            sysfs_root: "/sys".into(),
            dev_root: "/dev".into(),
            losetup: "losetup".into(),
            attached: Mutex::new(HashMap::new()),
        }
    }

    fn attached(&self) -> std::sync::MutexGuard<'_, HashMap<String, PathBuf>> {
        self.attached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The export record's entry for `nqn`, read on a blocking thread.
    async fn export_of(
        &self,
        nqn: &str,
        deadline: Instant,
    ) -> Result<Option<ExportEntry>, FabricError> {
        let dir = self.sim_data_dir.clone();
        let wanted = nqn.to_owned();
        run_blocking("reading the export record", deadline, move || {
            read_export(&dir, &wanted)
        })
        .await
    }

    /// The backing file of `nqn`: from the export record, else from this process's memory.
    async fn backing_of(
        &self,
        nqn: &str,
        deadline: Instant,
    ) -> Result<Option<PathBuf>, FabricError> {
        Ok(match self.export_of(nqn, deadline).await? {
            Some(entry) => Some(entry.backing_file),
            None => self.attached().get(nqn).cloned(),
        })
    }

    /// Loop devices bound to `backing` (compared after resolving symlinks, as the kernel
    /// shows the path it opened).
    async fn loops_backed_by(
        &self,
        backing: &Path,
        deadline: Instant,
    ) -> Result<Vec<BoundLoop>, FabricError> {
        let block_dir = self.sysfs_root.join("block");
        let backing = backing.to_path_buf();
        let op = format!("looking for loop devices over {}", backing.display());
        run_blocking(&op, deadline, move || {
            let wanted = match std::fs::canonicalize(&backing) {
                Ok(real) => real,
                // A deleted backing file is shown as "<path> (deleted)": never a match.
                Err(_) => return Ok(Vec::new()),
            };
            let entries = std::fs::read_dir(&block_dir)
                .map_err(|e| FabricError::Unexpected(format!("{}: {e}", block_dir.display())))?;
            let mut found = Vec::new();
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with("loop") {
                    continue;
                }
                // Only bound loop devices have `loop/backing_file`.
                let Ok(bound_to) = std::fs::read_to_string(entry.path().join("loop/backing_file"))
                else {
                    continue;
                };
                if Path::new(bound_to.trim_end_matches('\n')) != wanted {
                    continue;
                }
                let dev = std::fs::read_to_string(entry.path().join("dev"))
                    .map_err(|e| FabricError::Unexpected(format!("{name}/dev: {e}")))?;
                let device = dev
                    .parse()
                    .map_err(|e| FabricError::Unexpected(format!("{name}/dev: {e}")))?;
                found.push(BoundLoop { name, device });
            }
            found.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(found)
        })
        .await
    }

    /// The loop device as an attachment; it shows the identifiers of the simulator's export
    /// record, so that a simulator restarted with new namespace identifiers looks to the node
    /// as it would over NVMe/TCP.
    fn attached_device(
        &self,
        bound: &BoundLoop,
        newly_attached: bool,
        ids: NamespaceIds,
    ) -> AttachedDevice {
        AttachedDevice {
            path: self.dev_root.join(&bound.name),
            device: bound.device,
            newly_attached,
            ids,
        }
    }

    async fn losetup(&self, args: &[OsString], deadline: Instant) -> Result<String, FabricError> {
        Ok(run_expecting(&self.losetup, args, &[0], deadline)
            .await?
            .stdout)
    }
}

#[async_trait::async_trait]
impl Fabric for LoopFabric {
    fn name(&self) -> &'static str {
        "loop"
    }

    async fn attach(
        &self,
        volume: &VolumeContext,
        deadline: Instant,
    ) -> Result<AttachedDevice, FabricError> {
        // Timed in the phases of the real fabric (see `mounts::phase`): looking for an
        // attachment, making one (losetup), finding its device.
        let nqn = volume.nqn.as_str();
        let export = phase::timed("export record", self.export_of(nqn, deadline))
            .await?
            .ok_or_else(|| FabricError::NotExported {
                nqn: nqn.to_owned(),
                reason: format!(
                    "no record in {}",
                    self.sim_data_dir
                        .join(super::exports::EXPORTS_DIR)
                        .display()
                ),
            })?;
        if export.port != volume.nvme_port {
            return Err(FabricError::NotExported {
                nqn: nqn.to_owned(),
                reason: format!(
                    "exported on port {}, the volume context says {}",
                    export.port, volume.nvme_port
                ),
            });
        }
        if let Some(bound) = phase::timed(
            "sysfs scan",
            self.loops_backed_by(&export.backing_file, deadline),
        )
        .await?
        .first()
        {
            self.attached()
                .insert(nqn.to_owned(), export.backing_file.clone());
            return Ok(self.attached_device(bound, false, export.namespace_ids()));
        }
        let shown = phase::timed(
            "connect",
            self.losetup(
                &[
                    "--find".into(),
                    "--show".into(),
                    export.backing_file.clone().into(),
                ],
                deadline,
            ),
        )
        .await?;
        let path = PathBuf::from(shown.trim());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let attached = phase::timed("device", async {
            let bound = self
                .loops_backed_by(&export.backing_file, deadline)
                .await?
                .into_iter()
                .find(|bound| bound.name == name)
                .ok_or_else(|| {
                    FabricError::Unexpected(format!(
                        "losetup answered {shown:?} but sysfs shows no such loop device over {}",
                        export.backing_file.display()
                    ))
                })?;
            let attached = self.attached_device(&bound, true, export.namespace_ids());
            let (path, device) = (attached.path.clone(), bound.device);
            let op = format!("inspecting {}", path.display());
            let state = run_blocking(&op, deadline, move || {
                Ok::<_, FabricError>(inspect_block_node(&path, device)?)
            })
            .await?;
            match state {
                NodeState::Matches => Ok(attached),
                other => Err(FabricError::Unexpected(format!(
                    "{} is {other:?}, expected block device {}",
                    attached.path.display(),
                    bound.device
                ))),
            }
        })
        .await?;
        self.attached()
            .insert(nqn.to_owned(), export.backing_file.clone());
        tracing::info!(nqn, device = %attached.path.display(), backing = %export.backing_file.display(),
            "attached through a loop device (test/demo fabric)");
        Ok(attached)
    }

    async fn find(
        &self,
        nqn: &str,
        deadline: Instant,
    ) -> Result<Option<AttachedDevice>, FabricError> {
        let (backing, ids) = match self.export_of(nqn, deadline).await? {
            Some(entry) => {
                let ids = entry.namespace_ids();
                (entry.backing_file, ids)
            }
            None => match self.attached().get(nqn).cloned() {
                Some(backing) => (backing, NamespaceIds::default()),
                None => return Ok(None),
            },
        };
        Ok(self
            .loops_backed_by(&backing, deadline)
            .await?
            .first()
            .map(|bound| self.attached_device(bound, false, ids)))
    }

    async fn detach(&self, nqn: &str, deadline: Instant) -> Result<(), FabricError> {
        let Some(backing) = self.backing_of(nqn, deadline).await? else {
            return Ok(());
        };
        for bound in self.loops_backed_by(&backing, deadline).await? {
            let path = self.dev_root.join(&bound.name);
            if is_claimed_exclusively(&path, deadline).await? {
                return Err(FabricError::InUse {
                    nqn: nqn.to_owned(),
                    reason: format!(
                        "{} is claimed (mounted or opened exclusively)",
                        path.display()
                    ),
                });
            }
            self.losetup(&["-d".into(), path.clone().into()], deadline)
                .await?;
        }
        // `losetup -d` only marks a device for removal at its last close, and the kernel
        // then clears it asynchronously: give that a moment, then a device still bound is
        // held open by someone.
        let settle = deadline.min(Instant::now() + DETACH_SETTLE_TIME);
        let mut lingering = self.loops_backed_by(&backing, deadline).await?;
        while !lingering.is_empty() && Instant::now() < settle {
            tokio::time::sleep(POLL_STEP).await;
            lingering = self.loops_backed_by(&backing, deadline).await?;
        }
        if let Some(bound) = lingering.first() {
            return Err(FabricError::InUse {
                nqn: nqn.to_owned(),
                reason: format!(
                    "/dev/{} is still open; it goes away when the last user closes it",
                    bound.name
                ),
            });
        }
        self.attached().remove(nqn);
        tracing::info!(nqn, "loop device detached (test/demo fabric)");
        Ok(())
    }

    async fn rescan(
        &self,
        nqn: &str,
        min_size_bytes: u64,
        deadline: Instant,
    ) -> Result<u64, FabricError> {
        let attached = self
            .find(nqn, deadline)
            .await?
            .ok_or_else(|| FabricError::NotExported {
                nqn: nqn.to_owned(),
                reason: "no loop device is attached for it".into(),
            })?;
        // LOOP_SET_CAPACITY: the loop driver re-reads the backing file's size.
        self.losetup(&["-c".into(), attached.path.clone().into()], deadline)
            .await?;
        let size = block_device_size(&attached.path, deadline).await?;
        if size < min_size_bytes {
            return Err(FabricError::TooSmall {
                nqn: nqn.to_owned(),
                found: size,
                wanted: min_size_bytes,
            });
        }
        Ok(size)
    }

    /// Gone once no loop device with that number serves the export's current backing file
    /// (the simulator's record is this fabric's notion of the namespace).
    async fn is_gone(
        &self,
        nqn: &str,
        device: DeviceNumber,
        deadline: Instant,
    ) -> Result<bool, FabricError> {
        let Some(backing) = self.backing_of(nqn, deadline).await? else {
            return Ok(true);
        };
        Ok(!self
            .loops_backed_by(&backing, deadline)
            .await?
            .iter()
            .any(|bound| bound.device == device))
    }

    /// The exports (and this process's attachments) with a loop device over their file; a loop
    /// device has no controller state, so each is `live`.
    async fn managed_controllers(
        &self,
        deadline: Instant,
    ) -> Result<Vec<ManagedController>, FabricError> {
        let dir = self.sim_data_dir.clone();
        let mut candidates: HashMap<String, PathBuf> =
            run_blocking("reading the export record", deadline, move || {
                Ok::<_, FabricError>(
                    read_exports(&dir)?
                        .into_iter()
                        .map(|entry| (entry.nqn, entry.backing_file))
                        .collect(),
                )
            })
            .await?;
        for (nqn, backing) in self.attached().iter() {
            candidates
                .entry(nqn.clone())
                .or_insert_with(|| backing.clone());
        }
        let mut attached = Vec::new();
        for (nqn, backing) in candidates {
            if !self.loops_backed_by(&backing, deadline).await?.is_empty() {
                attached.push(ManagedController { nqn, state: "live" });
            }
        }
        attached.sort_by(|a, b| a.nqn.cmp(&b.nqn));
        Ok(attached)
    }

    async fn condition(&self, nqn: &str, deadline: Instant) -> Result<Condition, FabricError> {
        if self.export_of(nqn, deadline).await?.is_none() {
            return Ok(Condition::Abnormal(format!(
                "{nqn} is no longer exported by the simulator"
            )));
        }
        Ok(match self.find(nqn, deadline).await? {
            Some(_) => Condition::Healthy,
            None => Condition::Abnormal(format!("no loop device is attached for {nqn}")),
        })
    }
}
