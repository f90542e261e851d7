//! Attach, detach and rescan against the fake kernel: a sysfs tree like Linux's, device nodes
//! made with mknod (hence root), and a fabrics device that creates controllers.

use std::time::Duration;

use mounts::DeviceNumber;
use mounts::fixtures::{LoopDevice, root_or_skip};
use nvme::fixtures::{FakeKernel, TargetBehavior};
use nvme::identity::IdentitySource;
use nvme::{
    AttachKind, ConnectFailure, ConnectParams, ConnectRequest, CtrlLossTimeout, Error,
    HostIdentity, ManagedPrefix, NvmeHost, Target,
};
use rustix::io::Errno;
use tokio::time::Instant;

const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-0a1b";
const BOOT: &str = "nqn.2014-08.org.nvmexpress:boot-root";
const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211";
const HOST_ID: &str = "6f1e2d3c-4b5a-4697-8877-665544332211";
const GIB: u64 = 1 << 30;

fn target() -> Target {
    Target::new("10.0.0.1".parse().unwrap(), 4420)
}

fn request(nqn: &str) -> ConnectRequest {
    ConnectRequest {
        nqn: nqn.into(),
        target: target(),
        params: ConnectParams {
            ctrl_loss_tmo: Some(CtrlLossTimeout::Unlimited),
            reconnect_delay: Some(2),
            ..ConnectParams::default()
        },
    }
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

struct Lab {
    _dir: tempfile::TempDir,
    host: NvmeHost<FakeKernel>,
}

impl Lab {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kernel = FakeKernel::new(dir.path());
        let identity = HostIdentity {
            nqn: HOST_NQN.into(),
            id: HOST_ID.into(),
            source: IdentitySource::Configured,
            warnings: vec![],
        };
        let prefix = ManagedPrefix::new("nqn.2000-02.com.mikrotik:pvc-").unwrap();
        let host = NvmeHost::new(
            kernel.sysfs(),
            kernel.dev_root().to_path_buf(),
            kernel,
            identity,
            prefix,
        );
        Self { _dir: dir, host }
    }

    fn kernel(&self) -> &FakeKernel {
        self.host.kernel()
    }

    /// A volume connected before this process started: subsystem 9, controller `controller` in
    /// `state`, head nvme9n1 with a device node.
    fn preexisting(&self, nqn: &str, controller: u32, state: &str, device: DeviceNumber) {
        let fake = self.kernel().fake_sysfs();
        fake.add_subsystem(9, nqn);
        fake.add_controller(controller, 9, nqn, state, "traddr=10.0.0.1,trsvcid=4420");
        fake.add_head(9, 1, 1, device, GIB);
        fake.add_path(9, controller, 1, 1, GIB);
        self.kernel().make_device_node("nvme9n1", device).unwrap();
    }
}

macro_rules! root_test {
    ($name:ident) => {
        if !root_or_skip(stringify!($name)) {
            return;
        }
    };
}

#[tokio::test]
async fn fresh_attach_connects_once_and_resolves_the_device_by_nqn() {
    root_test!(fresh_attach_connects_once_and_resolves_the_device_by_nqn);
    let lab = Lab::new();
    lab.kernel().export(NQN, target(), GIB);
    let attached = lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    assert_eq!(attached.kind, AttachKind::Connected);
    assert_eq!(attached.controller, "nvme1");
    // Subsystem 3, controller 1: the device name follows the subsystem, not the controller.
    assert_eq!(attached.namespace.name, "nvme3n1");
    assert_eq!(
        attached.device_path,
        lab.kernel().dev_root().join("nvme3n1")
    );
    assert_eq!(attached.namespace.size_bytes, GIB);
    assert_eq!(
        lab.kernel().connects(),
        vec![format!(
            "transport=tcp,traddr=10.0.0.1,trsvcid=4420,nqn={NQN},hostnqn={HOST_NQN},hostid={HOST_ID},\
             ctrl_loss_tmo=-1,reconnect_delay=2"
        )]
    );

    let again = lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    assert_eq!(again.kind, AttachKind::Reused);
    assert_eq!(again.device_path, attached.device_path);
    assert_eq!(lab.kernel().connects().len(), 1);
    assert_eq!(
        lab.host.find_namespace(NQN, 1).unwrap(),
        Some(attached.namespace)
    );
}

