use mounts::DeviceNumber;
use nvme::fixtures::FakeSysfs;

use super::*;

const PREFIX: &str = "nqn.2000-02.com.mikrotik";
const PVC_A: &str = "nqn.2000-02.com.mikrotik:pvc-00000000-0000-4000-8000-00000000000a";
const PVC_B: &str = "nqn.2000-02.com.mikrotik:pvc-00000000-0000-4000-8000-00000000000b";
const CSI_C: &str = "nqn.2000-02.com.mikrotik:csi-0123456789abcdef0123456789abcdef";
const ROOT: &str = "nqn.2000-02.com.mikrotik:nixos-root";
const U1: &str = "11111111-1111-4111-8111-111111111111";
const U2: &str = "22222222-2222-4222-8222-222222222222";

fn ns(device: &str, uuid: Option<&str>) -> NamespaceRecord {
    NamespaceRecord {
        device: device.into(),
        dev: "259:1".into(),
        nsid: Some(1),
        uuid: uuid.map(str::to_owned),
        nguid: None,
        eui64: None,
        wwid: uuid.map(|u| format!("uuid.{u}")),
    }
}

fn vol(nqn: &str, state: &str, namespaces: Vec<NamespaceRecord>) -> VolumeRecord {
    VolumeRecord {
        nqn: nqn.into(),
        controllers: vec![ControllerRecord {
            name: "nvme1".into(),
            state: state.into(),
        }],
        namespaces,
    }
}

fn saved(volumes: Vec<VolumeRecord>) -> StateFile {
    StateFile {
        format: FORMAT,
        taken_at: "2026-12-04T23:00:00Z".into(),
        taken_at_unix: 1_796_425_200,
        host_nqn: Some("nqn.2014-08.org.nvmexpress:uuid:node-a".into()),
        nqn_prefix: PREFIX.into(),
        foreign_skipped: 0,
        volumes,
    }
}

fn only(saved: &[VolumeRecord], now: &[VolumeRecord]) -> Outcome {
    let compared = compare_volumes(saved, now);
    assert_eq!(compared.len(), 1, "{compared:?}");
    compared.into_iter().next().unwrap().outcome
}

#[test]
fn only_managed_nqns_are_recorded_and_foreign_ones_counted() {
    let dir = tempfile::tempdir().unwrap();
    let sysfs = FakeSysfs::new(dir.path());
    let address = "traddr=10.0.0.5,trsvcid=4420";
    // A diskless node's root from the same RDS, under the vendor's authority: never recorded.
    sysfs.add_subsystem(0, ROOT);
    sysfs.add_controller(0, 0, ROOT, "live", address);
    sysfs.add_head(0, 1, 1, DeviceNumber::new(259, 0), 1 << 30);
    sysfs.set_head_ids(0, 1, U2, "ffff0000ffff0000ffff0000ffff0000");
    // A multipath volume with identifiers.
    sysfs.add_subsystem(1, PVC_A);
    sysfs.add_controller(1, 1, PVC_A, "connecting", address);
    sysfs.add_head(1, 1, 1, DeviceNumber::new(259, 3), 1 << 30);
    sysfs.set_head_ids(1, 1, &U1.to_uppercase(), "0011223344556677");
    // A volume without native multipath: the controller owns its namespace.
    sysfs.add_controller(2, 2, CSI_C, "live", address);
    sysfs.add_private_namespace(2, 1, 1, DeviceNumber::new(259, 4), 1 << 20);
    // A local disk's controller.
    sysfs.add_controller(3, 3, "nqn.2014-08.org.example:local", "live", "");

    let prefix = ManagedPrefix::new(format!("{PREFIX}:")).unwrap();
    let found = managed_volumes(&prefix, &sysfs.sysfs().scan().unwrap());
    assert_eq!(found.foreign_skipped, 2);
    let nqns: Vec<&str> = found.volumes.iter().map(|v| v.nqn.as_str()).collect();
    assert_eq!(nqns, [CSI_C, PVC_A]);
    assert_eq!(found.namespace_count(), 2);

    let pvc = &found.volumes[1];
    assert_eq!(
        pvc.controllers,
        [ControllerRecord {
            name: "nvme1".into(),
            state: "connecting".into()
        }]
    );
    let head = &pvc.namespaces[0];
    assert_eq!(
        (head.device.as_str(), head.dev.as_str()),
        ("nvme1n1", "259:3")
    );
    assert_eq!(head.nsid, Some(1));
    assert_eq!(head.uuid.as_deref(), Some(U1), "as the kernel prints it");
    assert_eq!(head.nguid.as_deref(), Some("0011223344556677"));
    assert_eq!(head.wwid, Some(format!("uuid.{}", U1)));
    let csi = &found.volumes[0];
    assert_eq!(csi.namespaces[0].device, "nvme2n1");
    assert!(csi.namespaces[0].ids().is_empty());

    let text = serde_json::to_string(&found.volumes).unwrap();
    assert!(!text.contains("nixos-root") && !text.contains("example:local"));
}

