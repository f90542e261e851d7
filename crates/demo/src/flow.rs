//! The run, step by step: start the three processes, then drive them over CSI as Kubernetes
//! would (external-provisioner's CreateVolume, kubelet's stage, publish, stats and expand,
//! external-resizer's ControllerExpandVolume), and finally look for leftovers.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use csi::v1::Volume;
use driver::config::DEFAULT_POOL;
use e2e::pattern::{check_block_device, verify_pattern_file, write_pattern_file};
use e2e::{Attached, LogTail, StageBreakdown, VolumeMode};
use mounts::DeviceNumber;
use routeros::FilePath;
use tokio::task::JoinHandle;

use crate::error::{DemoError, Result, io_context};
use crate::leftovers::{device_leftovers, device_view, host_leftovers, host_view};
use crate::plan::{RAW_IO_BYTES, Step, pvc_name};
use crate::render::{Fabric, KeepInfo, bytes};
use crate::session::{RDS_USER, Session};
use crate::term::{Reporter, StepFailure};
use crate::usage::{FsUsage, check_growth};

/// Deadline of each CSI call (kubelet's and the sidecars' are of this order).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Seed of the data written and checked.
pub(crate) const SEED: u64 = 0x5eed;
/// The file written to the filesystem volume.
pub(crate) const DATA_FILE: &str = "demo-data.bin";
/// Sync while writing, so the data reaches the device as it is written.
const SYNC_EVERY: u64 = 8 << 20;

/// Runs blocking file I/O off the async threads. Such a task cannot be cancelled: if the
/// step is dropped (a signal), the I/O goes on with files open on the volume, so its handle
/// stays in the session for the teardown to wait on before it unmounts anything.
pub(crate) async fn blocking<T: Send + 'static>(
    in_flight: &mut Option<JoinHandle<()>>,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    *in_flight = Some(tokio::task::spawn_blocking(move || {
        let _ = done.send(work());
    }));
    let outcome = outcome
        .await
        .map_err(|_| DemoError::Check("the I/O task panicked".into()))?;
    *in_flight = None;
    outcome
}

/// `/dev/<name>` of a block device number, from sysfs.
fn device_name(device: DeviceNumber) -> String {
    std::fs::read_link(format!("/sys/dev/block/{device}"))
        .ok()
        .and_then(|link| {
            link.file_name()
                .map(|n| format!("/dev/{}", n.to_string_lossy()))
        })
        .unwrap_or_else(|| format!("device {device}"))
}

/// The device mounted at `path`, as the mount table names it.
pub(crate) async fn mounted_device(path: &Path) -> Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let table = mounts::mountinfo::read_self_mount_table(deadline).await?;
    table
        .top_at(path)
        .map(|entry| entry.source.clone())
        .ok_or_else(|| DemoError::Check(format!("nothing is mounted at {}", path.display())))
}

pub(crate) fn shorten(digest: &str) -> &str {
    &digest[..digest.len().min(16)]
}

/// Everything from the first process to the last check.
pub async fn run(rep: &mut Reporter, s: &mut Session) -> Result<(), StepFailure> {
    crate::start::start(rep, s).await?;
    let fs = filesystem(rep, s).await?;
    let block = block(rep, s).await?;
    delete(rep, s, Step::DeleteFilesystem, &fs).await?;
    delete(rep, s, Step::DeleteBlock, &block).await?;
    crate::metrics::show(rep, s).await?;
    check_device(rep, s).await?;
    check_host(rep, s).await?;
    if s.keep {
        keep_volume(rep, s).await?;
    }
    Ok(())
}

