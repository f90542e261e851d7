use clap::ValueEnum as _;
use rds_sim::Quirk;

use super::*;
use crate::doctor::device_probe::fixtures::{altered, disk, faithful, plan, said};
use crate::doctor::device_probe::judge::judge;
use crate::doctor::device_probe::plan::Name;

fn device(transport: &'static str) -> DeviceInfo {
    DeviceInfo {
        routeros: "7.21.5 (stable)".into(),
        board: Some("RDS2216".into()),
        identity: "rds-1".into(),
        transport,
        target: "10.0.0.5:22".into(),
    }
}

fn report(findings: Findings, cleanup: CleanupReport) -> ProbeReport {
    let plan = plan();
    let verdict = judge(&plan, &findings);
    ProbeReport::new(device("ssh"), &plan, findings, verdict, cleanup, None)
}

fn clean() -> CleanupReport {
    CleanupReport {
        removed: vec!["file storage-pool/x.img".into()],
        clean: true,
        ..CleanupReport::default()
    }
}

#[test]
fn the_text_report_carries_each_command_and_verbatim_reply() {
    let plan = plan();
    let report = report(faithful(&plan), clean());
    assert!(report.succeeded());
    let text = report.render();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"device:    RouterOS 7.21.5 (stable), board RDS2216, identity rds-1"),
        "{text}"
    );
    assert!(lines.contains(&"transport: ssh to 10.0.0.5:22"), "{text}");
    let duplicate = lines
        .iter()
        .position(|l| l.starts_with("2. duplicate-slot: "))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        lines[duplicate + 1],
        format!("   command: {}", plan.add(Name::A, Name::B, IMAGE_SIZE))
    );
    assert_eq!(
        lines[duplicate + 2],
        format!(
            "   reply:   \"failure: disk with slot {} already exists\\r\\n\"",
            plan.slot(Name::A)
        ),
        "the reply is shown exactly, line ending included"
    );
    assert_eq!(lines[duplicate + 3], "   exit:    0");
    assert_eq!(lines[duplicate + 4], "   after:   unchanged");
    assert!(lines[duplicate + 5].starts_with("   outcome: refused: failure: disk with slot"));
    assert_eq!(
        lines[duplicate + 6],
        "   client:  reads AlreadyExists (expected AlreadyExists): as expected"
    );
    assert!(text.contains("allocated up front"), "{text}");
    assert!(lines.contains(&"matching quirks: none"), "{text}");
    assert!(!text.contains("not played by any quirk"), "{text}");
    assert!(text.contains("nothing of the run is left"), "{text}");
    assert!(text.contains("/issues"), "{text}");
}

#[test]
fn quirks_skips_stops_and_leftovers_are_shown() {
    let plan = plan();
    let mut findings = altered(faithful(&plan), Probe::MissingId, |step| {
        step.exchange.reply = said("failure: operation failed\r\n");
    });
    findings.steps.truncate(5);
    findings.skipped.push((Probe::NoSpace, "a reason".into()));
    findings.stopped = Some("interrupted by SIGINT".into());
    let cleanup = CleanupReport {
        removed: Vec::new(),
        errors: vec!["reading what is left: unavailable: no answer".into(); 3],
        left: vec!["disk rds-csi-probe-00005eed-a (*1)".into()],
        clean: false,
    };
    let report = report(findings, cleanup);
    assert!(!report.succeeded());
    let text = report.render();
    assert!(
        text.contains("NOT the meaning the driver relies on"),
        "{text}"
    );
    assert!(
        text.contains("matching quirks: generic-errors (in what ran before the stop)\n"),
        "{text}"
    );
    assert!(text.contains("   skipped: a reason\n"), "{text}");
    assert!(
        text.contains(
            "7. remove-keeps-image: remove the first disk: does its image stay?\n   not reached"
        ),
        "{text}"
    );
    assert!(text.contains("stopped:   interrupted by SIGINT"), "{text}");
    assert!(
        text.contains("INCOMPLETE: removed 0 item(s); left or possibly left on the device: disk rds-csi-probe-00005eed-a (*1)"),
        "{text}"
    );
    assert!(
        text.contains("reading what is left: unavailable: no answer (3 times)\n"),
        "the same failure is said once: {text}"
    );
}

