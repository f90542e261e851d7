//! The flows a CO drives, step by step and timed: a filesystem volume (write, restage,
//! verify, expand), a second filesystem volume staged in the now warm node, and a block volume
//! (raw I/O), each from CreateVolume to DeleteVolume. With the node's log at hand, every
//! NodeStageVolume is also broken into its parts ([`StageBreakdown`]).

use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};

use csi::v1::Volume;

use crate::breakdown::{LabelledBreakdown, LogTail, StageBreakdown};
use crate::client::{Csi, PathLayout, VolumeMode};
use crate::error::{E2eError, Result, io_at};
use crate::pattern::{MIB, check_block_device, verify_pattern_file, write_pattern_file};
use crate::timing::StepLog;

/// What to create and how much to write.
#[derive(Debug, Clone)]
pub struct FlowConfig {
    pub layout: PathLayout,
    /// StorageClass parameters for CreateVolume.
    pub parameters: HashMap<String, String>,
    pub fs_type: String,
    pub volume_bytes: u64,
    /// Size after ControllerExpandVolume; must exceed `volume_bytes`. None skips expansion
    /// (for hosts that do not permit an online resize).
    pub grown_bytes: Option<u64>,
    /// Bytes written to the filesystem volume and checked after a restage.
    pub data_bytes: u64,
    pub block_volume_bytes: u64,
    /// Bytes written raw at each end of the block volume.
    pub raw_io_bytes: u64,
    pub seed: u64,
    /// The node's JSON log, for the NodeStageVolume breakdowns; none skips them.
    pub node_log: Option<PathBuf>,
}

/// What a full run measured.
#[derive(Debug, Clone)]
pub struct FlowReport {
    pub steps: StepLog,
    /// Every NodeStageVolume of the run, in order (empty without the node's log).
    pub stage_breakdowns: Vec<LabelledBreakdown>,
    pub data_digest: String,
    pub filesystem_bytes_before_expand: u64,
    pub filesystem_bytes_after_expand: u64,
    pub block_device_bytes: u64,
}

/// A volume created, staged and published.
#[derive(Debug, Clone)]
pub struct Attached {
    pub volume: Volume,
    pub mode: VolumeMode,
    pub staging: PathBuf,
    pub target: PathBuf,
}

impl Attached {
    pub fn id(&self) -> &str {
        &self.volume.volume_id
    }
}

/// Progress lines for a person watching the run.
pub type Progress<'a> = &'a dyn Fn(&str);

/// Breaks each NodeStageVolume down from what the node logged during it.
#[derive(Debug)]
struct StageTimings {
    log: LogTail,
    taken: Vec<LabelledBreakdown>,
}

impl StageTimings {
    fn follow(node_log: Option<&Path>) -> Result<Option<Self>> {
        node_log
            .map(|path| {
                Ok(Self {
                    log: LogTail::at_end(path)?,
                    taken: Vec::new(),
                })
            })
            .transpose()
    }

    /// Forgets what the node logged before the stage about to start.
    fn before_stage(&mut self) -> Result<()> {
        self.log.take_new().map(drop)
    }

    fn after_stage(&mut self, label: &StageLabel, co_total: std::time::Duration) -> Result<()> {
        let breakdown = StageBreakdown::from_log(co_total, &self.log.take_new()?)?;
        self.taken.push(LabelledBreakdown {
            label: label.key.to_owned(),
            about: label.about.to_owned(),
            breakdown,
        });
        Ok(())
    }
}

/// How a NodeStageVolume is named in the breakdowns.
struct StageLabel {
    key: &'static str,
    about: &'static str,
}

/// CreateVolume, ControllerPublishVolume (when the controller publishes), NodeStageVolume and
/// NodePublishVolume, each timed.
pub async fn attach(
    csi: &Csi,
    layout: &PathLayout,
    name: &str,
    bytes: u64,
    mode: VolumeMode,
    parameters: &HashMap<String, String>,
    steps: &mut StepLog,
) -> Result<Attached> {
    attach_timed(
        csi, layout, name, bytes, mode, parameters, None, steps, None,
    )
    .await
}

