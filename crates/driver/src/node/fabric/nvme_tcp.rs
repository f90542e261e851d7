//! The real fabric: the kernel's NVMe/TCP initiator, driven through the `nvme` crate.

use std::net::IpAddr;

use mounts::DeviceNumber;
use mounts::blocking::run_blocking;
use nvme::sysfs::{ControllerState, NqnView};
use nvme::{
    AttachKind, ConnectParams, ConnectRequest, CtrlLossTimeout, Kernel, LinuxKernel, NvmeHost,
    Target,
};
use tokio::time::Instant;

use super::{AttachedDevice, Condition, Fabric, FabricError, ManagedController};
use crate::params::{ConnectOptions, VolumeContext};

/// Every RDS export carries exactly one namespace.
const NSID: u32 = 1;

/// The NVMe/TCP fabric over an [`NvmeHost`].
#[derive(Debug)]
pub struct NvmeTcpFabric<K: Kernel = LinuxKernel> {
    host: NvmeHost<K>,
}

impl<K: Kernel> NvmeTcpFabric<K> {
    pub fn new(host: NvmeHost<K>) -> Self {
        Self { host }
    }

    pub fn host(&self) -> &NvmeHost<K> {
        &self.host
    }
}

/// How long the kernel keeps reconnecting a lost controller when the StorageClass does not
/// say (`ctrlLossTmo`). The kernel's own 600 s is shorter than an RDS firmware update with a
/// slow boot; past it the controller is deleted and every mount on it is dead until the pod is
/// restarted. 30 minutes rides out such a reboot, while a target that never returns still
/// fails I/O (and lets the workload move) within the hour instead of hanging forever.
pub const DEFAULT_CTRL_LOSS_TMO: CtrlLossTimeout = CtrlLossTimeout::Seconds(1800);
/// Seconds between reconnect attempts when the StorageClass does not say (`reconnectDelay`):
/// I/O resumes within 5 s of the target's return (the kernel's 10 s doubles that), for one
/// TCP connect attempt every 5 s per lost controller.
pub const DEFAULT_RECONNECT_DELAY: u32 = 5;

/// The connect tunables of a volume context, in the `nvme` crate's terms, with the node's
/// defaults for the loss timeout and reconnect delay where the context has none.
pub fn connect_params(options: &ConnectOptions) -> ConnectParams {
    ConnectParams {
        ctrl_loss_tmo: Some(
            options
                .ctrl_loss_tmo
                .map_or(DEFAULT_CTRL_LOSS_TMO, |seconds| {
                    match u32::try_from(seconds) {
                        Ok(seconds) => CtrlLossTimeout::Seconds(seconds),
                        // The context accepts -1 only below zero.
                        Err(_) => CtrlLossTimeout::Unlimited,
                    }
                }),
        ),
        reconnect_delay: Some(options.reconnect_delay.unwrap_or(DEFAULT_RECONNECT_DELAY)),
        keep_alive_tmo: options.keep_alive_tmo,
        nr_io_queues: options.nr_io_queues,
    }
}

/// The target's address: an IP literal as is, a host name through the resolver (bounded by
/// the deadline, since a resolver can hang as long as any tool).
async fn resolve(host: &str, port: u16, deadline: Instant) -> Result<IpAddr, FabricError> {
    if let Ok(address) = host.parse() {
        return Ok(address);
    }
    let failed = |reason: String| FabricError::Resolve {
        host: host.to_owned(),
        reason,
    };
    let mut addresses = tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| FabricError::TimedOut(format!("resolving {host}")))?
        .map_err(|e| failed(e.to_string()))?;
    addresses
        .next()
        .map(|address| address.ip())
        .ok_or_else(|| failed("no address".into()))
}

