//! Prometheus metrics in the OpenMetrics text format, served at `/metrics` on
//! `--metrics-address` (the `prometheus-client` crate; axum for the one route).
//!
//! Names follow Prometheus conventions: `rds_csi_<component>_<what>`, counters ending in
//! `_total` (added by the encoder), no unit-less ambiguity.

use std::net::SocketAddr;
use std::sync::Arc;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
pub use prometheus_client::registry::Registry;

/// How a re-stage onto a replaced namespace ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RestageResult {
    Succeeded,
    Failed,
}

impl EncodeLabelValue for RestageResult {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        // Prometheus label values are lower case.
        encoder.write_str(match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        })
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RestageLabels {
    result: RestageResult,
}

/// The node plugin's metrics.
#[derive(Debug, Clone, Default)]
pub struct NodeMetrics {
    restages: Family<RestageLabels, Counter>,
    replaced_volumes: Gauge,
    staged_volumes: Gauge,
    pods_deleted: Counter,
    orphaned_attachments: Gauge,
    orphans_disconnected: Counter,
    nvme_controllers: Family<StateLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

impl NodeMetrics {
    /// The metrics, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "rds_csi_node_restages",
            "Re-stages of a volume onto a namespace the RDS replaced (as after a reboot that \
             does not keep namespace identifiers), by result",
            metrics.restages.clone(),
        );
        registry.register(
            "rds_csi_node_volumes_on_replaced_namespace",
            "Staged volumes whose namespace the RDS replaced and that could not be re-staged \
             yet",
            metrics.replaced_volumes.clone(),
        );
        registry.register(
            "rds_csi_node_staged_volumes",
            "Volumes staged on this node (its records)",
            metrics.staged_volumes.clone(),
        );
        registry.register(
            "rds_csi_node_pods_deleted",
            "Pods deleted because their containers held a replaced namespace \
             (--pod-recovery delete)",
            metrics.pods_deleted.clone(),
        );
        registry.register(
            "rds_csi_node_orphaned_attachments",
            "Attachments of the driver's volumes on this node that no staged volume uses",
            metrics.orphaned_attachments.clone(),
        );
        registry.register(
            "rds_csi_node_orphans_disconnected",
            "Orphaned attachments disconnected after the grace period (--orphans disconnect)",
            metrics.orphans_disconnected.clone(),
        );
        registry.register(
            "rds_csi_node_nvme_controllers",
            "NVMe controllers of the driver's volumes on this node, by state as sysfs says it \
             (live; connecting while the RDS is away; ...)",
            metrics.nvme_controllers.clone(),
        );
        // Every result exists from the start at 0, so that rates and alerts see a series.
        for result in [RestageResult::Succeeded, RestageResult::Failed] {
            let _series = metrics.restages.get_or_create(&RestageLabels { result });
        }
        metrics
    }

    pub fn restaged(&self, result: RestageResult) {
        self.restages.get_or_create(&RestageLabels { result }).inc();
    }

    pub fn set_replaced_volumes(&self, count: usize) {
        set_count(&self.replaced_volumes, count);
    }

    pub fn set_staged_volumes(&self, count: usize) {
        set_count(&self.staged_volumes, count);
    }

    pub fn pod_deleted(&self) {
        self.pods_deleted.inc();
    }

    pub fn set_orphaned_attachments(&self, count: usize) {
        set_count(&self.orphaned_attachments, count);
    }

    pub fn orphan_disconnected(&self) {
        self.orphans_disconnected.inc();
    }

    /// Sets the controller count of every state from `states` (one per controller); states
    /// not seen are 0, so a controller that went from connecting to live leaves no stale count.
    pub fn set_nvme_controllers(&self, states: impl IntoIterator<Item = &'static str>) {
        let mut counts: std::collections::HashMap<&'static str, usize> =
            nvme::sysfs::ControllerState::LABELS
                .iter()
                .map(|s| (*s, 0))
                .collect();
        for state in states {
            *counts.entry(state).or_default() += 1;
        }
        for (state, count) in counts {
            set_count(
                &self.nvme_controllers.get_or_create(&StateLabels { state }),
                count,
            );
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

/// Per-RPC counts by result code and latencies, of the plugin's CSI services.
#[derive(Debug)]
pub struct RpcMetrics {
    calls: Family<RpcLabels, Counter>,
    duration: Family<MethodLabels, Histogram>,
}

impl RpcMetrics {
    pub fn observe(&self, method: &'static str, code: tonic::Code, elapsed: std::time::Duration) {
        // grpc-go's spelling of the codes (`OK`, `NotFound`, ...), as dashboards expect.
        let code = match code {
            tonic::Code::Ok => "OK".to_owned(),
            other => format!("{other:?}"),
        };
        self.calls.get_or_create(&RpcLabels { method, code }).inc();
        self.duration
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64());
    }
}

static RPC: std::sync::OnceLock<RpcMetrics> = std::sync::OnceLock::new();

/// The RPC metrics, once [`register_rpc`] ran in this process.
pub fn rpc() -> Option<&'static RpcMetrics> {
    RPC.get()
}

