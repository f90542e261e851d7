//! The two processes a benchmark measures, as an operator starts them: `rds-csi sim` and
//! `rds-csi controller` (SSH, host key pinned), and a CSI channel to the controller.
#![allow(dead_code)] // each benchmark uses its part

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use csi::v1::ProbeRequest;
use csi::v1::identity_client::IdentityClient;
use driver::server::{self, Endpoint};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

/// A child process of the binary, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
}

impl Proc {
    pub fn status(&self) -> HashMap<String, u64> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        text.lines()
            .filter_map(|l| {
                let (key, value) = l.split_once(':')?;
                let kib = value.trim().strip_suffix(" kB")?.parse::<u64>().ok()?;
                Some((key.to_owned(), kib * 1024))
            })
            .collect()
    }

    pub fn rss(&self) -> u64 {
        self.status()["VmRSS"]
    }

    pub fn peak(&self) -> u64 {
        self.status()["VmHWM"]
    }

    /// Resets VmHWM to the current RSS (`clear_refs` 5).
    pub fn reset_peak(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5").unwrap();
    }

    pub fn written(&self) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/io", self.pid)).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("write_bytes: "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    }

    /// User plus system CPU time.
    pub fn cpu(&self) -> Duration {
        let text = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        let after_name = &text[text.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_name.split(' ').collect();
        // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // USER_HZ: 100 on every Linux architecture this runs on.
        Duration::from_millis(ticks * 10)
    }

    pub fn check_alive(&mut self, name: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the {name} exited: {status}");
        }
    }
}

/// The binary measured: this build's, or `SCALE_BINARY` (another build, to compare).
pub fn binary() -> Command {
    let exe = std::env::var_os("SCALE_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_rds-csi")),
        PathBuf::from,
    );
    let mut command = Command::new(exe);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RDS_CSI_") {
            command.env_remove(key);
        }
    }
    command.stdin(Stdio::null()).kill_on_drop(true);
    command
}

pub struct Sim {
    pub proc: Proc,
    pub ssh_port: u16,
    pub host_key: String,
    /// The simulator's data directory.
    pub data_dir: PathBuf,
}

/// The simulator binary with its data under `dir`; `extra` arguments go last.
pub async fn start_sim(dir: &Path, password_file: &Path, extra: &[&str]) -> Sim {
    let log = std::fs::File::create(dir.join("sim.log")).unwrap();
    let mut child = binary()
        .args(["--log", "warn", "sim", "--data-dir"])
        .arg(dir.join("rds"))
        .arg("--password-file")
        .arg(password_file)
        .args([
            "--ssh-listen",
            "127.0.0.1:0",
            "--rest-listen",
            "127.0.0.1:0",
            "--nvmet",
            "off",
            "--capacity",
            "100T",
        ])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("starting the simulator");
    let pid = child.id().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut facts = HashMap::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line == "ready" {
                return;
            }
            if let Some((key, value)) = line.split_once(": ") {
                facts.insert(key.to_owned(), value.to_owned());
            }
        }
        panic!("the simulator exited before `ready`");
    })
    .await
    .expect("the simulator starts");
    // Keep draining its stdout so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let ssh: std::net::SocketAddr = facts["ssh-listen"].parse().unwrap();
    Sim {
        proc: Proc { child, pid },
        ssh_port: ssh.port(),
        host_key: facts["ssh-host-key-fingerprint"].clone(),
        data_dir: dir.join("rds"),
    }
}

pub async fn start_controller(dir: &Path, password_file: &Path, sim: &Sim) -> (Proc, PathBuf) {
    let socket = dir.join("controller.sock");
    let log = std::fs::File::create(dir.join("controller.log")).unwrap();
    let child = binary()
        .args(["--log", "warn", "controller", "--endpoint"])
        .arg(format!("unix://{}", socket.display()))
        .args(["--rds-address", "127.0.0.1", "--rds-port"])
        .arg(sim.ssh_port.to_string())
        .arg("--rds-password-file")
        .arg(password_file)
        .args(["--rds-host-key-fingerprint", &sim.host_key])
        .args(["--nvme-address", "127.0.0.1"])
        .args(["--attachment-state", "memory", "--metrics-address", ""])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("starting the controller");
    let pid = child.id().unwrap();
    (Proc { child, pid }, socket)
}

pub async fn connect(socket: &Path) -> Channel {
    let endpoint = Endpoint::Unix(socket.to_owned());
    let started = Instant::now();
    loop {
        if let Ok(channel) = server::connect(&endpoint).await {
            let mut identity = IdentityClient::new(channel.clone());
            if let Ok(reply) = identity.probe(ProbeRequest {}).await
                && reply.into_inner().ready != Some(false)
            {
                return channel;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the controller serves within a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
