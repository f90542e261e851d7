//! Device health: a background poller of the RDS's sensors (`/system health`: temperatures,
//! fans, power supplies) and of its pool (size, free space, mounted, RAID state), on the
//! replica that leads. Each reading lands in gauges, so a scrape only reads them: it never
//! asks the device and never waits for anything a CSI call holds. No CSI call waits for a
//! poll either; a poll is one more RouterOS command on the shared client (counted as
//! `system-health` and `pool` in the command metrics, and heard by the circuit breaker like
//! any other).
//!
//! Metrics, one unit each (the Prometheus rule), sensors labelled by their RouterOS name:
//! `rds_csi_controller_device_temperature_celsius`, `_fan_speed_rpm`, `_voltage_volts`,
//! `_current_amperes`, `_power_watts`; any other unit in `_device_sensor{sensor, unit}`;
//! states (`psu1-state` = `ok`) in `_device_sensor_state{sensor, state}` (1 for the state
//! now, 0 for the states the sensor had before); the pool in `_pool_size_bytes`,
//! `_pool_free_bytes` and `_pool_healthy` (`{pool}`); the polls in
//! `_device_health_polls_total{result}` and `_device_health_last_success_timestamp_seconds`.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use routeros::{DeviceHealth, HealthValue, Pool};

/// The gauge of a reading in its sensor's unit.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Which metric a sensor's reading goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SensorMetric {
    Temperature,
    FanSpeed,
    Voltage,
    Current,
    Power,
    /// A number in a unit the ones above do not cover (labelled with the unit).
    Other,
    /// A state (labelled with the state).
    State,
}

/// One series a reading sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: SensorMetric,
    /// The sensor's RouterOS name.
    pub sensor: String,
    /// The unit ([`SensorMetric::Other`]) or the state ([`SensorMetric::State`]); empty for
    /// the rest.
    pub label: String,
    pub value: f64,
}

impl Sample {
    fn key(&self) -> (SensorMetric, &str, &str) {
        (self.metric, &self.sensor, &self.label)
    }
}

/// The metric of a number in `unit`, as RouterOS names its units.
fn metric_of(unit: Option<&str>) -> SensorMetric {
    match unit {
        Some("C") => SensorMetric::Temperature,
        Some("RPM") => SensorMetric::FanSpeed,
        Some("V") => SensorMetric::Voltage,
        Some("A") => SensorMetric::Current,
        Some("W") => SensorMetric::Power,
        _ => SensorMetric::Other,
    }
}

/// The series a reading sets (pure). A state sensor also keeps, at 0, every state it showed
/// in `previous` (the series of the last reading), so a change is visible as one series
/// going to 0 and another to 1; a sensor the reading lacks has no series left.
pub fn samples(health: &DeviceHealth, previous: &[Sample]) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::with_capacity(health.entries.len());
    for entry in &health.entries {
        let sample = match &entry.value {
            HealthValue::Number(value) => {
                let metric = metric_of(entry.unit.as_deref());
                let label = match metric {
                    SensorMetric::Other => entry.unit.clone().unwrap_or_default(),
                    _ => String::new(),
                };
                Sample {
                    metric,
                    sensor: entry.name.clone(),
                    label,
                    value: *value,
                }
            }
            HealthValue::State(state) => Sample {
                metric: SensorMetric::State,
                sensor: entry.name.clone(),
                label: state.clone(),
                value: 1.0,
            },
        };
        if sample.metric == SensorMetric::State {
            for before in previous.iter().filter(|p| {
                p.metric == SensorMetric::State
                    && p.sensor == sample.sensor
                    && p.label != sample.label
            }) {
                if !out.iter().any(|o| o.key() == before.key()) {
                    out.push(Sample {
                        value: 0.0,
                        ..before.clone()
                    });
                }
            }
        }
        out.push(sample);
    }
    out
}