#[test]
fn same_identifiers_are_kept_and_the_device_name_is_told() {
    let before = [vol(PVC_A, "live", vec![ns("nvme1n1", Some(U1))])];
    assert_eq!(
        only(&before, &before),
        Outcome::Kept {
            device_was: "nvme1n1".into(),
            device: "nvme1n1".into(),
            same_device: true
        }
    );
    let renamed = [vol(PVC_A, "live", vec![ns("nvme4n1", Some(U1))])];
    assert!(matches!(
        only(&before, &renamed),
        Outcome::Kept {
            same_device: false,
            ..
        }
    ));
}

#[test]
fn a_changed_identifier_is_named_with_old_and_new() {
    let before = [vol(PVC_A, "live", vec![ns("nvme1n1", Some(U1))])];
    let after = [vol(PVC_A, "live", vec![ns("nvme2n1", Some(U2))])];
    assert_eq!(
        only(&before, &after),
        Outcome::Changed {
            attribute: "uuid",
            was: Some(U1.into()),
            now: Some(U2.into()),
            device_was: "nvme1n1".into(),
            device: "nvme2n1".into(),
        }
    );
    // An identifier that vanished is a change too.
    let vanished = [vol(PVC_A, "live", vec![ns("nvme1n1", None)])];
    assert!(matches!(
        only(&before, &vanished),
        Outcome::Changed { now: None, .. }
    ));
}

#[test]
fn namespaces_without_identifiers_cannot_be_told() {
    let before = [vol(PVC_A, "live", vec![ns("nvme1n1", None)])];
    assert_eq!(
        only(&before, &before),
        Outcome::NoIdentifiers {
            device_was: "nvme1n1".into(),
            device: "nvme1n1".into()
        }
    );
}

#[test]
fn saved_but_not_shown_is_gone_and_says_whether_still_connected() {
    let before = [vol(PVC_A, "live", vec![ns("nvme1n1", Some(U1))])];
    assert_eq!(
        only(&before, &[]),
        Outcome::Gone {
            device_was: "nvme1n1".into(),
            controllers: vec![]
        }
    );
    // The controller is back to connecting and the kernel shows no namespace for it.
    let connecting = [vol(PVC_A, "connecting", vec![])];
    let outcome = only(&before, &connecting);
    let Outcome::Gone { controllers, .. } = &outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(controllers[0].state, "connecting");
    let line = describe(&VolumeComparison {
        nqn: PVC_A.into(),
        nsid: Some(1),
        outcome,
    });
    assert!(
        line.contains("connected (nvme1 connecting) but no namespace shown"),
        "{line}"
    );
}

#[test]
fn shown_but_not_saved_is_new() {
    let after = [vol(PVC_B, "live", vec![ns("nvme3n1", Some(U2))])];
    assert_eq!(
        only(&[], &after),
        Outcome::New {
            device: "nvme3n1".into()
        }
    );
}