/// [`attach`] of a new volume made as a copy of `source` (a snapshot or a volume).
pub async fn attach_copy(
    csi: &Csi,
    layout: &PathLayout,
    name: &str,
    bytes: u64,
    mode: VolumeMode,
    source: csi::v1::VolumeContentSource,
    steps: &mut StepLog,
) -> Result<Attached> {
    let none = HashMap::new();
    attach_timed(
        csi,
        layout,
        name,
        bytes,
        mode,
        &none,
        Some(source),
        steps,
        None,
    )
    .await
}

/// [`attach`], with the stage broken down when `timings` are kept.
#[allow(clippy::too_many_arguments)]
async fn attach_timed(
    csi: &Csi,
    layout: &PathLayout,
    name: &str,
    bytes: u64,
    mode: VolumeMode,
    parameters: &HashMap<String, String>,
    source: Option<csi::v1::VolumeContentSource>,
    steps: &mut StepLog,
    timings: Option<(&mut StageTimings, StageLabel)>,
) -> Result<Attached> {
    let volume = steps
        .time(
            format!("{name}: CreateVolume"),
            csi.create_volume_from(name, bytes, &mode, parameters, source),
        )
        .await?;
    let staging = layout.staging(&volume.volume_id);
    let target = layout.target(&volume.volume_id, &mode);
    create_parent(&target)?;
    let attached = Attached {
        volume,
        mode,
        staging,
        target,
    };
    stage_and_publish(csi, &attached, name, steps, timings).await?;
    Ok(attached)
}

async fn stage_and_publish(
    csi: &Csi,
    volume: &Attached,
    name: &str,
    steps: &mut StepLog,
    mut timings: Option<(&mut StageTimings, StageLabel)>,
) -> Result<()> {
    let publish_context = if csi.publish_node().is_some() {
        steps
            .time(
                format!("{name}: ControllerPublishVolume"),
                csi.controller_publish(&volume.volume, &volume.mode),
            )
            .await?
    } else {
        HashMap::new()
    };
    if let Some((timings, _)) = timings.as_mut() {
        timings.before_stage()?;
    }
    steps
        .time(
            format!("{name}: NodeStageVolume"),
            csi.node_stage(
                &volume.volume,
                &publish_context,
                &volume.staging,
                &volume.mode,
            ),
        )
        .await?;
    if let Some((timings, label)) = timings
        && let Some(stage) = steps.steps().last()
    {
        timings.after_stage(&label, stage.took)?;
    }
    steps
        .time(
            format!("{name}: NodePublishVolume"),
            csi.node_publish(
                &volume.volume,
                &volume.staging,
                &volume.target,
                &volume.mode,
            ),
        )
        .await
}

/// NodeUnpublishVolume, NodeUnstageVolume, then ControllerUnpublishVolume when the controller
/// publishes, each timed.
pub async fn detach(
    csi: &Csi,
    layout: &PathLayout,
    volume_id: &str,
    mode: &VolumeMode,
    name: &str,
    steps: &mut StepLog,
) -> Result<()> {
    steps
        .time(
            format!("{name}: NodeUnpublishVolume"),
            csi.node_unpublish(volume_id, &layout.target(volume_id, mode)),
        )
        .await?;
    steps
        .time(
            format!("{name}: NodeUnstageVolume"),
            csi.node_unstage(volume_id, &layout.staging(volume_id)),
        )
        .await?;
    if csi.publish_node().is_some() {
        steps
            .time(
                format!("{name}: ControllerUnpublishVolume"),
                csi.controller_unpublish(volume_id),
            )
            .await?;
    }
    Ok(())
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_at("creating", parent))?;
    }
    Ok(())
}

/// Runs blocking file I/O off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| E2eError::Check(format!("I/O task failed: {e}")))?
}

/// Size of the filesystem mounted at `path`, as statvfs reports it.
pub fn filesystem_bytes(path: &Path) -> Result<u64> {
    let stat = rustix::fs::statvfs(path).map_err(|e| E2eError::Io {
        context: "statvfs",
        path: path.to_owned(),
        source: e.into(),
    })?;
    Ok(stat.f_blocks * stat.f_frsize)
}

