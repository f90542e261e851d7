use std::path::Path;
use std::time::Duration;

use mounts::DeviceNumber;
use mounts::tools::ToolPaths;
use nvme::fixtures::FakeSysfs;

use super::*;
use crate::doctor::node::namespaces::{StateFile, Verdict};
use crate::doctor::node::{NodeInputs, NodeRoot, checks, gather};
use crate::doctor::report::{Report, Status};

const PREFIX: &str = "nqn.2000-02.com.mikrotik";
const PVC_A: &str = "nqn.2000-02.com.mikrotik:pvc-00000000-0000-4000-8000-00000000000a";
const PVC_B: &str = "nqn.2000-02.com.mikrotik:pvc-00000000-0000-4000-8000-00000000000b";
const ROOT: &str = "nqn.2000-02.com.mikrotik:nixos-root";
const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:6b2a3e1f-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
const U1: &str = "11111111-1111-4111-8111-111111111111";
const U2: &str = "22222222-2222-4222-8222-222222222222";
const U3: &str = "33333333-3333-4333-8333-333333333333";

fn state() -> StateFile {
    StateFile {
        format: FORMAT,
        taken_at: rfc3339(0),
        taken_at_unix: 0,
        host_nqn: None,
        nqn_prefix: PREFIX.into(),
        foreign_skipped: 0,
        volumes: vec![],
    }
}

fn error_text(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    read(path).unwrap_err().to_string()
}

#[test]
fn unreadable_malformed_or_other_format_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("before.json");
    let shown = path.display().to_string();

    let missing = read(&path).unwrap_err();
    assert!(matches!(missing, StateFileError::Read { .. }));
    assert!(
        missing
            .to_string()
            .starts_with(&format!("cannot read {shown}"))
    );

    let not_json = error_text(&path, "format: 1\n");
    assert!(
        not_json.starts_with(&format!("{shown} is not a doctor state file")),
        "{not_json}"
    );
    assert!(not_json.contains("not JSON"), "{not_json}");
    let no_format = error_text(&path, r#"{"volumes": []}"#);
    assert!(no_format.contains("no \"format\" number"), "{no_format}");
    let incomplete = error_text(&path, r#"{"format": 1, "volumes": []}"#);
    assert!(incomplete.contains("missing field"), "{incomplete}");

    // A later format is named as such, even if it would not parse as this one.
    let later = error_text(&path, r#"{"format": 2, "something": "else"}"#);
    assert!(
        later.contains("format 2; this doctor reads format 1"),
        "{later}"
    );
    assert!(later.contains(&shown));
}

#[test]
fn a_written_file_reads_back_and_replaces_the_old_one_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    std::fs::write(&path, "old").unwrap();
    let mut saved = state();
    saved.host_nqn = Some(HOST_NQN.into());
    write(&path, &saved).unwrap();
    assert_eq!(read(&path).unwrap(), saved);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["state.json"], "no temporary file is left");

    let nowhere = dir.path().join("no-such-dir/state.json");
    let error = write(&nowhere, &saved).unwrap_err().to_string();
    assert!(
        error.starts_with(&format!("cannot write {}", nowhere.display())),
        "{error}"
    );
}

#[test]
fn times_are_written_as_rfc3339_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(1_000_000_000), "2001-09-09T01:46:40Z");
    assert_eq!(rfc3339(1_796_425_199), "2026-12-04T22:59:59Z");
}

/// A node with two volumes and the RDS's own root export, under a scratch root.
fn node(dir: &Path) -> (FakeSysfs, NodeInputs) {
    let sysfs = FakeSysfs::new(dir.join("sys"));
    let address = "traddr=10.0.0.5,trsvcid=4420";
    for (index, nqn, uuid) in [(0, ROOT, U3), (1, PVC_A, U1), (2, PVC_B, U2)] {
        sysfs.add_subsystem(index, nqn);
        sysfs.add_controller(index, index, nqn, "live", address);
        sysfs.add_head(index, 1, 1, DeviceNumber::new(259, index), 1 << 30);
        sysfs.set_head_ids(index, 1, uuid, &uuid.replace('-', ""));
    }
    std::fs::create_dir_all(dir.join("etc/nvme")).unwrap();
    std::fs::write(dir.join("etc/nvme/hostnqn"), format!("{HOST_NQN}\n")).unwrap();
    let inputs = NodeInputs {
        root: NodeRoot::new(dir),
        tools: ToolPaths {
            blkid: dir.join("no-blkid"),
            ..ToolPaths::default()
        },
        kubelet_dir: dir.join("kubelet"),
        nqn_prefix: PREFIX.into(),
        deadline: Duration::from_secs(5),
    };
    (sysfs, inputs)
}