#[tokio::test]
async fn a_namespace_that_appears_late_is_awaited_promptly() {
    root_test!(a_namespace_that_appears_late_is_awaited_promptly);
    let lab = Lab::new();
    let delay = Duration::from_millis(150);
    lab.kernel().set_target(
        NQN,
        target(),
        TargetBehavior::Export {
            nsid: 1,
            size_bytes: GIB,
            namespace_delay: delay,
        },
    );
    let started = Instant::now();
    let attached = lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(attached.namespace.name, "nvme3n1");
    assert!(elapsed >= delay, "{elapsed:?}");
    assert!(elapsed < delay + Duration::from_secs(1), "{elapsed:?}");
}

#[tokio::test]
async fn a_namespace_that_never_appears_times_out_with_what_was_seen() {
    root_test!(a_namespace_that_never_appears_times_out_with_what_was_seen);
    let lab = Lab::new();
    lab.kernel().set_target(
        NQN,
        target(),
        TargetBehavior::Export {
            nsid: 1,
            size_bytes: GIB,
            namespace_delay: Duration::from_secs(3),
        },
    );
    let started = Instant::now();
    let result = lab
        .host
        .attach(&request(NQN), 1, started + Duration::from_millis(200))
        .await;
    match result {
        Err(Error::TimedOut { last_seen, .. }) => {
            assert!(last_seen.contains("nvme1"), "{last_seen}")
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn connect_failures_are_typed() {
    root_test!(connect_failures_are_typed);
    let lab = Lab::new();
    let failure = |result: nvme::Result<nvme::Attachment>| match result {
        Err(Error::Connect { failure, .. }) => failure,
        other => panic!("{other:?}"),
    };
    // Nothing listens at the address.
    assert_eq!(
        failure(lab.host.attach(&request(NQN), 1, soon()).await),
        ConnectFailure::Refused
    );
    // Something listens, but not for this NQN.
    lab.kernel()
        .export("nqn.2000-02.com.mikrotik:pvc-other", target(), GIB);
    assert_eq!(
        failure(lab.host.attach(&request(NQN), 1, soon()).await),
        ConnectFailure::Rejected
    );
    lab.kernel()
        .set_target(NQN, target(), TargetBehavior::Refuse(Errno::TIMEDOUT));
    let error = lab.host.attach(&request(NQN), 1, soon()).await.unwrap_err();
    assert!(error.is_transient());
    assert!(matches!(
        error,
        Error::Connect {
            failure: ConnectFailure::TimedOut,
            ..
        }
    ));
    lab.kernel()
        .set_target(NQN, target(), TargetBehavior::Refuse(Errno::INVAL));
    assert_eq!(
        failure(lab.host.attach(&request(NQN), 1, soon()).await),
        ConnectFailure::InvalidOptions
    );
}

#[tokio::test]
async fn ealready_means_use_the_controller_that_won_the_race() {
    root_test!(ealready_means_use_the_controller_that_won_the_race);
    let lab = Lab::new();
    // The kernel says "already connected" while another agent's controller is still appearing.
    lab.kernel()
        .set_target(NQN, target(), TargetBehavior::Refuse(Errno::ALREADY));
    let fake = lab.kernel().fake_sysfs().clone();
    let dev_root = lab.kernel().dev_root().to_path_buf();
    let racer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        fake.add_subsystem(9, NQN);
        fake.add_controller(5, 9, NQN, "live", "traddr=10.0.0.1,trsvcid=4420");
        let device = DeviceNumber::new(259, 77);
        nvme::fixtures::make_block_node(&dev_root, "nvme9n1", device).unwrap();
        fake.add_head(9, 1, 1, device, GIB);
    });
    let attached = lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    racer.join().unwrap();
    assert_eq!(attached.controller, "nvme5");
    assert_eq!(attached.namespace.name, "nvme9n1");
    assert!(lab.kernel().deletes().is_empty());
}

#[tokio::test]
async fn a_live_controller_without_namespace_is_recycled() {
    root_test!(a_live_controller_without_namespace_is_recycled);
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
}

#[tokio::test]
async fn a_dead_controller_is_recycled() {
    root_test!(a_dead_controller_is_recycled);
    let lab = Lab::new();
    lab.preexisting(NQN, 8, "dead", DeviceNumber::new(259, 50));
    lab.kernel().export(NQN, target(), GIB);
    let attached = lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    assert_eq!(lab.kernel().deletes(), vec!["nvme8"]);
    assert_eq!(attached.controller, "nvme1");
}

#[tokio::test]
async fn a_reconnecting_controller_is_awaited_and_reused_not_disturbed() {
    root_test!(a_reconnecting_controller_is_awaited_and_reused_not_disturbed);
    let lab = Lab::new();
    lab.preexisting(NQN, 2, "connecting", DeviceNumber::new(259, 50));
    let fake = lab.kernel().fake_sysfs().clone();
    let recovers = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        fake.set_state(2, "live");
    });
    let attached = lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    recovers.join().unwrap();
    assert_eq!(attached.kind, AttachKind::Reused);
    assert_eq!(attached.controller, "nvme2");
    assert_eq!(attached.namespace.name, "nvme9n1");
    assert!(lab.kernel().connects().is_empty());
    assert!(lab.kernel().deletes().is_empty());
}

