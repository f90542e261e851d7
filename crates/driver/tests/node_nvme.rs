//! The node service over the NVMe/TCP fabric, against the `nvme` crate's fake kernel (a
//! sysfs-shaped tree and a fabrics device in a scratch directory; device nodes need root):
//! connect reuse, disconnect only of the driver's own NQNs and only when nothing uses them, and
//! the connect tunables the node sends.

mod node_common;

use std::sync::Arc;
use std::time::Duration;

use csi::v1::NodeGetVolumeStatsRequest;
use driver::node::{Condition, Fabric, NodeConfig, NvmeTcpFabric};
use mounts::DeviceNumber;
use mounts::devnode::{NodeState, inspect_block_node};
use mounts::fixtures::root_or_skip;
use node_common::*;
use nvme::fixtures::FakeKernel;
use nvme::identity::IdentitySource;
use nvme::{HostIdentity, ManagedPrefix, NvmeHost, Target};
use tokio::time::Instant;
use tonic::Code;

/// A documentation address (TEST-NET-1): the fake kernel never sends anything anywhere.
const TARGET_ADDRESS: &str = "192.0.2.10";
/// A diskless node's root, exported by the same RDS under the vendor's naming authority.
const BOOT_NQN: &str = "nqn.2000-02.com.mikrotik:nixos-root";
/// Under the prefix, but not an id the driver creates.
const NEAR_NQN: &str = "nqn.2000-02.com.mikrotik:pvc-1";
const GIB: u64 = 1 << 30;

struct NvmeLab {
    dir: tempfile::TempDir,
    fabric: Arc<NvmeTcpFabric<FakeKernel>>,
    plugin: Plugin,
}

impl NvmeLab {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let kernel = FakeKernel::new(&dir.path().join("host"));
        // A diskless node's root and a look-alike, behind NQNs this driver does not manage,
        // on the volumes' own target.
        let fake = kernel.fake_sysfs();
        for (nqn, number) in [(BOOT_NQN, 7), (NEAR_NQN, 8)] {
            let address = format!("traddr={TARGET_ADDRESS},trsvcid=4420");
            fake.add_subsystem(number + 2, nqn);
            fake.add_controller(number, number + 2, nqn, "live", &address);
            let device = DeviceNumber::new(259, number);
            fake.add_head(number + 2, 1, 1, device, 20 * GIB);
            kernel
                .make_device_node(&format!("nvme{}n1", number + 2), device)
                .unwrap();
        }
        let identity = HostIdentity {
            nqn: "nqn.2014-08.org.nvmexpress:uuid:6f1e2d3c-4b5a-4697-8877-665544332211".into(),
            id: "6f1e2d3c-4b5a-4697-8877-665544332211".into(),
            source: IdentitySource::Configured,
            warnings: vec![],
        };
        let host = NvmeHost::new(
            kernel.sysfs(),
            kernel.dev_root().to_path_buf(),
            kernel,
            identity,
            ManagedPrefix::new(format!("{PREFIX}:")).unwrap(),
        );
        let fabric = Arc::new(NvmeTcpFabric::new(host));
        let plugin = Plugin::start(dir.path(), node_config(dir.path()), fabric.clone()).await;
        Self {
            dir,
            fabric,
            plugin,
        }
    }

    fn kernel(&self) -> &FakeKernel {
        self.fabric.host().kernel()
    }

    fn export(&self, id: &str) {
        let target = Target::new(TARGET_ADDRESS.parse().unwrap(), 4420);
        self.kernel().export(&nqn_of(id), target, GIB);
    }

    fn staging(&self, id: &str) -> std::path::PathBuf {
        let path = self.dir.path().join(format!("kubelet/staging/{id}"));
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    fn block_target(&self, id: &str, pod: &str) -> std::path::PathBuf {
        let parent = self
            .dir
            .path()
            .join(format!("kubelet/volumeDevices/publish/{id}"));
        std::fs::create_dir_all(&parent).unwrap();
        parent.join(pod)
    }

    async fn attached(&self, id: &str) -> Option<driver::node::AttachedDevice> {
        self.fabric.find(&nqn_of(id), soon()).await.unwrap()
    }

    fn boot_volume_untouched(&self) {
        for number in [7, 8] {
            let controller = format!("nvme{number}");
            assert!(self.kernel().fake_sysfs().has_controller(number));
            assert!(
                !self.kernel().deletes().contains(&controller),
                "foreign controller {controller} must never be deleted"
            );
        }
        assert!(
            self.kernel()
                .connects()
                .iter()
                .all(|c| !c.contains(BOOT_NQN) && !c.contains(NEAR_NQN))
        );
    }
}

