//! NodeStageVolume broken into its parts, from the node's own measurements. The node logs
//! (JSON, debug level) one `stage phase` event per part, with `phase` and `elapsed_us`
//! fields, and one `stage total` event with `elapsed_us` for its handler from start to end.
//! The parts are of two kinds:
//! - external work the driver waits for ([`EXTERNAL_PHASES`]: the kernel's connect, the
//!   device appearing, blkid, mkfs, the mount syscall);
//! - the driver's own named work (mountinfo, path checks, sysfs scan, readable check, ...;
//!   any phase not known as external counts as the driver's).
//!
//! So: driver overhead = the node's total minus the external work, i.e. its own named parts
//! plus the unnamed rest (validation, locking, task hand-offs, logging); gRPC and transport
//! = what the CO measured minus the node's total.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{E2eError, Result, io_at};
use crate::timing::render_ms_table;

/// The message of the node's timing event for one part.
pub const PHASE_MESSAGE: &str = "stage phase";
/// The message of the node's timing event for the whole handler.
pub const TOTAL_MESSAGE: &str = "stage total";
/// Phases that are work done by the kernel or by external tools, not by the driver.
pub const EXTERNAL_PHASES: [&str; 7] = [
    "connect", "device", "settle", "recycle", "blkid", "mkfs", "mount",
];

fn is_external(phase: &str) -> bool {
    EXTERNAL_PHASES.contains(&phase)
}

/// NodeStageVolume as measured by the CO and, whole and part by part, by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageBreakdown {
    /// The call as the CO measured it.
    pub co_total: Duration,
    /// The node's handler from start to end.
    pub node_total: Duration,
    /// `(phase, duration)` in the order the node first reported each; a phase reported more
    /// than once is summed. A phase that did not run is missing (no mkfs on a formatted
    /// volume, no connect when the controller was already there).
    pub parts: Vec<(String, Duration)>,
}

impl StageBreakdown {
    /// Reads the timing events in `log` (JSON lines; other lines are skipped). A log without
    /// the node's total is an error: the node is not logging its timings at debug level in
    /// JSON, and a breakdown without it would blame the transport on the driver.
    pub fn from_log(co_total: Duration, log: &str) -> Result<Self> {
        let mut parts: Vec<(String, Duration)> = Vec::new();
        let mut node_total = None;
        for event in log.lines().filter_map(parse_event) {
            match event {
                Event::Phase(name, took) => match parts.iter_mut().find(|(p, _)| *p == name) {
                    Some((_, sum)) => *sum += took,
                    None => parts.push((name, took)),
                },
                Event::Total(took) => node_total = Some(took),
            }
        }
        let node_total = node_total.ok_or_else(|| {
            E2eError::Check(format!(
                "the node logged no `{TOTAL_MESSAGE}` event for NodeStageVolume; run it with \
                 --log-format json and debug logging for the driver"
            ))
        })?;
        Ok(Self {
            co_total,
            node_total,
            parts,
        })
    }

    fn sum(&self, external: bool) -> Duration {
        self.parts
            .iter()
            .filter(|(p, _)| is_external(p) == external)
            .map(|(_, d)| *d)
            .sum()
    }

    /// The work of the kernel and the external tools.
    pub fn external(&self) -> Duration {
        self.sum(true)
    }

    /// The driver's own work: the node's total minus the external work (zero if that adds up
    /// to more, which clock granularity can cause).
    pub fn overhead(&self) -> Duration {
        self.node_total.saturating_sub(self.external())
    }

    /// The part of the overhead that no phase names.
    pub fn unnamed(&self) -> Duration {
        self.overhead().saturating_sub(self.sum(false))
    }

    /// What the CO waited beyond the node's handler: gRPC on both sides, the socket, and the
    /// scheduling of both processes.
    pub fn transport(&self) -> Duration {
        self.co_total.saturating_sub(self.node_total)
    }

    pub fn has(&self, phase: &str) -> bool {
        self.parts.iter().any(|(p, _)| p == phase)
    }

