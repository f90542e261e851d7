use super::*;
use crate::capacity::{GIB, MIB};

const PVC: &str = "pvc-3f2a1c9e-0b7d-4e21-9a55-1d2c3b4a5f60";

fn config() -> ControllerConfig {
    ControllerConfig::new("10.0.0.1").validate().unwrap()
}

fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn range(required: u64, limit: u64) -> CapacityRange {
    CapacityRange {
        required_bytes: required as i64,
        limit_bytes: limit as i64,
    }
}

/// The disk the device reports after creating `plan` on RouterOS 7.21+.
fn disk_for(plan: &VolumePlan) -> FileDisk {
    let spec = plan.disk_spec();
    FileDisk {
        allowed_hosts: routeros::AllowedHosts::Any,
        id: "*1".into(),
        slot: spec.slot.to_string(),
        file_path: spec.file_path.to_string(),
        file_size: spec.size,
        nvme_tcp_export: true,
        nvme_tcp_port: spec.port,
        nqn: spec.nqn.to_string(),
        nqn_source: NqnSource::ServerNqn,
        mount_filesystem: false,
        comment: spec.comment,
    }
}

/// A disk as the Go driver made it: no comment, image `<path>/<id>.img`.
fn go_disk(path: &str, size: u64) -> FileDisk {
    FileDisk {
        allowed_hosts: routeros::AllowedHosts::Any,
        id: "*7".into(),
        slot: PVC.into(),
        file_path: format!("{path}/{PVC}.img"),
        file_size: size,
        nvme_tcp_export: true,
        nvme_tcp_port: 4420,
        nqn: format!("nqn.2000-02.com.mikrotik:{PVC}"),
        nqn_source: NqnSource::ServerNqn,
        mount_filesystem: false,
        comment: None,
    }
}

#[test]
fn plans_pvc_names_verbatim_and_others_hashed() {
    let c = config();
    let p = VolumePlan::new(&c, PVC, Some(&range(GIB + 1, 0)), &HashMap::new()).unwrap();
    assert_eq!(p.id.as_str(), PVC);
    assert_eq!(p.size, GIB + MIB);
    assert_eq!(p.file_path.as_str(), format!("storage-pool/{PVC}.img"));
    assert_eq!(p.nqn.as_str(), format!("nqn.2000-02.com.mikrotik:{PVC}"));
    assert_eq!(p.port, 4420);
    let comment = p.disk_spec().comment.unwrap();
    assert_eq!(VolumeComment::parse(&comment).unwrap().name, PVC);

    let hostile = "x\"; /disk remove [find]; $y\n[ü]";
    let p = VolumePlan::new(&c, hostile, None, &HashMap::new()).unwrap();
    assert!(p.id.as_str().starts_with("csi-"));
    assert_eq!(p.size, GIB, "no range means the default size");
    let spec = p.disk_spec();
    assert_eq!(
        VolumeComment::parse(spec.comment.as_deref().unwrap())
            .unwrap()
            .name,
        hostile
    );
}

#[test]
fn plan_refuses_bad_input_before_any_io() {
    let c = config();
    let none = HashMap::new();
    assert!(matches!(
        VolumePlan::new(&c, "", None, &none),
        Err(DriverError::Name(_))
    ));
    assert!(matches!(
        VolumePlan::new(&c, "a\u{1}", None, &none),
        Err(DriverError::Name(_))
    ));
    assert!(matches!(
        VolumePlan::new(&c, "v", Some(&range(2 * GIB, GIB)), &none),
        Err(DriverError::Size(_))
    ));
    assert!(matches!(
        VolumePlan::new(&c, "v", None, &params(&[("bogus", "1")])),
        Err(DriverError::Params(_))
    ));
    let outside = VolumePlan::new(&c, "v", None, &params(&[("volumePath", "other-pool/x")]));
    let Err(DriverError::Params(e)) = outside else {
        panic!("{outside:?}")
    };
    assert!(e.to_string().contains("base path"), "{e}");
}

