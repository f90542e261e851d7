//! Wall-clock timing of each step of a flow, and the table printed at the end.

use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

/// One finished step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTiming {
    pub name: String,
    pub took: Duration,
}

/// The steps of a run, in the order they finished.
#[derive(Debug, Default, Clone)]
pub struct StepLog {
    steps: Vec<StepTiming>,
}

impl StepLog {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record(&mut self, name: impl Into<String>, took: Duration) {
        self.steps.push(StepTiming {
            name: name.into(),
            took,
        });
    }

    /// Runs `step`, recording how long it took whether or not it succeeded.
    pub async fn time<T, F: Future<Output = T>>(&mut self, name: impl Into<String>, step: F) -> T {
        let start = Instant::now();
        let out = step.await;
        self.record(name, start.elapsed());
        out
    }

    pub fn steps(&self) -> &[StepTiming] {
        &self.steps
    }

    pub fn total(&self) -> Duration {
        self.steps.iter().map(|s| s.took).sum()
    }

    /// `step  ms` rows, aligned, with a total.
    pub fn table(&self) -> String {
        let rows: Vec<(String, Duration)> = self
            .steps
            .iter()
            .map(|s| (s.name.clone(), s.took))
            .chain([("total".to_owned(), self.total())])
            .collect();
        render_ms_table("step", &rows)
    }
}

/// A two-column table of durations in milliseconds with one decimal.
pub fn render_ms_table(heading: &str, rows: &[(String, Duration)]) -> String {
    let width = rows
        .iter()
        .map(|(name, _)| name.len())
        .chain([heading.len()])
        .max()
        .unwrap_or(0);
    let mut out = format!("{heading:<width$}  {:>10}\n", "ms");
    for (name, took) in rows {
        let _ = writeln!(out, "{name:<width$}  {:>10.1}", took.as_secs_f64() * 1e3);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn time_records_failed_steps_too() {
        let mut log = StepLog::new();
        let out: Result<(), &str> = log.time("fails", async { Err("no") }).await;
        assert!(out.is_err());
        log.record("second", Duration::from_millis(5));
        let names: Vec<_> = log.steps().iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fails", "second"]);
        assert!(log.total() >= Duration::from_millis(5));
    }

    #[test]
    fn table_aligns_names_and_totals() {
        let mut log = StepLog::new();
        log.record("create", Duration::from_micros(12_345));
        log.record("stage-filesystem", Duration::from_millis(200));
        let table = log.table();
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[1], "create                  12.3");
        assert_eq!(lines[3], "total                  212.3");
        assert!(lines.iter().all(|l| l.len() == lines[0].len()));
    }
}
