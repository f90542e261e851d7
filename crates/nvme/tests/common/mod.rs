//! Shared by the integration tests: the fake kernel behind an [`NvmeHost`] with the production
//! default prefix, and foreign subsystems present from the start, as on a diskless node whose
//! root is exported by the same RDS.

#![allow(dead_code)]

use std::time::Duration;

use mounts::DeviceNumber;
use nvme::fixtures::FakeKernel;
use nvme::identity::IdentitySource;
use nvme::{
    ConnectParams, ConnectRequest, CtrlLossTimeout, HostIdentity, ManagedPrefix, NvmeHost, Target,
};
use tokio::time::Instant;

/// The production default `--nqn-prefix` (`driver::config::DEFAULT_NQN_PREFIX`).
pub const PREFIX: &str = "nqn.2000-02.com.mikrotik";
/// A volume of the driver's own making.
pub const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-0a1b2c3d-4e5f-4a6b-8c7d-0e1f2a3b4c5d";
/// Another one.
pub const OTHER_NQN: &str = "nqn.2000-02.com.mikrotik:csi-00112233445566778899aabbccddeeff";
/// A diskless node's root, exported by the same RDS under the vendor's naming authority.
pub const ROOT_NQN: &str = "nqn.2000-02.com.mikrotik:nixos-root";
/// Under the prefix, but not an id the driver creates (no UUID).
pub const NEAR_NQN: &str = "nqn.2000-02.com.mikrotik:pvc-1";
/// Outside the vendor's authority altogether.
pub const BOOT: &str = "nqn.2014-08.org.nvmexpress:boot-root";
/// Foreign NQNs of the fixture: (NQN, subsystem = controller number, device minor).
pub const FOREIGN: [(&str, u32, u32); 2] = [(ROOT_NQN, 40, 40), (NEAR_NQN, 41, 41)];
pub const HOST_NQN: &str = "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211";
pub const HOST_ID: &str = "6f1e2d3c-4b5a-4697-8877-665544332211";
pub const GIB: u64 = 1 << 30;

pub fn target() -> Target {
    Target::new("10.0.0.1".parse().unwrap(), 4420)
}

pub fn request(nqn: &str) -> ConnectRequest {
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

pub fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

pub struct Lab {
    _dir: tempfile::TempDir,
    pub host: NvmeHost<FakeKernel>,
}

impl Lab {
    /// The host, with the [`FOREIGN`] subsystems live at the same target as the volumes.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kernel = FakeKernel::new(dir.path());
        let identity = HostIdentity {
            nqn: HOST_NQN.into(),
            id: HOST_ID.into(),
            source: IdentitySource::Configured,
            warnings: vec![],
        };
        // As the node builds it from --nqn-prefix.
        let prefix = ManagedPrefix::new(format!("{PREFIX}:")).unwrap();
        let host = NvmeHost::new(
            kernel.sysfs(),
            kernel.dev_root().to_path_buf(),
            kernel,
            identity,
            prefix,
        );
        let lab = Self { _dir: dir, host };
        for (nqn, number, minor) in FOREIGN {
            let fake = lab.kernel().fake_sysfs();
            fake.add_subsystem(number, nqn);
            fake.add_controller(number, number, nqn, "live", "traddr=10.0.0.1,trsvcid=4420");
            let device = DeviceNumber::new(259, minor);
            fake.add_head(number, 1, 1, device, 8 * GIB);
            fake.add_path(number, number, 1, 1, 8 * GIB);
            lab.kernel()
                .make_device_node(&format!("nvme{number}n1"), device)
                .unwrap();
        }
        lab
    }

    pub fn kernel(&self) -> &FakeKernel {
        self.host.kernel()
    }

    /// A volume connected before this process started: subsystem 9, controller `controller` in
    /// `state`, head nvme9n1 with a device node.
    pub fn preexisting(&self, nqn: &str, controller: u32, state: &str, device: DeviceNumber) {
        let fake = self.kernel().fake_sysfs();
        fake.add_subsystem(9, nqn);
        fake.add_controller(controller, 9, nqn, state, "traddr=10.0.0.1,trsvcid=4420");
        fake.add_head(9, 1, 1, device, GIB);
        fake.add_path(9, controller, 1, 1, GIB);
        self.kernel().make_device_node("nvme9n1", device).unwrap();
    }

    /// The foreign controllers are still there, never written to, never deleted.
    pub fn assert_foreign_untouched(&self) {
        let fake = self.kernel().fake_sysfs();
        for (nqn, number, _) in FOREIGN {
            assert!(fake.has_controller(number), "{nqn} lost its controller");
            assert_eq!(
                fake.controller_attribute(number, "delete_controller")
                    .as_deref(),
                Some(""),
                "{nqn}"
            );
            assert_eq!(
                fake.controller_attribute(number, "rescan_controller")
                    .as_deref(),
                Some(""),
                "{nqn}"
            );
            let name = format!("nvme{number}");
            assert!(!self.kernel().deletes().contains(&name), "{nqn}");
        }
        assert!(
            self.kernel().connects().iter().all(|c| FOREIGN
                .iter()
                .all(|(nqn, _, _)| !c.contains(&format!("nqn={nqn},")))),
            "{:?}",
            self.kernel().connects()
        );
    }
}

#[macro_export]
macro_rules! root_test {
    ($name:ident) => {
        if !mounts::fixtures::root_or_skip(stringify!($name)) {
            return;
        }
    };
}
