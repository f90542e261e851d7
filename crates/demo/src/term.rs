//! Writing the run to stdout: one line per step with its time, a spinner redrawn in place
//! while a step runs (terminals only), colours only on a terminal without NO_COLOR.

use std::ffi::OsStr;
use std::future::Future;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use crate::error::DemoError;
use crate::plan::Step;
use crate::render::{self, Paint, Status, StepRecord};

/// How often the spinner is redrawn.
const SPINNER_PERIOD: Duration = Duration::from_millis(100);

/// What the output may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub paint: Paint,
    pub spinner: bool,
}

impl Style {
    /// Spinner on a terminal; colours on a terminal unless NO_COLOR is set to anything
    /// non-empty (<https://no-color.org>).
    pub fn decide(is_terminal: bool, no_color: Option<&OsStr>) -> Self {
        let colour = is_terminal && no_color.is_none_or(OsStr::is_empty);
        Self {
            paint: Paint { colour },
            spinner: is_terminal,
        }
    }

    pub fn detect() -> Self {
        Self::decide(
            std::io::stdout().is_terminal(),
            std::env::var_os("NO_COLOR").as_deref(),
        )
    }
}

/// A step that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub step: Step,
    pub reason: String,
}

/// Prints steps as they run and remembers how each ended.
#[derive(Debug)]
pub struct Reporter {
    style: Style,
    plan: Vec<Step>,
    records: Vec<StepRecord>,
    /// The step under way, so that an interruption can say which it cut short.
    running: Option<(Step, Instant)>,
}

/// Writes to stdout, ignoring errors: a closed pipe must not turn into a panic halfway
/// through a cleanup.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

impl Reporter {
    pub fn new(style: Style, plan: Vec<Step>) -> Self {
        Self {
            style,
            plan,
            records: Vec::new(),
            running: None,
        }
    }

    pub fn paint(&self) -> Paint {
        self.style.paint
    }

    pub fn plan(&self) -> &[Step] {
        &self.plan
    }

    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }

    /// A line of its own (headings, notices, tables).
    pub fn say(&self, text: &str) {
        emit(&format!("{}\n", text.trim_end_matches('\n')));
    }

    fn finish(&mut self, step: Step, took: Duration, status: Status, detail: &str) {
        if self.style.spinner {
            emit("\r\x1b[2K");
        }
        self.records.push(StepRecord { step, took, status });
        self.say(&render::step_line(
            self.style.paint,
            status,
            step,
            took,
            detail,
        ));
    }

    /// Runs one step: a spinner while it runs (on a terminal), then its line. The work
    /// returns its value and the detail shown on the line.
    pub async fn step<T>(
        &mut self,
        step: Step,
        work: impl Future<Output = Result<(T, String), DemoError>>,
    ) -> Result<T, StepFailure> {
        let started = Instant::now();
        self.running = Some((step, started));
        let outcome = if self.style.spinner {
            let mut work = std::pin::pin!(work);
            let mut ticks = tokio::time::interval(SPINNER_PERIOD);
            let mut frame = 0;
            loop {
                tokio::select! {
                    outcome = &mut work => break outcome,
                    _ = ticks.tick() => {
                        emit(&format!("\r\x1b[2K{}", render::spinner_line(frame, step, started.elapsed())));
                        frame += 1;
                    }
                }
            }
        } else {
            work.await
        };
        self.running = None;
        let took = started.elapsed();
        match outcome {
            Ok((value, detail)) => {
                self.finish(step, took, Status::Ok, &detail);
                Ok(value)
            }
            Err(error) => {
                let reason = error.to_string();
                self.finish(step, took, Status::Failed, &reason);
                Err(StepFailure { step, reason })
            }
        }
    }

    /// A step that cannot run on this host, with the reason.
    pub fn skip(&mut self, step: Step, reason: &str) {
        self.finish(step, Duration::ZERO, Status::Skipped, reason);
    }

    /// Records the step a signal cut short (its future has been dropped), if one was running.
    pub fn interrupted(&mut self, signal: &str) -> Option<Step> {
        let (step, started) = self.running.take()?;
        self.finish(
            step,
            started.elapsed(),
            Status::Interrupted,
            &format!("interrupted by {signal}"),
        );
        Some(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_needs_a_terminal_and_no_no_color() {
        let tty = Style::decide(true, None);
        assert!(tty.paint.colour && tty.spinner);
        let no_color = Style::decide(true, Some(OsStr::new("1")));
        assert!(!no_color.paint.colour && no_color.spinner);
        // NO_COLOR set but empty does not count.
        assert!(Style::decide(true, Some(OsStr::new(""))).paint.colour);
        let pipe = Style::decide(false, None);
        assert!(!pipe.paint.colour && !pipe.spinner);
    }

    fn plain() -> Reporter {
        Reporter::new(Style::decide(false, None), vec![Step::StartSimulator])
    }

    #[tokio::test]
    async fn steps_are_recorded_with_their_outcome() {
        let mut reporter = plain();
        let value = reporter
            .step(Step::StartSimulator, async { Ok((7, "fine".to_owned())) })
            .await;
        assert_eq!(value, Ok(7));
        let failure = reporter
            .step(Step::StartNode, async {
                Err::<((), String), _>(DemoError::Check("it broke".into()))
            })
            .await
            .unwrap_err();
        assert_eq!(failure.step, Step::StartNode);
        assert!(failure.reason.contains("it broke"));
        let statuses: Vec<_> = reporter.records().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [Status::Ok, Status::Failed]);
        assert_eq!(reporter.interrupted("SIGINT"), None);
        reporter.skip(Step::ExpandNode, "not here");
        assert_eq!(reporter.records()[2].status, Status::Skipped);
    }

    #[tokio::test]
    async fn a_dropped_step_is_recorded_as_interrupted() {
        let mut reporter = plain();
        {
            let never = reporter.step(Step::StageFilesystem, async {
                std::future::pending::<Result<((), String), DemoError>>().await
            });
            // Polled once (so it starts), then dropped as a signal would drop it.
            let _ = tokio::time::timeout(Duration::from_millis(1), never).await;
        }
        assert_eq!(reporter.interrupted("SIGTERM"), Some(Step::StageFilesystem));
        assert_eq!(reporter.records()[0].status, Status::Interrupted);
        assert_eq!(reporter.interrupted("SIGTERM"), None);
    }
}
