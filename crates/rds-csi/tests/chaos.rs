//! Chaos: the real binary's simulator, controller and node (loop fabric) driven through
//! create / ControllerPublish / stage / publish / write and check / unpublish / unstage /
//! ControllerUnpublish / delete cycles by concurrent callers, while the device drops requests,
//! loses replies of commands it ran, stalls, and every component is killed and started again.
//!
//! What must hold: every CSI call is answered with success or a retryable code (or not at all
//! while its process is down), every checksum reads back, and at the end nothing is left: no
//! disk or image on the device, no mount, no loop device, no node record.
//!
//! Short by default (CI); long with `RDS_CSI_CHAOS_CYCLES=1000` (and `RDS_CSI_CHAOS_WORKERS`):
//! `RDS_CSI_CHAOS_CYCLES=1000 cargo test -p rds-csi --test chaos -- --ignored --nocapture`.
//! `scripts/test.sh` runs the short form with its figures printed.

#[path = "chaos/world.rs"]
mod chaos_world;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chaos_world::{Component, World};
use e2e::{Csi, E2eError, VolumeMode};

/// Patience for one step through restarts and faults before the cycle counts as stuck.
const STEP_PATIENCE: Duration = Duration::from_secs(120);
const VOLUME_BYTES: u64 = 64 << 20;
const DATA_BYTES: u64 = 1 << 20;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the callers saw.
#[derive(Debug, Default)]
struct Figures {
    calls: usize,
    /// Retryable answers by code.
    retryable: BTreeMap<String, usize>,
    /// Calls that got no answer (process down, connection cut).
    unanswered: usize,
    /// Answers that are neither success nor retryable: each one a failure of the suite.
    violations: Vec<String>,
    checksums: usize,
}

/// How a failed call is judged.
enum Judgement {
    Retry,
    Violation(String),
}

fn judge(step: &str, error: &E2eError, figures: &Mutex<Figures>) -> Judgement {
    let mut figures = figures.lock().unwrap();
    match error {
        // A plugin's own answer has no transport error behind it.
        E2eError::Call { status, .. } if std::error::Error::source(status.as_ref()).is_none() => {
            use tonic::Code::*;
            match status.code() {
                Unavailable | Aborted | DeadlineExceeded | ResourceExhausted => {
                    *figures
                        .retryable
                        .entry(format!("{:?}", status.code()))
                        .or_default() += 1;
                    Judgement::Retry
                }
                _ => Judgement::Violation(format!("{step}: {status}")),
            }
        }
        E2eError::Call { .. } | E2eError::Timeout { .. } | E2eError::Connect { .. } => {
            figures.unanswered += 1;
            Judgement::Retry
        }
        other => Judgement::Violation(format!("{step}: {other}")),
    }
}

/// Runs `call` until it succeeds, as a CO retries: a violation ends the cycle.
async fn retried<T, F, Fut>(step: &str, figures: &Mutex<Figures>, call: F) -> Result<T, String>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = e2e::Result<T>>,
{
    let give_up = Instant::now() + STEP_PATIENCE;
    let mut pause = Duration::from_millis(20);
    loop {
        figures.lock().unwrap().calls += 1;
        match call().await {
            Ok(value) => return Ok(value),
            Err(error) => match judge(step, &error, figures) {
                Judgement::Violation(what) => return Err(what),
                Judgement::Retry if Instant::now() > give_up => {
                    return Err(format!(
                        "{step}: still failing after {STEP_PATIENCE:?}: {error}"
                    ));
                }
                Judgement::Retry => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(500));
                }
            },
        }
    }
}

