//! `/system health`: the device's sensors (temperatures, fans, power supplies, ...), typed and
//! read tolerantly.
//!
//! RouterOS 7 lists one item per sensor with `name`, `value` and `type` (the unit: `C`, `RPM`,
//! `V`, `A`, `W`; empty for a state such as `psu1-state` = `ok`) [D manual "Health"; T
//! third-party readers]. Which sensors exist depends on the board, so every name is kept.
//! REST sends every value as a string, `:serialize` numbers as numbers (integers or floats);
//! a value that is not a number (`ok`, `fail`, `no-input`) is a state.

use serde_json::Value;

use crate::error::Error;
use crate::reply::{self, Object};

/// One sensor's reading.
#[derive(Debug, Clone, PartialEq)]
pub enum HealthValue {
    /// A measurement in the entry's unit.
    Number(f64),
    /// A state (`ok`, `fail`, ...), as the device words it.
    State(String),
}

/// One `/system health` item.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthEntry {
    /// The sensor's name (`cpu-temperature`, `fan1-speed`, `psu1-state`, ...).
    pub name: String,
    pub value: HealthValue,
    /// The unit as the device gives it (`C`, `RPM`, `V`, `A`, `W`, ...); `None` when empty.
    pub unit: Option<String>,
}

/// What `/system health` reports, in the device's order. Empty on a board without sensors.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeviceHealth {
    pub entries: Vec<HealthEntry>,
}

impl DeviceHealth {
    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&HealthEntry> {
        self.entries.iter().find(|e| e.name == name)
    }
}

/// Reads a `/system health print as-value` reply (SSH) or `GET /system/health` (REST).
/// An item without `name` or `value` is an error naming it; a name reported twice keeps the
/// first reading.
pub fn device_health(value: Value) -> Result<DeviceHealth, Error> {
    let mut entries: Vec<HealthEntry> = Vec::new();
    for item in reply::items(value)? {
        let entry = health_entry(&item)?;
        if !entries.iter().any(|e| e.name == entry.name) {
            entries.push(entry);
        }
    }
    Ok(DeviceHealth { entries })
}

fn health_entry(item: &Object) -> Result<HealthEntry, Error> {
    let name = match item.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name.trim().to_owned(),
        _ => return Err(bad_item(item, "a `name`")),
    };
    let value = match item.get("value") {
        Some(Value::Number(n)) => n
            .as_f64()
            .map(HealthValue::Number)
            .ok_or_else(|| bad_item(item, "a readable `value`"))?,
        Some(Value::String(text)) => parse_value(text),
        Some(Value::Bool(b)) => HealthValue::State(b.to_string()),
        _ => return Err(bad_item(item, "a `value`")),
    };
    let unit = reply::opt_str(item, "type")
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    Ok(HealthEntry { name, value, unit })
}

/// A decimal number (`47`, `12.1`, `-3`, `48.000000`) or, failing that, a state.
fn parse_value(text: &str) -> HealthValue {
    let text = text.trim();
    let numeric = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'));
    match text.parse::<f64>() {
        Ok(n) if numeric && n.is_finite() => HealthValue::Number(n),
        _ => HealthValue::State(text.to_owned()),
    }
}

