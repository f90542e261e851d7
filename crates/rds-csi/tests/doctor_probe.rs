//! `rds-csi doctor --probe-device` against the simulator over real SSH and HTTPS: what it
//! names with and without each quirk, and that it leaves nothing behind, also when the device
//! fails under it or the run is interrupted.

mod common;

use std::process::{Output, Stdio};
use std::time::Duration;

use clap::ValueEnum as _;
use common::{Lab, RUN_BOUND, doctor, doctor_command, doctor_json, json_report};
use rds_sim::{Quirk, Quirks};
use serde_json::{Value, json};

const TAG: &str = "rds-csi-probe-";

#[derive(Debug, Clone, Copy)]
enum Transport {
    Ssh,
    Rest,
}

const TRANSPORTS: [Transport; 2] = [Transport::Ssh, Transport::Rest];

fn args(lab: &Lab, transport: Transport, extra: &[&str]) -> Vec<String> {
    let mut args = match transport {
        Transport::Ssh => lab.ssh_pinned(),
        Transport::Rest => lab.rest_pinned(),
    };
    args.push("--probe-device".into());
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// Everything of any probe run on the device: disks by slot, files by name.
fn leftovers(lab: &Lab) -> Vec<String> {
    let state = lab.sim.snapshot();
    let disks = state.disks.iter().map(|d| d.slot.clone());
    let files = state.files.iter().map(|f| f.name.clone());
    let subvolumes = state.subvolumes.iter().map(|s| s.name.clone());
    disks
        .chain(files)
        .chain(subvolumes)
        .filter(|n| n.contains(TAG))
        .collect()
}

fn quirk_names(report: &Value) -> Vec<String> {
    report["matching_quirks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q.as_str().unwrap().to_owned())
        .collect()
}

fn probe<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .unwrap_or_else(|| panic!("no probe {id} in {report:#}"))
}

fn set_quirks(lab: &Lab, quirks: &[Quirk]) {
    lab.sim
        .faults()
        .update(|f| f.quirks = quirks.iter().copied().collect::<Quirks>());
}

/// The exit code agrees with the report: 0 exactly when the run ended and left nothing.
fn assert_exit_matches(output: &Output, report: &Value) {
    let succeeded = report["completed"] == true && report["cleanup"]["clean"] == true;
    assert_eq!(
        output.status.code(),
        Some(if succeeded { 0 } else { 1 }),
        "{report:#}"
    );
}

#[tokio::test]
async fn without_quirks_every_refusal_reads_as_the_driver_expects_and_nothing_is_left() {
    let lab = Lab::start().await;
    for transport in TRANSPORTS {
        let (output, report) = doctor_json(&args(&lab, transport, &[])).await;
        assert_eq!(output.status.code(), Some(0), "{transport:?}: {report:#}");
        assert_eq!(report["completed"], true);
        assert_eq!(quirk_names(&report), Vec::<String>::new(), "{report:#}");
        // The simulator's pool is sparse, as a real one may be: an add far larger than the pool
        // is accepted while the pool has room. The report must say so (no quirk plays it) and
        // the probe must have removed that disk again.
        assert_eq!(
            report["unmatched"],
            json!(["no-space: an add far larger than the pool was accepted"]),
            "{report:#}"
        );
        for (id, expected) in [
            ("duplicate-slot", "AlreadyExists"),
            ("existing-file", "AlreadyExists"),
            ("missing-id", "NotFound"),
            ("missing-name", "NotFound"),
            ("leftover-image", "AlreadyExists"),
        ] {
            let reading = &probe(&report, id)["outcome"]["reading"];
            assert_eq!(reading["client_reads"], expected, "{transport:?} {id}");
            assert_eq!(reading["expected"], expected);
        }
        let duplicate = probe(&report, "duplicate-slot");
        let text = duplicate["reply"]["answer"]["text"].as_str().unwrap();
        assert!(
            text.contains("already exists") && text.ends_with("\r\n"),
            "{text:?}"
        );
        let exit = &duplicate["reply"]["answer"]["exit_status"];
        match transport {
            Transport::Ssh => assert_eq!(*exit, 0),
            Transport::Rest => assert_eq!(*exit, Value::Null),
        }
        assert!(
            duplicate["command"]
                .as_str()
                .unwrap()
                .contains("nvme-tcp-export=no")
        );
        assert!(
            probe(&report, "remove-keeps-image")["outcome"]["outcome"]
                .as_str()
                .unwrap()
                .contains("its image stays")
        );
        // Free space read around the first add; whether the simulator counts images as
        // allocated or sparse is its business, but a 1 MiB add on an idle pool is never unclear.
        assert!(report["pool"]["free_before"].is_u64(), "{report:#}");
        let allocation = report["pool"]["allocation"].as_str().unwrap();
        assert!(["sparse", "allocated"].contains(&allocation), "{report:#}");
        assert_eq!(report["cleanup"]["clean"], true);
        // RouterOS 7.21: subvolume snapshots, no /file copy yet.
        let methods = &report["methods"];
        assert_eq!(
            methods["subvolume_snapshot"]["result"], "works",
            "{methods:#}"
        );
        let seen = methods["subvolume_snapshot"]["seen"].to_string();
        assert!(
            seen.contains("read-only: yes") && seen.contains("1048576 bytes"),
            "{seen}"
        );
        assert_eq!(methods["file_copy"]["result"], "not-on-this-version");
        // A block copy over SSH only: it outlasts REST's 60 seconds.
        let disk_copy = &methods["disk_copy"]["result"];
        match transport {
            Transport::Ssh => assert_eq!(disk_copy, "works", "{methods:#}"),
            Transport::Rest => assert_eq!(disk_copy, "not-over-this-transport", "{methods:#}"),
        }
        assert_eq!(methods["left"], serde_json::json!([]));
        assert_eq!(leftovers(&lab), Vec::<String>::new(), "{transport:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("changes the RDS") && stderr.contains(report["tag"].as_str().unwrap()),
            "the run says what it will do first: {stderr}"
        );
    }

    // The text report, as pasted into an issue.
    let output = doctor(&args(&lab, Transport::Ssh, &[])).await;
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("transport: ssh to 127.0.0.1:"), "{text}");
    assert!(text.contains("RouterOS 7.21"), "{text}");
    assert!(
        text.contains("   reply:   \"no such item\\r\\n\""),
        "{text}"
    );
    assert!(text.contains("matching quirks: none\n"), "{text}");
    assert!(
        text.contains("   btrfs subvolume snapshots: works (the snapshot shows its parent: "),
        "{text}"
    );
    assert!(
        text.contains("   /file copy: not on this RouterOS (needs 7.23)"),
        "{text}"
    );
    assert!(
        text.contains("   /disk copy: works (its last status said the whole 1048576 bytes)"),
        "{text}"
    );
    assert!(!String::from_utf8_lossy(&output.stderr).contains(common::PASSWORD));
    assert_eq!(leftovers(&lab), Vec::<String>::new());
    lab.sim.shutdown().await;
}

