//! `rds-csi doctor` as an operator runs it, against the simulator over real SSH and HTTPS.
//!
//! This machine has no NVMe/TCP initiator, so the node part is asserted to tell the truth
//! about it rather than to pass.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{Lab, PASSWORD, doctor, doctor_json};
use serde_json::Value;

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

fn status<'a>(report: &'a Value, id: &str) -> &'a str {
    check(report, id)["status"].as_str().unwrap()
}

/// The exit code agrees with the report: 1 exactly when some check failed.
fn assert_exit_matches(output: &Output, report: &Value) {
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "fail");
    assert_eq!(report["result"] == "fail", failed);
    assert_eq!(
        output.status.code(),
        Some(if failed { 1 } else { 0 }),
        "{report:#}"
    );
}

/// The node part reports this machine as it is.
fn assert_node_truth(report: &Value, kubelet_dir: &Path) {
    let fabrics = if Path::new("/dev/nvme-fabrics").exists() {
        "ok"
    } else {
        "fail"
    };
    assert_eq!(status(report, "node.nvme-fabrics"), fabrics);
    assert_eq!(status(report, "node.kubelet-dir"), "ok");
    assert!(
        check(report, "node.kubelet-dir")["detail"]
            .as_str()
            .unwrap()
            .contains(&kubelet_dir.display().to_string())
    );
    assert_ne!(status(report, "node.kubelet-propagation"), "skip");
    let blkid_on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join("blkid").is_file()))
        .unwrap_or(false);
    assert_eq!(
        status(report, "node.tool.blkid"),
        if blkid_on_path { "ok" } else { "fail" }
    );
}

const RDS_CHECKS: [&str; 10] = [
    "rds.settings",
    "rds.flags",
    "rds.reachable",
    "IDENTITY",
    "rds.login",
    "rds.version",
    "rds.pool",
    "rds.volumes",
    "rds.export-access",
    "rds.round-trip",
];

fn assert_all_rds_ok(report: &Value, identity: &str) {
    for id in RDS_CHECKS {
        let id = if id == "IDENTITY" { identity } else { id };
        assert_eq!(status(report, id), "ok", "{id}: {:#}", check(report, id));
    }
}

#[tokio::test]
async fn over_ssh_every_rds_check_passes_and_the_json_report_is_complete() {
    let lab = Lab::start().await;
    let (output, report) = doctor_json(&lab.ssh_pinned()).await;
    assert_all_rds_ok(&report, "rds.host-key");
    assert_eq!(report["rds_checked"], true);
    assert_node_truth(&report, &lab.kubelet_dir);
    assert_exit_matches(&output, &report);
    assert!(
        check(&report, "rds.version")["detail"]
            .as_str()
            .unwrap()
            .contains("7.21"),
        "{report:#}"
    );
    assert!(
        check(&report, "rds.round-trip")["detail"]
            .as_str()
            .unwrap()
            .contains("over 5 reads")
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains(PASSWORD));
    lab.sim.shutdown().await;
}

