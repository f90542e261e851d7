//! The controller and the simulator as the binary runs them (two processes of `rds-csi`),
//! with a device growing to 0, 1,000, 2,500, 5,000 and 10,000 volumes. At each size:
//! CreateVolume median and p95 of single creates (then deleted again), ListVolumes over every
//! volume in pages of 500, the controller's RSS (now and the peak since the step began),
//! the simulator's RSS, and what the simulator writes to disk and spends in CPU per change.
//!
//! Run: `cargo bench -p rds-csi --bench scale` (the whole curve, a few minutes);
//! `-- --max 1000` (or `SCALE_MAX_VOLUMES=1000`) for a quick run; `-- --check` exits 1 when a
//! target is missed (see docs/performance.md); `SCALE_BINARY=path` measures another build of
//! `rds-csi`.

use std::time::{Duration, Instant};

use csi::v1::controller_client::ControllerClient;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::volume_capability::{AccessMode, AccessType, MountVolume};
use csi::v1::{
    CapacityRange, CreateVolumeRequest, DeleteVolumeRequest, ListVolumesRequest, VolumeCapability,
};
use futures::StreamExt as _;
use tonic::transport::Channel;

mod common;
use common::{Proc, connect, start_controller, start_sim};

const STEPS: [usize; 5] = [0, 1_000, 2_500, 5_000, 10_000];
const SAMPLES: usize = 50;
const PAGE: i32 = 500;
const FILL_CONCURRENCY: usize = 16;
const VOLUME_BYTES: u64 = 1 << 30;
const MIB: f64 = 1024.0 * 1024.0;

/// The targets, checked on the largest size measured.
const CREATE_RATIO_TARGET: f64 = 2.0;
const LIST_TARGET: Duration = Duration::from_secs(1);
const CONTROLLER_RSS_TARGET_MIB: f64 = 32.0;
const SIM_BYTES_PER_VOLUME_TARGET: f64 = 4096.0;
/// "Proportional to the change, not to the state": bytes written per change at the largest
/// size at most this many times those at the smallest.
const PERSIST_RATIO_TARGET: f64 = 2.0;

struct Options {
    max: usize,
    check: bool,
    samples: usize,
}

fn options() -> Options {
    let mut max = std::env::var("SCALE_MAX_VOLUMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let mut check = false;
    let mut samples = SAMPLES;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--max" => max = args.next().and_then(|v| v.parse().ok()).expect("--max N"),
            "--samples" => {
                samples = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--samples N")
            }
            // `cargo bench` passes `--bench`; anything else is for other harnesses.
            _ => {}
        }
    }
    Options {
        max,
        check,
        samples,
    }
}

fn volume_name(n: usize) -> String {
    format!("pvc-{:08x}-5ca1-4e00-8000-{n:012x}", n as u32 ^ 0x5ca1_ab1e)
}

fn create_request(name: String) -> CreateVolumeRequest {
    CreateVolumeRequest {
        name,
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
        ..Default::default()
    }
}

async fn create(csi: &mut ControllerClient<Channel>, name: String) -> String {
    csi.create_volume(create_request(name))
        .await
        .expect("CreateVolume")
        .into_inner()
        .volume
        .unwrap()
        .volume_id
}

async fn delete(csi: &mut ControllerClient<Channel>, volume_id: String) {
    csi.delete_volume(DeleteVolumeRequest {
        volume_id,
        ..Default::default()
    })
    .await
    .expect("DeleteVolume");
}

/// Creates volumes `from..to` with `FILL_CONCURRENCY` calls in flight.
async fn fill(csi: &ControllerClient<Channel>, from: usize, to: usize) {
    futures::stream::iter(from..to)
        .map(|n| {
            let mut csi = csi.clone();
            async move { create(&mut csi, volume_name(n)).await }
        })
        .buffer_unordered(FILL_CONCURRENCY)
        .for_each(|_| async {})
        .await;
}

/// Every volume, in pages of `PAGE`; returns how many.
async fn list_all(csi: &mut ControllerClient<Channel>) -> usize {
    let mut token = String::new();
    let mut count = 0;
    loop {
        let reply = csi
            .list_volumes(ListVolumesRequest {
                max_entries: PAGE,
                starting_token: token,
            })
            .await
            .expect("ListVolumes")
            .into_inner();
        count += reply.entries.len();
        if reply.next_token.is_empty() {
            return count;
        }
        token = reply.next_token;
    }
}

