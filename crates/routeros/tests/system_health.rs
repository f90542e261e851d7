//! `/system health` through the client against the RDS simulator, over real SSH and HTTPS:
//! the typed readings, and a change made while the device runs (a power supply fails).

mod common;

use common::{BOTH, Device, Transport};
use routeros::HealthValue;

fn state(health: &routeros::DeviceHealth, name: &str) -> String {
    match &health.get(name).unwrap_or_else(|| panic!("{name}")).value {
        HealthValue::State(s) => s.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

#[tokio::test]
async fn sensors_read_alike_over_both_transports_and_follow_the_device() {
    let device = Device::start("7.21.5", |config| {
        config
            .faults
            .health
            .insert("psu1-voltage".into(), "12.1".into());
    })
    .await;
    for transport in BOTH {
        let client = device.client(transport).await;
        let health = client.system_health().await.unwrap();
        let cpu = health.get("cpu-temperature").unwrap();
        assert_eq!(
            (&cpu.value, cpu.unit.as_deref()),
            (&HealthValue::Number(52.0), Some("C")),
            "{transport:?}"
        );
        let fan = health.get("fan1-speed").unwrap();
        assert_eq!(fan.unit.as_deref(), Some("RPM"));
        let voltage = health.get("psu1-voltage").unwrap();
        assert_eq!(voltage.value, HealthValue::Number(12.1), "{transport:?}");
        assert_eq!(state(&health, "psu2-state"), "ok");
        assert_eq!(health.get("psu2-state").unwrap().unit, None);
    }

    device.sim().faults().update(|f| {
        f.health.insert("psu2-state".into(), "fail".into());
        f.health.insert("cpu-temperature".into(), "88".into());
        f.health.insert("fan4-speed".into(), String::new());
    });
    for transport in BOTH {
        let health = device
            .client(transport)
            .await
            .system_health()
            .await
            .unwrap();
        assert_eq!(state(&health, "psu2-state"), "fail", "{transport:?}");
        assert_eq!(
            health.get("cpu-temperature").unwrap().value,
            HealthValue::Number(88.0)
        );
        assert!(health.get("fan4-speed").is_none());
    }
    device.shutdown().await;
}

#[tokio::test]
async fn floats_from_serialize_are_still_numbers() {
    let device = Device::start("7.21.5", |config| config.faults.float_numbers = true).await;
    let health = device
        .client(Transport::Ssh)
        .await
        .system_health()
        .await
        .unwrap();
    assert_eq!(
        health.get("fan1-speed").unwrap().value,
        HealthValue::Number(4920.0)
    );
    device.shutdown().await;
}
