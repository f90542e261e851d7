//! `rds-csi node` as a process: it serves Identity and Node on its socket, says in its log
//! that the loop fabric is for tests only, and stops cleanly on SIGTERM.

mod scrape;

use scrape::{metrics_address, scrape};
use std::process::Stdio;
use std::time::Duration;

use csi::v1::identity_client::IdentityClient;
use csi::v1::node_client::NodeClient;
use csi::v1::{GetPluginInfoRequest, NodeGetInfoRequest};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn serves_the_node_plugin_on_its_socket_until_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("plugin/csi.sock");
    let sim = dir.path().join("sim");
    std::fs::create_dir(&sim).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .args(["node", "--node-id", "worker-3", "--fabric", "loop"])
        .arg("--sim-data-dir")
        .arg(&sim)
        .arg("--endpoint")
        .arg(format!("unix://{}", socket.display()))
        .arg("--state-dir")
        .arg(dir.path().join("records"))
        .args(["--metrics-address", "127.0.0.1:0"])
        .args([
            "--driver-name",
            "rds.csi.example.org",
            "--max-volumes",
            "17",
        ])
        .env_remove("RDS_CSI_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();

    let log = log_until_serving(&mut child).await;
    assert!(
        dir.path().join("records").is_dir(),
        "the state directory is made at start"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("TESTS AND DEMONSTRATIONS ONLY")),
        "{log:#?}"
    );
    // The metrics port it bound, from its log line, answers a scrape.
    let address = metrics_address(log.iter().map(String::as_str));
    let scraped = scrape(address).await;
    for line in [
        "rds_csi_node_restages_total{result=\"failed\"} 0",
        "rds_csi_node_staged_volumes 0",
    ] {
        assert!(scraped.lines().any(|l| l == line), "{line} in {scraped}");
    }

    let channel = tonic::transport::Endpoint::from_shared(format!("unix://{}", socket.display()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let info = NodeClient::new(channel.clone())
        .node_get_info(NodeGetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.node_id, "worker-3");
    assert_eq!(info.max_volumes_per_node, 17);
    let plugin = IdentityClient::new(channel)
        .get_plugin_info(GetPluginInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plugin.name, "rds.csi.example.org");
    // Those calls are counted by method and code.
    let scraped = scrape(address).await;
    for line in [
        "rds_csi_node_rpc_total{method=\"NodeGetInfo\",code=\"OK\"} 1",
        "rds_csi_node_rpc_duration_seconds_count{method=\"NodeGetInfo\"} 1",
    ] {
        assert!(scraped.lines().any(|l| l == line), "{line} in {scraped}");
    }

    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_loop_fabric_without_a_data_dir_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_rds-csi"))
        .args(["node", "--node-id", "n", "--fabric", "loop"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--sim-data-dir"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `rds-csi node --pod-recovery delete` with a loop fabric in `dir`, the environment holding
/// only what the test gives (no cluster credentials of the machine running the tests).
fn node_with_pod_deletion(dir: &std::path::Path, kubeconfig: Option<&std::path::Path>) -> Command {
    let sim = dir.join("sim");
    std::fs::create_dir_all(&sim).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_rds-csi"));
    command
        .args(["node", "--node-id", "worker-4", "--fabric", "loop"])
        .arg("--sim-data-dir")
        .arg(&sim)
        .arg("--state-dir")
        .arg(dir.join("records"))
        .arg("--endpoint")
        .arg(format!("unix://{}", dir.join("csi.sock").display()))
        .args(["--pod-recovery", "delete", "--metrics-address", ""])
        .env_clear()
        .env("HOME", dir)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = kubeconfig {
        command.env("KUBECONFIG", path);
    }
    command
}

#[tokio::test]
async fn pod_deletion_without_a_kubernetes_api_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        node_with_pod_deletion(dir.path(), None).output(),
    )
    .await
    .expect("exits")
    .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--pod-recovery delete needs the Kubernetes API"),
        "{stderr}"
    );
}

#[tokio::test]
async fn pod_deletion_reaches_the_api_its_kubeconfig_names() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = kube_fake::FakeApiServer::new();
    let http = cluster.serve_http().await.unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    http.write_kubeconfig(&kubeconfig).unwrap();
    let mut child = node_with_pod_deletion(dir.path(), Some(&kubeconfig))
        .spawn()
        .unwrap();
    let log = log_until_serving(&mut child).await;
    assert!(
        log.iter().any(|l| l.contains("Kubernetes API configured")),
        "{log:#?}"
    );
    child.kill().await.unwrap();
}

/// The plugin's log up to the line saying its socket is served (which it must say in 30 s);
/// the rest is drained in the background, so that the plugin never writes to a closed pipe.
async fn log_until_serving(child: &mut tokio::process::Child) -> Vec<String> {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    let serving = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.contains("serving CSI Identity and Node");
            log.push(line);
            if done {
                return;
            }
        }
        panic!("the plugin exited early");
    })
    .await;
    assert!(serving.is_ok(), "no serving line in {log:#?}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    log
}
