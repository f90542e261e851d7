//! The real kernel interface (`LinuxKernel`) against stand-ins it cannot tell from the real
//! thing: a pseudo-terminal as the fabrics device (a character device that answers a write
//! with a read, like `/dev/nvme-fabrics`), and sysfs attribute files in a fixture tree.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use mounts::DeviceNumber;
use mounts::fixtures::root_or_skip;
use nvme::fixtures::FakeSysfs;
use nvme::identity::IdentitySource;
use nvme::kernel::Kernel;
use nvme::options::FabricsOptions;
use nvme::{
    AttachKind, ConnectFailure, ConnectParams, ConnectRequest, Error, HostIdentity, LinuxKernel,
    ManagedPrefix, NvmeHost, Target,
};
use tokio::time::Instant;

const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-77777777-0000-4000-8000-000000000077";

fn identity() -> HostIdentity {
    HostIdentity {
        nqn: "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211".into(),
        id: "6f1e2d3c-4b5a-4697-8877-665544332211".into(),
        source: IdentitySource::Configured,
        warnings: vec![],
    }
}

fn request() -> ConnectRequest {
    ConnectRequest {
        nqn: NQN.into(),
        target: Target::new("10.0.0.1".parse().unwrap(), 4420),
        params: ConnectParams {
            keep_alive_tmo: Some(5),
            ..ConnectParams::default()
        },
    }
}

/// A pseudo-terminal in raw mode: the slave path plays the fabrics device, the master (and a
/// held slave descriptor keeping the raw settings) stays with the test.
struct FakeFabrics {
    master: std::fs::File,
    path: PathBuf,
    _slave: OwnedFd,
}

impl FakeFabrics {
    fn new() -> Self {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master =
            openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let path = PathBuf::from(ptsname(&master, Vec::new()).unwrap().into_string().unwrap());
        let slave = rustix::fs::open(
            &path,
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let mut termios = rustix::termios::tcgetattr(&slave).unwrap();
        termios.make_raw();
        rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &termios)
            .unwrap();
        Self {
            master: std::fs::File::from(master),
            path,
            _slave: slave,
        }
    }

    /// Reads one request as the kernel would receive it (everything written at once).
    fn receive(&mut self) -> String {
        let mut buffer = [0u8; 1024];
        let length = self.master.read(&mut buffer).unwrap();
        String::from_utf8(buffer[..length].to_vec()).unwrap()
    }

    fn answer(&mut self, reply: &str) {
        self.master.write_all(reply.as_bytes()).unwrap();
    }
}

#[test]
fn connect_writes_the_options_once_and_returns_the_reply() {
    let mut fabrics = FakeFabrics::new();
    let kernel = LinuxKernel::new(&fabrics.path);
    let options = FabricsOptions::build(&request(), &identity()).unwrap();
    let expected = options.as_str().to_owned();
    let caller = std::thread::spawn(move || kernel.connect(&options));
    assert_eq!(fabrics.receive(), expected);
    fabrics.answer("instance=7,cntlid=3\n");
    let reply = caller.join().unwrap().unwrap();
    assert_eq!(
        nvme::options::ConnectReply::parse(&reply).unwrap(),
        nvme::options::ConnectReply {
            instance: 7,
            cntlid: 3
        }
    );
}

fn host(
    kernel: LinuxKernel,
    sysfs_root: &std::path::Path,
    dev_root: PathBuf,
) -> NvmeHost<LinuxKernel> {
    NvmeHost::new(
        nvme::Sysfs::new(sysfs_root),
        dev_root,
        kernel,
        identity(),
        ManagedPrefix::new("nqn.2000-02.com.mikrotik:").unwrap(),
    )
}

#[tokio::test]
async fn attach_gives_up_at_its_deadline_when_the_device_never_answers() {
    let fabrics = FakeFabrics::new();
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path().join("sys"));
    let host = host(
        LinuxKernel::new(&fabrics.path),
        fake.root(),
        dir.path().join("dev"),
    );
    let started = Instant::now();
    let result = host
        .attach(&request(), 1, started + Duration::from_millis(200))
        .await;
    assert!(matches!(result, Err(Error::TimedOut { .. })), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // Closing the pty ends the blocked read in the abandoned thread.
    drop(fabrics);
}