#[test]
fn namespaces_are_paired_by_nqn_and_namespace_id() {
    let mut second = ns("nvme1n2", Some(U2));
    second.nsid = Some(2);
    let before = [vol(PVC_A, "live", vec![ns("nvme1n1", Some(U1)), second])];
    let after = [
        vol(PVC_A, "live", vec![ns("nvme1n1", Some(U1))]),
        vol(PVC_B, "live", vec![ns("nvme2n1", Some(U1))]),
    ];
    let compared = compare_volumes(&before, &after);
    let summary: Vec<(&str, Option<u32>, &str)> = compared
        .iter()
        .map(|c| {
            let kind = match c.outcome {
                Outcome::Kept { .. } => "kept",
                Outcome::Gone { .. } => "gone",
                Outcome::New { .. } => "new",
                _ => "other",
            };
            (c.nqn.as_str(), c.nsid, kind)
        })
        .collect();
    assert_eq!(
        summary,
        [
            (PVC_A, Some(1), "kept"),
            (PVC_A, Some(2), "gone"),
            (PVC_B, Some(1), "new")
        ],
        "the same uuid under another NQN is not the same volume"
    );
    assert!(describe(&compared[1]).ends_with(&format!("{PVC_A} nsid 2")));
    assert!(describe(&compared[0]).ends_with(PVC_A));
}

#[test]
fn all_kept_is_ok_with_the_verdict_to_act_on() {
    let before = vec![
        vol(PVC_A, "live", vec![ns("nvme1n1", Some(U1))]),
        vol(PVC_B, "live", vec![ns("nvme2n1", Some(U2))]),
    ];
    let comparison = compare("before.json", &saved(before.clone()), &before, None, PREFIX);
    assert_eq!(comparison.verdict, Verdict::Kept);
    assert_eq!(
        comparison.summary,
        "the RDS kept the namespace identifiers: volumes ride out its reboot without the \
         node's help"
    );
    let check = judge_comparison(&comparison);
    assert_eq!((check.id.as_str(), check.status), (COMPARE.0, Status::Ok));
    assert!(check.fix.is_none());
    assert!(
        check
            .detail
            .contains("compared with before.json, saved 2026-12-04T23:00:00Z")
    );
    assert!(
        check.detail.contains("2 kept, 0 changed"),
        "{}",
        check.detail
    );
    assert!(
        check
            .detail
            .contains(&format!("kept     nvme1n1 (same device)  {PVC_A}")),
        "{}",
        check.detail
    );
}

#[test]
fn any_changed_namespace_warns_and_counts_them() {
    let before = vec![
        vol(PVC_A, "live", vec![ns("nvme1n1", Some(U1))]),
        vol(PVC_B, "live", vec![ns("nvme2n1", Some(U2))]),
    ];
    let after = vec![
        vol(PVC_A, "live", vec![ns("nvme3n1", Some(U2))]),
        vol(PVC_B, "live", vec![ns("nvme2n1", Some(U2))]),
    ];
    let comparison = compare("f", &saved(before), &after, None, PREFIX);
    assert_eq!(comparison.verdict, Verdict::Changed);
    assert_eq!(comparison.counts.changed, 1);
    assert_eq!(comparison.counts.kept, 1);
    assert!(
        comparison.summary.starts_with(
            "the RDS gave 1 namespace new identifiers: after its reboot the node must recover \
             these volumes (re-stage onto the new device) and pods using them must be restarted"
        ),
        "{}",
        comparison.summary
    );
    assert!(
        comparison
            .summary
            .ends_with("see docs/operations.md, 'When the RDS reboots'")
    );
    let check = judge_comparison(&comparison);
    assert_eq!(check.status, Status::Warn, "a finding, not a failure");
    assert!(check.fix.unwrap().contains("restart the pods"));
    assert!(
        check.detail.contains(&format!(
            "changed  uuid {U1} -> {U2} (nvme1n1, now nvme3n1)  {PVC_A}"
        )),
        "{}",
        check.detail
    );
    let two = summary(
        Verdict::Changed,
        &OutcomeCounts {
            changed: 2,
            ..OutcomeCounts::default()
        },
    );
    assert!(two.starts_with("the RDS gave 2 namespaces new identifiers"));
}

