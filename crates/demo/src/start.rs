//! The first three steps: the simulator, the controller and the node plugin, each a child
//! process of this binary, started as an operator would start them, each ready before the
//! next starts.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use rand::Rng as _;
use routeros::{DEFAULT_NVME_TCP_PORT, Secret};

use crate::error::{DemoError, Result, io_context};
use crate::flow::CALL_TIMEOUT;
use crate::plan::Step;
use crate::procs::{self, free_tcp_port, wait_for_sim, wait_serving};
use crate::render::Fabric;
use crate::session::{CONTROLLER, NODE, RDS_USER, SIMULATOR, Session};
use crate::term::{Reporter, StepFailure};

/// How long a process may take to become ready.
const START_LIMIT: Duration = Duration::from_secs(30);

/// A free loopback address for a plugin's metrics, noted in the session for the scrape.
fn metrics_address(s: &mut Session, name: &'static str) -> Result<String> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], free_tcp_port()?));
    s.metrics.push((name, address));
    Ok(address.to_string())
}

fn args(items: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    items.iter().map(|item| item.as_ref().to_owned()).collect()
}

fn write_password(path: &Path) -> Result<Secret> {
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(24)
        .map(char::from)
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_context(format!("creating {}", path.display())))?;
    writeln!(file, "{password}").map_err(io_context(format!("writing {}", path.display())))?;
    Ok(Secret::new(password))
}

pub async fn start(rep: &mut Reporter, s: &mut Session) -> Result<(), StepFailure> {
    rep.step(Step::StartSimulator, async {
        let password_file = s.work.password_file();
        s.password = Some(write_password(&password_file)?);
        // The NVMe/TCP port of new volumes: a free one, since 4420 may be a real target's.
        let port = if s.facts.nvme_tcp_possible() {
            free_tcp_port()?
        } else {
            DEFAULT_NVME_TCP_PORT
        };
        let sim_args = args(&[
            &"--log",
            &"info",
            &"sim",
            &"--data-dir",
            &s.work.sim_data(),
            &"--password-file",
            &password_file,
            &"--user",
            &RDS_USER,
            &"--ssh-listen",
            &"127.0.0.1:0",
            &"--rest-listen",
            &"127.0.0.1:0",
            &"--nvmet",
            &s.facts.sim_nvmet_mode(),
            &"--nvme-listen",
            &format!("127.0.0.1:{port}"),
        ]);
        let mut child = procs::spawn(SIMULATOR, &s.exe, &sim_args, &s.work.sim_log(), true)?;
        let stdout = child
            .take_stdout()
            .ok_or_else(|| DemoError::Check("the simulator's stdout is not piped".into()))?;
        s.children.push(child);
        let child = s.children.last_mut().expect("just pushed");
        let sim = wait_for_sim(child, stdout, START_LIMIT).await?;
        let fabric = s.facts.fabric(sim.nvmet, port);
        let detail = format!(
            "SSH on {}, RouterOS {}, nvmet {}",
            sim.ssh,
            sim.version,
            if sim.nvmet { "on" } else { "off" }
        );
        s.sim = Some(sim);
        s.fabric = Some(fabric);
        Ok(((), detail))
    })
    .await?;
    if let Some(notice) = s.fabric.and_then(Fabric::notice) {
        rep.say(&rep.paint().yellow(&notice));
    }

    rep.step(Step::StartController, async {
        let metrics = metrics_address(s, CONTROLLER)?;
        let (Some(sim), Some(fabric)) = (&s.sim, s.fabric) else {
            return Err(DemoError::Check("the simulator is not running".into()));
        };
        let port = match fabric {
            Fabric::NvmeTcp { port } => port,
            Fabric::Loop(_) => DEFAULT_NVME_TCP_PORT,
        };
        let endpoint = s.work.controller_endpoint();
        let controller_args = args(&[
            &"--log",
            &"info",
            &"controller",
            &"--endpoint",
            &endpoint.to_string(),
            &"--rds-address",
            &sim.ssh.ip().to_string(),
            &"--rds-port",
            &sim.ssh.port().to_string(),
            &"--rds-user",
            &RDS_USER,
            &"--rds-password-file",
            &s.work.password_file(),
            &"--rds-host-key-fingerprint",
            &sim.host_key,
            &"--nvme-address",
            &"127.0.0.1",
            &"--nvme-port",
            &port.to_string(),
            // No Kubernetes in the demo: who holds which volume is kept in memory.
            &"--attachment-state",
            &"memory",
            // Prometheus metrics on a free loopback port: the demo scrapes them at the end.
            &"--metrics-address",
            &metrics,
        ]);
        let child = procs::spawn(
            CONTROLLER,
            &s.exe,
            &controller_args,
            &s.work.controller_log(),
            false,
        )?;
        s.children.push(child);
        let child = s.children.last_mut().expect("just pushed");
        wait_serving(child, &endpoint, START_LIMIT).await?;
        Ok((
            (),
            format!("{endpoint}; Probe ready: it reached the RDS over SSH, host key pinned"),
        ))
    })
    .await?;

    rep.step(Step::StartNode, async {
        let Some(fabric) = s.fabric else {
            return Err(DemoError::Check("the simulator is not running".into()));
        };
        let endpoint = s.work.node_endpoint();
        let block_dir = s.layout.block_publish_dir();
        let metrics = metrics_address(s, NODE)?;
        std::fs::create_dir_all(&block_dir)
            .map_err(io_context(format!("creating {}", block_dir.display())))?;
        // JSON with debug events from the driver: the NodeStageVolume breakdown reads them.
        let mut node_args = args(&[
            &"--log",
            &"info,driver=debug,nvme=debug,mounts::phase=debug",
            &"--log-format",
            &"json",
            &"node",
            &"--endpoint",
            &endpoint.to_string(),
            &"--node-id",
            &"demo-node",
            &"--fabric",
            &fabric.node_flag(),
            &"--block-publish-dir",
            &block_dir,
            &"--state-dir",
            &s.work.node_state(),
            // No cluster around the demo.
            &"--pod-recovery",
            &"off",
            &"--metrics-address",
            &metrics,
        ]);
        if let Fabric::Loop(_) = fabric {
            node_args.extend(args(&[&"--sim-data-dir", &s.work.sim_data()]));
        }
        let child = procs::spawn(NODE, &s.exe, &node_args, &s.work.node_log(), false)?;
        s.children.push(child);
        let child = s.children.last_mut().expect("just pushed");
        wait_serving(child, &endpoint, START_LIMIT).await?;
        s.csi =
            Some(e2e::Csi::connect(&s.work.controller_endpoint(), &endpoint, CALL_TIMEOUT).await?);
        Ok(((), format!("{endpoint}; fabric {}", fabric.node_flag())))
    })
    .await
}