fn node_config(dir: &std::path::Path) -> NodeConfig {
    let mut config = NodeConfig::new("node-1", PREFIX);
    config.block_publish_dir = dir.join("kubelet/volumeDevices");
    config
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

fn nvme_context(id: &str) -> std::collections::HashMap<String, String> {
    let mut context = context(&nqn_of(id), 4420);
    context.insert("nvmeAddress".into(), TARGET_ADDRESS.into());
    context.insert("ctrlLossTmo".into(), "-1".into());
    context
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connects_once_publishes_a_node_and_disconnects_only_when_unused() {
    if !root_or_skip("connects_once_publishes_a_node_and_disconnects_only_when_unused") {
        return;
    }
    let lab = NvmeLab::start().await;
    let mut client = lab.plugin.client.clone();
    let id = volume_id(1);
    lab.export(&id);
    let staging = lab.staging(&id);

    for _ in 0..2 {
        let request = stage_request(&id, &staging, block_capability(), nvme_context(&id));
        expect_code(client.node_stage_volume(request).await, Code::Ok);
    }
    let connects = lab.kernel().connects();
    assert_eq!(
        connects.len(),
        1,
        "the live controller is reused: {connects:?}"
    );
    assert!(connects[0].contains(&format!("nqn={}", nqn_of(&id))));
    assert!(connects[0].contains("ctrl_loss_tmo=-1"), "{}", connects[0]);
    let device = lab.attached(&id).await.expect("attached");

    let target = lab.block_target(&id, "pod-a");
    for _ in 0..2 {
        let request = publish_request(&id, &staging, &target, block_capability(), false);
        expect_code(client.node_publish_volume(request).await, Code::Ok);
    }
    assert_eq!(
        inspect_block_node(&target, device.device).unwrap(),
        NodeState::Matches
    );

    // Published: the controller stays.
    let request = unstage_request(&id, &staging);
    let status = client.node_unstage_volume(request).await.unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status.message().contains("device node"),
        "{}",
        status.message()
    );
    assert!(lab.kernel().deletes().is_empty());

    expect_code(
        client
            .node_unpublish_volume(unpublish_request(&id, &target))
            .await,
        Code::Ok,
    );
    for _ in 0..2 {
        expect_code(
            client
                .node_unstage_volume(unstage_request(&id, &staging))
                .await,
            Code::Ok,
        );
    }
    assert_eq!(lab.kernel().deletes(), vec!["nvme1".to_owned()]);
    assert!(lab.attached(&id).await.is_none());
    lab.boot_volume_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_namespace_is_not_disconnected() {
    if !root_or_skip("a_held_namespace_is_not_disconnected") {
        return;
    }
    let lab = NvmeLab::start().await;
    let mut client = lab.plugin.client.clone();
    let id = volume_id(2);
    lab.export(&id);
    let staging = lab.staging(&id);
    let request = stage_request(&id, &staging, block_capability(), nvme_context(&id));
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    let device = lab.attached(&id).await.unwrap();
    let name = device
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let subsystem: u32 = name
        .strip_prefix("nvme")
        .and_then(|rest| rest.strip_suffix("n1"))
        .unwrap()
        .parse()
        .unwrap();
    // Something (device-mapper, say) is stacked on the namespace.
    lab.kernel().fake_sysfs().add_holder(subsystem, 1, "dm-0");
    let status = client
        .node_unstage_volume(unstage_request(&id, &staging))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("dm-0"), "{}", status.message());
    assert!(lab.kernel().deletes().is_empty());
    lab.boot_volume_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_04_foreign_nqn_is_never_connected_or_disconnected_by_the_node() {
    if !root_or_skip("field_lesson_04_foreign_nqn_is_never_connected_or_disconnected_by_the_node") {
        return;
    }
    let lab = NvmeLab::start().await;
    let mut client = lab.plugin.client.clone();
    let id = volume_id(3);
    let staging = lab.staging(&id);
    for foreign in [BOOT_NQN, NEAR_NQN] {
        let mut context = nvme_context(&id);
        context.insert("nqn".into(), foreign.into());
        let request = stage_request(&id, &staging, block_capability(), context);
        let status = client.node_stage_volume(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
    }
    assert!(lab.kernel().connects().is_empty());
    // Ids that are not this driver's map to no NQN at all: nothing is looked at for them.
    for foreign_id in ["nixos-root", "pvc-1"] {
        let request = unstage_request(foreign_id, &staging);
        expect_code(client.node_unstage_volume(request).await, Code::NotFound);
    }
    // A volume of ours staged and unstaged beside them.
    lab.export(&id);
    let request = stage_request(&id, &staging, block_capability(), nvme_context(&id));
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    let request = unstage_request(&id, &staging);
    expect_code(client.node_unstage_volume(request).await, Code::Ok);
    assert_eq!(lab.kernel().deletes(), vec!["nvme1".to_owned()]);
    // Even asked directly, the fabric refuses to disconnect the foreign NQNs.
    for foreign in [BOOT_NQN, NEAR_NQN] {
        assert!(lab.fabric.detach(foreign, soon()).await.is_err());
    }
    lab.boot_volume_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_lesson_12_connects_outlast_an_rds_reboot_unless_the_storage_class_says_otherwise() {
    if !root_or_skip("field_lesson_12_connects_outlast_an_rds_reboot") {
        return;
    }
    let lab = NvmeLab::start().await;
    let mut client = lab.plugin.client.clone();
    let (plain, tuned) = (volume_id(5), volume_id(6));
    let mut plain_context = nvme_context(&plain);
    plain_context.remove("ctrlLossTmo");
    let mut tuned_context = nvme_context(&tuned);
    tuned_context.insert("ctrlLossTmo".into(), "-1".into());
    tuned_context.insert("reconnectDelay".into(), "2".into());
    for (id, context) in [(&plain, plain_context), (&tuned, tuned_context)] {
        lab.export(id);
        let request = stage_request(id, &lab.staging(id), block_capability(), context);
        expect_code(client.node_stage_volume(request).await, Code::Ok);
    }
    let connects = lab.kernel().connects();
    let tunables = |id: &str| {
        let nqn = format!("nqn={},", nqn_of(id));
        let line = connects.iter().find(|c| c.contains(&nqn)).unwrap();
        line.split(',')
            .filter(|kv| kv.starts_with("ctrl_loss_tmo=") || kv.starts_with("reconnect_delay="))
            .collect::<Vec<_>>()
            .join(",")
    };
    // The kernel's 600 s would drop every mount during a slow RDS firmware update.
    assert_eq!(tunables(&plain), "ctrl_loss_tmo=1800,reconnect_delay=5");
    assert_eq!(tunables(&tuned), "ctrl_loss_tmo=-1,reconnect_delay=2");
    lab.boot_volume_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn condition_follows_the_controller_and_rescan_sees_growth() {
    if !root_or_skip("condition_follows_the_controller_and_rescan_sees_growth") {
        return;
    }
    let lab = NvmeLab::start().await;
    let mut client = lab.plugin.client.clone();
    let id = volume_id(4);
    lab.export(&id);
    let staging = lab.staging(&id);
    let request = stage_request(&id, &staging, block_capability(), nvme_context(&id));
    expect_code(client.node_stage_volume(request).await, Code::Ok);
    let nqn = nqn_of(&id);
    assert_eq!(
        lab.fabric.condition(&nqn, soon()).await.unwrap(),
        Condition::Healthy
    );

    // The target went away: the kernel is reconnecting.
    lab.kernel().fake_sysfs().set_state(1, "connecting");
    let condition = lab.fabric.condition(&nqn, soon()).await.unwrap();
    assert!(
        matches!(&condition, Condition::Abnormal(m) if m.contains("Connecting")),
        "{condition:?}"
    );
    let target = lab.block_target(&id, "pod-a");
    let request = publish_request(&id, &staging, &target, block_capability(), false);
    expect_code(client.node_publish_volume(request).await, Code::Ok);
    let stats = client
        .node_get_volume_stats(NodeGetVolumeStatsRequest {
            volume_id: id.clone(),
            volume_path: target.display().to_string(),
            staging_target_path: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(stats.volume_condition.unwrap().abnormal);

    lab.kernel().fake_sysfs().set_state(1, "live");
    lab.kernel().grow(&nqn, 2 * GIB);
    assert_eq!(
        lab.fabric.rescan(&nqn, 2 * GIB, soon()).await.unwrap(),
        2 * GIB
    );
    lab.boot_volume_untouched();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_is_gone_once_its_sysfs_entry_is() {
    if !root_or_skip("a_device_is_gone_once_its_sysfs_entry_is") {
        return;
    }
    let lab = NvmeLab::start().await;
    let nqn = nqn_of(&volume_id(5));
    let device = DeviceNumber::new(259, 42);
    let entry = lab
        .fabric
        .host()
        .sysfs()
        .root()
        .join(format!("dev/block/{device}"));
    std::fs::create_dir_all(&entry).unwrap();
    assert!(!lab.fabric.is_gone(&nqn, device, soon()).await.unwrap());
    // The kernel deleted the disk (mounts may still hold it): its entry leaves sysfs.
    std::fs::remove_dir(&entry).unwrap();
    assert!(lab.fabric.is_gone(&nqn, device, soon()).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_volume_keeps_its_record_while_its_controller_reconnects_across_a_plugin_restart() {
    if !root_or_skip("a_block_volume_keeps_its_record_while_its_controller_reconnects") {
        return;
    }
    let lab = NvmeLab::start().await;
    let id = volume_id(6);
    lab.export(&id);
    let staging = lab.staging(&id);
    let request = stage_request(&id, &staging, block_capability(), nvme_context(&id));
    expect_code(
        lab.plugin.client.clone().node_stage_volume(request).await,
        Code::Ok,
    );
    let record = lab.dir.path().join(format!("state/{id}.json"));
    assert!(record.exists());
    let nqn = nqn_of(&id);
    let topology = lab.fabric.host().sysfs().scan_nqn(&nqn).unwrap();
    let controllers: Vec<u32> = topology
        .controllers
        .iter()
        .map(|c| c.name.trim_start_matches("nvme").parse().unwrap())
        .collect();
    let subsystem: u32 = topology.subsystems[0]
        .name
        .trim_start_matches("nvme-subsys")
        .parse()
        .unwrap();

    // The RDS reboots with new namespace identifiers: the kernel reconnects and drops the
    // namespace; the plugin restarts meanwhile. The volume is still staged: its record stays.
    let fabric = lab.fabric.clone();
    let fake = fabric.host().kernel().fake_sysfs();
    controllers
        .iter()
        .for_each(|&c| fake.set_state(c, "connecting"));
    fake.remove_head(subsystem, 1);
    assert!(lab.attached(&id).await.is_none());
    let NvmeLab { dir, plugin, .. } = lab;
    plugin.stop().await;
    let plugin = Plugin::start(dir.path(), node_config(dir.path()), fabric.clone()).await;
    assert!(
        record.exists(),
        "a reconnecting volume's record was forgotten"
    );

    // After a node reboot nothing of the attachment is left: the record goes.
    controllers.iter().for_each(|&c| fake.remove_controller(c));
    plugin.stop().await;
    let plugin = Plugin::start(dir.path(), node_config(dir.path()), fabric.clone()).await;
    assert!(
        !record.exists(),
        "the record of a volume no longer attached stayed"
    );
    plugin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_id_carries_the_host_nqn_for_the_controller() {
    if !root_or_skip("the_node_id_carries_the_host_nqn_for_the_controller") {
        return;
    }
    let lab = NvmeLab::start().await;
    let info = lab
        .plugin
        .client
        .clone()
        .node_get_info(csi::v1::NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let host = lab.fabric.host().identity().nqn.clone();
    assert_eq!(info.node_id, format!("node-1/{host}"));
    let node = driver::node_id::NodeRef::parse(&info.node_id);
    assert_eq!((node.name.as_str(), node.host_nqn), ("node-1", Some(host)));
}
