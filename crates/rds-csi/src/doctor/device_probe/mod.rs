//! `rds-csi doctor --probe-device`: records how the user's RDS really answers the refusals the
//! driver depends on (a taken slot, an image that exists, a missing item, a full pool), which
//! no capture from hardware has shown yet, and names the simulator quirks that play it.
//!
//! The only doctor step that changes the device. It works under a random tag of its own
//! ([`plan`]), says what it will do before the first change, records every command, verbatim
//! reply and read-back ([`probes`], [`findings`]), removes what it made also when interrupted
//! or failing ([`cleanup`]), and judges ([`judge`]) and prints ([`render`]) without I/O.

mod cleanup;
mod findings;
mod judge;
mod methods;
mod plan;
mod probes;
mod render;

#[cfg(test)]
mod fixtures;

use std::process::ExitCode;

use anyhow::Context as _;
use routeros::{Client, DirPath};
use tokio::signal::unix::{SignalKind, signal};

use crate::connection::{RdsConnectionArgs, RdsTransport, VolumeLayoutArgs};
use cleanup::CleanupReport;
use findings::Findings;
use plan::Plan;
use probes::{Run, Stop};
use render::{DeviceInfo, ProbeReport};

/// Runs the probe and prints its report: exit 0 when it ran to its end and left nothing
/// behind (whatever it found), 1 when it could not run, stopped early, or could not clean up.
pub async fn run(
    conn: &RdsConnectionArgs,
    layout: &VolumeLayoutArgs,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (client, device, plan, pool_size, version) = match prepare(conn, layout).await {
        Ok(prepared) => prepared,
        Err(error) => {
            eprintln!(
                "rds-csi doctor --probe-device could not start: {error:#}\nNothing was changed \
                 on the device; `rds-csi doctor` with the same flags shows what is wrong."
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    eprint!(
        "{}",
        render::announcement(&plan, &device.target, device.transport)
    );

    let mut findings = Findings {
        pool_size,
        ..Findings::default()
    };
    let outcome = {
        let mut run = Run {
            client: &client,
            plan: &plan,
            pool: &layout.pool,
            findings: &mut findings,
        };
        tokio::select! {
            result = run.all() => result,
            _ = sigint.recv() => Err(Stop::Interrupted("SIGINT")),
            _ = sigterm.recv() => Err(Stop::Interrupted("SIGTERM")),
        }
    };
    // The snapshot methods, once the refusals are recorded (and only if the run got there).
    let methods = match &outcome {
        Ok(()) => {
            let config = layout.controller_config(conn.address()?);
            let fs = config.btrfs_filesystem();
            tokio::select! {
                report = methods::probe(&client, &plan, &config.pool, fs, &version) => Some(report),
                _ = sigint.recv() => None,
                _ = sigterm.recv() => None,
            }
        }
        Err(_) => None,
    };
    let cleanup = match &outcome {
        // Those items are not this run's: never remove them.
        Err(Stop::Collision(_)) => CleanupReport::nothing_made(),
        _ => {
            eprintln!("removing everything named {}-* ...", plan.tag());
            tokio::select! {
                report = cleanup::clean(&client, &plan) => report,
                _ = sigint.recv() => CleanupReport::abandoned(&plan, "interrupted again during the cleanup"),
                _ = sigterm.recv() => CleanupReport::abandoned(&plan, "terminated during the cleanup"),
            }
        }
    };
    findings.stopped = outcome.err().map(|stop| stop.to_string());

    let verdict = judge::judge(&plan, &findings);
    let report = ProbeReport::new(device, &plan, findings, verdict, cleanup, methods);
    if json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.render());
    }
    Ok(if report.succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Everything read-only before the first change: the settings, the login, the version, the
/// pool, and the run's names.
async fn prepare(
    conn: &RdsConnectionArgs,
    layout: &VolumeLayoutArgs,
) -> anyhow::Result<(Client, DeviceInfo, Plan, u64, routeros::RouterOsVersion)> {
    let address = conn.address()?;
    let config = layout
        .controller_config(address)
        .validate()
        .context("volume settings")?;
    let base = DirPath::try_from(config.volume_base_path.as_str())?;
    let client = Client::new(conn.client_config(conn.read_secrets()?)?)?;
    let info = client.system_info().await.context("login")?;
    info.version.require_file_disks()?;
    let pool = client
        .pool(&config.pool)
        .await
        .with_context(|| format!("reading the pool {}", config.pool))?;
    let device = DeviceInfo {
        routeros: info.version_text.clone(),
        board: info.board_name,
        identity: info.identity,
        transport: match conn.rds_transport {
            RdsTransport::Ssh => "ssh",
            RdsTransport::Rest => "rest",
        },
        target: format!("{address}:{}", conn.port()),
    };
    Ok((
        client,
        device,
        Plan::new(base, rand::random()),
        pool.size,
        info.version,
    ))
}