/// Whether the pool is fit for volumes: mounted, and its RAID state (when it has one)
/// `clean`. Any other state (`degraded`, a resync, one we do not know) counts as unhealthy.
pub fn pool_healthy(pool: &Pool) -> bool {
    pool.mounted && pool.state.as_deref().is_none_or(|state| state == "clean")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SensorLabels {
    sensor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UnitLabels {
    sensor: String,
    unit: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    sensor: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// The device-health metrics. Only the poller writes them.
#[derive(Debug, Default)]
pub struct DeviceHealthMetrics {
    temperature: Family<SensorLabels, FloatGauge>,
    fan_speed: Family<SensorLabels, FloatGauge>,
    voltage: Family<SensorLabels, FloatGauge>,
    current: Family<SensorLabels, FloatGauge>,
    power: Family<SensorLabels, FloatGauge>,
    other: Family<UnitLabels, FloatGauge>,
    state: Family<StateLabels, Gauge>,
    pool_size: Family<PoolLabels, Gauge>,
    pool_free: Family<PoolLabels, Gauge>,
    pool_healthy: Family<PoolLabels, Gauge>,
    polls: Family<ResultLabels, Counter>,
    last_success: FloatGauge,
    /// The sensor series set now, to remove those a later reading lacks.
    shown: Mutex<Vec<Sample>>,
}

impl DeviceHealthMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        let sensors: [(&str, &str, &Family<SensorLabels, FloatGauge>); 5] = [
            ("temperature_celsius", "Temperature", &m.temperature),
            ("fan_speed_rpm", "Fan speed", &m.fan_speed),
            ("voltage_volts", "Voltage", &m.voltage),
            ("current_amperes", "Current", &m.current),
            ("power_watts", "Power", &m.power),
        ];
        for (name, what, family) in sensors {
            registry.register(
                format!("rds_csi_controller_device_{name}"),
                format!("{what} of an RDS sensor (/system health), by its RouterOS name"),
                family.clone(),
            );
        }
        registry.register(
            "rds_csi_controller_device_sensor",
            "An RDS sensor reading in a unit without a metric of its own, by name and unit",
            m.other.clone(),
        );
        registry.register(
            "rds_csi_controller_device_sensor_state",
            "State of an RDS sensor (psu1-state ok, ...): 1 for the state now, 0 for states \
             it had before",
            m.state.clone(),
        );
        registry.register(
            "rds_csi_controller_pool_size_bytes",
            "Size of the RDS storage pool",
            m.pool_size.clone(),
        );
        registry.register(
            "rds_csi_controller_pool_free_bytes",
            "Free bytes of the RDS storage pool's filesystem",
            m.pool_free.clone(),
        );
        registry.register(
            "rds_csi_controller_pool_healthy",
            "1 when the RDS storage pool is mounted and its RAID state is clean, else 0",
            m.pool_healthy.clone(),
        );
        registry.register(
            "rds_csi_controller_device_health_polls",
            "Polls of the RDS's health and pool, by result (failed: no complete reading)",
            m.polls.clone(),
        );
        registry.register(
            "rds_csi_controller_device_health_last_success_timestamp_seconds",
            "Unix time of the last complete reading of the RDS's health and pool",
            m.last_success.clone(),
        );
        for result in [SUCCEEDED, FAILED] {
            let _series = m.polls.get_or_create(&ResultLabels { result });
        }
        m
    }

    /// Shows the sensors of `health`, removing the series of sensors it lacks. Returns the
    /// state changes (`sensor`, state before, state now) for the log.
    pub fn show_health(&self, health: &DeviceHealth) -> Vec<(String, String, String)> {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        let now = samples(health, &shown);
        let changes = now
            .iter()
            .filter(|s| s.metric == SensorMetric::State && s.value == 1.0)
            .filter_map(|s| {
                shown
                    .iter()
                    .find(|p| {
                        p.metric == SensorMetric::State && p.sensor == s.sensor && p.value == 1.0
                    })
                    .filter(|p| p.label != s.label)
                    .map(|p| (s.sensor.clone(), p.label.clone(), s.label.clone()))
            })
            .collect();
        let keep: HashSet<(SensorMetric, &str, &str)> = now.iter().map(Sample::key).collect();
        for gone in shown.iter().filter(|s| !keep.contains(&s.key())) {
            self.remove(gone);
        }
        for sample in &now {
            self.set(sample);
        }
        *shown = now;
        changes
    }

    /// Shows the pool as read.
    pub fn show_pool(&self, name: &str, pool: &Pool) {
        let labels = PoolLabels {
            pool: name.to_owned(),
        };
        let bytes = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.pool_size.get_or_create(&labels).set(bytes(pool.size));
        self.pool_free.get_or_create(&labels).set(bytes(pool.free));
        self.pool_healthy
            .get_or_create(&labels)
            .set(i64::from(pool_healthy(pool)));
    }

    /// Shows that no pool is mounted at `name`: unhealthy, sizes unknown.
    pub fn show_pool_missing(&self, name: &str) {
        let labels = PoolLabels {
            pool: name.to_owned(),
        };
        self.pool_size.remove(&labels);
        self.pool_free.remove(&labels);
        self.pool_healthy.get_or_create(&labels).set(0);
    }

    /// Counts a poll; a complete one also sets the time of the last success.
    pub fn polled(&self, succeeded: bool, at: SystemTime) {
        let result = if succeeded { SUCCEEDED } else { FAILED };
        self.polls.get_or_create(&ResultLabels { result }).inc();
        if succeeded {
            let seconds = at
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.last_success.set(seconds);
        }
    }

    /// Removes every sensor and pool series: a replica that stops leading shows no readings
    /// it no longer refreshes. The poll counts and the last success stay.
    pub fn clear(&self) {
        let mut shown = self.shown.lock().unwrap_or_else(|p| p.into_inner());
        for sample in shown.drain(..) {
            self.remove(&sample);
        }
        self.pool_size.clear();
        self.pool_free.clear();
        self.pool_healthy.clear();
    }

    fn sensor_family(&self, metric: SensorMetric) -> Option<&Family<SensorLabels, FloatGauge>> {
        match metric {
            SensorMetric::Temperature => Some(&self.temperature),
            SensorMetric::FanSpeed => Some(&self.fan_speed),
            SensorMetric::Voltage => Some(&self.voltage),
            SensorMetric::Current => Some(&self.current),
            SensorMetric::Power => Some(&self.power),
            SensorMetric::Other | SensorMetric::State => None,
        }
    }

    fn set(&self, s: &Sample) {
        let sensor = s.sensor.clone();
        match s.metric {
            SensorMetric::Other => {
                let unit = s.label.clone();
                self.other
                    .get_or_create(&UnitLabels { sensor, unit })
                    .set(s.value);
            }
            SensorMetric::State => {
                let state = s.label.clone();
                // 0 or 1 by construction.
                let on = i64::from(s.value != 0.0);
                self.state
                    .get_or_create(&StateLabels { sensor, state })
                    .set(on);
            }
            metric => {
                if let Some(family) = self.sensor_family(metric) {
                    family.get_or_create(&SensorLabels { sensor }).set(s.value);
                }
            }
        }
    }

    fn remove(&self, s: &Sample) {
        let sensor = s.sensor.clone();
        match s.metric {
            SensorMetric::Other => {
                let unit = s.label.clone();
                self.other.remove(&UnitLabels { sensor, unit });
            }
            SensorMetric::State => {
                let state = s.label.clone();
                self.state.remove(&StateLabels { sensor, state });
            }
            metric => {
                if let Some(family) = self.sensor_family(metric) {
                    family.remove(&SensorLabels { sensor });
                }
            }
        }
    }
}

const SUCCEEDED: &str = "succeeded";
const FAILED: &str = "failed";

/// What the poller needs.
#[derive(Debug)]
pub struct Poller {
    pub client: routeros::Client,
    /// The pool's mount point (`--pool`).
    pub pool: String,
    pub interval: Duration,
    /// Bound of one poll (both reads).
    pub timeout: Duration,
    pub metrics: DeviceHealthMetrics,
}

impl Poller {
    /// Reads the sensors and the pool once and shows what it read. True when both reads
    /// gave an answer (a pool that is not there included).
    pub async fn poll_once(&self) -> bool {
        let read = async {
            let health = self.client.system_health().await;
            let pool = self.client.pool(&self.pool).await;
            (health, pool)
        };
        let (health, pool) = match tokio::time::timeout(self.timeout, read).await {
            Ok(both) => both,
            Err(_) => {
                let error = format!("no answer within {} s", self.timeout.as_secs_f64());
                tracing::debug!(%error, "device health poll timed out");
                self.metrics.polled(false, SystemTime::now());
                return false;
            }
        };
        let mut complete = true;
        match health {
            Ok(health) => {
                for (sensor, before, now) in self.metrics.show_health(&health) {
                    if now == "ok" {
                        tracing::info!(sensor, before, now, "RDS sensor state changed");
                    } else {
                        tracing::warn!(sensor, before, now, "RDS sensor state changed");
                    }
                }
            }
            Err(error) => {
                tracing::debug!(%error, "cannot read the RDS's /system health");
                complete = false;
            }
        }
        match pool {
            Ok(pool) => self.metrics.show_pool(&self.pool, &pool),
            Err(routeros::Error::NotFound(_)) => self.metrics.show_pool_missing(&self.pool),
            Err(error) => {
                tracing::debug!(%error, "cannot read the RDS's pool");
                complete = false;
            }
        }
        self.metrics.polled(complete, SystemTime::now());
        complete
    }

    /// Polls every `interval` while `leading` says this replica leads; on losing the lead the
    /// readings are cleared. Runs until aborted.
    pub async fn run(self, leading: tokio::sync::watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut showing = false;
        let mut failing = false;
        loop {
            ticks.tick().await;
            if !*leading.borrow() {
                if showing {
                    self.metrics.clear();
                    showing = false;
                }
                continue;
            }
            showing = true;
            let complete = self.poll_once().await;
            if complete == failing {
                if complete {
                    tracing::info!("the RDS's health and pool can be read again");
                } else {
                    tracing::warn!(
                        "cannot read the RDS's health or pool: the device-health metrics keep \
                         their last values (see device_health_last_success_timestamp_seconds)"
                    );
                }
                failing = !complete;
            }
        }
    }
}

#[cfg(test)]
#[path = "device_health_tests.rs"]
mod tests;
