//! The metrics step: each plugin's Prometheus endpoint scraped as Prometheus does
//! (`GET /metrics`), and what a person would look at first read off it.

use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;

use crate::error::{DemoError, Result};
use crate::plan::Step;
use crate::session::{CONTROLLER, NODE, Session};
use crate::term::{Reporter, StepFailure};

/// One sample of the text exposition: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of an exposition; comments and lines that do not read are skipped.
///
/// Written here rather than taken from a crate: the demo reads only its own plugins' output,
/// whose label values (method names, codes, states) hold no quotes, commas or escapes.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value = value.parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .strip_suffix('}')?
                        .split(',')
                        .filter(|pair| !pair.is_empty())
                        .map(|pair| {
                            let (key, value) = pair.split_once('=')?;
                            Some((key.to_owned(), value.trim_matches('"').to_owned()))
                        })
                        .collect::<Option<Vec<_>>>()?;
                    (name, labels)
                }
                None => (series, Vec::new()),
            };
            Some(Sample {
                name: name.to_owned(),
                labels,
                value,
            })
        })
        .collect()
}

/// The sum of the samples named `name` that `keep` accepts.
pub fn sum(samples: &[Sample], name: &str, keep: impl Fn(&Sample) -> bool) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name && keep(s))
        .map(|s| s.value)
        .sum()
}

/// What the step shows of a plugin's metrics.
pub fn summary(component: &str, address: SocketAddr, samples: &[Sample]) -> String {
    let prefix = if component == CONTROLLER {
        "controller"
    } else {
        "node"
    };
    let calls = sum(samples, &format!("rds_csi_{prefix}_rpc_total"), |_| true);
    let mut refused: Vec<String> = samples
        .iter()
        .filter(|s| s.name == format!("rds_csi_{prefix}_rpc_total") && s.value > 0.0)
        .filter(|s| s.label("code").is_some_and(|code| code != "OK"))
        .map(|s| {
            format!(
                "{} {}",
                s.label("method").unwrap_or("?"),
                s.label("code").unwrap_or("?")
            )
        })
        .collect();
    refused.sort();
    let mut text = format!("{component} http://{address}/metrics: {calls} CSI calls");
    if !refused.is_empty() {
        text += &format!(" ({} not OK: {})", refused.len(), refused.join(", "));
    }
    if component == CONTROLLER {
        let commands = sum(
            samples,
            "rds_csi_controller_routeros_commands_total",
            |_| true,
        );
        let breaker = match sum(samples, "rds_csi_controller_routeros_breaker_state", |_| {
            true
        }) {
            0.0 => "closed",
            1.0 => "open",
            _ => "half-open",
        };
        text += &format!(", {commands} RouterOS commands, breaker {breaker}");
    } else if component == NODE {
        let staged = sum(samples, "rds_csi_node_staged_volumes", |_| true);
        text += &format!(", {staged} volumes staged");
    }
    text
}

/// The step: each plugin's metrics, scraped.
pub async fn show(rep: &mut Reporter, s: &mut Session) -> Result<(), StepFailure> {
    rep.step(Step::Metrics, async {
        let mut parts = Vec::new();
        for (component, address) in s.metrics.clone() {
            let text = scrape(address, Duration::from_secs(10)).await?;
            parts.push(summary(component, address, &parse(&text)));
        }
        Ok(((), parts.join("; ")))
    })
    .await
}

/// `GET /metrics` over HTTP/1.1, within `limit`; the body.
pub async fn scrape(address: SocketAddr, limit: Duration) -> Result<String> {
    let fetch = async {
        let stream = tokio::net::TcpStream::connect(address).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(connection);
        let request = hyper::Request::get("/metrics")
            .header(hyper::header::HOST, address.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(std::io::Error::other)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(std::io::Error::other)?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        if !status.is_success() {
            return Err(std::io::Error::other(format!("HTTP {status}")));
        }
        String::from_utf8(body.to_vec()).map_err(std::io::Error::other)
    };
    match tokio::time::timeout(limit, fetch).await {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(error)) => Err(DemoError::Check(format!(
            "GET http://{address}/metrics: {error}"
        ))),
        Err(_) => Err(DemoError::Check(format!(
            "GET http://{address}/metrics: no answer within {} s",
            limit.as_secs()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTROLLER_TEXT: &str = "# HELP rds_csi_controller_rpc CSI calls\n\
        # TYPE rds_csi_controller_rpc counter\n\
        rds_csi_controller_rpc_total{method=\"CreateVolume\",code=\"OK\"} 2\n\
        rds_csi_controller_rpc_total{method=\"ControllerPublishVolume\",code=\"FailedPrecondition\"} 1\n\
        rds_csi_controller_rpc_total{method=\"DeleteVolume\",code=\"OK\"} 2\n\
        rds_csi_controller_routeros_commands_total{transport=\"ssh\",verb=\"create-disk\",result=\"answered\"} 2\n\
        rds_csi_controller_routeros_commands_total{transport=\"ssh\",verb=\"pool\",result=\"failed\"} 1\n\
        rds_csi_controller_routeros_breaker_state 0\n\
        rds_csi_controller_rpc_duration_seconds_bucket{method=\"CreateVolume\",le=\"+Inf\"} 2\n\
        # EOF\n";

    #[test]
    fn samples_are_read_with_their_labels_and_comments_are_skipped() {
        let samples = parse(CONTROLLER_TEXT);
        assert_eq!(samples.len(), 7);
        assert_eq!(samples[1].label("code"), Some("FailedPrecondition"));
        assert_eq!(samples[5].name, "rds_csi_controller_routeros_breaker_state");
        assert!(samples[5].labels.is_empty());
        assert_eq!(samples[6].label("le"), Some("+Inf"));
        assert_eq!(sum(&samples, "rds_csi_controller_rpc_total", |_| true), 5.0);
        let ok = |s: &Sample| s.label("code") == Some("OK");
        assert_eq!(sum(&samples, "rds_csi_controller_rpc_total", ok), 4.0);
        assert!(parse("garbage\nname{unclosed 1\nname 1 2 x\n").is_empty());
    }

    #[test]
    fn the_summary_names_the_calls_not_ok_the_commands_and_the_breaker() {
        let address: SocketAddr = "127.0.0.1:9809".parse().unwrap();
        assert_eq!(
            summary(CONTROLLER, address, &parse(CONTROLLER_TEXT)),
            "controller http://127.0.0.1:9809/metrics: 5 CSI calls (1 not OK: \
             ControllerPublishVolume FailedPrecondition), 3 RouterOS commands, breaker closed"
        );
        let node = "rds_csi_node_rpc_total{method=\"NodeStageVolume\",code=\"OK\"} 3\n\
                    rds_csi_node_staged_volumes 0\n";
        assert_eq!(
            summary(NODE, address, &parse(node)),
            "node plugin http://127.0.0.1:9809/metrics: 3 CSI calls, 0 volumes staged"
        );
    }
}
