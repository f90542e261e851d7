//! Attach, detach and rescan against the fake kernel: a sysfs tree like Linux's, device nodes
//! made with mknod (hence root), and a fabrics device that creates controllers.

mod common;

use std::time::Duration;

use common::*;
use mounts::DeviceNumber;
use nvme::fixtures::TargetBehavior;
use nvme::{AttachKind, ConnectFailure, Error, Target};
use rustix::io::Errno;
use tokio::time::Instant;

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
        lab.host.find_namespace(NQN, 1, soon()).await.unwrap(),
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
    lab.kernel().export(OTHER_NQN, target(), GIB);
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
    assert!(
        lab.host
            .find_namespace(NQN, 1, soon())
            .await
            .unwrap()
            .is_none()
    );
    assert!(!attached.device_path.exists());
    assert!(lab.host.detach(NQN, soon()).await.unwrap().is_empty());
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
