//! `csi-e2e`: drives a controller and a node plugin over their CSI sockets as a CO would.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use csi::v1::volume_capability::access_mode::Mode;
use driver::server::Endpoint;
use e2e::pattern::{MIB, verify_pattern_file, write_pattern_file};
use e2e::{
    Csi, E2eError, FlowConfig, PathLayout, StepLog, VolumeMode, attach, attach_copy, detach,
    run_full,
};

#[derive(Parser)]
#[command(
    version,
    about = "Drive a CSI controller and node through a volume's life, timed"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct Connection {
    /// The controller's CSI endpoint (unix:///path).
    #[arg(long)]
    controller: Endpoint,
    /// The node's CSI endpoint (unix:///path).
    #[arg(long)]
    node: Endpoint,
    /// Where staging and target paths are made (the node's --block-publish-dir must be
    /// <work-dir>/volumeDevices).
    #[arg(long)]
    work_dir: PathBuf,
    /// StorageClass parameter `key=value`; repeatable.
    #[arg(long = "param", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Deadline of each CSI call.
    #[arg(long, default_value_t = 120)]
    timeout_seconds: u64,
}

impl Connection {
    async fn open(&self) -> Result<Csi, E2eError> {
        Csi::connect(
            &self.controller,
            &self.node,
            Duration::from_secs(self.timeout_seconds),
        )
        .await
    }

    fn parameters(&self) -> HashMap<String, String> {
        self.params.iter().cloned().collect()
    }
}

#[derive(Subcommand)]
enum Command {
    /// The whole flow: filesystem volume (write, restage, verify, expand) and block volume.
    Run {
        #[command(flatten)]
        connection: Connection,
        #[arg(long, default_value = "ext4")]
        fs_type: String,
        #[arg(long, default_value_t = 256)]
        volume_mib: u64,
        #[arg(long, default_value_t = 512)]
        grown_mib: u64,
        /// Skip the expansion (hosts that do not permit an online resize).
        #[arg(long)]
        no_expand: bool,
        #[arg(long, default_value_t = 64)]
        data_mib: u64,
        #[arg(long, default_value_t = 64)]
        block_mib: u64,
        #[arg(long, default_value_t = 1024)]
        raw_io_kib: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The node's log in JSON format, for the NodeStageVolume breakdown.
        #[arg(long)]
        node_log: Option<PathBuf>,
    },
    /// Create, stage and publish one volume; prints its id and target path.
    Attach {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 256)]
        size_mib: u64,
        #[arg(long, default_value = "ext4")]
        fs_type: String,
        #[arg(long)]
        block: bool,
        /// Stage without ControllerPublishVolume, as a node the cluster moved away from
        /// might (to show that the storage refuses it).
        #[arg(long)]
        no_controller_publish: bool,
        /// Ask for MULTI_NODE_MULTI_WRITER (with --block: a volume two nodes hold during a
        /// live migration).
        #[arg(long)]
        multi_node: bool,
        /// Make the volume as a copy of this snapshot (a restore).
        #[arg(long, conflicts_with = "from_volume")]
        from_snapshot: Option<String>,
        /// Make the volume as a copy of this volume (a clone).
        #[arg(long)]
        from_volume: Option<String>,
    },
    /// CreateSnapshot of a volume; prints the snapshot's id.
    Snapshot {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        name: String,
        #[arg(long)]
        source: String,
    },
    /// DeleteSnapshot.
    DeleteSnapshot {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        snapshot_id: String,
    },
    /// Unpublish and unstage a volume made by `attach`; with --delete, delete it too.
    Detach {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        volume_id: String,
        #[arg(long)]
        block: bool,
        #[arg(long)]
        delete: bool,
    },
    /// NodePublishVolume of a staged volume to one more target (another pod); prints it.
    Publish {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        volume_id: String,
        /// The new target (for --block, a path below <work-dir>/volumeDevices).
        #[arg(long)]
        target: PathBuf,
        #[arg(long, default_value = "ext4")]
        fs_type: String,
        #[arg(long)]
        block: bool,
    },
    /// NodeUnpublishVolume of one target.
    Unpublish {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        volume_id: String,
        #[arg(long)]
        target: PathBuf,
    },
    /// NodeGetVolumeStats of a volume path; prints `abnormal:` and `message:` of its
    /// condition and the usage.
    Stats {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        volume_id: String,
        #[arg(long)]
        path: PathBuf,
    },
    /// Write the pattern of --seed to a file, syncing every --sync-every-mib; prints sha256.
    Write {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        mib: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 1)]
        sync_every_mib: u64,
    },
    /// Check that a file holds exactly the pattern of --seed.
    Verify {
        #[arg(long)]
        path: PathBuf,
        #[arg(long)]
        mib: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?}: expected key=value"))
}

fn mode(block: bool, fs_type: &str) -> VolumeMode {
    if block {
        VolumeMode::Block
    } else {
        VolumeMode::Filesystem {
            fs_type: fs_type.to_owned(),
        }
    }
}

fn say(line: &str) {
    println!("[test] {line}");
}