/// Registers the RPC metrics in `registry` (`prefix` names the component, `controller`);
/// [`crate::traced::traced`] feeds them from then on. Once per process: a second call adds
/// nothing and returns false.
pub fn register_rpc(registry: &mut Registry, prefix: &str) -> bool {
    let metrics = RpcMetrics {
        calls: Family::default(),
        duration: latency_histograms(),
    };
    let (calls, duration) = (metrics.calls.clone(), metrics.duration.clone());
    if RPC.set(metrics).is_err() {
        return false;
    }
    registry.register(
        format!("rds_csi_{prefix}_rpc"),
        "CSI calls answered, by method and gRPC code",
        calls,
    );
    registry.register(
        format!("rds_csi_{prefix}_rpc_duration_seconds"),
        "Time to answer a CSI call, by method",
        duration,
    );
    true
}

/// How a live migration ended: its source left (completed) or its target did (rolled back).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum MigrationOutcome {
    Completed,
    RolledBack,
}

impl EncodeLabelValue for MigrationOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            Self::Completed => "completed",
            Self::RolledBack => "rolled_back",
        })
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: MigrationOutcome,
}

/// The controller's fencing figures: the counts set by its background loop, the durations
/// of migrations observed as they end.
#[derive(Debug, Clone)]
pub struct FencingMetrics {
    held_volumes: Gauge,
    migrations: Gauge,
    overdue: Gauge,
    migration_durations: Family<OutcomeLabels, Histogram>,
}

impl Default for FencingMetrics {
    fn default() -> Self {
        Self {
            held_volumes: Gauge::default(),
            migrations: Gauge::default(),
            overdue: Gauge::default(),
            // 1 s to about 68 min: a VM's memory copied over a fast link, up to the
            // longest windows people set.
            migration_durations: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1.0, 2.0, 13))
            }),
        }
    }
}

impl FencingMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "rds_csi_controller_published_volumes",
            "Volumes published to at least one node",
            metrics.held_volumes.clone(),
        );
        registry.register(
            "rds_csi_controller_migrations",
            "Volumes published to two nodes (live migrations in progress)",
            metrics.migrations.clone(),
        );
        registry.register(
            "rds_csi_controller_migrations_overdue",
            "Live migrations past their window (new targets refused until one side detaches)",
            metrics.overdue.clone(),
        );
        registry.register(
            "rds_csi_controller_migration_duration_seconds",
            "Live migrations from the target's publish to the unpublish that ended them, by \
             outcome",
            metrics.migration_durations.clone(),
        );
        metrics
    }

    /// A migration ended `took` after its target was published.
    pub fn migration_ended(&self, outcome: MigrationOutcome, took: std::time::Duration) {
        self.migration_durations
            .get_or_create(&OutcomeLabels { outcome })
            .observe(took.as_secs_f64());
    }

    pub fn set(&self, held_volumes: usize, migrations: usize, overdue: usize) {
        set_count(&self.held_volumes, held_volumes);
        set_count(&self.migrations, migrations);
        set_count(&self.overdue, overdue);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandLabels {
    transport: &'static str,
    verb: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbLabels {
    transport: &'static str,
    verb: &'static str,
}

/// The RouterOS client's commands (count, latency, in flight) and its circuit breaker, fed by
/// the client as it goes (no scrape ever asks the device).
#[derive(Debug, Clone)]
pub struct RouterOsMetrics {
    transport: &'static str,
    commands: Family<CommandLabels, Counter>,
    duration: Family<VerbLabels, Histogram>,
    in_flight: Gauge,
    breaker: Gauge,
}

impl RouterOsMetrics {
    /// Registers them for a client over `transport` (`ssh`, `rest`).
    pub fn register(registry: &mut Registry, transport: &'static str) -> Self {
        let metrics = Self {
            transport,
            commands: Family::default(),
            duration: latency_histograms(),
            in_flight: Gauge::default(),
            breaker: Gauge::default(),
        };
        registry.register(
            "rds_csi_controller_routeros_commands",
            "RouterOS commands by transport, verb and result (answered: the device replied, \
             a refusal included; failed: no answer, or not sent while the breaker is open)",
            metrics.commands.clone(),
        );
        registry.register(
            "rds_csi_controller_routeros_command_duration_seconds",
            "Time of a RouterOS command, waiting for a session included",
            metrics.duration.clone(),
        );
        registry.register(
            "rds_csi_controller_routeros_commands_in_flight",
            "RouterOS commands sent or waiting for a session",
            metrics.in_flight.clone(),
        );
        registry.register(
            "rds_csi_controller_routeros_breaker_state",
            "The RouterOS circuit breaker: 0 closed, 1 open (commands fail at once), 2 half-open",
            metrics.breaker.clone(),
        );
        metrics
    }
}

impl routeros::client::CommandObserver for RouterOsMetrics {
    fn started(&self, _verb: &'static str) {
        self.in_flight.inc();
    }

    fn finished(&self, verb: &'static str, elapsed: std::time::Duration, answered: bool) {
        self.in_flight.dec();
        let transport = self.transport;
        let result = if answered { "answered" } else { "failed" };
        self.commands
            .get_or_create(&CommandLabels {
                transport,
                verb,
                result,
            })
            .inc();
        self.duration
            .get_or_create(&VerbLabels { transport, verb })
            .observe(elapsed.as_secs_f64());
    }

    fn breaker(&self, state: routeros::BreakerState) {
        self.breaker.set(state.code());
    }
}

/// Latency histograms from 1 ms to about 30 s (the default RouterOS command deadline): a
/// cached query to a slow create on a loaded device.
fn latency_histograms<L>() -> Family<L, Histogram>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16)))
}