#[test]
fn parameters_shape_the_plan_and_the_context() {
    let c = config();
    let p = VolumePlan::new(
        &c,
        PVC,
        None,
        &params(&[
            ("volumePath", "storage-pool/k8s"),
            ("nvmePort", "4421"),
            ("nvmeAddress", "192.0.2.7"),
            ("ctrlLossTmo", "-1"),
        ]),
    )
    .unwrap();
    assert_eq!(p.file_path.as_str(), format!("storage-pool/k8s/{PVC}.img"));
    assert_eq!(p.port, 4421);
    let ctx = p.context(&c, &disk_for(&p)).to_map();
    assert_eq!(ctx["nvmeAddress"], "192.0.2.7");
    assert_eq!(ctx["nvmePort"], "4421");
    assert_eq!(ctx["ctrlLossTmo"], "-1");
    assert_eq!(ctx["nqn"], p.nqn.as_str());
    assert_eq!(ctx["volumePath"], "storage-pool/k8s");

    // Before RouterOS 7.21 the device reports the slot as NQN; the context follows it.
    let mut old = disk_for(&p);
    old.nqn = p.id.to_string();
    assert_eq!(p.context(&c, &old).nqn, p.id.as_str());
    // Without nvmeAddress the controller's default is used.
    let plain = VolumePlan::new(&c, PVC, None, &HashMap::new()).unwrap();
    assert_eq!(
        plain.context(&c, &disk_for(&plain)).nvme_address,
        "10.0.0.1"
    );
}

#[test]
fn existing_disk_of_the_same_request_is_accepted() {
    let c = config();
    let p = VolumePlan::new(&c, "my volume", Some(&range(GIB, 0)), &HashMap::new()).unwrap();
    assert_eq!(p.check_existing(&disk_for(&p)), Ok(()));
    // A bigger existing volume still satisfies a range without limit.
    let mut bigger = disk_for(&p);
    bigger.file_size = 2 * GIB;
    assert_eq!(p.check_existing(&bigger), Ok(()));
}

#[test]
fn existing_disk_of_another_request_is_refused_with_a_reason() {
    let c = config();
    let p = VolumePlan::new(&c, "v", Some(&range(GIB, GIB)), &HashMap::new()).unwrap();
    let other_params = VolumePlan::new(
        &c,
        "v",
        Some(&range(GIB, GIB)),
        &params(&[("ctrlLossTmo", "30")]),
    )
    .unwrap();
    let cases: Vec<(FileDisk, &str)> = vec![
        (disk_for(&other_params), "different parameters"),
        (
            FileDisk {
                file_size: 2 * GIB,
                ..disk_for(&p)
            },
            "outside the requested range",
        ),
        (
            FileDisk {
                nvme_tcp_port: 4421,
                ..disk_for(&p)
            },
            "port 4421",
        ),
        (
            FileDisk {
                comment: Some(
                    VolumeComment {
                        params_digest: &p.params_digest,
                        name: "w",
                    }
                    .render(),
                ),
                ..disk_for(&p)
            },
            "CSI name \"w\"",
        ),
        (
            FileDisk {
                comment: None,
                ..disk_for(&p)
            },
            "does not record",
        ),
        (
            FileDisk {
                nvme_tcp_export: false,
                ..disk_for(&p)
            },
            "not exported",
        ),
        (
            FileDisk {
                nqn: "nqn.2000-02.com.other:x".into(),
                ..disk_for(&p)
            },
            "exported as nqn.2000-02.com.other:x",
        ),
        (
            FileDisk {
                mount_filesystem: true,
                ..disk_for(&p)
            },
            "mount-filesystem",
        ),
    ];
    for (disk, needle) in cases {
        let reason = p.check_existing(&disk).unwrap_err();
        assert!(reason.contains(needle), "{needle}: {reason}");
    }
}

#[test]
fn go_driver_disks_are_adopted() {
    let c = config();
    let p = VolumePlan::new(&c, PVC, Some(&range(GIB, 0)), &HashMap::new()).unwrap();
    assert_eq!(p.check_existing(&go_disk("storage-pool", GIB)), Ok(()));
    let reason = p
        .check_existing(&go_disk("storage-pool/metal", GIB))
        .unwrap_err();
    assert!(reason.contains("volumePath"), "{reason}");
    assert!(owned_image(&go_disk("storage-pool/metal", GIB), "storage-pool").is_some());
}