    /// External parts, then the driver's own with its unnamed rest, then the totals.
    pub fn table(&self) -> String {
        let (external, own): (Vec<_>, Vec<_>) = self
            .parts
            .iter()
            .cloned()
            .partition(|(p, _)| is_external(p));
        let mut rows = external;
        rows.extend(own.into_iter().map(|(p, d)| (format!("{p} (driver)"), d)));
        rows.push(("other driver work (unnamed)".into(), self.unnamed()));
        rows.push(("driver overhead (all driver work)".into(), self.overhead()));
        rows.push(("= node handler total".into(), self.node_total));
        rows.push(("gRPC and transport".into(), self.transport()));
        rows.push(("= NodeStageVolume at the CO".into(), self.co_total));
        render_ms_table("phase", &rows)
    }
}

/// One NodeStageVolume of a run with its breakdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledBreakdown {
    /// A short key without spaces for the summary line (`fs-cold`).
    pub label: String,
    /// What this stage was (first in the node process, a fresh volume, ...).
    pub about: String,
    pub breakdown: StageBreakdown,
}

impl LabelledBreakdown {
    /// A heading, the table, and one `stage-timing:` line for scripts.
    pub fn report(&self) -> String {
        let b = &self.breakdown;
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "NodeStageVolume {} ({}):\n{}stage-timing: {} overhead-ms={:.1} unnamed-ms={:.1} \
             node-ms={:.1} transport-ms={:.1} co-ms={:.1}\n",
            self.label,
            self.about,
            b.table(),
            self.label,
            ms(b.overhead()),
            ms(b.unnamed()),
            ms(b.node_total),
            ms(b.transport()),
            ms(b.co_total)
        )
    }
}

enum Event {
    Phase(String, Duration),
    Total(Duration),
}

/// The timing event on one log line, if it is one.
fn parse_event(line: &str) -> Option<Event> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    // flatten_event puts fields at the top level; the default nests them under "fields".
    let fields = value.get("fields").unwrap_or(&value);
    let took = Duration::from_micros(fields.get("elapsed_us")?.as_u64()?);
    match fields.get("message")?.as_str()? {
        PHASE_MESSAGE => Some(Event::Phase(
            fields.get("phase")?.as_str()?.to_owned(),
            took,
        )),
        TOTAL_MESSAGE => Some(Event::Total(took)),
        _ => None,
    }
}

/// Follows a log file another process appends to: each call returns what was added since
/// the previous one.
#[derive(Debug)]
pub struct LogTail {
    path: PathBuf,
    offset: u64,
}

impl LogTail {
    /// Starts at the current end of the file.
    pub fn at_end(path: &Path) -> Result<Self> {
        let offset = std::fs::metadata(path)
            .map_err(io_at("reading", path))?
            .len();
        Ok(Self {
            path: path.to_owned(),
            offset,
        })
    }