/// The quirks about how the device answers commands, which the probe can tell apart
/// (`fresh-namespace-ids` is about exports across a restart: not something a probe of
/// commands can see).
const PROBED: [Quirk; 3] = [
    Quirk::GenericErrors,
    Quirk::DuplicateSlots,
    Quirk::ReuseExistingFile,
];

#[tokio::test]
async fn each_quirk_is_named_over_ssh_and_rest() {
    let lab = Lab::start().await;
    let name = |q: Quirk| q.to_possible_value().unwrap().get_name().to_owned();
    for quirk in PROBED {
        set_quirks(&lab, &[quirk]);
        for transport in TRANSPORTS {
            let (output, report) = doctor_json(&args(&lab, transport, &[])).await;
            assert_eq!(
                quirk_names(&report),
                [name(quirk)],
                "{quirk:?} over {transport:?}: {report:#}"
            );
            assert_eq!(output.status.code(), Some(0), "{report:#}");
            assert_eq!(
                leftovers(&lab),
                Vec::<String>::new(),
                "{quirk:?} {transport:?}"
            );
        }
    }

    set_quirks(&lab, &PROBED);
    let (output, report) = doctor_json(&args(&lab, Transport::Rest, &[])).await;
    assert_eq!(quirk_names(&report), PROBED.map(name), "{report:#}");
    let adopted = probe(&report, "existing-file")["outcome"]["outcome"]
        .as_str()
        .unwrap();
    assert!(adopted.contains("size kept at 1048576 bytes"), "{adopted}");
    assert_eq!(probe(&report, "leftover-image")["status"], "skipped");
    assert_exit_matches(&output, &report);
    assert_eq!(leftovers(&lab), Vec::<String>::new());
    lab.sim.shutdown().await;
}