#[test]
fn nothing_comparable_is_said_and_skipped() {
    let empty = compare("f", &saved(vec![]), &[], None, PREFIX);
    assert_eq!(empty.verdict, Verdict::NothingComparable);
    assert!(empty.summary.starts_with("nothing to compare"));
    assert_eq!(judge_comparison(&empty).status, Status::Skip);

    let no_ids = vec![vol(PVC_A, "live", vec![ns("nvme1n1", None)])];
    let blind = compare("f", &saved(no_ids.clone()), &no_ids, None, PREFIX);
    assert_eq!(blind.verdict, Verdict::NothingComparable);
    assert!(
        blind
            .summary
            .starts_with("cannot tell: 1 namespace shows no identifiers"),
        "{}",
        blind.summary
    );

    // Only new volumes: nothing to compare either, and no reason to worry.
    let fresh = vec![vol(PVC_B, "live", vec![ns("nvme2n1", Some(U1))])];
    let only_new = compare("f", &saved(vec![]), &fresh, None, PREFIX);
    assert_eq!(judge_comparison(&only_new).status, Status::Skip);
}

#[test]
fn gone_volumes_warn_even_when_the_rest_was_kept() {
    let before = vec![
        vol(PVC_A, "live", vec![ns("nvme1n1", Some(U1))]),
        vol(PVC_B, "live", vec![ns("nvme2n1", Some(U2))]),
    ];
    let comparison = compare("f", &saved(before.clone()), &before[..1], None, PREFIX);
    assert_eq!(comparison.verdict, Verdict::Kept);
    let check = judge_comparison(&comparison);
    assert_eq!(check.status, Status::Warn);
    assert!(check.fix.unwrap().contains("ctrl_loss_tmo"));
}

#[test]
fn a_file_from_another_node_or_prefix_is_noted() {
    let before = vec![vol(PVC_A, "live", vec![ns("nvme1n1", Some(U1))])];
    let same_node = compare(
        "f",
        &saved(before.clone()),
        &before,
        Some("nqn.2014-08.org.nvmexpress:uuid:node-a"),
        PREFIX,
    );
    assert!(same_node.notes.is_empty());
    let other = compare(
        "f",
        &saved(before.clone()),
        &before,
        Some("nqn.2014-08.org.nvmexpress:uuid:node-b"),
        "nqn.2026-01.io.example",
    );
    assert_eq!(other.notes.len(), 2, "{:?}", other.notes);
    assert!(other.notes[0].contains("saved on another node"));
    assert!(other.notes[1].contains("--nqn-prefix"));
    let check = judge_comparison(&other);
    assert_eq!(check.status, Status::Warn);
    assert!(check.detail.contains("note: saved on another node"));
}

#[test]
fn the_json_section_names_each_outcome() {
    let before = vec![vol(PVC_A, "live", vec![ns("nvme1n1", Some(U1))])];
    let after = vec![vol(PVC_A, "live", vec![ns("nvme2n1", Some(U2))])];
    let comparison = compare("f", &saved(before), &after, None, PREFIX);
    let value = serde_json::to_value(&comparison).unwrap();
    assert_eq!(value["verdict"], "changed");
    assert_eq!(value["counts"]["changed"], 1);
    let volume = &value["volumes"][0];
    assert_eq!(volume["nqn"], PVC_A);
    assert_eq!(volume["outcome"], "changed");
    assert_eq!(volume["attribute"], "uuid");
    assert_eq!(volume["was"], U1);
    assert_eq!(volume["now"], U2);
    assert_eq!(volume["device"], "nvme2n1");
}
