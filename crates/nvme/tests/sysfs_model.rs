//! The sysfs model against fixture trees laid out like real sysfs (directories under
//! `devices/`, symlinks under `class/` and `block/`).

use mounts::DeviceNumber;
use nvme::fixtures::FakeSysfs;
use nvme::plan::{AttachStep, plan_attach};
use nvme::sysfs::ControllerState;
use nvme::{ManagedPrefix, Target};

const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-aaaaaaaa-0000-4000-8000-00000000000a";
const OTHER: &str = "nqn.2000-02.com.mikrotik:pvc-bbbbbbbb-0000-4000-8000-00000000000b";
const BOOT: &str = "nqn.2014-08.org.nvmexpress:boot-root";
const GIB: u64 = 1 << 30;

fn target() -> Target {
    Target::new("10.0.0.1".parse().unwrap(), 4420)
}

fn at_target() -> &'static str {
    "traddr=10.0.0.1,trsvcid=4420,src_addr=10.0.0.50"
}

#[test]
fn renumbered_controller_resolves_to_its_subsystems_head() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path());
    // Another volume took subsystem 1 / controller 2 first; ours is subsystem 2 via nvme1.
    fake.add_subsystem(1, OTHER);
    fake.add_controller(2, 1, OTHER, "live", at_target());
    fake.add_head(1, 1, 1, DeviceNumber::new(259, 0), GIB);
    fake.add_path(1, 2, 1, 1, GIB);
    fake.add_subsystem(2, NQN);
    fake.add_controller(1, 2, NQN, "live", at_target());
    fake.add_head(2, 2, 1, DeviceNumber::new(259, 3), 2 * GIB);
    fake.add_path(2, 1, 2, 1, 2 * GIB);

    let topology = fake.sysfs().scan().unwrap();
    let view = topology.view(NQN);
    assert_eq!(view.subsystems.len(), 1);
    assert_eq!(view.subsystems[0].name, "nvme-subsys2");
    assert_eq!(view.subsystems[0].controller_names, vec!["nvme1"]);
    let controller = view.controllers[0];
    assert_eq!(controller.name, "nvme1");
    assert_eq!(controller.paths, vec!["nvme2c1n2"]);
    assert_eq!(controller.cntlid, Some(2));
    assert_eq!(controller.transport.as_deref(), Some("tcp"));
    assert_eq!(
        controller.address.as_ref().unwrap().get("src_addr"),
        Some("10.0.0.50")
    );

    let namespace = view.namespace(1).unwrap();
    assert_eq!(namespace.name, "nvme2n2");
    assert_eq!(namespace.device, DeviceNumber::new(259, 3));
    assert_eq!(namespace.size_bytes, 2 * GIB);
    assert_eq!(
        namespace.device_path(std::path::Path::new("/dev")),
        std::path::Path::new("/dev/nvme2n2")
    );
    // Hidden paths are never offered as devices.
    assert_eq!(view.namespaces().count(), 1);

    // The filtered scan sees only our NQN.
    let only = fake.sysfs().scan_nqn(NQN).unwrap();
    assert_eq!(only.subsystems.len(), 1);
    assert_eq!(only.controllers.len(), 1);
}

#[test]
fn without_multipath_namespaces_hang_off_the_controller() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path());
    fake.add_subsystem(0, NQN);
    fake.add_controller(4, 0, NQN, "live", at_target());
    fake.add_private_namespace(4, 1, 1, DeviceNumber::new(259, 9), GIB);
    let topology = fake.sysfs().scan().unwrap();
    let view = topology.view(NQN);
    assert_eq!(view.namespace(1).unwrap().name, "nvme4n1");
    assert!(matches!(
        plan_attach(&view, &target(), 1),
        AttachStep::Reuse { namespace, .. } if namespace.name == "nvme4n1"
    ));
}