#[tokio::test]
async fn over_rest_every_rds_check_passes_with_a_ca_file_or_a_certificate_pin() {
    let lab = Lab::start().await;
    let (output, report) = doctor_json(&lab.rest_pinned()).await;
    assert_all_rds_ok(&report, "rds.certificate");
    assert_exit_matches(&output, &report);

    let mut pinned = lab.rest();
    pinned.extend([
        "--rds-cert-fingerprint".into(),
        lab.sim.certificate_fingerprint(),
    ]);
    let (_, report) = doctor_json(&pinned).await;
    assert_all_rds_ok(&report, "rds.certificate");

    // Another certificate's fingerprint: a mismatch, and no password goes out.
    let mut wrong = lab.rest();
    wrong.extend(["--rds-cert-fingerprint".into(), "AB".repeat(32)]);
    let (output, report) = doctor_json(&wrong).await;
    assert_eq!(status(&report, "rds.certificate"), "fail");
    assert!(
        check(&report, "rds.certificate")["detail"]
            .as_str()
            .unwrap()
            .starts_with("MISMATCH")
    );
    assert_eq!(status(&report, "rds.login"), "skip");
    assert_eq!(output.status.code(), Some(1));
    lab.sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_host_key_fingerprint_fails_the_host_key_check_with_the_fix() {
    let lab = Lab::start().await;
    let mut args = lab.ssh();
    // A well-formed fingerprint of some other key.
    let other = format!("SHA256:{}", "A".repeat(43));
    args.extend(["--rds-host-key-fingerprint".into(), other]);
    let output = doctor(&args).await;
    assert_eq!(output.status.code(), Some(1));
    let table = String::from_utf8(output.stdout).unwrap();
    assert!(!table.contains('\x1b'), "no colour when not on a terminal");
    let lines: Vec<&str> = table.lines().collect();
    let row = lines
        .iter()
        .position(|l| l.starts_with("SSH host key"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        lines[row].contains("FAIL") && lines[row].contains("MISMATCH"),
        "{table}"
    );
    let presented = lab.sim.host_key_fingerprint();
    assert!(lines[row].contains(&presented), "{table}");
    let fix = lines[row + 1].trim_start();
    assert!(fix.starts_with("fix: do not connect"), "{table}");
    assert!(
        fix.contains(&format!("--rds-host-key-fingerprint {presented}")),
        "{table}"
    );
    let login = lines.iter().find(|l| l.starts_with("login")).unwrap();
    assert!(
        login.contains("skip") && login.contains("never sent"),
        "{table}"
    );
    lab.sim.shutdown().await;
}

#[tokio::test]
async fn a_wrong_password_fails_the_login_and_not_the_host_key() {
    let lab = Lab::start().await;
    std::fs::write(&lab.password_file, "not-the-password\n").unwrap();
    let (output, report) = doctor_json(&lab.ssh_pinned()).await;
    assert_eq!(status(&report, "rds.host-key"), "ok");
    assert_eq!(status(&report, "rds.login"), "fail");
    let login = check(&report, "rds.login");
    assert!(
        login["detail"]
            .as_str()
            .unwrap()
            .contains("refused the credentials of admin"),
        "{login:#}"
    );
    assert!(
        login["fix"]
            .as_str()
            .unwrap()
            .contains("--rds-password-file")
    );
    for id in [
        "rds.version",
        "rds.pool",
        "rds.volumes",
        "rds.export-access",
        "rds.round-trip",
    ] {
        assert_eq!(status(&report, id), "skip", "{id}");
    }
    assert_eq!(output.status.code(), Some(1));
    lab.sim.shutdown().await;
}

#[tokio::test]
async fn an_unpinned_or_insecure_rds_shows_the_key_to_pin() {
    let lab = Lab::start().await;
    let presented = lab.sim.host_key_fingerprint();
    let (_, report) = doctor_json(&lab.ssh()).await;
    let host_key = check(&report, "rds.host-key");
    assert_eq!(host_key["status"], "fail");
    assert!(
        host_key["detail"]
            .as_str()
            .unwrap()
            .starts_with("not pinned")
    );
    assert!(host_key["fix"].as_str().unwrap().contains(&presented));
    assert_eq!(status(&report, "rds.login"), "skip");

    let mut insecure = lab.ssh();
    insecure.push("--rds-insecure".into());
    let (_, report) = doctor_json(&insecure).await;
    assert_eq!(status(&report, "rds.host-key"), "warn");
    assert_eq!(status(&report, "rds.login"), "ok", "insecure still logs in");
    lab.sim.shutdown().await;
}

#[tokio::test]
async fn an_unreachable_port_fails_fast_and_skips_the_rest() {
    let lab = Lab::start().await;
    // Bound but not listening: connections are refused, and no other test can take the
    // port while the socket holds it.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = socket.local_addr().unwrap().port();
    let mut args = lab.ssh();
    let port = args.iter().position(|a| a == "--rds-port").unwrap() + 1;
    args[port] = closed.to_string();
    args.extend([
        "--rds-host-key-fingerprint".into(),
        lab.sim.host_key_fingerprint(),
    ]);
    let started = Instant::now();
    let (output, report) = doctor_json(&args).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    let reachable = check(&report, "rds.reachable");
    assert_eq!(reachable["status"], "fail");
    assert!(reachable["detail"].as_str().unwrap().contains("refused"));
    assert!(reachable["fix"].as_str().unwrap().contains("--rds-port"));
    for id in ["rds.host-key", "rds.login", "rds.pool"] {
        assert_eq!(status(&report, id), "skip", "{id}");
    }
    assert_eq!(output.status.code(), Some(1));
    lab.sim.shutdown().await;
}

#[tokio::test]
async fn without_an_address_only_the_node_is_checked_and_it_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let args = vec!["--kubelet-dir".into(), dir.path().display().to_string()];
    let (output, report) = doctor_json(&args).await;
    assert_eq!(report["rds_checked"], false);
    assert_eq!(status(&report, "rds"), "skip");
    assert!(
        !report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"].as_str().unwrap().starts_with("rds.")),
        "no RDS check ran"
    );
    assert_node_truth(&report, dir.path());
    assert_exit_matches(&output, &report);

    let table = String::from_utf8(doctor(&args).await.stdout).unwrap();
    assert!(table.contains("Node checks only"), "{table}");
    assert!(table.contains(": this node is "), "{table}");
}