/// CreateVolume, noted in the ledger before it is sent.
async fn create(
    rep: &mut Reporter,
    s: &mut Session,
    step: Step,
    mode: VolumeMode,
    parameters: HashMap<String, String>,
) -> Result<Attached, StepFailure> {
    rep.step(step, async {
        let csi = s.csi()?;
        let name = pvc_name(rand::random());
        s.ledger.creating(&name, mode.clone());
        let volume: Volume = csi
            .create_volume(&name, s.sizes.volume, &mode, &parameters)
            .await?;
        if volume.volume_id != name {
            return Err(DemoError::Check(format!(
                "CreateVolume for {name} returned volume {}",
                volume.volume_id
            )));
        }
        let image = volume
            .volume_context
            .get(driver::params::VOLUME_PATH)
            .map(|dir| driver::naming::image_path(dir, &name))
            .unwrap_or_default();
        let detail = format!(
            "{name}, {}; on the RDS: a file disk over {image}",
            bytes(volume.capacity_bytes.max(0) as u64)
        );
        let attached = Attached {
            staging: s.layout.staging(&name),
            target: s.layout.target(&name, &mode),
            volume,
            mode,
        };
        Ok((attached, detail))
    })
    .await
}

async fn stage(
    rep: &mut Reporter,
    s: &mut Session,
    step: Step,
    v: &Attached,
) -> Result<(), StepFailure> {
    rep.step(step, async {
        let csi = s.csi()?;
        s.ledger.staging(v.id());
        // As a CO does: ControllerPublish first when the controller asks for it (outside the
        // stage's timing: the breakdown is the node's).
        let publish_context = csi.controller_publish(&v.volume, &v.mode).await?;
        let mut log = LogTail::at_end(&s.work.node_log())?;
        let started = Instant::now();
        csi.node_stage(&v.volume, &publish_context, &v.staging, &v.mode)
            .await?;
        let took = started.elapsed();
        let detail = match &v.mode {
            VolumeMode::Filesystem { fs_type } => {
                s.breakdown = Some(StageBreakdown::from_log(took, &log.take_new()?)?);
                format!(
                    "attached {}, mkfs.{fs_type}, mounted at {}",
                    mounted_device(&v.staging).await?,
                    v.staging.display()
                )
            }
            VolumeMode::Block => "attached; a block volume is not mounted".to_owned(),
        };
        Ok(((), detail))
    })
    .await
}

async fn publish(
    rep: &mut Reporter,
    s: &mut Session,
    step: Step,
    v: &Attached,
) -> Result<(), StepFailure> {
    rep.step(step, async {
        let csi = s.csi()?;
        // kubelet makes the parent of the target; the plugin makes the target itself.
        if let Some(parent) = v.target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_context(format!("creating {}", parent.display())))?;
        }
        s.ledger.publishing(v.id());
        csi.node_publish(&v.volume, &v.staging, &v.target, &v.mode)
            .await?;
        let detail = match v.mode {
            VolumeMode::Filesystem { .. } => format!("bind mount at {}", v.target.display()),
            VolumeMode::Block => {
                let meta = std::fs::symlink_metadata(&v.target)
                    .map_err(io_context(format!("inspecting {}", v.target.display())))?;
                if !meta.file_type().is_block_device() {
                    return Err(DemoError::Check(format!(
                        "{} is not a block device node",
                        v.target.display()
                    )));
                }
                let device = DeviceNumber::from_raw(meta.rdev());
                format!(
                    "device node {} for {} ({device})",
                    v.target.display(),
                    device_name(device)
                )
            }
        };
        Ok(((), detail))
    })
    .await
}

/// A second node asks for the ReadWriteOnce volume this node holds (a pod rescheduled while
/// the first still writes): the controller refuses it, naming the holder.
async fn second_node(rep: &mut Reporter, s: &mut Session, v: &Attached) -> Result<(), StepFailure> {
    rep.step(Step::SecondNode, async {
        let csi = s.csi()?;
        let holder = csi.publish_node().unwrap_or("this node").to_owned();
        match csi
            .controller_publish_to(&v.volume, &v.mode, SECOND_NODE)
            .await
        {
            Err(e2e::E2eError::Call { status, .. })
                if status.code() == tonic::Code::FailedPrecondition =>
            {
                Ok(((), second_node_refusal(&holder, status.message())))
            }
            Err(error) => Err(error.into()),
            Ok(_) => Err(DemoError::Check(format!(
                "{SECOND_NODE} was given {}, which {holder} holds",
                v.id()
            ))),
        }
    })
    .await
}

