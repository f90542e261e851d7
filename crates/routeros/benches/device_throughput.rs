//! Throughput of the client against the simulator with a device-like latency and session cap.
//!
//! Not a timed test: it prints figures. Run with `cargo bench -p routeros`.
//! The floor is what a perfect client could do: operations × commands per operation ×
//! latency ÷ sessions. Target: ≤ 1.25× the floor; client overhead per command ≤ 1 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rds_sim::{SimConfig, SimHandle, Simulator};
use routeros::{Client, ClientConfig, DiskSpec, HostKeyPolicy, Secret, Slot, SshAuth, TlsPolicy};

const PASSWORD: &str = "bench";
const LATENCY: Duration = Duration::from_millis(20);
const SESSIONS: usize = 16;
const CREATES: usize = 100;
const GETS: usize = 200;
const SEQUENTIAL: usize = 200;

fn client_config(sim: &SimHandle, rest: bool) -> ClientConfig {
    let mut c = if rest {
        let mut c = ClientConfig::rest(
            "127.0.0.1",
            "admin",
            Secret::new(PASSWORD),
            TlsPolicy::Fingerprint(sim.certificate_fingerprint()),
        );
        c.port = Some(sim.rest_addr().port());
        c
    } else {
        let mut c = ClientConfig::ssh(
            "127.0.0.1",
            "admin",
            SshAuth::Password(PASSWORD.into()),
            HostKeyPolicy::Fingerprints(vec![sim.host_key_fingerprint()]),
        );
        c.port = Some(sim.ssh_addr().port());
        c
    };
    c.max_concurrency = SESSIONS;
    c
}

fn spec(i: usize, run: &str) -> DiskSpec {
    let slot = format!("bench-{run}-{i:04}");
    DiskSpec {
        file_path: format!("storage-pool/bench/{slot}.img")
            .as_str()
            .try_into()
            .unwrap(),
        nqn: format!("nqn.2000-02.com.mikrotik:{slot}")
            .as_str()
            .try_into()
            .unwrap(),
        slot: slot.as_str().try_into().unwrap(),
        size: 1 << 30,
        port: routeros::DEFAULT_NVME_TCP_PORT,
        comment: None,
    }
}

/// Runs `n` operations at once and returns the wall time.
async fn concurrently<F, Fut>(n: usize, op: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..n).map(|i| tokio::spawn(op(i))).collect();
    for t in tasks {
        t.await.expect("operation task");
    }
    start.elapsed()
}

/// The ratio to the floor, and the wave-aware minimum: `ops` arrive at once but only
/// `SESSIONS` run at a time, so a perfect client still needs ⌈ops ÷ sessions⌉ waves.
fn report(what: &str, ops: usize, commands_per_op: usize, took: Duration) {
    let floor = LATENCY * (ops * commands_per_op) as u32 / SESSIONS as u32;
    let wave_minimum = LATENCY * (ops.div_ceil(SESSIONS) * commands_per_op) as u32;
    println!(
        "  {what:<28} {ops:>4} ops  {took:>9.1?}  floor {floor:>8.1?}  ratio {:.2}  \
         (wave minimum {wave_minimum:.1?} = {:.2}x floor)",
        took.as_secs_f64() / floor.as_secs_f64(),
        wave_minimum.as_secs_f64() / floor.as_secs_f64()
    );
}

async fn run_transport(rest: bool) {
    let name = if rest { "REST" } else { "SSH" };
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::new(dir.path()).with_password(PASSWORD);
    config.capacity = 1 << 50;
    let sim = Simulator::start(config).await.unwrap();

    // Per-command cost with no injected latency: an upper bound on client overhead
    // (it also includes the simulator's own work and loopback).
    let client = Client::connect(client_config(&sim, rest)).await.unwrap();
    let slot: Slot = "absent".try_into().unwrap();
    let start = Instant::now();
    for _ in 0..SEQUENTIAL {
        assert!(client.get_disk(&slot).await.unwrap().is_none());
    }
    let per_command = start.elapsed() / SEQUENTIAL as u32;

    sim.faults().update(|f| {
        f.latency_ms = LATENCY.as_millis() as u64;
        f.max_sessions = SESSIONS;
    });
    let client = Arc::new(Client::connect(client_config(&sim, rest)).await.unwrap());
    println!("{name}: sequential get with 0 ms device latency: {per_command:.2?} per command");

    let c = Arc::clone(&client);
    let took = concurrently(CREATES, move |i| {
        let c = Arc::clone(&c);
        async move {
            c.create_file_disk(&spec(i, "a")).await.unwrap();
        }
    })
    .await;
    // SSH: add + read-back in one exec. REST: one PUT whose reply is the object.
    report("concurrent creates", CREATES, 1, took);

    let c = Arc::clone(&client);
    let took = concurrently(GETS, move |i| {
        let c = Arc::clone(&c);
        async move {
            let s = spec(i % CREATES, "a");
            assert!(c.get_disk(&s.slot).await.unwrap().is_some());
        }
    })
    .await;
    report("concurrent gets", GETS, 1, took);
    assert_eq!(sim.snapshot().file_disks().count(), CREATES);
    sim.shutdown().await;
}

fn main() {
    // `cargo bench` passes --bench; a plain `cargo test --benches` passes nothing: run the
    // real thing only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("device_throughput: run with `cargo bench -p routeros`");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("device latency {LATENCY:?}, session cap {SESSIONS}, client concurrency {SESSIONS}");
    rt.block_on(run_transport(false));
    rt.block_on(run_transport(true));
}