#[test]
fn orphaned_subsystems_are_visible_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path());
    // A head still held open after its last controller went away.
    fake.add_subsystem(5, NQN);
    fake.add_head(5, 1, 1, DeviceNumber::new(259, 1), GIB);
    // A live controller whose namespace never appeared.
    fake.add_subsystem(6, OTHER);
    fake.add_controller(7, 6, OTHER, "live", at_target());

    let topology = fake.sysfs().scan().unwrap();
    let no_controller = topology.view(NQN);
    assert!(no_controller.controllers.is_empty());
    assert!(no_controller.namespace(1).is_some());
    assert_eq!(
        plan_attach(&no_controller, &target(), 1),
        AttachStep::Connect
    );

    let no_namespace = topology.view(OTHER);
    assert!(no_namespace.namespace(1).is_none());
    assert!(matches!(
        plan_attach(&no_namespace, &target(), 1),
        AttachStep::Recycle { controllers, .. } if controllers == vec!["nvme7".to_owned()]
    ));
}

#[test]
fn controller_states_are_read_as_the_kernel_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path());
    fake.add_subsystem(0, NQN);
    let states = [
        "live",
        "connecting",
        "resetting",
        "deleting",
        "deleting (no IO)",
        "dead",
        "new",
    ];
    for (index, state) in states.iter().enumerate() {
        fake.add_controller(index as u32, 0, NQN, state, at_target());
    }
    let topology = fake.sysfs().scan().unwrap();
    let mut seen: Vec<(String, ControllerState)> = topology
        .controllers
        .iter()
        .map(|c| (c.name.clone(), c.state.clone()))
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        vec![
            ("nvme0".into(), ControllerState::Live),
            ("nvme1".into(), ControllerState::Connecting),
            ("nvme2".into(), ControllerState::Resetting),
            ("nvme3".into(), ControllerState::Deleting),
            ("nvme4".into(), ControllerState::DeletingNoIo),
            ("nvme5".into(), ControllerState::Dead),
            ("nvme6".into(), ControllerState::New),
        ]
    );
}

#[test]
fn foreign_subsystems_are_listed_but_not_managed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path());
    fake.add_subsystem(0, BOOT);
    fake.add_controller(0, 0, BOOT, "live", "traddr=10.9.0.1,trsvcid=4420");
    fake.add_head(0, 1, 1, DeviceNumber::new(259, 0), 8 * GIB);
    fake.add_subsystem(1, NQN);
    fake.add_controller(1, 1, NQN, "live", at_target());
    let prefix = ManagedPrefix::new("nqn.2000-02.com.mikrotik:").unwrap();
    let topology = fake.sysfs().scan().unwrap();
    assert_eq!(topology.subsystems.len(), 2);
    let managed: Vec<_> = topology
        .controllers
        .iter()
        .filter(|c| prefix.covers(&c.subsystem_nqn))
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(managed, vec!["nvme1"]);
    assert!(prefix.authorize_controller(&fake.sysfs(), "nvme0").is_err());
}

#[test]
fn unrelated_entries_and_vanished_objects_are_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path());
    fake.add_subsystem(0, NQN);
    fake.add_controller(1, 0, NQN, "live", at_target());
    // Entries real sysfs has next to ours, and a controller link whose target is gone.
    std::fs::create_dir_all(dir.path().join("class/nvme/nvme-fabrics")).unwrap();
    std::fs::create_dir_all(dir.path().join("class/nvme-subsystem/power")).unwrap();
    std::os::unix::fs::symlink(
        "../../devices/virtual/nvme-fabrics/ctl/nvme9",
        dir.path().join("class/nvme/nvme9"),
    )
    .unwrap();
    let topology = fake.sysfs().scan().unwrap();
    assert_eq!(topology.controllers.len(), 1);
    assert_eq!(topology.subsystems.len(), 1);
}

#[test]
fn malformed_attributes_are_errors_not_guesses() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path());
    fake.add_subsystem(0, NQN);
    fake.add_head(0, 1, 1, DeviceNumber::new(259, 0), GIB);
    std::fs::write(
        dir.path()
            .join("devices/virtual/nvme-subsystem/nvme-subsys0/nvme0n1/dev"),
        "259\n",
    )
    .unwrap();
    assert!(matches!(
        fake.sysfs().scan(),
        Err(nvme::Error::SysfsFormat { .. })
    ));
}

#[test]
fn an_empty_or_missing_root_is_an_empty_topology() {
    let dir = tempfile::tempdir().unwrap();
    let topology = nvme::Sysfs::new(dir.path().join("absent")).scan().unwrap();
    assert!(topology.subsystems.is_empty() && topology.controllers.is_empty());
}
