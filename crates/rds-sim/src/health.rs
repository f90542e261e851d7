//! `/system health` of RouterOS 7: a list of sensors, each with a `name`, a `value` and a
//! `type` (its unit). The readings are the RDS2216-like defaults below with the overrides of
//! the fault set laid over them (`Faults::health`), so a test can fail a PSU or heat the CPU
//! while the simulator runs.
//!
//! What this rests on, with the confidence of each fact (tags as in the project's RouterOS
//! facts):
//! - [D] MikroTik's manual, "Health": in RouterOS 7 `/system/health/print` is a list with the
//!   columns NAME, VALUE, TYPE; its CCR1072 example shows `cpu-temperature` and
//!   `board-temperature1` in `C`, `fan1-speed` in `RPM`, `psu1-voltage` in `V`,
//!   `psu1-current` in `A`, `power-consumption` in `W`, decimals written `12.1`. Which sensors
//!   exist depends on the board; a board without any shows an empty list.
//! - [T] Third-party tools that read it (RouterOS 7 scripts, API and REST clients): the items
//!   are `{".id", "name", "value", "type"}`, REST sends every value as a string (`"47.5"`),
//!   power supplies are `psuN-state` with the value `ok` while they work (one guide lists the
//!   values as `ok`/`fail`), and a temperature sensor may read a word (`no-input`).
//! - [I] Which sensors an RDS2216 reports (the set below: CPU and two board temperatures,
//!   four fans, two power supplies), the `type` of a state sensor (empty here), the items'
//!   ids, and how `:serialize` types a value (whole numbers as numbers, decimals and states as
//!   strings here). To be confirmed on hardware.

use std::collections::BTreeMap;

use crate::records::{Record, Val};

/// The columns of `/system health print`.
pub const COLUMNS: &[&str] = &["name", "value", "type"];

/// The RDS2216-like readings without overrides: name, value, type.
pub const RDS2216: &[(&str, &str, &str)] = &[
    ("cpu-temperature", "52", "C"),
    ("board-temperature1", "38", "C"),
    ("board-temperature2", "35", "C"),
    ("fan1-speed", "4920", "RPM"),
    ("fan2-speed", "4860", "RPM"),
    ("fan3-speed", "4950", "RPM"),
    ("fan4-speed", "4890", "RPM"),
    ("psu1-state", "ok", ""),
    ("psu2-state", "ok", ""),
];

/// One sensor as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sensor {
    pub name: String,
    pub value: String,
    /// The unit (`C`, `RPM`, `V`, ...); empty for a state.
    pub unit: String,
}

/// The readings: the defaults with `overrides` (sensor name → value) laid over them. An empty
/// value removes the sensor (a board without it); a name not among the defaults is added,
/// its unit taken from its name.
pub fn sensors(overrides: &BTreeMap<String, String>) -> Vec<Sensor> {
    let mut sensors: Vec<Sensor> = RDS2216
        .iter()
        .map(|(name, value, unit)| Sensor {
            name: (*name).to_owned(),
            value: overrides
                .get(*name)
                .cloned()
                .unwrap_or_else(|| (*value).to_owned()),
            unit: (*unit).to_owned(),
        })
        .collect();
    for (name, value) in overrides {
        if !RDS2216.iter().any(|(known, _, _)| known == name) {
            sensors.push(Sensor {
                name: name.clone(),
                value: value.clone(),
                unit: unit_of(name).to_owned(),
            });
        }
    }
    sensors.retain(|s| !s.value.is_empty());
    sensors
}

/// The unit RouterOS gives a sensor of this name, as its manual's examples show them.
pub fn unit_of(name: &str) -> &'static str {
    if name.contains("temperature") {
        "C"
    } else if name.ends_with("-speed") {
        "RPM"
    } else if name.ends_with("voltage") {
        "V"
    } else if name.ends_with("current") {
        "A"
    } else if name.starts_with("power") || name.ends_with("-power") {
        "W"
    } else {
        ""
    }
}

/// The sensors as items of a list menu, with ids from `*1` in order.
pub fn records(overrides: &BTreeMap<String, String>) -> Vec<Record> {
    sensors(overrides)
        .into_iter()
        .zip(1u64..)
        .map(|(sensor, id)| Record {
            id: Some(id),
            comment: String::new(),
            props: vec![
                ("name", Val::Bare(sensor.name)),
                ("value", value_of(sensor.value)),
                ("type", Val::Bare(sensor.unit)),
            ],
            flags: Vec::new(),
        })
        .collect()
}

/// Whole numbers as numbers (`:serialize` prints them bare), anything else as text.
fn value_of(text: String) -> Val {
    match text.parse::<u64>() {
        Ok(n) => Val::Num(n),
        Err(_) => Val::Bare(text),
    }
}