fn bad_item(item: &Object, expected: &str) -> Error {
    let shown = serde_json::to_string(item).unwrap_or_default();
    Error::Protocol(format!(
        "/system health: an item lacks {expected}: {}",
        crate::error::truncate(&shown, 256)
    ))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(name: &str, value: HealthValue, unit: Option<&str>) -> HealthEntry {
        HealthEntry {
            name: name.into(),
            value,
            unit: unit.map(Into::into),
        }
    }

    #[test]
    fn rest_strings_become_numbers_and_states() {
        let health = device_health(json!([
            {".id": "*1", "name": "cpu-temperature", "value": "47.5", "type": "C"},
            {".id": "*2", "name": "board-temperature", "value": "no-input", "type": "C"},
            {".id": "*3", "name": "psu1-state", "value": "ok", "type": ""},
            {".id": "*4", "name": "fan1-speed", "value": "5654", "type": "RPM"},
        ]))
        .unwrap();
        assert_eq!(
            health.entries,
            vec![
                entry("cpu-temperature", HealthValue::Number(47.5), Some("C")),
                entry(
                    "board-temperature",
                    HealthValue::State("no-input".into()),
                    Some("C")
                ),
                entry("psu1-state", HealthValue::State("ok".into()), None),
                entry("fan1-speed", HealthValue::Number(5654.0), Some("RPM")),
            ]
        );
    }

    #[test]
    fn serialized_numbers_of_any_shape_are_read() {
        let health = device_health(json!([
            {".id": "*1", "name": "cpu-temperature", "value": 52, "type": "C"},
            {".id": "*2", "name": "fan1-speed", "value": 4920.000000, "type": "RPM"},
            {".id": "*3", "name": "psu1-voltage", "value": "12.1", "type": "V"},
            {".id": "*4", "name": "sfp-temperature", "value": "-3", "type": "C"},
            {".id": "*5", "name": "fan-switch", "value": true},
        ]))
        .unwrap();
        let number = |name: &str| match &health.get(name).unwrap().value {
            HealthValue::Number(n) => *n,
            other => panic!("{name}: {other:?}"),
        };
        assert_eq!(number("cpu-temperature"), 52.0);
        assert_eq!(number("fan1-speed"), 4920.0);
        assert_eq!(number("psu1-voltage"), 12.1);
        assert_eq!(number("sfp-temperature"), -3.0);
        assert_eq!(
            health.get("fan-switch").unwrap(),
            &entry("fan-switch", HealthValue::State("true".into()), None)
        );
    }

    #[test]
    fn words_that_parse_as_floats_stay_states() {
        for word in ["inf", "NaN", "infinity", "1e3", "", " "] {
            assert!(
                matches!(parse_value(word), HealthValue::State(_)),
                "{word:?}"
            );
        }
        assert_eq!(parse_value(" 7 "), HealthValue::Number(7.0));
    }

    #[test]
    fn unknown_sensors_are_kept_and_empty_replies_are_no_sensors() {
        let health = device_health(json!([
            {"name": "poe-out-consumption", "value": "3.2", "type": "W", "extra": "x"}
        ]))
        .unwrap();
        assert_eq!(health.entries[0].name, "poe-out-consumption");
        for empty in [json!([]), json!({}), json!(null)] {
            assert_eq!(device_health(empty).unwrap(), DeviceHealth::default());
        }
    }

    #[test]
    fn a_name_reported_twice_keeps_the_first_reading() {
        let health = device_health(json!([
            {"name": "fan1-speed", "value": "1", "type": "RPM"},
            {"name": "fan1-speed", "value": "2", "type": "RPM"},
        ]))
        .unwrap();
        assert_eq!(health.entries.len(), 1);
        assert_eq!(health.entries[0].value, HealthValue::Number(1.0));
    }

    #[test]
    fn missing_fields_are_errors_that_name_the_item() {
        for bad in [
            json!([{".id": "*1", "value": "1", "type": "C"}]),
            json!([{".id": "*2", "name": "", "value": "1"}]),
            json!([{".id": "*3", "name": "fan1-speed", "type": "RPM"}]),
            json!([{".id": "*4", "name": "fan1-speed", "value": null}]),
            json!([{".id": "*5", "name": 7, "value": "1"}]),
            // RouterOS 6 printed health as one settings object.
            json!({"voltage": "24.1", "temperature": "30"}),
        ] {
            match device_health(bad.clone()) {
                Err(Error::Protocol(message)) => {
                    assert!(message.contains("/system health"), "{message}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            device_health(json!("text")),
            Err(Error::Protocol(_))
        ));
        assert!(matches!(device_health(json!([1])), Err(Error::Protocol(_))));
    }
}
