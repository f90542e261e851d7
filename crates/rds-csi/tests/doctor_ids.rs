//! `rds-csi doctor --save` / `--compare` as an operator runs them: the file on disk, the
//! refusals, and the report section. The node's own namespaces are whatever this machine has
//! (usually none); the saved files here name volumes no machine has connected.

mod common;

use std::path::Path;

use common::{doctor, doctor_json};
use serde_json::{Value, json};

const GONE_NQN: &str = "nqn.2000-02.com.mikrotik:pvc-0d0c7012-0000-4000-8000-5a7ed0000001";

fn check<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap_or_else(|| panic!("no check {id} in {report:#}"))
}

fn args(dir: &Path, extra: &[&str]) -> Vec<String> {
    let kubelet = dir.join("kubelet");
    std::fs::create_dir_all(&kubelet).unwrap();
    let mut args = vec!["--kubelet-dir".to_owned(), kubelet.display().to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

/// A state file as `--save` writes it, with one volume this machine does not have.
fn saved_elsewhere(dir: &Path) -> String {
    let file = path(dir, "before.json");
    let state = json!({
        "format": 1,
        "taken_at": "2026-12-04T22:59:59Z",
        "taken_at_unix": 1_796_425_199u64,
        "host_nqn": null,
        "nqn_prefix": "nqn.2000-02.com.mikrotik",
        "foreign_skipped": 0,
        "volumes": [{
            "nqn": GONE_NQN,
            "controllers": [{"name": "nvme1", "state": "live"}],
            "namespaces": [{
                "device": "nvme1n1", "dev": "259:1", "nsid": 1,
                "uuid": "11111111-1111-4111-8111-111111111111", "nguid": null,
                "eui64": null, "wwid": null
            }]
        }]
    });
    std::fs::write(&file, state.to_string()).unwrap();
    file
}

#[tokio::test]
async fn a_bad_compare_file_stops_the_run_by_name_and_nothing_is_saved() {
    let dir = tempfile::tempdir().unwrap();
    let out = path(dir.path(), "after.json");
    std::fs::write(dir.path().join("garbage.json"), "{not json").unwrap();
    std::fs::write(dir.path().join("later.json"), r#"{"format": 7}"#).unwrap();
    for (name, says) in [
        ("missing.json", "cannot read"),
        ("garbage.json", "is not a doctor state file"),
        ("later.json", "format 7; this doctor reads format 1"),
    ] {
        let file = path(dir.path(), name);
        let output = doctor(&args(dir.path(), &["--compare", &file, "--save", &out])).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(&file) && stderr.contains(says), "{stderr}");
        assert!(output.stdout.is_empty(), "no report for a refused run");
        assert!(!Path::new(&out).exists(), "{name}: nothing written");
    }
}

#[tokio::test]
async fn save_writes_a_versioned_file_and_still_reports() {
    let dir = tempfile::tempdir().unwrap();
    let file = path(dir.path(), "state.json");
    let (output, report) = doctor_json(&args(dir.path(), &["--save", &file])).await;
    let saved = check(&report, "namespaces.save");
    assert_eq!(saved["status"], "ok", "{saved:#}");
    assert!(saved["detail"].as_str().unwrap().contains(&file));
    check(&report, "node.nvme-controllers");
    assert!(report.get("namespace_ids").is_none(), "no comparison asked");
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["format"], 1);
    assert!(written["taken_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(written["nqn_prefix"], "nqn.2000-02.com.mikrotik");
    for volume in written["volumes"].as_array().unwrap() {
        let nqn = volume["nqn"].as_str().unwrap();
        assert!(
            nqn.starts_with("nqn.2000-02.com.mikrotik:pvc-")
                || nqn.starts_with("nqn.2000-02.com.mikrotik:csi-"),
            "only managed volumes: {nqn}"
        );
    }
    let failed = report["result"] == "fail";
    assert_eq!(output.status.code(), Some(if failed { 1 } else { 0 }));
}

#[tokio::test]
async fn compare_reports_a_saved_volume_that_is_gone_and_then_saves_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = saved_elsewhere(dir.path());
    let (output, report) =
        doctor_json(&args(dir.path(), &["--compare", &file, "--save", &file])).await;
    let section = &report["namespace_ids"];
    assert_eq!(section["file"], file.as_str());
    assert_eq!(section["saved_at"], "2026-12-04T22:59:59Z");
    assert_eq!(section["counts"]["gone"], 1, "{section:#}");
    let gone = section["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["nqn"] == GONE_NQN)
        .unwrap();
    assert_eq!(gone["outcome"], "gone");
    assert_eq!(gone["device_was"], "nvme1n1");
    let compared = check(&report, "namespaces.compare");
    assert_eq!(compared["status"], "warn", "{compared:#}");
    assert!(compared["fix"].as_str().unwrap().contains("ctrl_loss_tmo"));
    // The finding warns; it does not decide the exit code.
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["status"] == "fail");
    assert_eq!(output.status.code(), Some(if failed { 1 } else { 0 }));

    // Compared first, then saved over: the file is now this node's reading.
    let now: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(!now.to_string().contains(GONE_NQN), "{now:#}");
    assert_eq!(check(&report, "namespaces.save")["status"], "ok");

    let table = String::from_utf8(
        doctor(&args(
            dir.path(),
            &["--compare", &saved_elsewhere(dir.path())],
        ))
        .await
        .stdout,
    )
    .unwrap();
    let row = table
        .lines()
        .find(|l| l.starts_with("namespace identifiers"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("warn"), "{row}");
    assert!(
        table.contains(&format!(
            "gone     was nvme1n1; not connected now  {GONE_NQN}"
        )),
        "{table}"
    );
}

#[tokio::test]
async fn save_and_compare_are_not_for_the_device_probe() {
    let dir = tempfile::tempdir().unwrap();
    let file = path(dir.path(), "state.json");
    let output = doctor(&args(
        dir.path(),
        &[
            "--probe-device",
            "--rds-address",
            "127.0.0.1",
            "--save",
            &file,
        ],
    ))
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--save"));
    assert!(!Path::new(&file).exists());
}
