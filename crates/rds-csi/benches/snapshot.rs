//! Snapshot and restore of a 10 GiB volume with 1 GiB written, through the binary's controller
//! and simulator (two processes, SSH, RouterOS 7.23), by each method (a volume in a subvolume
//! of its own by subvolume snapshot; a flat volume by `file-copy` and by `disk-copy`),
//! against a plain `cp --reflink=auto` of the same image on the same filesystem:
//! CreateSnapshot and CreateVolume from the snapshot each at most 1.2× the copy (the issue's
//! target). Each figure is the median of a few runs, the page cache dropped before each (as
//! root) so that every copy reads from the disk alike.
//!
//! Run: `cargo bench -p rds-csi --bench snapshot`; `-- --check` exits 1 when a target is
//! missed; `-- --runs N` (default 3); `SCALE_BINARY=path` measures another build.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use csi::v1::controller_client::ControllerClient;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use csi::v1::volume_content_source::{SnapshotSource, Type};
use csi::v1::{
    CapacityRange, CreateSnapshotRequest, CreateVolumeRequest, DeleteSnapshotRequest,
    DeleteVolumeRequest, VolumeCapability, VolumeContentSource,
};
use tonic::transport::Channel;

mod common;
use common::{connect, start_controller, start_sim};

const VOLUME_BYTES: u64 = 10 << 30;
const WRITTEN_BYTES: u64 = 1 << 30;
/// Written in this many runs, spread over the volume.
const CHUNKS: u64 = 64;
const TARGET_RATIO: f64 = 1.2;
const METHODS: [&str; 3] = ["subvolume", "file-copy", "disk-copy"];

/// The source volume of the runs by `method` (`m` its index).
fn source_of(m: usize) -> String {
    format!("pvc-5a7e0000-0000-4000-8000-00000000000{m}")
}

fn request(name: &str, method: &str, source: Option<&str>) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name: name.to_owned(),
        capacity_range: Some(CapacityRange {
            required_bytes: VOLUME_BYTES as i64,
            limit_bytes: 0,
        }),
        volume_capabilities: vec![VolumeCapability {
            access_mode: Some(AccessMode {
                mode: Mode::SingleNodeWriter as i32,
            }),
            access_type: Some(AccessType::Mount(MountVolume::default())),
        }],
        parameters: HashMap::from([("snapshotMethod".to_owned(), method.to_owned())]),
        volume_content_source: source.map(|id| VolumeContentSource {
            r#type: Some(Type::Snapshot(SnapshotSource {
                snapshot_id: id.to_owned(),
            })),
        }),
        ..Default::default()
    }
}

/// 1 GiB of non-zero data in `CHUNKS` runs across the image, synced.
fn write_data(image: &Path) {
    let mut file = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    let chunk = WRITTEN_BYTES / CHUNKS;
    let stride = VOLUME_BYTES / CHUNKS;
    let data: Vec<u8> = (0..chunk).map(|i| (i % 251) as u8 + 1).collect();
    for n in 0..CHUNKS {
        file.seek(SeekFrom::Start(n * stride)).unwrap();
        file.write_all(&data).unwrap();
    }
    file.sync_all().unwrap();
}