#[test]
fn ownership_needs_managed_slot_base_path_and_matching_image_name() {
    let mine = go_disk("storage-pool", GIB);
    assert_eq!(
        owned_image(&mine, "storage-pool").unwrap().as_str(),
        format!("storage-pool/{PVC}.img")
    );
    assert!(owned_image(&mine, "storage-pool/k8s").is_none());
    let foreign_slot = FileDisk {
        slot: "vm-disk".into(),
        file_path: "storage-pool/vm-disk.img".into(),
        ..mine.clone()
    };
    assert!(owned_image(&foreign_slot, "storage-pool").is_none());
    let other_image = FileDisk {
        file_path: "storage-pool/data.img".into(),
        ..mine.clone()
    };
    assert!(owned_image(&other_image, "storage-pool").is_none());
    let sibling_dir = FileDisk {
        file_path: format!("storage-pool2/{PVC}.img"),
        ..mine
    };
    assert!(owned_image(&sibling_dir, "storage-pool").is_none());
}

#[test]
fn condition_reports_every_problem() {
    let healthy = go_disk("storage-pool", GIB);
    let c = volume_condition(&healthy, "nqn.2000-02.com.mikrotik");
    assert!(!c.abnormal, "{}", c.message);
    let sick = FileDisk {
        nvme_tcp_export: false,
        nqn: "nqn.2000-02.com.other:x".into(),
        mount_filesystem: true,
        ..healthy.clone()
    };
    let c = volume_condition(&sick, "nqn.2000-02.com.mikrotik");
    assert!(c.abnormal);
    for needle in [
        "not exported",
        "expected nqn.2000-02.com.mikrotik:",
        "mount-filesystem",
    ] {
        assert!(c.message.contains(needle), "{needle}: {}", c.message);
    }
    // Before 7.21 the slot is the NQN, and that is normal.
    let old = FileDisk {
        nqn: PVC.into(),
        nqn_source: NqnSource::SlotName,
        ..healthy
    };
    assert!(!volume_condition(&old, "nqn.2000-02.com.mikrotik").abnormal);
}

#[test]
fn pages_only_owned_disks_in_slot_order() {
    let disk = |slot: &str, dir: &str| FileDisk {
        slot: slot.into(),
        file_path: format!("{dir}/{slot}.img"),
        ..go_disk("storage-pool", GIB)
    };
    let hashed = |n: u8| format!("csi-{}", format!("{n:02x}").repeat(16));
    let mut all = vec![
        disk(&hashed(3), "storage-pool"),
        disk("vm-1", "storage-pool"),
        disk(&hashed(1), "storage-pool/k8s"),
        disk(PVC, "storage-pool"),
        disk(&hashed(2), "elsewhere"),
        disk(&hashed(4), "storage-pool"),
    ];
    all.reverse();
    let p1 = page(all.clone(), "storage-pool", "", 2).unwrap();
    let slots = |p: &Page| p.disks.iter().map(|d| d.slot.clone()).collect::<Vec<_>>();
    assert_eq!(slots(&p1), [hashed(1), hashed(3)]);
    assert_eq!(p1.next_token.as_deref(), Some(hashed(3).as_str()));
    let p2 = page(all.clone(), "storage-pool", &hashed(3), 2).unwrap();
    assert_eq!(slots(&p2), [hashed(4), PVC.to_owned()]);
    assert_eq!(p2.next_token, None);
    let everything = page(all.clone(), "storage-pool", "", 0).unwrap();
    assert_eq!(everything.disks.len(), 4);
    assert_eq!(everything.next_token, None);
    // Exactly max entries left: no further page.
    assert_eq!(
        page(all.clone(), "storage-pool", "", 4).unwrap().next_token,
        None
    );
    for bad in ["garbage", "vm-1", "csi-zz"] {
        assert!(matches!(
            page(all.clone(), "storage-pool", bad, 2),
            Err(DriverError::InvalidToken(_))
        ));
    }
}

#[test]
fn volume_ids_are_only_managed_shapes() {
    assert!(VolumeId::parse(PVC).is_some());
    for bad in ["", "storage-pool", "pvc-1", "csi-../x", "a b"] {
        assert!(VolumeId::parse(bad).is_none(), "{bad:?}");
    }
}