#[tokio::test]
async fn a_missing_fabrics_device_means_nvme_of_is_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path().join("sys"));
    let kernel = LinuxKernel::new(dir.path().join("no-nvme-fabrics"));
    let host = host(kernel, fake.root(), dir.path().join("dev"));
    let result = host
        .attach(&request(), 1, Instant::now() + Duration::from_secs(5))
        .await;
    assert!(
        matches!(
            result,
            Err(Error::Connect {
                failure: ConnectFailure::FabricsUnavailable,
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_full_attach_through_the_real_interface() {
    if !root_or_skip("a_full_attach_through_the_real_interface") {
        return;
    }
    let mut fabrics = FakeFabrics::new();
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path().join("sys"));
    let dev_root = dir.path().join("dev");
    std::fs::create_dir(&dev_root).unwrap();
    let host = host(
        LinuxKernel::new(&fabrics.path),
        fake.root(),
        dev_root.clone(),
    );

    // The "kernel": on a connect, create controller nvme4 of subsystem 6 with head nvme6n1.
    let kernel_side = {
        let fake = fake.clone();
        std::thread::spawn(move || {
            let options = fabrics.receive();
            assert!(options.contains(&format!(",nqn={NQN},")), "{options}");
            fake.add_subsystem(6, NQN);
            fake.add_controller(4, 6, NQN, "live", "traddr=10.0.0.1,trsvcid=4420");
            let device = DeviceNumber::new(259, 40);
            nvme::fixtures::make_block_node(&dev_root, "nvme6n1", device).unwrap();
            fake.add_head(6, 1, 1, device, 1 << 30);
            fake.add_path(6, 4, 1, 1, 1 << 30);
            fabrics.answer("instance=4,cntlid=5\n");
            fabrics
        })
    };
    let attached = host
        .attach(&request(), 1, Instant::now() + Duration::from_secs(10))
        .await
        .unwrap();
    let _fabrics = kernel_side.join().unwrap();
    assert_eq!(attached.kind, AttachKind::Connected);
    assert_eq!(attached.controller, "nvme4");
    assert_eq!(attached.device_path, dir.path().join("dev/nvme6n1"));

    // Detach writes "1" to the controller's delete_controller; the fixture does not delete
    // anything by itself, so the bounded wait for it to vanish ends in a timeout.
    let result = host
        .detach(NQN, Instant::now() + Duration::from_millis(100))
        .await;
    assert!(matches!(result, Err(Error::TimedOut { .. })), "{result:?}");
    assert_eq!(
        fake.controller_attribute(4, "delete_controller").as_deref(),
        Some("1")
    );
}

#[test]
fn sysfs_writes_go_to_existing_attributes_only() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeSysfs::new(dir.path());
    fake.add_subsystem(0, NQN);
    fake.add_controller(3, 0, NQN, "live", "traddr=10.0.0.1,trsvcid=4420");
    let kernel = LinuxKernel::new(dir.path().join("unused"));
    let prefix = ManagedPrefix::new("nqn.2000-02.com.mikrotik:").unwrap();
    let managed = prefix
        .authorize_controller(&fake.sysfs(), "nvme3")
        .unwrap()
        .unwrap();
    kernel.rescan_controller(&managed).unwrap();
    assert_eq!(
        fake.controller_attribute(3, "rescan_controller").as_deref(),
        Some("1")
    );
    kernel.delete_controller(&managed).unwrap();
    assert_eq!(
        fake.controller_attribute(3, "delete_controller").as_deref(),
        Some("1")
    );

    std::fs::remove_file(managed.dir().join("rescan_controller")).unwrap();
    let missing = kernel.rescan_controller(&managed).unwrap_err();
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    assert!(!managed.dir().join("rescan_controller").exists());
}