fn compare_check(report: &Report) -> &crate::doctor::report::Check {
    report
        .checks
        .iter()
        .find(|c| c.id == "namespaces.compare")
        .unwrap()
}

#[tokio::test]
async fn save_then_new_identifiers_then_compare_reports_the_changed_volume() {
    let dir = tempfile::tempdir().unwrap();
    let (sysfs, inputs) = node(dir.path());
    let file = dir.path().join("before.json");

    let facts = gather(&inputs).await;
    let saved = save(&file, &facts, PREFIX, 1_796_425_199);
    assert_eq!(saved.status, Status::Ok, "{saved:?}");
    assert!(
        saved
            .detail
            .contains("2 managed volume(s), 2 namespace(s); 1 foreign NQN(s) skipped"),
        "{}",
        saved.detail
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        !text.contains("nixos-root"),
        "foreign NQNs are never written"
    );
    let before = read(&file).unwrap();
    assert_eq!(before.taken_at, "2026-12-04T22:59:59Z");
    assert_eq!(before.host_nqn.as_deref(), Some(HOST_NQN));
    assert_eq!(before.foreign_skipped, 1);
    assert_eq!(before.volumes[1].namespaces[0].uuid.as_deref(), Some(U2));
    assert_eq!(before.volumes[1].namespaces[0].dev, "259:2");

    // The RDS comes back and gives PVC_B's namespace (and its own root's) new identifiers.
    sysfs.set_head_ids(2, 1, U3, &U3.replace('-', ""));
    sysfs.set_head_ids(0, 1, U1, &U1.replace('-', ""));
    let facts = gather(&inputs).await;
    let (check, section) = compare_with(&file, &before, &facts, PREFIX);
    let mut all = checks(&facts);
    all.push(check);
    let report = Report::new(all, false).with_namespace_ids(section);

    let compared = compare_check(&report);
    assert_eq!(compared.status, Status::Warn, "{compared:?}");
    let table = report.render(false);
    let row = table
        .lines()
        .find(|l| l.starts_with("namespace identifiers"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        row.contains("warn") && row.contains("the RDS gave 1 namespace new identifiers"),
        "{row}"
    );
    assert!(
        table.contains(&format!(
            "changed  uuid {U2} -> {U3} (nvme2n1, now nvme2n1)  {PVC_B}"
        )),
        "{table}"
    );
    assert!(
        table.contains(&format!("kept     nvme1n1 (same device)  {PVC_A}")),
        "{table}"
    );
    assert!(
        !compared.detail.contains("nixos-root"),
        "the root export is not compared: {}",
        compared.detail
    );

    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let section = &json["namespace_ids"];
    assert_eq!(section["verdict"], "changed");
    assert_eq!(section["counts"]["kept"], 1);
    assert_eq!(section["counts"]["changed"], 1);
    assert_eq!(section["volumes"].as_array().unwrap().len(), 2);
    assert_eq!(section["saved_host_nqn"], HOST_NQN);
    assert!(
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == "namespaces.compare" && c["status"] == "warn")
    );

    // Compare and save with one file (the order run() uses): then everything is kept.
    let again = save(&file, &facts, PREFIX, 1_796_425_299);
    assert_eq!(again.status, Status::Ok);
    let (check, section) = compare_with(&file, &read(&file).unwrap(), &facts, PREFIX);
    assert_eq!(check.status, Status::Ok, "{check:?}");
    assert_eq!(section.unwrap().verdict, Verdict::Kept);
}

#[tokio::test]
async fn nothing_is_saved_when_the_namespaces_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let (_sysfs, mut inputs) = node(dir.path());
    // A prefix the node plugin refuses: what is managed cannot be told.
    let refused = "nqn.2014-08.org.nvmexpress";
    inputs.nqn_prefix = refused.into();
    let facts = gather(&inputs).await;
    let file = dir.path().join("state.json");
    let check = save(&file, &facts, refused, 0);
    assert_eq!(check.status, Status::Fail);
    assert!(
        check.detail.contains("--nqn-prefix is not usable"),
        "{}",
        check.detail
    );
    assert!(!file.exists());
    let (check, section) = compare_with(&file, &state(), &facts, refused);
    assert_eq!(check.status, Status::Fail);
    assert!(section.is_none());
}