#[test]
fn a_command_without_an_answer_is_shown_with_the_error() {
    let plan = plan();
    let mut findings = faithful(&plan);
    findings.steps.truncate(2);
    findings.steps[1].exchange.reply = Reply::NoAnswer {
        error: "unavailable: connection lost".into(),
    };
    findings.steps[1].after = None;
    findings.stopped = Some("no answer while sending the duplicate-slot probe".into());
    let text = report(findings, clean()).render();
    assert!(
        text.contains(
            "   reply:   none: unavailable: connection lost\n   after:   could not be read\n   \
             outcome: unknown"
        ),
        "{text}"
    );
}

#[test]
fn rest_replies_have_no_exit_status_and_rejections_say_so() {
    let plan = plan();
    let findings = altered(faithful(&plan), Probe::MissingName, |step| {
        step.exchange.reply = Reply::Rejected {
            kind: "Invalid",
            message: "Bad Request: no such item".into(),
        };
    });
    let verdict = judge(&plan, &findings);
    let mut findings = findings;
    for step in &mut findings.steps {
        if let Reply::Answer { exit_status, .. } = &mut step.exchange.reply {
            *exit_status = None;
        }
    }
    let text = ProbeReport::new(device("rest"), &plan, findings, verdict, clean(), None).render();
    assert!(text.contains("   exit:    none (REST)\n"), "{text}");
    assert!(
        text.contains("   reply:   REST error \"Bad Request: no such item\" (Invalid)\n"),
        "{text}"
    );
}

#[test]
fn the_json_report_holds_the_same() {
    let plan = plan();
    let findings = altered(faithful(&plan), Probe::DuplicateSlot, |step| {
        step.exchange.reply = said("*2\r\n");
        let after = step.after.as_mut().unwrap();
        after.disks.push(disk(&plan, Name::A, Name::B, "*2"));
    });
    let value: serde_json::Value =
        serde_json::from_str(&report(findings, clean()).to_json()).unwrap();
    assert_eq!(value["device"]["board"], "RDS2216");
    assert_eq!(value["device"]["transport"], "ssh");
    assert_eq!(value["tag"], plan.tag());
    assert_eq!(value["completed"], true);
    assert_eq!(
        value["matching_quirks"],
        serde_json::json!(["duplicate-slots"])
    );
    let probes = value["probes"].as_array().unwrap();
    assert_eq!(probes.len(), Probe::ALL.len());
    let duplicate = &probes[1];
    assert_eq!(duplicate["id"], "duplicate-slot");
    assert_eq!(duplicate["status"], "ran");
    assert_eq!(duplicate["command"], plan.add(Name::A, Name::B, IMAGE_SIZE));
    assert_eq!(duplicate["reply"]["answer"]["text"], "*2\r\n");
    assert_eq!(duplicate["reply"]["answer"]["exit_status"], 0);
    assert_eq!(duplicate["after"]["disks"].as_array().unwrap().len(), 2);
    assert_eq!(duplicate["outcome"]["shows"], "duplicate-slots");
    let no_space = &probes[5];
    assert_eq!(no_space["outcome"]["reading"]["client_reads"], "NoSpace");
    assert_eq!(value["pool"]["allocation"], "allocated");
    assert_eq!(value["cleanup"]["clean"], true);
}

#[test]
fn quirks_are_named_as_the_simulator_takes_them() {
    for quirk in Quirk::ALL {
        assert_eq!(Quirk::from_str(&quirk_name(quirk), false), Ok(quirk));
        assert_eq!(
            serde_json::to_value(quirk).unwrap(),
            serde_json::Value::String(quirk_name(quirk))
        );
    }
}

#[test]
fn the_announcement_says_what_will_change_and_that_it_is_undone() {
    let plan = plan();
    let text = announcement(&plan, "10.0.0.5:22", "ssh");
    assert!(
        text.contains("changes the RDS at 10.0.0.5:22 (ssh)"),
        "{text}"
    );
    assert!(text.contains(&format!("slots {}-*", plan.tag())), "{text}");
    assert!(
        text.contains(&format!("{}-*.img", plan.image_prefix())),
        "{text}"
    );
    assert!(text.contains("1.0 MiB"), "{text}");
    assert!(text.contains("nvme-tcp-export=no"), "{text}");
    assert!(text.contains("also when interrupted"), "{text}");
    assert!(text.contains("what it could not remove"), "{text}");
    assert!(text.lines().all(|l| l.len() <= 100), "{text}");
}
