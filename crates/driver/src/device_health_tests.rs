//! The device-health rules and metrics.

use routeros::HealthEntry;

use super::*;

fn health(entries: &[(&str, HealthValue, Option<&str>)]) -> DeviceHealth {
    DeviceHealth {
        entries: entries
            .iter()
            .map(|(name, value, unit)| HealthEntry {
                name: (*name).into(),
                value: value.clone(),
                unit: unit.map(Into::into),
            })
            .collect(),
    }
}

fn num(n: f64) -> HealthValue {
    HealthValue::Number(n)
}

fn state(s: &str) -> HealthValue {
    HealthValue::State(s.into())
}

fn sample(metric: SensorMetric, sensor: &str, label: &str, value: f64) -> Sample {
    Sample {
        metric,
        sensor: sensor.into(),
        label: label.into(),
        value,
    }
}

#[test]
fn each_unit_has_its_metric_and_states_are_one() {
    let reading = health(&[
        ("cpu-temperature", num(52.0), Some("C")),
        ("fan1-speed", num(4920.0), Some("RPM")),
        ("psu1-voltage", num(12.1), Some("V")),
        ("psu1-current", num(4.2), Some("A")),
        ("power-consumption", num(50.8), Some("W")),
        ("cpu-load", num(3.0), Some("%")),
        ("poe-count", num(2.0), None),
        ("psu1-state", state("ok"), None),
    ]);
    assert_eq!(
        samples(&reading, &[]),
        vec![
            sample(SensorMetric::Temperature, "cpu-temperature", "", 52.0),
            sample(SensorMetric::FanSpeed, "fan1-speed", "", 4920.0),
            sample(SensorMetric::Voltage, "psu1-voltage", "", 12.1),
            sample(SensorMetric::Current, "psu1-current", "", 4.2),
            sample(SensorMetric::Power, "power-consumption", "", 50.8),
            sample(SensorMetric::Other, "cpu-load", "%", 3.0),
            sample(SensorMetric::Other, "poe-count", "", 2.0),
            sample(SensorMetric::State, "psu1-state", "ok", 1.0),
        ]
    );
}

#[test]
fn a_state_change_keeps_the_old_state_at_zero_and_lost_sensors_go() {
    let before = samples(
        &health(&[
            ("psu1-state", state("ok"), None),
            ("fan2-speed", num(4000.0), Some("RPM")),
        ]),
        &[],
    );
    let failed = samples(&health(&[("psu1-state", state("fail"), None)]), &before);
    assert_eq!(
        failed,
        vec![
            sample(SensorMetric::State, "psu1-state", "ok", 0.0),
            sample(SensorMetric::State, "psu1-state", "fail", 1.0),
        ]
    );
    let back = samples(&health(&[("psu1-state", state("ok"), None)]), &failed);
    assert_eq!(
        back,
        vec![
            sample(SensorMetric::State, "psu1-state", "fail", 0.0),
            sample(SensorMetric::State, "psu1-state", "ok", 1.0),
        ]
    );
    // A temperature that reads a word is a state; its number goes.
    let word = samples(
        &health(&[("board-temperature", state("no-input"), Some("C"))]),
        &[sample(
            SensorMetric::Temperature,
            "board-temperature",
            "",
            30.0,
        )],
    );
    assert_eq!(
        word,
        vec![sample(
            SensorMetric::State,
            "board-temperature",
            "no-input",
            1.0
        )]
    );
}

#[test]
fn the_pool_is_healthy_only_mounted_and_clean() {
    let pool = |mounted, state: Option<&str>| Pool {
        slot: "storage-pool".into(),
        mount_point: "storage-pool".into(),
        fs: "btrfs".into(),
        size: 100,
        free: 50,
        mounted,
        state: state.map(Into::into),
    };
    assert!(pool_healthy(&pool(true, Some("clean"))));
    assert!(pool_healthy(&pool(true, None)));
    assert!(!pool_healthy(&pool(false, Some("clean"))));
    for state in ["degraded", "clean, degraded", "resyncing", ""] {
        assert!(!pool_healthy(&pool(true, Some(state))), "{state}");
    }
}

fn lines(registry: &Registry) -> Vec<String> {
    crate::metrics::render(registry)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn readings_become_series_and_stale_ones_go() {
    let mut registry = Registry::default();
    let metrics = DeviceHealthMetrics::register(&mut registry);
    let changes = metrics.show_health(&health(&[
        ("cpu-temperature", num(52.0), Some("C")),
        ("fan1-speed", num(4920.0), Some("RPM")),
        ("psu2-state", state("ok"), None),
    ]));
    assert!(changes.is_empty());
    metrics.show_pool(
        "storage-pool",
        &Pool {
            slot: "storage-pool".into(),
            mount_point: "storage-pool".into(),
            fs: "btrfs".into(),
            size: 1 << 40,
            free: 1 << 39,
            mounted: true,
            state: Some("clean".into()),
        },
    );
    metrics.polled(true, UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let text = lines(&registry);
    for line in [
        r#"rds_csi_controller_device_temperature_celsius{sensor="cpu-temperature"} 52.0"#,
        r#"rds_csi_controller_device_fan_speed_rpm{sensor="fan1-speed"} 4920.0"#,
        r#"rds_csi_controller_device_sensor_state{sensor="psu2-state",state="ok"} 1"#,
        r#"rds_csi_controller_pool_size_bytes{pool="storage-pool"} 1099511627776"#,
        r#"rds_csi_controller_pool_free_bytes{pool="storage-pool"} 549755813888"#,
        r#"rds_csi_controller_pool_healthy{pool="storage-pool"} 1"#,
        r#"rds_csi_controller_device_health_polls_total{result="succeeded"} 1"#,
        r#"rds_csi_controller_device_health_polls_total{result="failed"} 0"#,
        "rds_csi_controller_device_health_last_success_timestamp_seconds 1800000000.0",
    ] {
        assert!(text.iter().any(|l| l == line), "{line} in {text:#?}");
    }

    let changes = metrics.show_health(&health(&[
        ("cpu-temperature", num(88.5), Some("C")),
        ("psu2-state", state("fail"), None),
    ]));
    assert_eq!(
        changes,
        vec![("psu2-state".into(), "ok".into(), "fail".into())]
    );
    metrics.show_pool_missing("storage-pool");
    let text = lines(&registry);
    for line in [
        r#"rds_csi_controller_device_temperature_celsius{sensor="cpu-temperature"} 88.5"#,
        r#"rds_csi_controller_device_sensor_state{sensor="psu2-state",state="ok"} 0"#,
        r#"rds_csi_controller_device_sensor_state{sensor="psu2-state",state="fail"} 1"#,
        r#"rds_csi_controller_pool_healthy{pool="storage-pool"} 0"#,
    ] {
        assert!(text.iter().any(|l| l == line), "{line} in {text:#?}");
    }
    assert!(!text.iter().any(|l| l.contains("fan1-speed")));
    assert!(
        !text
            .iter()
            .any(|l| l.starts_with("rds_csi_controller_pool_size_bytes{"))
    );

    metrics.clear();
    let text = lines(&registry);
    assert!(
        !text
            .iter()
            .any(|l| l.contains("sensor=") || l.contains("pool="))
    );
    assert!(text.iter().any(|l| l.starts_with(
        "rds_csi_controller_device_health_last_success_timestamp_seconds 1800000000"
    )));
}