/// The filesystem flow, then the block flow; fails at the first step that does not hold.
pub async fn run_full(csi: &Csi, config: &FlowConfig, say: Progress<'_>) -> Result<FlowReport> {
    if config
        .grown_bytes
        .is_some_and(|grown| grown <= config.volume_bytes)
    {
        return Err(E2eError::Invalid(
            "the grown size must exceed the volume size".into(),
        ));
    }
    let mut steps = StepLog::new();
    let mut timings = StageTimings::follow(config.node_log.as_deref())?;
    let fs = run_filesystem(csi, config, &mut steps, timings.as_mut(), say).await?;
    run_warm_stage(csi, config, &mut steps, timings.as_mut(), say).await?;
    let block_device_bytes = run_block(csi, config, &mut steps, timings.as_mut(), say).await?;
    Ok(FlowReport {
        steps,
        stage_breakdowns: timings.map(|t| t.taken).unwrap_or_default(),
        data_digest: fs.digest,
        filesystem_bytes_before_expand: fs.before,
        filesystem_bytes_after_expand: fs.after,
        block_device_bytes,
    })
}

struct FilesystemOutcome {
    digest: String,
    before: u64,
    after: u64,
}

async fn run_filesystem(
    csi: &Csi,
    config: &FlowConfig,
    steps: &mut StepLog,
    mut timings: Option<&mut StageTimings>,
    say: Progress<'_>,
) -> Result<FilesystemOutcome> {
    let name = "fs";
    let mode = VolumeMode::Filesystem {
        fs_type: config.fs_type.clone(),
    };
    let volume = attach_timed(
        csi,
        &config.layout,
        name,
        config.volume_bytes,
        mode.clone(),
        &config.parameters,
        None,
        steps,
        timings.as_deref_mut().map(|t| {
            let label = StageLabel {
                key: "fs-cold",
                about: "the node process's first stage: connect, mkfs, mount",
            };
            (t, label)
        }),
    )
    .await?;
    let id = volume.id().to_owned();
    say(&format!(
        "{name}: volume {id} created, staged (connect, mkfs, mount) and published at {}",
        volume.target.display()
    ));

    let data = volume.target.join("data.bin");
    let (seed, len) = (config.seed, config.data_bytes);
    let path = data.clone();
    let digest = steps
        .time(
            format!("{name}: write {} MiB", len / MIB),
            blocking(move || write_pattern_file(&path, seed, len, 8 * MIB)),
        )
        .await?;
    say(&format!("{name}: wrote {len} bytes, sha256 {digest}"));

    detach(csi, &config.layout, &id, &mode, name, steps).await?;
    say(&format!("{name}: unpublished and unstaged"));
    let label = StageLabel {
        key: "fs-restage",
        about: "warm: the same volume again, already formatted",
    };
    stage_and_publish(
        csi,
        &volume,
        &format!("{name} again"),
        steps,
        timings.map(|t| (t, label)),
    )
    .await?;
    let path = data.clone();
    let read = steps
        .time(
            format!("{name}: read back and verify"),
            blocking(move || verify_pattern_file(&path, seed, len)),
        )
        .await?;
    say(&format!(
        "{name}: staged again; the data reads back with sha256 {read}"
    ));

    let before = filesystem_bytes(&volume.target)?;
    let after = match config.grown_bytes {
        Some(grown) => expand(csi, &volume, name, grown, steps, say).await?,
        None => before,
    };

    detach(csi, &config.layout, &id, &mode, name, steps).await?;
    steps
        .time(format!("{name}: DeleteVolume"), csi.delete_volume(&id))
        .await?;
    say(&format!("{name}: unpublished, unstaged and deleted"));
    Ok(FilesystemOutcome {
        digest,
        before,
        after,
    })
}