/// Sets a gauge that counts things (a count past `i64` saturates).
fn set_count(gauge: &Gauge, count: usize) {
    gauge.set(i64::try_from(count).unwrap_or(i64::MAX));
}

/// The registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut text = String::new();
    // Writing to a String cannot fail.
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encoding to a String");
    text
}

/// Binds `address` and serves `/metrics` until the returned task is aborted. A bind failure
/// is returned at once: a metrics port asked for and not served must not go unnoticed.
pub async fn serve(
    address: SocketAddr,
    registry: Arc<Registry>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let route = axum::routing::get(move || {
        let registry = Arc::clone(&registry);
        async move {
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                render(&registry),
            )
        }
    });
    let app = axum::Router::new().route("/metrics", route);
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the metrics server stopped");
        }
    });
    Ok((bound, task))
}

/// A `--metrics-address`: where to serve, or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsAddress(pub Option<SocketAddr>);

/// Parses `--metrics-address` for clap.
pub fn parse_metrics_address(text: &str) -> Result<MetricsAddress, String> {
    parse_address(text).map(MetricsAddress)
}

/// Parses `--metrics-address`: empty disables; `:PORT` means every address.
pub fn parse_address(text: &str) -> Result<Option<SocketAddr>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let full = match text.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => text.to_owned(),
    };
    full.parse()
        .map(Some)
        .map_err(|_| format!("{text:?} is not ADDRESS:PORT, :PORT or empty"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvme_controllers_are_counted_by_state_and_stale_states_go_to_zero() {
        let mut registry = Registry::default();
        let metrics = NodeMetrics::register(&mut registry);
        metrics.set_nvme_controllers(["live", "connecting", "live"]);
        let text = render(&registry);
        for line in [
            "rds_csi_node_nvme_controllers{state=\"live\"} 2",
            "rds_csi_node_nvme_controllers{state=\"connecting\"} 1",
            "rds_csi_node_nvme_controllers{state=\"dead\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
        metrics.set_nvme_controllers(["live"]);
        let text = render(&registry);
        for line in [
            "rds_csi_node_nvme_controllers{state=\"live\"} 1",
            "rds_csi_node_nvme_controllers{state=\"connecting\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in {text}");
        }
    }

    #[test]
    fn addresses_parse_with_empty_meaning_off() {
        assert_eq!(parse_address("").unwrap(), None);
        assert_eq!(
            parse_address(":9810").unwrap(),
            Some("0.0.0.0:9810".parse().unwrap())
        );
        assert_eq!(
            parse_address("127.0.0.1:0").unwrap(),
            Some("127.0.0.1:0".parse().unwrap())
        );
        assert_eq!(
            parse_address("[::1]:9810").unwrap(),
            Some("[::1]:9810".parse().unwrap())
        );
        for bad in ["9810", "localhost:9810", ":port", "1.2.3.4"] {
            assert!(parse_address(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_node_metrics_are_served_as_openmetrics_text() {
        let mut registry = Registry::default();
        let metrics = NodeMetrics::register(&mut registry);
        metrics.restaged(RestageResult::Succeeded);
        metrics.restaged(RestageResult::Failed);
        metrics.restaged(RestageResult::Failed);
        metrics.set_replaced_volumes(1);
        metrics.set_staged_volumes(3);
        metrics.pod_deleted();
        let (address, task) = serve("127.0.0.1:0".parse().unwrap(), Arc::new(registry))
            .await
            .unwrap();
        let body = fetch(address).await;
        task.abort();
        for line in [
            "rds_csi_node_restages_total{result=\"succeeded\"} 1",
            "rds_csi_node_restages_total{result=\"failed\"} 2",
            "rds_csi_node_volumes_on_replaced_namespace 1",
            "rds_csi_node_staged_volumes 3",
            "rds_csi_node_pods_deleted_total 1",
        ] {
            assert!(body.lines().any(|l| l == line), "{line} not in\n{body}");
        }
    }

    /// A plain HTTP/1.0 GET of /metrics, the way a scraper asks.
    async fn fetch(address: SocketAddr) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"));
        assert!(response.contains("application/openmetrics-text"));
        response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap()
    }
}