/// The node id of the demo's second node (one with no plugin: only its publish is asked for).
const SECOND_NODE: &str = "demo-node-2";

/// What the second node's refusal step shows: the controller's reason, and where a cluster
/// shows it.
fn second_node_refusal(holder: &str, message: &str) -> String {
    format!(
        "refused (FAILED_PRECONDITION), {holder} holds it: \"{message}\"; in a cluster, \
         `kubectl describe pvc` shows it as a PublishRefused warning"
    )
}

async fn unpublish(
    rep: &mut Reporter,
    s: &mut Session,
    step: Step,
    v: &Attached,
) -> Result<(), StepFailure> {
    rep.step(step, async {
        s.csi()?.node_unpublish(v.id(), &v.target).await?;
        s.ledger.unpublished(v.id());
        let what = match v.mode {
            VolumeMode::Filesystem { .. } => "unmounted",
            VolumeMode::Block => "removed",
        };
        Ok(((), format!("{what} {}", v.target.display())))
    })
    .await
}

async fn unstage(
    rep: &mut Reporter,
    s: &mut Session,
    step: Step,
    v: &Attached,
) -> Result<(), StepFailure> {
    rep.step(step, async {
        let csi = s.csi()?;
        csi.node_unstage(v.id(), &v.staging).await?;
        csi.controller_unpublish(v.id()).await?;
        s.ledger.unstaged(v.id());
        let detail = match v.mode {
            VolumeMode::Filesystem { .. } => "unmounted and detached",
            VolumeMode::Block => "detached",
        };
        Ok(((), detail.to_owned()))
    })
    .await
}

async fn delete(
    rep: &mut Reporter,
    s: &mut Session,
    step: Step,
    v: &Attached,
) -> Result<(), StepFailure> {
    rep.step(step, async {
        s.csi()?.delete_volume(v.id()).await?;
        s.ledger.deleted(v.id());
        Ok(((), format!("{} and its image removed from the RDS", v.id())))
    })
    .await
}

async fn stats(s: &Session, v: &Attached) -> Result<FsUsage> {
    let reply = s
        .csi()?
        .node_volume_stats(v.id(), &v.target, &v.staging)
        .await?;
    FsUsage::from_response(&reply).map_err(DemoError::Check)
}

