//! `rds-csi controller` as an operator runs it: configured by flags and environment, against
//! the simulator over SSH, serving CSI on a Unix socket, and stopping cleanly on SIGTERM.

mod scrape;

use std::process::Stdio;
use std::time::Duration;

use csi::v1::controller_client::ControllerClient;
use csi::v1::identity_client::IdentityClient;
use csi::v1::volume_capability::access_mode::Mode;
use csi::v1::volume_capability::{AccessMode, AccessType, BlockVolume};
use csi::v1::{
    CapacityRange, ControllerPublishVolumeRequest, ControllerUnpublishVolumeRequest,
    CreateVolumeRequest, DeleteVolumeRequest, GetPluginInfoRequest, ProbeRequest, VolumeCapability,
};
use driver::server::{self, Endpoint};
use rds_sim::{SimConfig, Simulator};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

const PASSWORD: &str = "cli-secret-pw";
const PVC: &str = "pvc-0b1c2d3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_serves_csi_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::new(dir.path().join("rds")).with_password(PASSWORD))
        .await
        .unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
    let socket = dir.path().join("plugin").join("csi.sock");

    // Flags for some settings, environment variables for others.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .args(["controller", "--endpoint"])
        .arg(format!("unix://{}", socket.display()))
        .args(["--rds-address", "127.0.0.1", "--rds-user", "admin"])
        .arg("--rds-password-file")
        .arg(&password_file)
        .env("RDS_CSI_RDS_PORT", sim.ssh_addr().port().to_string())
        .env(
            "RDS_CSI_RDS_HOST_KEY_FINGERPRINT",
            sim.host_key_fingerprint(),
        )
        .env("RDS_CSI_NVME_ADDRESS", "192.0.2.44")
        .env("RDS_CSI_ATTACHMENT_STATE", "memory")
        .env("RDS_CSI_METRICS_ADDRESS", "127.0.0.1:0")
        .env("RDS_CSI_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    // Wait for the log line that says it serves (bounded), keeping the log for later checks.
    let mut log_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = String::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = log_lines.next_line().await.unwrap() {
            log.push_str(&line);
            log.push('\n');
            if line.contains("serving CSI") {
                return;
            }
        }
        panic!("controller exited early:\n{log}");
    })
    .await
    .expect("controller starts serving");

    let channel = server::connect(&Endpoint::Unix(socket.clone()))
        .await
        .unwrap();
    let mut identity = IdentityClient::new(channel.clone());
    let info = identity
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.name, "rds.csi.srvlab.io");
    let ready = identity.probe(ProbeRequest {}).await.unwrap().into_inner();
    assert_eq!(ready.ready, Some(true));

    let mut controller = ControllerClient::new(channel);
    let capability = VolumeCapability {
        access_type: Some(AccessType::Block(BlockVolume {})),
        access_mode: Some(AccessMode {
            mode: Mode::MultiNodeMultiWriter as i32,
        }),
    };
    let volume = controller
        .create_volume(CreateVolumeRequest {
            name: PVC.into(),
            capacity_range: Some(CapacityRange {
                required_bytes: 1 << 30,
                limit_bytes: 0,
            }),
            volume_capabilities: vec![capability.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .volume
        .unwrap();
    assert_eq!(volume.volume_id, PVC);
    assert_eq!(volume.volume_context["nvmeAddress"], "192.0.2.44");
    assert!(sim.snapshot().disk_by_slot(PVC).is_some());
    // A live migration: published to a second node, then the source lets go.
    for node in ["node-src", "node-dst"] {
        controller
            .controller_publish_volume(ControllerPublishVolumeRequest {
                volume_id: PVC.into(),
                node_id: node.into(),
                volume_capability: Some(capability.clone()),
                volume_context: volume.volume_context.clone(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for node in ["node-src", "node-dst"] {
        controller
            .controller_unpublish_volume(ControllerUnpublishVolumeRequest {
                volume_id: PVC.into(),
                node_id: node.into(),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    controller
        .delete_volume(DeleteVolumeRequest {
            volume_id: PVC.into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sim.snapshot().file_disks().count(), 0);
    assert_eq!(sim.snapshot().plain_files().count(), 0);

    // The calls are counted by method and code, with their latencies.
    let scraped = scrape::scrape(scrape::metrics_address(log.lines())).await;
    for line in [
        "rds_csi_controller_rpc_total{method=\"CreateVolume\",code=\"OK\"} 1",
        "rds_csi_controller_rpc_total{method=\"DeleteVolume\",code=\"OK\"} 1",
        "rds_csi_controller_rpc_duration_seconds_count{method=\"Probe\"} 1",
        "rds_csi_controller_migrations_overdue 0",
        "rds_csi_controller_migration_duration_seconds_count{outcome=\"completed\"} 1",
        "rds_csi_controller_routeros_breaker_state 0",
        "rds_csi_controller_routeros_commands_in_flight 0",
    ] {
        assert!(scraped.lines().any(|l| l == line), "{line} in {scraped}");
    }
    // The RouterOS commands those calls made, by verb, with their latencies.
    for prefix in [
        "rds_csi_controller_routeros_commands_total{transport=\"ssh\",verb=\"system-info\",result=\"answered\"} ",
        "rds_csi_controller_routeros_command_duration_seconds_count{transport=\"ssh\",verb=\"system-info\"} ",
    ] {
        assert!(
            scraped.lines().any(|l| l.starts_with(prefix)),
            "{prefix} in {scraped}"
        );
    }

    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("stops within 10 s of SIGTERM")
        .unwrap();
    while let Ok(Some(line)) = log_lines.next_line().await {
        log.push_str(&line);
        log.push('\n');
    }
    assert!(status.success(), "{status:?}\n{log}");
    assert!(!socket.exists(), "socket removed on shutdown");
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(
        !log.contains(PASSWORD),
        "the password never reaches the log"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn controller_refuses_to_start_without_a_pinned_host_key() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "x\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .args(["controller", "--endpoint"])
        .arg(format!("unix://{}/csi.sock", dir.path().display()))
        .args(["--rds-address", "127.0.0.1", "--rds-password-file"])
        .arg(&password_file)
        .env_remove("RDS_CSI_RDS_HOST_KEY_FINGERPRINT")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not pinned"), "{stderr}");
}

#[tokio::test]
async fn without_a_cluster_the_kubernetes_attachment_state_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let password_file = dir.path().join("password");
    std::fs::write(&password_file, "x\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .args(["controller", "--endpoint"])
        .arg(format!("unix://{}/csi.sock", dir.path().display()))
        .args([
            "--rds-address",
            "127.0.0.1",
            "--rds-insecure",
            "--rds-password-file",
        ])
        .arg(&password_file)
        .env("RDS_CSI_ATTACHMENT_STATE", "kubernetes")
        .env("KUBECONFIG", dir.path().join("no-such-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("needs the Kubernetes API") && stderr.contains("--attachment-state memory"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("csi.sock").exists(),
        "it refuses before serving"
    );
}
