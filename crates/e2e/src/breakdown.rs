//! NodeStageVolume broken into its parts, from the node's own measurements: the node logs a
//! debug event `stage phase` with `phase` and `elapsed_us` fields for connect, device
//! appearance, mkfs and mount (JSON log format). What the CO measured for the whole call,
//! minus those parts, is the driver's own overhead (gRPC, validation, mount-table reads,
//! locking).

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Result, io_at};
use crate::timing::render_ms_table;

/// The message of the node's timing events.
pub const PHASE_MESSAGE: &str = "stage phase";
/// The phases in the order a first stage runs them.
pub const PHASES: [&str; 4] = ["connect", "device", "mkfs", "mount"];

/// NodeStageVolume as measured by the CO and, part by part, by the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageBreakdown {
    pub total: Duration,
    /// `(phase, duration)` in the order of [`PHASES`]; a phase the node did not report is
    /// missing (e.g. no mkfs for a volume that was already formatted).
    pub parts: Vec<(String, Duration)>,
}

impl StageBreakdown {
    /// Sums each phase over the timing events in `log` (JSON lines; other lines are skipped).
    pub fn from_log(total: Duration, log: &str) -> Self {
        let mut sums = [Duration::ZERO; PHASES.len()];
        let mut seen = [false; PHASES.len()];
        for (phase, took) in log.lines().filter_map(parse_phase_event) {
            if let Some(i) = PHASES.iter().position(|p| *p == phase) {
                sums[i] += took;
                seen[i] = true;
            }
        }
        let parts = PHASES
            .iter()
            .zip(sums)
            .zip(seen)
            .filter(|(_, seen)| *seen)
            .map(|((name, took), _)| ((*name).to_owned(), took))
            .collect();
        Self { total, parts }
    }

    /// Total minus the parts the node measured (zero if the parts add up to more, which
    /// clock granularity can cause).
    pub fn overhead(&self) -> Duration {
        let parts: Duration = self.parts.iter().map(|(_, d)| *d).sum();
        self.total.saturating_sub(parts)
    }

    pub fn has(&self, phase: &str) -> bool {
        self.parts.iter().any(|(p, _)| p == phase)
    }

    pub fn table(&self) -> String {
        let mut rows = self.parts.clone();
        rows.push(("driver overhead".into(), self.overhead()));
        rows.push(("NodeStageVolume total".into(), self.total));
        render_ms_table("phase", &rows)
    }
}

/// `(phase, duration)` of one timing event line, if it is one.
fn parse_phase_event(line: &str) -> Option<(String, Duration)> {
    let value: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
    // flatten_event puts fields at the top level; the default nests them under "fields".
    let fields = value.get("fields").unwrap_or(&value);
    if fields.get("message")?.as_str()? != PHASE_MESSAGE {
        return None;
    }
    let phase = fields.get("phase")?.as_str()?.to_owned();
    let micros = fields.get("elapsed_us")?.as_u64()?;
    Some((phase, Duration::from_micros(micros)))
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
{"timestamp":"t","level":"DEBUG","message":"stage phase","phase":"connect","elapsed_us":95000}
{"timestamp":"t","level":"DEBUG","message":"stage phase","phase":"device","elapsed_us":12000}
{"timestamp":"t","level":"DEBUG","fields":{"message":"stage phase","phase":"mkfs","elapsed_us":300000}}
{"timestamp":"t","level":"DEBUG","message":"stage phase","phase":"mount","elapsed_us":20000}
{"timestamp":"t","level":"DEBUG","message":"stage phase","phase":"unknown","elapsed_us":1}
"#;

    #[test]
    fn parts_come_from_the_timing_events_in_phase_order() {
        let b = StageBreakdown::from_log(Duration::from_millis(437), LOG);
        let names: Vec<_> = b.parts.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names, PHASES);
        assert_eq!(b.parts[2].1, Duration::from_millis(300));
        assert_eq!(b.overhead(), Duration::from_millis(10));
        let table = b.table();
        assert!(table.contains("driver overhead"), "{table}");
        assert!(table.contains("10.0"), "{table}");
    }

    #[test]
    fn missing_phases_are_absent_and_overhead_never_underflows() {
        let b = StageBreakdown::from_log(Duration::from_millis(50), LOG.lines().nth(2).unwrap());
        assert!(b.has("connect") && !b.has("mkfs"));
        assert_eq!(b.overhead(), Duration::ZERO);
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
