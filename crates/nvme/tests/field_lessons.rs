//! Incidents of peer drivers (see `docs/field-lessons.md`), reproduced against the fake kernel
//! with the production default prefix and foreign subsystems present.

mod common;

use common::*;
use mounts::DeviceNumber;
use mounts::fixtures::LoopDevice;
use nvme::{AttachKind, Error};

#[tokio::test]
async fn field_lesson_04_foreign_nqn_is_never_disconnected() {
    root_test!(field_lesson_04_foreign_nqn_is_never_disconnected);
    let lab = Lab::new();
    // A volume of ours on the same target, attached and detached meanwhile.
    lab.kernel().export(NQN, target(), GIB);
    lab.host.attach(&request(NQN), 1, soon()).await.unwrap();

    for foreign in [ROOT_NQN, NEAR_NQN, BOOT] {
        let refused = |result: Result<(), Error>| matches!(result, Err(Error::ForeignNqn { .. }));
        let detached = lab.host.detach(foreign, soon()).await.map(|_| ());
        let attached = lab.host.attach(&request(foreign), 1, soon()).await;
        let rescanned = lab.host.rescan(foreign, 1, 0, soon()).await;
        assert!(refused(detached), "{foreign}");
        assert!(refused(attached.map(|_| ())), "{foreign}");
        assert!(refused(rescanned.map(|_| ())), "{foreign}");
    }
    // Even by controller name, the guard reads the NQN and refuses.
    for (_, number, _) in FOREIGN {
        let name = format!("nvme{number}");
        assert!(matches!(
            lab.host
                .prefix()
                .authorize_controller(lab.host.sysfs(), &name),
            Err(Error::ForeignNqn { .. })
        ));
    }
    // The managed view lists only the driver's volume.
    let managed = lab.host.managed_topology(soon()).await.unwrap();
    let nqns: Vec<&str> = managed
        .controllers
        .iter()
        .map(|c| c.subsystem_nqn.as_str())
        .chain(managed.subsystems.iter().map(|s| s.nqn.as_str()))
        .collect();
    assert!(nqns.iter().all(|nqn| *nqn == NQN), "{nqns:?}");
    assert_eq!(managed.controllers.len(), 1);

    assert_eq!(lab.host.detach(NQN, soon()).await.unwrap(), vec!["nvme1"]);
    assert_eq!(lab.kernel().connects().len(), 1);
    lab.assert_foreign_untouched();
}

#[tokio::test]
async fn field_lesson_10_controller_renumbering_is_resolved_by_nqn() {
    root_test!(field_lesson_10_controller_renumbering_is_resolved_by_nqn);
    let lab = Lab::new();
    let fake = lab.kernel().fake_sysfs();
    // Controller nvme1 serves head nvme2n2 (hidden path nvme2c1n2) of our volume, while
    // nvme1n1, which name arithmetic would pick, is another volume's, served by nvme2.
    let ours = DeviceNumber::new(259, 60);
    fake.add_subsystem(2, NQN);
    fake.add_controller(1, 2, NQN, "live", "traddr=10.0.0.1,trsvcid=4420");
    fake.add_head(2, 2, 1, ours, GIB);
    fake.add_path(2, 1, 2, 1, GIB);
    lab.kernel().make_device_node("nvme2n2", ours).unwrap();
    let theirs = DeviceNumber::new(259, 61);
    fake.add_subsystem(1, OTHER_NQN);
    fake.add_controller(2, 1, OTHER_NQN, "live", "traddr=10.0.0.1,trsvcid=4420");
    fake.add_head(1, 1, 1, theirs, GIB);
    fake.add_path(1, 2, 1, 1, GIB);
    lab.kernel().make_device_node("nvme1n1", theirs).unwrap();

    let attached = lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    assert_eq!(attached.kind, AttachKind::Reused);
    assert_eq!(attached.controller, "nvme1");
    assert_eq!(attached.namespace.name, "nvme2n2");
    assert_eq!(attached.namespace.device, ours);
    assert_eq!(
        attached.device_path,
        lab.kernel().dev_root().join("nvme2n2")
    );
    assert!(lab.kernel().connects().is_empty());

    assert_eq!(lab.host.detach(NQN, soon()).await.unwrap(), vec!["nvme1"]);
    assert!(
        fake.has_controller(2),
        "the other volume keeps its controller"
    );
    assert!(lab.kernel().dev_root().join("nvme1n1").exists());
    lab.assert_foreign_untouched();
}