/// Writes dirty pages back and drops the page cache, when allowed (root).
fn drop_caches() {
    rustix::fs::sync();
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn timed<T>(work: impl std::future::Future<Output = T>) -> (T, Duration) {
    drop_caches();
    let started = Instant::now();
    let value = work.await;
    (value, started.elapsed())
}

async fn snapshot(
    csi: &mut ControllerClient<Channel>,
    name: &str,
    source: &str,
    method: &str,
) -> String {
    csi.create_snapshot(CreateSnapshotRequest {
        name: name.to_owned(),
        source_volume_id: source.to_owned(),
        parameters: HashMap::from([("snapshotMethod".to_owned(), method.to_owned())]),
        ..Default::default()
    })
    .await
    .expect("CreateSnapshot")
    .into_inner()
    .snapshot
    .unwrap()
    .snapshot_id
}

async fn delete_snapshot(csi: &mut ControllerClient<Channel>, id: &str) {
    csi.delete_snapshot(DeleteSnapshotRequest {
        snapshot_id: id.to_owned(),
        ..Default::default()
    })
    .await
    .expect("DeleteSnapshot");
}

async fn delete_volume(csi: &mut ControllerClient<Channel>, id: &str) {
    csi.delete_volume(DeleteVolumeRequest {
        volume_id: id.to_owned(),
        ..Default::default()
    })
    .await
    .expect("DeleteVolume");
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut check, mut runs) = (false, 3usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            // `cargo bench` passes `--bench`.
            _ => {}
        }
    }
    // Under the build directory: the filesystem a developer's (or CI's) data lives on.
    let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tempfile::tempdir_in(root).unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, "bench-password").unwrap();
    let sim = start_sim(dir.path(), &password, &["--routeros-version", "7.23.1"]).await;
    let (_controller, socket) = start_controller(dir.path(), &password, &sim).await;
    let mut csi = ControllerClient::new(connect(&socket).await);

    let mut images = Vec::new();
    for (m, method) in METHODS.iter().enumerate() {
        let source = source_of(m);
        csi.create_volume(request(&source, method, None))
            .await
            .expect("CreateVolume");
        let path = if *method == "subvolume" {
            format!("files/storage-pool/{source}/{source}.img")
        } else {
            format!("files/storage-pool/{source}.img")
        };
        let image = sim.data_dir.join(path);
        write_data(&image);
        images.push(image);
    }
    let image = &images[0];

    let mut copies = Vec::new();
    for _ in 0..runs {
        let target = dir.path().join("cp.img");
        let (status, took) = timed(async {
            tokio::process::Command::new("cp")
                .arg("--reflink=auto")
                .arg(image)
                .arg(&target)
                .status()
                .await
                .unwrap()
        })
        .await;
        assert!(status.success(), "cp failed");
        std::fs::remove_file(&target).unwrap();
        copies.push(took);
    }
    let copy = median(copies);
    let mut rows = vec![("cp --reflink=auto".to_owned(), copy)];
    for (m, method) in METHODS.iter().enumerate() {
        let source = source_of(m);
        let mut snapshots = Vec::new();
        let mut restores = Vec::new();
        for run in 0..runs {
            let name = format!("snapshot-5a7e0000-0000-4000-8{m:03x}-{:012x}", 0xb00 + run);
            let (id, took) = timed(snapshot(&mut csi, &name, &source, method)).await;
            snapshots.push(took);
            let restored = format!("pvc-5a7e0000-0000-4000-8{m:03x}-{:012x}", 0xc00 + run);
            let (_, took) = timed(async {
                csi.create_volume(request(&restored, method, Some(&id)))
                    .await
                    .expect("CreateVolume from the snapshot")
            })
            .await;
            restores.push(took);
            delete_volume(&mut csi, &restored).await;
            delete_snapshot(&mut csi, &id).await;
        }
        delete_volume(&mut csi, &source).await;
        rows.push((format!("CreateSnapshot, {method}"), median(snapshots)));
        rows.push((format!("restore, {method}"), median(restores)));
    }
    println!(
        "10 GiB volume, 1 GiB written, median of {runs} (page cache dropped before each: {})",
        if rustix::process::geteuid().is_root() {
            "yes"
        } else {
            "no, not root"
        }
    );
    println!("{:<32} {:>10} {:>8}", "operation", "ms", "× cp");
    let mut missed = false;
    for (what, took) in rows {
        let ratio = took.as_secs_f64() / copy.as_secs_f64();
        println!(
            "{what:<32} {:>10.1} {ratio:>8.2}",
            took.as_secs_f64() * 1000.0
        );
        missed |= ratio > TARGET_RATIO;
    }
    if missed {
        println!("target: each at most {TARGET_RATIO}× the copy: missed");
        if check {
            std::process::exit(1);
        }
    } else {
        println!("target: each at most {TARGET_RATIO}× the copy: met");
    }
}