/// Waits until the baseline disk of a run is on the device.
async fn baseline_made(lab: &Lab) {
    tokio::time::timeout(Duration::from_secs(20), async {
        while !lab
            .sim
            .snapshot()
            .disks
            .iter()
            .any(|d| d.slot.starts_with(TAG))
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the probe makes its first disk");
}

/// Starts a run with every command slowed down, so the test can act between two of them.
async fn start_slowed(lab: &Lab, transport: Transport) -> tokio::process::Child {
    lab.sim.faults().update(|f| f.latency_ms = 40);
    let mut args = args(lab, transport, &["--rds-timeout-seconds", "3"]);
    args.push("--json".into());
    let child = doctor_command(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    baseline_made(lab).await;
    child
}

async fn finish(child: tokio::process::Child) -> (Output, Value) {
    let output = tokio::time::timeout(RUN_BOUND, child.wait_with_output())
        .await
        .expect("the run ends within its bound")
        .unwrap();
    let report = json_report(&output);
    (output, report)
}

#[tokio::test]
async fn failures_mid_probe_still_leave_nothing_behind() {
    let lab = Lab::start().await;
    for transport in TRANSPORTS {
        // Refused commands: whichever two commands they hit, the failure shows in the report.
        let child = start_slowed(&lab, transport).await;
        lab.sim.faults().update(|f| f.fail_next = 2);
        let (output, report) = finish(child).await;
        assert!(
            report.to_string().contains("simulated failure"),
            "{transport:?}: {report:#}"
        );
        assert_eq!(report["cleanup"]["clean"], true, "{report:#}");
        assert_exit_matches(&output, &report);
        assert_eq!(leftovers(&lab), Vec::<String>::new(), "{transport:?}");

        // Lost connections: the run stops, says so, and still cleans up.
        let child = start_slowed(&lab, transport).await;
        lab.sim.faults().update(|f| f.drop_next = 3);
        let (output, report) = finish(child).await;
        assert_eq!(report["completed"], false, "{transport:?}: {report:#}");
        assert!(
            report["stopped"].as_str().unwrap().contains("no answer"),
            "{report:#}"
        );
        assert_eq!(report["cleanup"]["clean"], true, "{report:#}");
        assert_eq!(output.status.code(), Some(1));
        assert_eq!(leftovers(&lab), Vec::<String>::new(), "{transport:?}");
        lab.sim.faults().update(|f| f.latency_ms = 0);
    }
    lab.sim.shutdown().await;
}

#[tokio::test]
async fn an_interrupted_run_removes_what_it_made() {
    let lab = Lab::start().await;
    let child = start_slowed(&lab, Transport::Ssh).await;
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let (output, report) = finish(child).await;
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["stopped"], "interrupted by SIGINT", "{report:#}");
    assert_eq!(report["cleanup"]["clean"], true, "{report:#}");
    assert_eq!(probe(&report, "leftover-image")["status"], "not-reached");
    assert_eq!(leftovers(&lab), Vec::<String>::new());
    lab.sim.shutdown().await;
}

#[tokio::test]
async fn a_device_that_stops_answering_is_told_with_what_may_be_left() {
    let lab = Lab::start().await;
    let child = start_slowed(&lab, Transport::Ssh).await;
    lab.sim.faults().update(|f| f.drop_next = 1_000);
    let (output, report) = finish(child).await;
    assert_eq!(output.status.code(), Some(1), "{report:#}");
    assert_eq!(report["cleanup"]["clean"], false, "{report:#}");
    let tag = report["tag"].as_str().unwrap();
    let left = report["cleanup"]["left"].to_string();
    assert!(left.contains(tag), "{report:#}");

    // What it said may be left is what is there.
    lab.sim.faults().update(|f| f.drop_next = 0);
    let there = leftovers(&lab);
    assert!(!there.is_empty());
    assert!(there.iter().all(|name| name.contains(tag)), "{there:?}");
    lab.sim.shutdown().await;
}

#[tokio::test]
async fn it_does_not_start_without_what_it_needs_and_changes_nothing_then() {
    let lab = Lab::start().await;
    let before = lab.sim.snapshot();

    let output = doctor(&["--probe-device".into()]).await;
    assert_eq!(output.status.code(), Some(2), "--rds-address is required");

    let output = doctor(&args(&lab, Transport::Ssh, &["--pool", "no-such-pool"])).await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not start"), "{stderr}");
    assert!(stderr.contains("no-such-pool"), "{stderr}");
    assert!(output.stdout.is_empty());

    // Not pinned: no login, no change.
    let mut unpinned = lab.ssh();
    unpinned.push("--probe-device".into());
    let output = doctor(&unpinned).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(lab.sim.snapshot().disks, before.disks);
    assert_eq!(lab.sim.snapshot().files, before.files);
    lab.sim.shutdown().await;
}
