//! The doctor's lab: an in-process simulator with a password, a kubelet directory, and the
//! binary run as an operator runs it.

#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use rds_sim::{SimConfig, SimHandle, Simulator};
use serde_json::Value;
use tokio::process::Command;

pub const PASSWORD: &str = "doctor-secret-pw";
/// Every run must end well within this, whatever the RDS does.
pub const RUN_BOUND: Duration = Duration::from_secs(60);

pub struct Lab {
    pub sim: SimHandle,
    pub password_file: PathBuf,
    pub kubelet_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl Lab {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sim = Simulator::start(SimConfig::new(dir.path().join("rds")).with_password(PASSWORD))
            .await
            .expect("simulator starts");
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let kubelet_dir = dir.path().join("kubelet");
        std::fs::create_dir(&kubelet_dir).unwrap();
        Self {
            sim,
            password_file,
            kubelet_dir,
            _dir: dir,
        }
    }

    /// Flags for SSH to the simulator, with the password file (pins are up to the test).
    pub fn ssh(&self) -> Vec<String> {
        vec![
            "--rds-address".into(),
            "127.0.0.1".into(),
            "--rds-port".into(),
            self.sim.ssh_addr().port().to_string(),
            "--rds-password-file".into(),
            self.password_file.display().to_string(),
            "--kubelet-dir".into(),
            self.kubelet_dir.display().to_string(),
        ]
    }

    /// [`Lab::ssh`] with the simulator's host key pinned.
    pub fn ssh_pinned(&self) -> Vec<String> {
        let mut args = self.ssh();
        args.extend([
            "--rds-host-key-fingerprint".into(),
            self.sim.host_key_fingerprint(),
        ]);
        args
    }

    /// [`Lab::rest`] trusting the simulator's certificate.
    pub fn rest_pinned(&self) -> Vec<String> {
        let mut args = self.rest();
        args.extend([
            "--rds-ca-file".into(),
            self.sim.certificate_path().display().to_string(),
        ]);
        args
    }

    pub fn rest(&self) -> Vec<String> {
        vec![
            "--rds-address".into(),
            "127.0.0.1".into(),
            "--rds-transport".into(),
            "rest".into(),
            "--rds-port".into(),
            self.sim.rest_addr().port().to_string(),
            "--rds-password-file".into(),
            self.password_file.display().to_string(),
            "--kubelet-dir".into(),
            self.kubelet_dir.display().to_string(),
        ]
    }
}

/// `rds-csi doctor <args>`, free of any `RDS_CSI_*` setting of the test's environment.
pub fn doctor_command(args: &[String]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rds-csi"));
    command.arg("doctor").args(args).kill_on_drop(true);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("RDS_CSI_") || name == "NO_COLOR" {
            command.env_remove(name);
        }
    }
    command
}

/// Runs the binary with `args`.
pub async fn doctor(args: &[String]) -> Output {
    tokio::time::timeout(RUN_BOUND, doctor_command(args).output())
        .await
        .expect("doctor finishes within its bound")
        .unwrap()
}

/// Runs with `--json` and returns the report.
pub async fn doctor_json(args: &[String]) -> (Output, Value) {
    let mut args = args.to_vec();
    args.push("--json".into());
    let output = doctor(&args).await;
    let report = json_report(&output);
    (output, report)
}

/// The JSON report a `--json` run printed.
pub fn json_report(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}