/// The filesystem volume from CreateVolume to NodeUnstageVolume (deleted later, with the
/// block volume).
async fn filesystem(rep: &mut Reporter, s: &mut Session) -> Result<Attached, StepFailure> {
    let mode = VolumeMode::Filesystem {
        fs_type: s.fs.as_str().to_owned(),
    };
    // In a btrfs subvolume of its own, so that it can be snapshotted (docs/snapshots.md).
    let in_subvolume = HashMap::from([(
        driver::params::SNAPSHOT_METHOD.to_owned(),
        driver::params::SnapshotMethod::SUBVOLUME.to_owned(),
    )]);
    let v = create(rep, s, Step::CreateFilesystem, mode, in_subvolume).await?;
    stage(rep, s, Step::StageFilesystem, &v).await?;
    publish(rep, s, Step::PublishFilesystem, &v).await?;
    second_node(rep, s, &v).await?;

    let data = v.target.join(DATA_FILE);
    let len = s.sizes.data;
    let path = data.clone();
    rep.step(Step::WriteFile, async {
        let digest = blocking(&mut s.io_in_flight, move || {
            Ok(write_pattern_file(&path, SEED, len, SYNC_EVERY)?)
        })
        .await?;
        Ok((
            (),
            format!(
                "{} to {DATA_FILE}, synced; sha256 {}…",
                bytes(len),
                shorten(&digest)
            ),
        ))
    })
    .await?;
    rep.step(Step::ReadBack, async {
        let digest = blocking(&mut s.io_in_flight, move || {
            // Drop the file's (clean, synced) pages so the read goes to the device.
            let file = std::fs::File::open(&data)
                .map_err(io_context(format!("opening {}", data.display())))?;
            rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).map_err(|e| {
                io_context(format!("dropping the cache of {}", data.display()))(e.into())
            })?;
            Ok(verify_pattern_file(&data, SEED, len)?)
        })
        .await?;
        Ok((
            (),
            format!(
                "page cache dropped, read from the device: sha256 {}… matches",
                shorten(&digest)
            ),
        ))
    })
    .await?;

    crate::snapshot::restore(rep, s, &v).await?;

    let before = rep
        .step(Step::VolumeStats, async {
            let usage = stats(s, &v).await?;
            Ok((usage, usage.describe()))
        })
        .await?;
    let grown = rep
        .step(Step::ExpandController, async {
            let (capacity, node_needed) = s
                .csi()?
                .controller_expand(v.id(), s.sizes.grown, &v.mode)
                .await?;
            if capacity < s.sizes.grown || !node_needed {
                return Err(DemoError::Check(format!(
                    "ControllerExpandVolume gave {capacity} bytes, node expansion required: \
                     {node_needed}"
                )));
            }
            Ok((
                capacity,
                format!(
                    "{} -> {} on the RDS; node expansion required",
                    bytes(s.sizes.volume),
                    bytes(capacity)
                ),
            ))
        })
        .await?;
    if let Some(reason) = s.facts.growth_blocked(s.fs) {
        rep.skip(Step::ExpandNode, reason);
    } else {
        expand_node(rep, s, &v, &before, grown).await?;
    }

    unpublish(rep, s, Step::UnpublishFilesystem, &v).await?;
    unstage(rep, s, Step::UnstageFilesystem, &v).await?;
    Ok(v)
}

/// NodeExpandVolume, with the filesystem's size before and after as kubelet sees it.
async fn expand_node(
    rep: &mut Reporter,
    s: &mut Session,
    v: &Attached,
    before: &FsUsage,
    grown: u64,
) -> Result<(), StepFailure> {
    rep.step(Step::ExpandNode, async {
        s.csi()?
            .node_expand(v.id(), &v.target, &v.staging, grown, &v.mode)
            .await?;
        let after = stats(s, v).await?;
        check_growth(before, &after, grown).map_err(DemoError::Check)?;
        Ok((
            (),
            format!(
                "filesystem grew online: {} -> {} (NodeGetVolumeStats before and after)",
                bytes(before.total),
                bytes(after.total)
            ),
        ))
    })
    .await
}

/// The raw block volume, from CreateVolume to NodeUnstageVolume.
async fn block(rep: &mut Reporter, s: &mut Session) -> Result<Attached, StepFailure> {
    let v = create(rep, s, Step::CreateBlock, VolumeMode::Block, HashMap::new()).await?;
    stage(rep, s, Step::StageBlock, &v).await?;
    publish(rep, s, Step::PublishBlock, &v).await?;
    let target = v.target.clone();
    let expected = v.volume.capacity_bytes.max(0) as u64;
    rep.step(Step::RawIo, async {
        let size = blocking(&mut s.io_in_flight, move || {
            Ok(check_block_device(&target, SEED, RAW_IO_BYTES)?)
        })
        .await?;
        if size != expected {
            return Err(DemoError::Check(format!(
                "the device has {size} bytes, the volume {expected}"
            )));
        }
        Ok((
            (),
            format!(
                "{} at each end written and read back with O_DIRECT; the device has {}",
                bytes(RAW_IO_BYTES),
                bytes(size)
            ),
        ))
    })
    .await?;
    unpublish(rep, s, Step::UnpublishBlock, &v).await?;
    unstage(rep, s, Step::UnstageBlock, &v).await?;
    Ok(v)
}