/// Whether the volume's data path works, from what sysfs shows for its NQN.
pub fn judge_condition(view: &NqnView<'_>, nsid: u32) -> Condition {
    if view.controllers.is_empty() {
        return Condition::Abnormal(format!("no NVMe controller is connected for {}", view.nqn));
    }
    if !view
        .controllers
        .iter()
        .any(|c| c.state == ControllerState::Live)
    {
        let states: Vec<String> = view
            .controllers
            .iter()
            .map(|c| format!("{} is {:?}", c.name, c.state))
            .collect();
        return Condition::Abnormal(format!(
            "no live NVMe controller for {}: {}",
            view.nqn,
            states.join(", ")
        ));
    }
    if view.namespace(nsid).is_none() {
        return Condition::Abnormal(format!(
            "namespace {nsid} of {} is not visible on this node",
            view.nqn
        ));
    }
    Condition::Healthy
}

fn in_use(error: nvme::Error) -> FabricError {
    match error {
        nvme::Error::InUse { nqn, reason } => FabricError::InUse { nqn, reason },
        other => FabricError::Nvme(other),
    }
}

#[async_trait::async_trait]
impl<K: Kernel> Fabric for NvmeTcpFabric<K> {
    fn name(&self) -> &'static str {
        "nvme-tcp"
    }

    fn host_nqn(&self) -> Option<&str> {
        Some(&self.host.identity().nqn)
    }

    async fn attach(
        &self,
        volume: &VolumeContext,
        deadline: Instant,
    ) -> Result<AttachedDevice, FabricError> {
        let address = resolve(&volume.nvme_address, volume.nvme_port, deadline).await?;
        let request = ConnectRequest {
            nqn: volume.nqn.clone(),
            target: Target::new(address, volume.nvme_port),
            params: connect_params(&volume.connect),
        };
        let attachment = self.host.attach(&request, NSID, deadline).await?;
        Ok(AttachedDevice {
            path: attachment.device_path,
            device: attachment.namespace.device,
            newly_attached: attachment.kind == AttachKind::Connected,
            ids: attachment.namespace.ids,
        })
    }

    async fn find(
        &self,
        nqn: &str,
        deadline: Instant,
    ) -> Result<Option<AttachedDevice>, FabricError> {
        Ok(self
            .host
            .find_namespace(nqn, NSID, deadline)
            .await?
            .map(|namespace| AttachedDevice {
                path: namespace.device_path(self.host.dev_root()),
                device: namespace.device,
                newly_attached: false,
                ids: namespace.ids,
            }))
    }

    async fn detach(&self, nqn: &str, deadline: Instant) -> Result<(), FabricError> {
        let deleted = self.host.detach(nqn, deadline).await.map_err(in_use)?;
        if !deleted.is_empty() {
            tracing::info!(nqn, controllers = ?deleted, "disconnected");
        }
        Ok(())
    }

    async fn rescan(
        &self,
        nqn: &str,
        min_size_bytes: u64,
        deadline: Instant,
    ) -> Result<u64, FabricError> {
        Ok(self
            .host
            .rescan(nqn, NSID, min_size_bytes, deadline)
            .await?)
    }

    async fn managed_controllers(
        &self,
        deadline: Instant,
    ) -> Result<Vec<ManagedController>, FabricError> {
        let topology = self.host.managed_topology(deadline).await?;
        let mut controllers: Vec<ManagedController> = topology
            .controllers
            .into_iter()
            .map(|c| ManagedController {
                state: c.state.label(),
                nqn: c.subsystem_nqn,
            })
            .collect();
        controllers.sort_by(|a, b| a.nqn.cmp(&b.nqn));
        Ok(controllers)
    }

    async fn is_connected(&self, nqn: &str, deadline: Instant) -> Result<bool, FabricError> {
        let topology = self.host.scan_nqn(nqn, deadline).await?;
        Ok(!topology.view(nqn).controllers.is_empty())
    }

    async fn condition(&self, nqn: &str, deadline: Instant) -> Result<Condition, FabricError> {
        let topology = self.host.scan_nqn(nqn, deadline).await?;
        Ok(judge_condition(&topology.view(nqn), NSID))
    }

    /// Gone once the kernel removed the block device: its `dev/block/<major:minor>` entry
    /// leaves sysfs when the disk is deleted, even while mounts still hold the dead disk.
    async fn is_gone(
        &self,
        _nqn: &str,
        device: DeviceNumber,
        deadline: Instant,
    ) -> Result<bool, FabricError> {
        let entry = self.host.sysfs().root().join(format!("dev/block/{device}"));
        let op = format!("looking at {}", entry.display());
        run_blocking(&op, deadline, move || {
            match std::fs::symlink_metadata(&entry) {
                Ok(_) => Ok(false),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(true),
                Err(error) => Err(FabricError::Unexpected(format!(
                    "{}: {error}",
                    entry.display()
                ))),
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nvme::fixtures::FakeSysfs;

    const NQN: &str = "nqn.2000-02.com.mikrotik:pvc-1";

    #[test]
    fn field_lesson_12_without_a_storage_class_value_the_node_outlasts_an_rds_reboot() {
        let params = connect_params(&ConnectOptions::default());
        assert_eq!(params.ctrl_loss_tmo, Some(CtrlLossTimeout::Seconds(1800)));
        assert_eq!(params.reconnect_delay, Some(5));
        assert_eq!(params.keep_alive_tmo, None);
        assert_eq!(params.nr_io_queues, None);
        // Each value of the StorageClass overrides its default alone.
        let only_delay = connect_params(&ConnectOptions {
            reconnect_delay: Some(2),
            ..ConnectOptions::default()
        });
        assert_eq!(only_delay.ctrl_loss_tmo, Some(DEFAULT_CTRL_LOSS_TMO));
        assert_eq!(only_delay.reconnect_delay, Some(2));
    }

    #[test]
    fn connect_tunables_carry_over_with_unlimited_loss_timeout() {
        let params = connect_params(&ConnectOptions {
            ctrl_loss_tmo: Some(-1),
            reconnect_delay: Some(2),
            keep_alive_tmo: Some(5),
            nr_io_queues: Some(4),
        });
        assert_eq!(params.ctrl_loss_tmo, Some(CtrlLossTimeout::Unlimited));
        assert_eq!(params.reconnect_delay, Some(2));
        assert_eq!(params.keep_alive_tmo, Some(5));
        assert_eq!(params.nr_io_queues, Some(4));
        let params = connect_params(&ConnectOptions {
            ctrl_loss_tmo: Some(600),
            ..ConnectOptions::default()
        });
        assert_eq!(params.ctrl_loss_tmo, Some(CtrlLossTimeout::Seconds(600)));
        assert_eq!(params.reconnect_delay, Some(DEFAULT_RECONNECT_DELAY));
    }

    #[tokio::test]
    async fn ip_literals_skip_the_resolver_and_names_resolve() {
        let soon = Instant::now() + std::time::Duration::from_secs(5);
        assert_eq!(
            resolve("fd00::1", 4420, soon).await.unwrap(),
            "fd00::1".parse::<IpAddr>().unwrap()
        );
        // From /etc/hosts: no DNS query leaves the machine.
        assert!(
            resolve("localhost", 4420, soon)
                .await
                .unwrap()
                .is_loopback()
        );
    }

    fn condition_of(sysfs: &FakeSysfs) -> Condition {
        let topology = sysfs.sysfs().scan_nqn(NQN).unwrap();
        judge_condition(&topology.view(NQN), NSID)
    }

    #[test]
    fn condition_follows_controller_state_and_namespace_presence() {
        let dir = tempfile::tempdir().unwrap();
        let sysfs = FakeSysfs::new(dir.path());
        assert!(
            matches!(condition_of(&sysfs), Condition::Abnormal(m) if m.contains("no NVMe controller"))
        );
        sysfs.add_subsystem(4, NQN);
        sysfs.add_controller(2, 4, NQN, "connecting", "traddr=10.0.0.1,trsvcid=4420");
        assert!(
            matches!(condition_of(&sysfs), Condition::Abnormal(m) if m.contains("nvme2 is Connecting"))
        );
        sysfs.set_state(2, "live");
        assert!(
            matches!(condition_of(&sysfs), Condition::Abnormal(m) if m.contains("not visible"))
        );
        sysfs.add_head(4, 1, NSID, DeviceNumber::new(259, 7), 1 << 30);
        sysfs.add_path(4, 2, 1, NSID, 1 << 30);
        assert_eq!(condition_of(&sysfs), Condition::Healthy);
    }
}
