//! The device-health poller against the simulator over real SSH: its readings reach the
//! exposition text, follow the device (a power supply fails), stay away from replicas that
//! do not lead, and a scrape answers while the device does not.

use std::time::Duration;

use driver::device_health::{DeviceHealthMetrics, Poller};
use driver::metrics::{Registry, render};
use rds_sim::{SimConfig, SimHandle, Simulator};
use routeros::{Client, ClientConfig, HostKeyPolicy, SshAuth};

const PASSWORD: &str = "sim-secret";

async fn start() -> (SimHandle, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::new(dir.path()).with_password(PASSWORD);
    config.capacity = 8 << 30;
    (Simulator::start(config).await.unwrap(), dir)
}

fn client(sim: &SimHandle) -> Client {
    let mut config = ClientConfig::ssh(
        "127.0.0.1",
        "admin",
        SshAuth::Password(PASSWORD.into()),
        HostKeyPolicy::Fingerprints(vec![sim.host_key_fingerprint()]),
    );
    config.port = Some(sim.ssh_addr().port());
    config.command_timeout = Duration::from_secs(10);
    Client::new(config).unwrap()
}

fn poller(sim: &SimHandle, registry: &mut Registry, interval: Duration) -> Poller {
    Poller {
        client: client(sim),
        pool: "storage-pool".into(),
        interval,
        timeout: Duration::from_secs(5),
        metrics: DeviceHealthMetrics::register(registry),
    }
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

const PSU2_OK: &str = r#"rds_csi_controller_device_sensor_state{sensor="psu2-state",state="ok"} 1"#;
const PSU2_FAILED: &str =
    r#"rds_csi_controller_device_sensor_state{sensor="psu2-state",state="fail"} 1"#;

#[tokio::test]
async fn a_failing_power_supply_shows_in_the_exposition() {
    let (sim, _dir) = start().await;
    let mut registry = Registry::default();
    let poller = poller(&sim, &mut registry, Duration::from_secs(30));
    assert!(poller.poll_once().await);
    let text = render(&registry);
    for line in [
        PSU2_OK,
        r#"rds_csi_controller_device_temperature_celsius{sensor="cpu-temperature"} 52.0"#,
        r#"rds_csi_controller_device_fan_speed_rpm{sensor="fan4-speed"} 4890.0"#,
        r#"rds_csi_controller_pool_size_bytes{pool="storage-pool"} 8589934592"#,
        r#"rds_csi_controller_pool_healthy{pool="storage-pool"} 1"#,
        r#"rds_csi_controller_device_health_polls_total{result="succeeded"} 1"#,
    ] {
        assert!(has(&text, line), "{line} not in\n{text}");
    }

    sim.faults().update(|f| {
        f.health.insert("psu2-state".into(), "fail".into());
        f.health.insert("cpu-temperature".into(), "91".into());
    });
    assert!(poller.poll_once().await);
    let text = render(&registry);
    for line in [
        PSU2_FAILED,
        r#"rds_csi_controller_device_sensor_state{sensor="psu2-state",state="ok"} 0"#,
        r#"rds_csi_controller_device_temperature_celsius{sensor="cpu-temperature"} 91.0"#,
        r#"rds_csi_controller_device_health_polls_total{result="succeeded"} 2"#,
    ] {
        assert!(has(&text, line), "{line} not in\n{text}");
    }

    // The device stops answering: the poll fails within its bound, the readings stay (the
    // last success tells their age), and a scrape answers at once.
    sim.faults().update(|f| f.latency_ms = 20_000);
    let slow = Poller {
        timeout: Duration::from_millis(300),
        ..poller
    };
    let started = std::time::Instant::now();
    assert!(!slow.poll_once().await);
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = render(&registry);
    assert!(has(&text, PSU2_FAILED), "{text}");
    assert!(has(
        &text,
        r#"rds_csi_controller_device_health_polls_total{result="failed"} 1"#
    ));
    sim.shutdown().await;
}

#[tokio::test]
async fn only_the_leader_polls_and_shows_readings() {
    let (sim, _dir) = start().await;
    let mut registry = Registry::default();
    let poller = poller(&sim, &mut registry, Duration::from_millis(50));
    let (lead, leading) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(poller.run(leading));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let text = render(&registry);
    assert!(!text.contains("sensor="), "{text}");
    assert!(has(
        &text,
        r#"rds_csi_controller_device_health_polls_total{result="succeeded"} 0"#
    ));

    lead.send(true).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !has(&render(&registry), PSU2_OK) {
        assert!(
            std::time::Instant::now() < deadline,
            "no reading while leading"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    lead.send(false).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while render(&registry).contains("sensor=") {
        assert!(
            std::time::Instant::now() < deadline,
            "readings kept after the lead went"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!render(&registry).contains("pool=\"storage-pool\""));
    task.abort();
    sim.shutdown().await;
}