/// ControllerExpandVolume and NodeExpandVolume to `wanted` bytes; returns the filesystem's
/// size afterwards.
async fn expand(
    csi: &Csi,
    volume: &Attached,
    name: &str,
    wanted: u64,
    steps: &mut StepLog,
    say: Progress<'_>,
) -> Result<u64> {
    let (id, mode) = (volume.id(), &volume.mode);
    let before = filesystem_bytes(&volume.target)?;
    let (grown, node_needed) = steps
        .time(
            format!("{name}: ControllerExpandVolume"),
            csi.controller_expand(id, wanted, mode),
        )
        .await?;
    if grown < wanted || !node_needed {
        return Err(E2eError::Check(format!(
            "ControllerExpandVolume gave {grown} bytes, node expansion required: {node_needed}"
        )));
    }
    steps
        .time(
            format!("{name}: NodeExpandVolume"),
            csi.node_expand(id, &volume.target, &volume.staging, grown, mode),
        )
        .await?;
    let after = filesystem_bytes(&volume.target)?;
    // The filesystem's own metadata takes a few percent of the device.
    if after <= before || after < grown / 10 * 9 {
        return Err(E2eError::Check(format!(
            "after expanding to {grown} bytes the filesystem has {after} bytes (was {before})"
        )));
    }
    say(&format!(
        "{name}: expanded to {grown} bytes; statvfs {before} -> {after} bytes"
    ));
    Ok(after)
}

/// A second, fresh filesystem volume staged by the node that has now done all of it once:
/// the same work as the first stage (connect, mkfs, mount) without first-call costs.
async fn run_warm_stage(
    csi: &Csi,
    config: &FlowConfig,
    steps: &mut StepLog,
    timings: Option<&mut StageTimings>,
    say: Progress<'_>,
) -> Result<()> {
    let name = "fs2";
    let mode = VolumeMode::Filesystem {
        fs_type: config.fs_type.clone(),
    };
    let label = StageLabel {
        key: "fs-warm",
        about: "warm: a second fresh volume, connect, mkfs, mount",
    };
    let volume = attach_timed(
        csi,
        &config.layout,
        name,
        config.volume_bytes,
        mode.clone(),
        &config.parameters,
        None,
        steps,
        timings.map(|t| (t, label)),
    )
    .await?;
    let id = volume.id().to_owned();
    detach(csi, &config.layout, &id, &mode, name, steps).await?;
    steps
        .time(format!("{name}: DeleteVolume"), csi.delete_volume(&id))
        .await?;
    say(&format!(
        "{name}: a second volume created, staged, published, unpublished, unstaged and deleted"
    ));
    Ok(())
}

async fn run_block(
    csi: &Csi,
    config: &FlowConfig,
    steps: &mut StepLog,
    timings: Option<&mut StageTimings>,
    say: Progress<'_>,
) -> Result<u64> {
    let name = "block";
    let label = StageLabel {
        key: "block",
        about: "warm: connect only, nothing at the staging path",
    };
    let volume = attach_timed(
        csi,
        &config.layout,
        name,
        config.block_volume_bytes,
        VolumeMode::Block,
        &config.parameters,
        None,
        steps,
        timings.map(|t| (t, label)),
    )
    .await?;
    let id = volume.id().to_owned();
    let meta =
        std::fs::symlink_metadata(&volume.target).map_err(io_at("inspecting", &volume.target))?;
    if !meta.file_type().is_block_device() {
        return Err(E2eError::Check(format!(
            "{} is not a block device node",
            volume.target.display()
        )));
    }
    let (target, seed, len) = (volume.target.clone(), config.seed, config.raw_io_bytes);
    let size = steps
        .time(
            format!("{name}: raw I/O"),
            blocking(move || check_block_device(&target, seed, len)),
        )
        .await?;
    if size != config.block_volume_bytes {
        return Err(E2eError::Check(format!(
            "the block device has {size} bytes, {} were asked for",
            config.block_volume_bytes
        )));
    }
    say(&format!(
        "{name}: volume {id} published as a device node of {size} bytes; raw I/O at both ends \
         reads back"
    ));
    detach(csi, &config.layout, &id, &VolumeMode::Block, name, steps).await?;
    steps
        .time(format!("{name}: DeleteVolume"), csi.delete_volume(&id))
        .await?;
    say(&format!("{name}: unpublished, unstaged and deleted"));
    Ok(size)
}