async fn run(command: Command) -> Result<(), E2eError> {
    match command {
        Command::Run {
            connection,
            fs_type,
            volume_mib,
            grown_mib,
            no_expand,
            data_mib,
            block_mib,
            raw_io_kib,
            seed,
            node_log,
        } => {
            let csi = connection.open().await?;
            let config = FlowConfig {
                layout: PathLayout::new(&connection.work_dir),
                parameters: connection.parameters(),
                fs_type,
                volume_bytes: volume_mib * MIB,
                grown_bytes: (!no_expand).then_some(grown_mib * MIB),
                data_bytes: data_mib * MIB,
                block_volume_bytes: block_mib * MIB,
                raw_io_bytes: raw_io_kib << 10,
                seed,
                node_log,
            };
            let report = run_full(&csi, &config, &say).await?;
            print!("{}", report.steps.table());
            for breakdown in &report.stage_breakdowns {
                print!("{}", breakdown.report());
            }
        }
        Command::Attach {
            connection,
            name,
            size_mib,
            fs_type,
            block,
            no_controller_publish,
            multi_node,
            from_snapshot,
            from_volume,
        } => {
            let mut csi = connection.open().await?;
            if no_controller_publish {
                csi = csi.without_controller_publish();
            }
            if multi_node {
                csi = csi.with_access_mode(Mode::MultiNodeMultiWriter);
            }
            let layout = PathLayout::new(&connection.work_dir);
            let mut steps = StepLog::new();
            use csi::v1::volume_content_source::{SnapshotSource, Type, VolumeSource};
            let source = match (from_snapshot, from_volume) {
                (Some(snapshot_id), _) => Some(Type::Snapshot(SnapshotSource { snapshot_id })),
                (None, Some(volume_id)) => Some(Type::Volume(VolumeSource { volume_id })),
                (None, None) => None,
            };
            let volume = match source {
                Some(source) => {
                    let source = csi::v1::VolumeContentSource {
                        r#type: Some(source),
                    };
                    let mode = mode(block, &fs_type);
                    attach_copy(
                        &csi,
                        &layout,
                        &name,
                        size_mib * MIB,
                        mode,
                        source,
                        &mut steps,
                    )
                    .await?
                }
                None => {
                    attach(
                        &csi,
                        &layout,
                        &name,
                        size_mib * MIB,
                        mode(block, &fs_type),
                        &connection.parameters(),
                        &mut steps,
                    )
                    .await?
                }
            };
            print!("{}", steps.table());
            println!("volume-id: {}", volume.id());
            println!("target: {}", volume.target.display());
        }
        Command::Detach {
            connection,
            volume_id,
            block,
            delete,
        } => {
            let csi = connection.open().await?;
            let layout = PathLayout::new(&connection.work_dir);
            let mut steps = StepLog::new();
            let mode = mode(block, "");
            detach(&csi, &layout, &volume_id, &mode, "volume", &mut steps).await?;
            if delete {
                steps
                    .time("volume: DeleteVolume", csi.delete_volume(&volume_id))
                    .await?;
            }
            print!("{}", steps.table());
        }
        Command::Snapshot {
            connection,
            name,
            source,
        } => {
            let csi = connection.open().await?;
            let snapshot = csi.create_snapshot(&name, &source).await?;
            println!("snapshot-id: {}", snapshot.snapshot_id);
            println!("ready: {}", snapshot.ready_to_use);
            println!("size: {}", snapshot.size_bytes);
        }
        Command::DeleteSnapshot {
            connection,
            snapshot_id,
        } => {
            connection
                .open()
                .await?
                .delete_snapshot(&snapshot_id)
                .await?;
        }
        Command::Publish {
            connection,
            volume_id,
            target,
            fs_type,
            block,
        } => {
            let csi = connection.open().await?;
            let layout = PathLayout::new(&connection.work_dir);
            let volume = csi::v1::Volume {
                volume_id: volume_id.clone(),
                ..Default::default()
            };
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|source| E2eError::Io {
                    context: "creating",
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            let mode = mode(block, &fs_type);
            csi.node_publish(&volume, &layout.staging(&volume_id), &target, &mode)
                .await?;
            println!("target: {}", target.display());
        }
        Command::Unpublish {
            connection,
            volume_id,
            target,
        } => {
            let csi = connection.open().await?;
            csi.node_unpublish(&volume_id, &target).await?;
        }
        Command::Stats {
            connection,
            volume_id,
            path,
        } => {
            let csi = connection.open().await?;
            let layout = PathLayout::new(&connection.work_dir);
            let stats = csi
                .node_volume_stats(&volume_id, &path, &layout.staging(&volume_id))
                .await?;
            let condition = stats.volume_condition.unwrap_or_default();
            println!("abnormal: {}", condition.abnormal);
            println!("message: {}", condition.message);
            for usage in stats.usage {
                println!("usage: total={} used={}", usage.total, usage.used);
            }
        }
        Command::Write {
            path,
            mib,
            seed,
            sync_every_mib,
        } => {
            let digest = write_pattern_file(&path, seed, mib * MIB, sync_every_mib * MIB)?;
            println!("sha256: {digest}");
        }
        Command::Verify { path, mib, seed } => {
            let digest = verify_pattern_file(&path, seed, mib * MIB)?;
            println!("sha256: {digest}");
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse().command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("csi-e2e: FAIL: {error}");
            ExitCode::FAILURE
        }
    }
}