#[tokio::test]
async fn a_controller_that_stays_connecting_is_never_deleted() {
    root_test!(a_controller_that_stays_connecting_is_never_deleted);
    let lab = Lab::new();
    lab.preexisting(NQN, 2, "connecting", DeviceNumber::new(259, 50));
    let result = lab
        .host
        .attach(
            &request(NQN),
            1,
            Instant::now() + Duration::from_millis(200),
        )
        .await;
    assert!(matches!(result, Err(Error::TimedOut { .. })), "{result:?}");
    assert!(lab.kernel().deletes().is_empty());
    assert!(lab.kernel().connects().is_empty());
}

#[tokio::test]
async fn a_device_node_for_another_device_is_not_accepted() {
    root_test!(a_device_node_for_another_device_is_not_accepted);
    let lab = Lab::new();
    let fake = lab.kernel().fake_sysfs();
    fake.add_subsystem(9, NQN);
    fake.add_controller(2, 9, NQN, "live", "traddr=10.0.0.1,trsvcid=4420");
    fake.add_head(9, 1, 1, DeviceNumber::new(259, 50), GIB);
    lab.kernel()
        .make_device_node("nvme9n1", DeviceNumber::new(259, 51))
        .unwrap();
    let result = lab
        .host
        .attach(
            &request(NQN),
            1,
            Instant::now() + Duration::from_millis(200),
        )
        .await;
    match result {
        Err(Error::TimedOut { last_seen, .. }) => {
            assert!(last_seen.contains("OtherDevice"), "{last_seen}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn detach_deletes_every_controller_and_is_idempotent() {
    root_test!(detach_deletes_every_controller_and_is_idempotent);
    let lab = Lab::new();
    lab.kernel().export(NQN, target(), GIB);
    let attached = lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    // A second path to the same subsystem through another portal.
    let second = Target::new("10.0.0.2".parse().unwrap(), 4420);
    lab.kernel().export(NQN, second, GIB);
    let mut via_second = request(NQN);
    via_second.target = second;
    lab.host.attach(&via_second, 1, soon()).await.unwrap();

    let mut deleted = lab.host.detach(NQN, soon()).await.unwrap();
    deleted.sort();
    assert_eq!(deleted, vec!["nvme1", "nvme2"]);
    assert!(lab.host.find_namespace(NQN, 1).unwrap().is_none());
    assert!(!attached.device_path.exists());
    assert!(lab.host.detach(NQN, soon()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_foreign_nqn_is_never_touched_even_when_asked() {
    root_test!(a_foreign_nqn_is_never_touched_even_when_asked);
    let lab = Lab::new();
    // A diskless node's root volume, on the same target even.
    let fake = lab.kernel().fake_sysfs();
    fake.add_subsystem(0, BOOT);
    fake.add_controller(0, 0, BOOT, "live", "traddr=10.0.0.1,trsvcid=4420");
    fake.add_head(0, 1, 1, DeviceNumber::new(259, 0), 8 * GIB);
    lab.kernel().export(NQN, target(), GIB);
    lab.host.attach(&request(NQN), 1, soon()).await.unwrap();

    assert!(matches!(
        lab.host.detach(BOOT, soon()).await,
        Err(Error::ForeignNqn { .. })
    ));
    assert!(matches!(
        lab.host.attach(&request(BOOT), 1, soon()).await,
        Err(Error::ForeignNqn { .. })
    ));
    assert!(matches!(
        lab.host.rescan(BOOT, 1, 0, soon()).await,
        Err(Error::ForeignNqn { .. })
    ));
    lab.host.detach(NQN, soon()).await.unwrap();

    assert!(fake.has_controller(0));
    assert_eq!(
        fake.controller_attribute(0, "delete_controller").as_deref(),
        Some("")
    );
    assert!(lab.kernel().deletes().iter().all(|name| name != "nvme0"));
    assert_eq!(lab.kernel().connects().len(), 1);
    // The managed view never lists it.
    let managed = lab.host.managed_topology().unwrap();
    assert!(managed.controllers.iter().all(|c| c.subsystem_nqn != BOOT));
}

#[tokio::test]
async fn detach_refuses_while_a_namespace_is_held() {
    root_test!(detach_refuses_while_a_namespace_is_held);
    let lab = Lab::new();
    lab.kernel().export(NQN, target(), GIB);
    lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    lab.kernel().fake_sysfs().add_holder(3, 1, "dm-0");
    assert!(matches!(
        lab.host.detach(NQN, soon()).await,
        Err(Error::InUse { .. })
    ));
    assert!(lab.kernel().deletes().is_empty());
}

#[tokio::test]
async fn detach_refuses_while_the_device_is_claimed_exclusively() {
    root_test!(detach_refuses_while_the_device_is_claimed_exclusively);
    let lab = Lab::new();
    // Back the namespace by a real block device so the kernel can answer the O_EXCL question.
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

#[tokio::test]
async fn rescan_waits_for_the_new_size() {
    root_test!(rescan_waits_for_the_new_size);
    let lab = Lab::new();
    lab.kernel().export(NQN, target(), GIB);
    lab.host.attach(&request(NQN), 1, soon()).await.unwrap();
    lab.kernel().grow(NQN, 3 * GIB);
    assert_eq!(
        lab.host.rescan(NQN, 1, 3 * GIB, soon()).await.unwrap(),
        3 * GIB
    );
    assert_eq!(
        lab.kernel()
            .fake_sysfs()
            .controller_attribute(1, "rescan_controller")
            .as_deref(),
        Some("1")
    );
    // A size the target never reaches ends at the deadline.
    let result = lab
        .host
        .rescan(NQN, 1, 4 * GIB, Instant::now() + Duration::from_millis(100))
        .await;
    assert!(matches!(result, Err(Error::TimedOut { .. })));
}

#[tokio::test]
async fn rescan_without_a_live_controller_says_so() {
    root_test!(rescan_without_a_live_controller_says_so);
    let lab = Lab::new();
    lab.preexisting(NQN, 2, "connecting", DeviceNumber::new(259, 50));
    assert!(matches!(
        lab.host.rescan(NQN, 1, 0, soon()).await,
        Err(Error::Stuck { .. })
    ));
}