    pub fn take_new(&mut self) -> Result<String> {
        let mut file = std::fs::File::open(&self.path).map_err(io_at("opening", &self.path))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(io_at("seeking", &self.path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(io_at("reading", &self.path))?;
        self.offset += bytes.len() as u64;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"timestamp":"t","level":"INFO","message":"connected","nqn":"n"}
not json at all
{"timestamp":"t","level":"DEBUG","message":"stage phase","phase":"mountinfo","elapsed_us":1500}
{"timestamp":"t","level":"DEBUG","message":"stage phase","phase":"connect","elapsed_us":95000}
{"timestamp":"t","level":"DEBUG","message":"stage phase","phase":"device","elapsed_us":12000}
{"timestamp":"t","level":"DEBUG","fields":{"message":"stage phase","phase":"mkfs","elapsed_us":300000}}
{"timestamp":"t","level":"DEBUG","message":"stage phase","phase":"mountinfo","elapsed_us":500}
{"timestamp":"t","level":"DEBUG","message":"stage phase","phase":"mount","elapsed_us":20000}
{"timestamp":"t","level":"INFO","message":"done","elapsed_ms":431}
{"timestamp":"t","level":"DEBUG","message":"stage total","elapsed_us":431000}
"#;

    #[test]
    fn parts_come_in_first_seen_order_and_repeats_are_summed() {
        let b = StageBreakdown::from_log(Duration::from_millis(437), LOG).unwrap();
        let names: Vec<_> = b.parts.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, ["mountinfo", "connect", "device", "mkfs", "mount"]);
        assert_eq!(b.parts[0].1, Duration::from_millis(2));
        assert_eq!(b.parts[3].1, Duration::from_millis(300));
        assert_eq!(b.node_total, Duration::from_millis(431));
        // 431 - (95 + 12 + 300 + 20) external = 4, of which mountinfo's 2 are named.
        assert_eq!(b.external(), Duration::from_millis(427));
        assert_eq!(b.overhead(), Duration::from_millis(4));
        assert_eq!(b.unnamed(), Duration::from_millis(2));
        assert_eq!(b.transport(), Duration::from_millis(6));
        let table = b.table();
        let rows: Vec<&str> = table
            .lines()
            .map(|line| line.rsplit_once("  ").unwrap().0.trim())
            .collect();
        assert_eq!(
            rows,
            [
                "phase",
                "connect",
                "device",
                "mkfs",
                "mount",
                "mountinfo (driver)",
                "other driver work (unnamed)",
                "driver overhead (all driver work)",
                "= node handler total",
                "gRPC and transport",
                "= NodeStageVolume at the CO",
            ]
        );
    }

    #[test]
    fn missing_phases_are_absent_and_nothing_underflows() {
        let log = [LOG.lines().nth(3).unwrap(), LOG.lines().last().unwrap()].join("\n");
        let b = StageBreakdown::from_log(Duration::from_millis(50), &log).unwrap();
        assert!(b.has("connect") && !b.has("mkfs"));
        assert_eq!(b.overhead(), Duration::from_millis(431 - 95));
        assert_eq!(b.unnamed(), b.overhead());
        assert_eq!(b.transport(), Duration::ZERO);
        let shorter = log.replace("431000", "90000");
        let b = StageBreakdown::from_log(Duration::from_millis(50), &shorter).unwrap();
        assert_eq!(b.overhead(), Duration::ZERO);
        assert_eq!(b.unnamed(), Duration::ZERO);
    }

    #[test]
    fn a_labelled_report_ends_with_a_summary_line() {
        let labelled = LabelledBreakdown {
            label: "fs-cold".into(),
            about: "first stage".into(),
            breakdown: StageBreakdown::from_log(Duration::from_millis(437), LOG).unwrap(),
        };
        let report = labelled.report();
        assert!(
            report.starts_with("NodeStageVolume fs-cold (first stage):\n"),
            "{report}"
        );
        assert!(
            report.ends_with(
                "stage-timing: fs-cold overhead-ms=4.0 unnamed-ms=2.0 node-ms=431.0 \
                 transport-ms=6.0 co-ms=437.0\n"
            ),
            "{report}"
        );
    }

    #[test]
    fn a_log_without_the_nodes_total_is_refused() {
        let without: String = LOG
            .lines()
            .filter(|l| !l.contains("stage total"))
            .collect::<Vec<_>>()
            .join("\n");
        let error = StageBreakdown::from_log(Duration::from_millis(437), &without).unwrap_err();
        assert!(error.to_string().contains("stage total"), "{error}");
    }

    #[test]
    fn tail_returns_only_what_was_appended() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        std::fs::write(&path, "before\n").unwrap();
        let mut tail = LogTail::at_end(&path).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"one\n").unwrap();
        assert_eq!(tail.take_new().unwrap(), "one\n");
        file.write_all(b"two\n").unwrap();
        assert_eq!(tail.take_new().unwrap(), "two\n");
        assert_eq!(tail.take_new().unwrap(), "");
    }
}