#[derive(Debug, Clone, Default)]
struct Row {
    volumes: usize,
    fill: Duration,
    create_median: Duration,
    create_p95: Duration,
    delete_median: Duration,
    list: Duration,
    controller_rss: u64,
    controller_peak: u64,
    sim_rss: u64,
    /// Bytes the simulator wrote per change (a create or a delete).
    written_per_change: f64,
    /// Simulator CPU per change.
    sim_cpu_per_change: Duration,
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(
    csi: &mut ControllerClient<Channel>,
    controller: &Proc,
    sim: &Proc,
    volumes: usize,
    samples: usize,
) -> Row {
    controller.reset_peak();
    let (written, cpu) = (sim.written(), sim.cpu());
    let mut creates = Vec::with_capacity(samples);
    let mut ids = Vec::with_capacity(samples);
    for n in 0..samples {
        let name = volume_name(1_000_000 + volumes * 1000 + n);
        let started = Instant::now();
        ids.push(create(csi, name).await);
        creates.push(started.elapsed());
    }
    let mut deletes = Vec::with_capacity(samples);
    for id in ids {
        let started = Instant::now();
        delete(csi, id).await;
        deletes.push(started.elapsed());
    }
    let changes = (2 * samples) as f64;
    let written_per_change = (sim.written() - written) as f64 / changes;
    let sim_cpu_per_change = (sim.cpu() - cpu).div_f64(changes);
    creates.sort();
    deletes.sort();

    let started = Instant::now();
    let listed = list_all(csi).await;
    let list = started.elapsed();
    assert_eq!(listed, volumes, "ListVolumes returns every volume");
    Row {
        volumes,
        fill: Duration::ZERO,
        create_median: quantile(&creates, 0.5),
        create_p95: quantile(&creates, 0.95),
        delete_median: quantile(&deletes, 0.5),
        list,
        controller_rss: controller.rss(),
        controller_peak: controller.peak(),
        sim_rss: sim.rss(),
        written_per_change,
        sim_cpu_per_change,
    }
}

fn print_header() {
    println!(
        "{:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "volumes",
        "fill s",
        "create ms",
        "p95 ms",
        "delete ms",
        "list ms",
        "ctl MiB",
        "ctl peak",
        "sim MiB",
        "B/change",
        "sim cpu"
    );
}

fn print_row(r: &Row) {
    println!(
        "{:>7} {:>8.1} {:>9.2} {:>9.2} {:>9.2} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>10.0} {:>7.2}ms",
        r.volumes,
        r.fill.as_secs_f64(),
        ms(r.create_median),
        ms(r.create_p95),
        ms(r.delete_median),
        ms(r.list),
        r.controller_rss as f64 / MIB,
        r.controller_peak as f64 / MIB,
        r.sim_rss as f64 / MIB,
        r.written_per_change,
        ms(r.sim_cpu_per_change),
    );
}

/// The targets, judged on the first and last rows; returns the misses.
fn judge(rows: &[Row]) -> Vec<String> {
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    let mut misses = Vec::new();
    let mut verdict = |ok: bool, text: String| {
        println!("{} {text}", if ok { "met   " } else { "MISSED" });
        if !ok {
            misses.push(text);
        }
    };
    let ratio = last.create_median.as_secs_f64() / first.create_median.as_secs_f64();
    verdict(
        ratio <= CREATE_RATIO_TARGET,
        format!(
            "CreateVolume median at {} volumes {:.2} ms = {ratio:.2}x its {:.2} ms at {} (target <= {CREATE_RATIO_TARGET}x)",
            last.volumes,
            ms(last.create_median),
            ms(first.create_median),
            first.volumes
        ),
    );
    verdict(
        last.list <= LIST_TARGET,
        format!(
            "ListVolumes of {} volumes in pages of {PAGE}: {:.0} ms (target <= {} ms)",
            last.volumes,
            ms(last.list),
            LIST_TARGET.as_millis()
        ),
    );
    let peak = last.controller_peak as f64 / MIB;
    verdict(
        peak <= CONTROLLER_RSS_TARGET_MIB,
        format!(
            "controller RSS peak at {} volumes: {peak:.1} MiB (target <= {CONTROLLER_RSS_TARGET_MIB} MiB)",
            last.volumes
        ),
    );
    if last.volumes > first.volumes {
        let per_volume =
            (last.sim_rss as f64 - first.sim_rss as f64) / (last.volumes - first.volumes) as f64;
        verdict(
            per_volume <= SIM_BYTES_PER_VOLUME_TARGET,
            format!(
                "simulator memory per volume: {per_volume:.0} bytes (target <= {SIM_BYTES_PER_VOLUME_TARGET})"
            ),
        );
    }
    // Against the smallest non-empty size's figure, with a page of slack for tiny figures.
    let base = rows
        .iter()
        .map(|r| r.written_per_change)
        .fold(f64::INFINITY, f64::min)
        .max(4096.0);
    let ratio = last.written_per_change / base;
    verdict(
        ratio <= PERSIST_RATIO_TARGET,
        format!(
            "simulator bytes written per change at {} volumes: {:.0} = {ratio:.2}x the smallest ({base:.0}; target <= {PERSIST_RATIO_TARGET}x)",
            last.volumes, last.written_per_change
        ),
    );
    misses
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = options();
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "scale-bench-pw\n").unwrap();
    let mut sim = start_sim(dir.path(), &password_file, &[]).await;
    let (mut controller, socket) = start_controller(dir.path(), &password_file, &sim).await;
    let channel = connect(&socket).await;
    let mut csi = ControllerClient::new(channel);

    // Warm up both sides: connections, threads, buffers.
    let warm: Vec<String> = futures::stream::iter(0..FILL_CONCURRENCY)
        .map(|n| {
            let mut csi = csi.clone();
            async move { create(&mut csi, volume_name(900_000 + n)).await }
        })
        .buffer_unordered(FILL_CONCURRENCY)
        .collect()
        .await;
    for id in warm {
        delete(&mut csi, id).await;
    }

    println!(
        "rds-csi scale benchmark: {} samples per size, pages of {PAGE}, volumes of {} GiB",
        options.samples,
        VOLUME_BYTES >> 30
    );
    print_header();
    let mut rows = Vec::new();
    let mut have = 0;
    for &step in STEPS.iter().filter(|&&s| s <= options.max) {
        let started = Instant::now();
        fill(&csi, have, step).await;
        let fill_time = started.elapsed();
        have = step;
        sim.proc.check_alive("simulator");
        controller.check_alive("controller");
        let mut row = measure(&mut csi, &controller, &sim.proc, step, options.samples).await;
        row.fill = fill_time;
        print_row(&row);
        rows.push(row);
    }
    let misses = judge(&rows);
    if options.check && !misses.is_empty() {
        std::process::exit(1);
    }
}