/// Parses `NAME=VALUE` (the `--health` flag).
pub fn parse_override(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not NAME=VALUE (e.g. psu2-state=fail)"))?;
    let name = name.trim();
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(format!(
            "{name:?} is not a sensor name (lower-case letters, digits and -)"
        ));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_an_rds2216_like_set() {
        let all = sensors(&BTreeMap::new());
        assert_eq!(all.len(), RDS2216.len());
        let psu = all.iter().find(|s| s.name == "psu2-state").unwrap();
        assert_eq!((psu.value.as_str(), psu.unit.as_str()), ("ok", ""));
    }

    #[test]
    fn overrides_change_remove_and_add_sensors() {
        let all = sensors(&overrides(&[
            ("psu2-state", "fail"),
            ("fan3-speed", ""),
            ("psu1-voltage", "12.1"),
            ("cpu-temperature", "91"),
        ]));
        let get = |name: &str| all.iter().find(|s| s.name == name);
        assert_eq!(get("psu2-state").unwrap().value, "fail");
        assert!(get("fan3-speed").is_none());
        let added = get("psu1-voltage").unwrap();
        assert_eq!((added.value.as_str(), added.unit.as_str()), ("12.1", "V"));
        assert_eq!(get("cpu-temperature").unwrap().value, "91");
    }

    #[test]
    fn records_are_items_with_ids_and_typed_values() {
        let records = records(&overrides(&[("psu1-voltage", "12.1")]));
        assert_eq!(records[0].id, Some(1));
        assert_eq!(records[0].get("value"), Some(Val::Num(52)));
        let voltage = records.last().unwrap();
        assert_eq!(voltage.get("value"), Some(Val::Bare("12.1".into())));
        assert_eq!(voltage.get("type"), Some(Val::Bare("V".into())));
    }

    #[test]
    fn units_follow_the_names() {
        for (name, unit) in [
            ("board-temperature3", "C"),
            ("fan9-speed", "RPM"),
            ("voltage", "V"),
            ("psu2-current", "A"),
            ("power-consumption", "W"),
            ("fan-state", ""),
        ] {
            assert_eq!(unit_of(name), unit, "{name}");
        }
    }

    #[test]
    fn ssh_prints_a_table_and_serializes_a_list() {
        use crate::device::tests::{MemoryBackend, device_with};
        use crate::script::{RunContext, parse, run};
        let mut device = device_with(MemoryBackend::default());
        let ctx = RunContext {
            health: overrides(&[("psu2-state", "fail"), ("psu1-voltage", "12.1")]),
            ..RunContext::default()
        };
        let mut lines = |src: &str| {
            let script = parse(src, &device.env().version).unwrap();
            let out = run(&script, &mut device, &ctx);
            assert_eq!(out.error, None, "{src}");
            out.lines
        };
        let table = lines("/system/health/print");
        assert_eq!(table[0], "Columns: NAME, VALUE, TYPE");
        assert!(
            table
                .iter()
                .any(|l| l.contains("psu2-state") && l.contains("fail"))
        );
        let json = lines(":put [:serialize to=json [/system health print as-value]]");
        let list: serde_json::Value = serde_json::from_str(&json.concat()).unwrap();
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), RDS2216.len() + 1);
        assert_eq!(
            list[0],
            serde_json::json!({".id": "*1", "name": "cpu-temperature", "value": 52, "type": "C"})
        );
        let voltage = list.last().unwrap();
        assert_eq!(
            (&voltage["value"], &voltage["type"]),
            (&"12.1".into(), &"V".into())
        );
    }

    #[test]
    fn rest_lists_every_value_as_a_string() {
        use crate::device::tests::{MemoryBackend, device_with};
        use crate::rest::{RestRequest, handle};
        use crate::script::RunContext;
        let mut device = device_with(MemoryBackend::default());
        let ctx = RunContext {
            health: overrides(&[("psu1-state", "fail")]),
            ..RunContext::default()
        };
        let request = RestRequest {
            method: axum::http::Method::GET,
            path: vec!["system".into(), "health".into()],
            query: Vec::new(),
            body: None,
        };
        let reply = handle(&mut device, &ctx, &request);
        assert_eq!(reply.status, 200);
        let body = reply.body.unwrap();
        let list = body.as_array().unwrap();
        assert_eq!(list.len(), RDS2216.len());
        assert!(list.iter().all(|item| {
            item.as_object()
                .unwrap()
                .values()
                .all(serde_json::Value::is_string)
        }));
        assert!(list.contains(&serde_json::json!(
            {".id": "*8", "name": "psu1-state", "value": "fail", "type": ""}
        )));
    }

    #[test]
    fn overrides_parse_from_the_flag() {
        assert_eq!(
            parse_override("psu2-state=fail").unwrap(),
            ("psu2-state".into(), "fail".into())
        );
        assert_eq!(
            parse_override("fan1-speed=").unwrap(),
            ("fan1-speed".into(), String::new())
        );
        for bad in ["psu2-state", "=1", "PSU=1", "a b=1"] {
            assert!(parse_override(bad).is_err(), "{bad}");
        }
    }
}
