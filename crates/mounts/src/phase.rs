//! Timing events for the parts of a multi-step node operation. NodeStageVolume is broken
//! down this way in the lab: each part logs one debug event [`PHASE_EVENT`] with the fields
//! `phase` (a short name) and `elapsed_us`. The parts run one after another, never nested, so
//! what they add up to can be subtracted from the whole.

use std::future::Future;
use std::time::{Duration, Instant};

/// The message of a timing event for one part.
pub const PHASE_EVENT: &str = "stage phase";
/// The message of the event for the whole operation as its handler saw it (`elapsed_us`).
pub const TOTAL_EVENT: &str = "stage total";

/// Logs that `phase` took `elapsed`.
pub fn record(phase: &'static str, elapsed: Duration) {
    tracing::debug!(
        phase,
        elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "stage phase"
    );
}

/// Logs that the whole operation took `elapsed`, from its handler's start to its end.
pub fn record_total(elapsed: Duration) {
    tracing::debug!(
        elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "stage total"
    );
}

/// Runs `work` and records how long it took, whether it succeeded or not.
pub async fn timed<F: Future>(phase: &'static str, work: F) -> F::Output {
    let started = Instant::now();
    let output = work.await;
    record(phase, started.elapsed());
    output
}

/// [`timed`] for synchronous work.
pub fn timed_sync<T>(phase: &'static str, work: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let output = work();
    record(phase, started.elapsed());
    output
}

#[cfg(test)]
pub(crate) mod capture {
    //! A subscriber that keeps the timing events, for tests.

    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    /// `(phase, elapsed_us)` of every timing event seen.
    #[derive(Clone, Default)]
    pub struct Phases(Arc<Mutex<Vec<(String, u64)>>>);

    impl Phases {
        pub fn seen(&self) -> Vec<(String, u64)> {
            self.0.lock().unwrap().clone()
        }

        pub fn names(&self) -> Vec<String> {
            self.seen().into_iter().map(|(name, _)| name).collect()
        }
    }

    #[derive(Default)]
    struct Fields {
        message: String,
        phase: Option<String>,
        elapsed_us: Option<u64>,
    }

    impl Visit for Fields {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "phase" {
                self.phase = Some(value.to_owned());
            }
        }

        fn record_u64(&mut self, field: &Field, value: u64) {
            if field.name() == "elapsed_us" {
                self.elapsed_us = Some(value);
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.message = format!("{value:?}");
            }
        }
    }

    impl Subscriber for Phases {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            let mut fields = Fields::default();
            event.record(&mut fields);
            if fields.message == super::PHASE_EVENT
                && let (Some(phase), Some(elapsed)) = (fields.phase, fields.elapsed_us)
            {
                self.0.lock().unwrap().push((phase, elapsed));
            }
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    /// Runs `work` on a current-thread runtime with `phases` collecting the timing events.
    pub fn collect<T>(phases: &Phases, work: impl std::future::Future<Output = T>) -> T {
        tracing::subscriber::with_default(phases.clone(), || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(work)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::capture::{Phases, collect};
    use super::*;

    #[test]
    fn timed_work_is_recorded_with_its_duration_and_result() {
        let phases = Phases::default();
        let value = collect(&phases, async {
            let slept = timed("nap", tokio::time::sleep(Duration::from_millis(20))).await;
            let sum = timed_sync("sum", || 2 + 2);
            (slept, sum)
        });
        assert_eq!(value, ((), 4));
        let seen = phases.seen();
        assert_eq!(phases.names(), ["nap", "sum"]);
        assert!(seen[0].1 >= 20_000, "{seen:?}");
        assert!(seen[1].1 < 20_000, "{seen:?}");
    }
}