#[tokio::test]
async fn field_lesson_11_an_orphaned_subsystem_is_reconnected() {
    root_test!(field_lesson_11_an_orphaned_subsystem_is_reconnected);
    let lab = Lab::new();
    // The subsystem and its namespace are still listed, but no controller is left.
    let fake = lab.kernel().fake_sysfs();
    let device = DeviceNumber::new(259, 70);
    fake.add_subsystem(9, NQN);
    fake.add_head(9, 1, 1, device, GIB);
    lab.kernel().make_device_node("nvme9n1", device).unwrap();
    lab.kernel().export(NQN, target(), GIB);
    let attached = lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    assert_eq!(attached.kind, AttachKind::Connected);
    assert_eq!(
        attached.namespace.name, "nvme9n1",
        "the same head gets its path back"
    );
    assert_eq!(attached.namespace.device, device);
    assert_eq!(lab.kernel().connects().len(), 1);
    assert!(lab.kernel().deletes().is_empty());
    lab.assert_foreign_untouched();
}

#[tokio::test]
async fn field_lesson_11_a_live_controller_without_namespace_is_replaced() {
    root_test!(field_lesson_11_a_live_controller_without_namespace_is_replaced);
    let lab = Lab::new();
    let fake = lab.kernel().fake_sysfs();
    fake.add_subsystem(9, NQN);
    fake.add_controller(8, 9, NQN, "live", "traddr=10.0.0.1,trsvcid=4420");
    lab.kernel().export(NQN, target(), GIB);
    let attached = lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    assert_eq!(lab.kernel().deletes(), vec!["nvme8"]);
    assert_eq!(attached.kind, AttachKind::Connected);
    assert_eq!(attached.controller, "nvme1");
    assert!(!lab.kernel().fake_sysfs().has_controller(8));
    lab.assert_foreign_untouched();
}

#[tokio::test]
async fn field_lesson_14_a_namespace_with_holders_is_in_use() {
    root_test!(field_lesson_14_a_namespace_with_holders_is_in_use);
    let lab = Lab::new();
    lab.kernel().export(NQN, target(), GIB);
    lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    // Device-mapper stacked on it: no mount anywhere shows that.
    lab.kernel().fake_sysfs().add_holder(3, 1, "dm-0");
    assert!(matches!(
        lab.host.detach(NQN, soon()).await,
        Err(Error::InUse { .. })
    ));
    assert!(lab.kernel().deletes().is_empty());
}

#[tokio::test]
async fn field_lesson_14_an_exclusively_claimed_device_is_in_use() {
    root_test!(field_lesson_14_an_exclusively_claimed_device_is_in_use);
    let lab = Lab::new();
    // Back the namespace by a real block device so the kernel answers the O_EXCL question for
    // claims of any process, in any mount namespace.
    let scratch = tempfile::tempdir().unwrap();
    let disk = LoopDevice::attach(scratch.path(), 4 << 20).await;
    let device = mounts::stats::device_number_of_node(&disk.device).unwrap();
    lab.preexisting(NQN, 2, "live", device);
    let claim = rustix::fs::open(
        &disk.device,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::EXCL,
        rustix::fs::Mode::empty(),
    )
    .unwrap();
    let refused = lab.host.detach(NQN, soon()).await;
    assert!(matches!(refused, Err(Error::InUse { .. })), "{refused:?}");
    assert!(lab.kernel().deletes().is_empty());
    drop(claim);
    assert_eq!(lab.host.detach(NQN, soon()).await.unwrap(), vec!["nvme2"]);
}