async fn check_device(rep: &mut Reporter, s: &mut Session) -> Result<(), StepFailure> {
    rep.step(Step::DeviceClean, async {
        let client = s.rds_client(Duration::from_secs(30)).await?;
        let images: Vec<FilePath> = s
            .ledger
            .ids()
            .filter_map(|id| FilePath::try_from(driver::naming::image_path(DEFAULT_POOL, id)).ok())
            .collect();
        let view = device_view(&client, DEFAULT_POOL, &images).await?;
        let left = device_leftovers(&view);
        if !left.is_empty() {
            return Err(DemoError::Check(join(&left)));
        }
        Ok((
            (),
            format!(
                "asked over SSH: {} file disks, no volume image, pool {} free of {}",
                view.disks.len(),
                bytes(view.pool.free),
                bytes(view.pool.size)
            ),
        ))
    })
    .await
}

async fn check_host(rep: &mut Reporter, s: &mut Session) -> Result<(), StepFailure> {
    rep.step(Step::HostClean, async {
        let view = host_view().await?;
        let left = host_leftovers(&view, &s.work.root, &s.nqns());
        if !left.is_empty() {
            return Err(DemoError::Check(join(&left)));
        }
        let nvme = match s.fabric {
            Some(Fabric::NvmeTcp { .. }) => "NVMe controller or nvmet subsystem",
            _ => "NVMe controller",
        };
        Ok((
            (),
            format!("no mount under the work directory, no loop device over its files, no {nvme} of its volumes"),
        ))
    })
    .await
}

/// With `--keep`: one more filesystem volume, left published for the user to look at.
async fn keep_volume(rep: &mut Reporter, s: &mut Session) -> Result<(), StepFailure> {
    rep.step(Step::KeepVolume, async {
        let csi = s.csi()?;
        let name = pvc_name(rand::random());
        let mode = VolumeMode::Filesystem {
            fs_type: s.fs.as_str().to_owned(),
        };
        s.ledger.creating(&name, mode.clone());
        let volume = csi
            .create_volume(&name, s.sizes.volume, &mode, &HashMap::new())
            .await?;
        let staging = s.layout.staging(&name);
        let target = s.layout.target(&name, &mode);
        s.ledger.staging(&name);
        let publish_context = csi.controller_publish(&volume, &mode).await?;
        csi.node_stage(&volume, &publish_context, &staging, &mode)
            .await?;
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io_context(format!("creating {}", parent.display())))?;
        }
        s.ledger.publishing(&name);
        csi.node_publish(&volume, &staging, &target, &mode).await?;
        let readme = target.join("README.txt");
        std::fs::write(
            &readme,
            format!(
                "This is {name}, a {} {} volume made by `rds-csi demo --keep` through the CSI \
                 controller and node plugin.\nIt is deleted when the demo stops (Ctrl-C).\n",
                bytes(s.sizes.volume),
                s.fs
            ),
        )
        .map_err(io_context(format!("writing {}", readme.display())))?;
        let sim = s
            .sim
            .as_ref()
            .ok_or_else(|| DemoError::Check("the simulator is not running".into()))?;
        s.kept = Some(KeepInfo {
            volume_id: name.clone(),
            fs: s.fs.as_str().to_owned(),
            size: s.sizes.volume,
            target: target.clone(),
            controller: s.work.controller_endpoint().to_string(),
            node: s.work.node_endpoint().to_string(),
            kubelet_dir: s.work.kubelet(),
            ssh: sim.ssh,
            user: RDS_USER.to_owned(),
            password_file: s.work.password_file(),
            host_key: sim.host_key.clone(),
            known_hosts: s.work.known_hosts(),
            csi_e2e: csi_e2e_command(&s.exe),
            work_dir: s.work.root.clone(),
            logs: s.work.logs(),
        });
        Ok(((), format!("{name} published at {}", target.display())))
    })
    .await
}

/// csi-e2e next to this binary (cargo builds both into one directory), else its bare name.
fn csi_e2e_command(exe: &Path) -> String {
    exe.parent()
        .map(|dir| dir.join("csi-e2e"))
        .filter(|path| path.is_file())
        .map_or_else(
            || "csi-e2e".to_owned(),
            |path: PathBuf| path.display().to_string(),
        )
}

fn join(items: &[impl ToString]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}