/// One volume's whole life; the data written is read back before teardown.
async fn cycle(world: &World, csi: &Csi, n: usize, figures: &Mutex<Figures>) -> Result<(), String> {
    let name = demo::plan::pvc_name(rand::random());
    let mode = VolumeMode::Filesystem {
        fs_type: "ext4".into(),
    };
    let layout = world.layout();
    let no_params = Default::default();
    let volume = retried("CreateVolume", figures, || {
        csi.create_volume(&name, VOLUME_BYTES, &mode, &no_params)
    })
    .await?;
    let id = volume.volume_id.clone();
    let (staging, target) = (layout.staging(&id), layout.target(&id, &mode));
    std::fs::create_dir_all(target.parent().unwrap()).map_err(|e| e.to_string())?;
    let context = retried("ControllerPublishVolume", figures, || {
        csi.controller_publish(&volume, &mode)
    })
    .await?;
    retried("NodeStageVolume", figures, || {
        csi.node_stage(&volume, &context, &staging, &mode)
    })
    .await?;
    retried("NodePublishVolume", figures, || {
        csi.node_publish(&volume, &staging, &target, &mode)
    })
    .await?;
    let data = target.join("data");
    let seed = n as u64;
    let written = tokio::task::spawn_blocking({
        let data = data.clone();
        move || e2e::pattern::write_pattern_file(&data, seed, DATA_BYTES, DATA_BYTES)
    })
    .await
    .unwrap()
    .map_err(|e| format!("writing {id}: {e}"))?;
    let read = tokio::task::spawn_blocking(move || {
        e2e::pattern::verify_pattern_file(&data, seed, DATA_BYTES)
    })
    .await
    .unwrap()
    .map_err(|e| format!("reading {id}: {e}"))?;
    if read != written {
        return Err(format!("{id}: wrote {written}, read {read}"));
    }
    figures.lock().unwrap().checksums += 1;
    retried("NodeUnpublishVolume", figures, || {
        csi.node_unpublish(&id, &target)
    })
    .await?;
    retried("NodeUnstageVolume", figures, || {
        csi.node_unstage(&id, &staging)
    })
    .await?;
    retried("ControllerUnpublishVolume", figures, || {
        csi.controller_unpublish(&id)
    })
    .await?;
    retried("DeleteVolume", figures, || csi.delete_volume(&id)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run by scripts/test.sh with its figures printed (needs root)"]
async fn chaos_cycles_leave_nothing_behind_and_every_answer_is_retryable_or_success() {
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the chaos suite needs root (loop devices, mounts) and CI runs as root"
        );
        eprintln!("skipped: the chaos suite needs root (loop devices, mounts)");
        return;
    }
    let cycles = env_number("RDS_CSI_CHAOS_CYCLES", 120);
    let workers = env_number("RDS_CSI_CHAOS_WORKERS", 4);
    let world = Arc::new(World::start().await);
    let figures = Arc::new(Mutex::new(Figures::default()));
    let next = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();

    let chaos = tokio::spawn(world.clone().unleash());
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (world, figures, next, ran) =
            (world.clone(), figures.clone(), next.clone(), ran.clone());
        callers.spawn(async move {
            let csi = world.csi().await;
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                // At least `cycles`, and on until every component has been restarted under
                // load once: on a slow machine restarts take longer than the cycles.
                if n >= cycles && (world.rounds() > 0 || cycles < 50) {
                    return;
                }
                ran.fetch_add(1, Ordering::SeqCst);
                if let Err(violation) = cycle(&world, &csi, n, &figures).await {
                    figures.lock().unwrap().violations.push(violation);
                }
            }
        });
    }
    while let Some(joined) = callers.join_next().await {
        joined.expect("a caller panicked");
    }
    let elapsed = started.elapsed();
    let restarts = world.calm(chaos).await;
    let cycles = ran.load(Ordering::SeqCst);

    let figures = std::mem::take(&mut *figures.lock().unwrap());
    let retryable: usize = figures.retryable.values().sum();
    eprintln!(
        "chaos: {cycles} cycles by {workers} callers in {:.1} s ({:.1} cycles/s)\n\
         chaos: {} CSI calls: {} retryable answers {:?}, {} unanswered; {} checksums intact\n\
         chaos: restarts {:?}; device faults: {}",
        elapsed.as_secs_f64(),
        cycles as f64 / elapsed.as_secs_f64(),
        figures.calls,
        retryable,
        figures.retryable,
        figures.unanswered,
        figures.checksums,
        restarts,
        World::FAULTS,
    );
    assert_eq!(
        figures.violations,
        Vec::<String>::new(),
        "answers neither success nor retryable"
    );
    assert_eq!(figures.checksums, cycles);
    for component in [Component::Simulator, Component::Controller, Component::Node] {
        assert!(
            restarts.get(&component).copied().unwrap_or(0) > 0 || cycles < 50,
            "{component:?} was never restarted: the run was too short to prove anything"
        );
    }
    let leftovers = world.leftovers().await;
    assert_eq!(leftovers, Vec::<String>::new(), "left behind");
    Arc::into_inner(world)
        .expect("every caller is done")
        .stop()
        .await;
}
