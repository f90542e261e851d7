//! 100 CreateVolume, then 100 DeleteVolume, over gRPC on a Unix socket, against the
//! simulator with 20 ms per command and a cap of 16 sessions; the CO keeps 16 calls in
//! flight. Prints the wall time of each phase against its floor:
//! operations × round trips per operation × latency ÷ sessions.
//!
//! Run: `cargo bench -p driver --bench create_delete`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use csi::v1::ProbeRequest;
use futures::StreamExt as _;
use rds_sim::Faults;

const VOLUMES: usize = 100;
const SESSIONS: usize = 16;
const LATENCY: Duration = Duration::from_millis(20);
/// Device round trips per operation, as the controller is built (and as its unit tests pin
/// down): CreateVolume = the guarded add (look-ups, add, read-back in one script);
/// DeleteVolume = the volume's facts (its disk, images, their users) + one script removing the
/// disk by id and its image.
const CREATE_ROUND_TRIPS: u32 = 1;
const DELETE_ROUND_TRIPS: u32 = 2;

/// Prints the wall time against the floor (operations × round trips × latency ÷ sessions)
/// and against the wave-aware minimum: operations come in whole waves of `SESSIONS`, so
/// even a perfect driver needs ⌈operations ÷ sessions⌉ × round trips × latency.
fn report(phase: &str, wall: Duration, round_trips: u32) -> f64 {
    let floor = LATENCY * (VOLUMES as u32 * round_trips) / SESSIONS as u32;
    let waves = VOLUMES.div_ceil(SESSIONS) as u32;
    let wave_minimum = LATENCY * waves * round_trips;
    let ratio = wall.as_secs_f64() / floor.as_secs_f64();
    println!(
        "{phase:<14} {VOLUMES} ops  wall {:>7.1} ms  round trips/op {round_trips}  \
         floor {:>6.1} ms  ratio {ratio:.2}  (wave minimum {:>6.1} ms = {:.2}x floor)",
        wall.as_secs_f64() * 1000.0,
        floor.as_secs_f64() * 1000.0,
        wave_minimum.as_secs_f64() * 1000.0,
        wave_minimum.as_secs_f64() / floor.as_secs_f64(),
    );
    ratio
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let h = Harness::with(Options {
        capacity: 1 << 40,
        faults: Faults {
            latency_ms: LATENCY.as_millis() as u64,
            max_sessions: SESSIONS,
            ..Faults::default()
        },
        client_sessions: SESSIONS,
        ..Options::default()
    })
    .await;
    // Connect, learn the RouterOS version and read the pool before timing.
    let ready = h
        .identity
        .clone()
        .probe(timed(ProbeRequest {}))
        .await
        .unwrap();
    assert_eq!(ready.into_inner().ready, Some(true));

    // One untimed wave of creates and deletes: the threads, buffers and caches of both
    // sides are then as in a system that has been running, as in every timed wave after it.
    let warm_up: Vec<String> = (0..SESSIONS)
        .map(|n| format!("warm-up volume {n}"))
        .collect();
    let warm_ids: Vec<String> = futures::stream::iter(&warm_up)
        .map(|name| h.create(create_request(name, 64 * MIB)))
        .buffer_unordered(SESSIONS)
        .map(|reply| reply.expect("warm-up create").volume.unwrap().volume_id)
        .collect()
        .await;
    futures::stream::iter(&warm_ids)
        .map(|id| h.delete(id))
        .buffer_unordered(SESSIONS)
        .for_each(|outcome| async move { outcome.expect("warm-up delete") })
        .await;

    let names: Vec<String> = (0..VOLUMES).map(|n| format!("bench volume {n}")).collect();
    let started = Instant::now();
    let created: Vec<String> = futures::stream::iter(&names)
        .map(|name| h.create(create_request(name, 64 * MIB)))
        .buffer_unordered(SESSIONS)
        .map(|reply| reply.expect("create").volume.unwrap().volume_id)
        .collect()
        .await;
    let create_ratio = report("CreateVolume", started.elapsed(), CREATE_ROUND_TRIPS);
    assert_eq!(h.sim.snapshot().file_disks().count(), VOLUMES);

    let started = Instant::now();
    futures::stream::iter(&created)
        .map(|id| h.delete(id))
        .buffer_unordered(SESSIONS)
        .for_each(|outcome| async move { outcome.expect("delete") })
        .await;
    let delete_ratio = report("DeleteVolume", started.elapsed(), DELETE_ROUND_TRIPS);
    println!("target: ratio <= 1.30");
    h.finish().await;
    if create_ratio > 1.3 || delete_ratio > 1.3 {
        println!("WARNING: above the 1.3 target");
    }
}
