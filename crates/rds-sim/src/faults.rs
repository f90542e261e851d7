//! Fault injection: latency, a session cap, failed and dropped commands,
//! a full pool, slow adds, exit status 1 on errors, float numbers, quirks, and the readings of
//! `/system health`.
//!
//! Faults come from the command-line flags (the base), the in-process API,
//! and the control file `<data-dir>/faults.json`: whenever that file's
//! modification stamp changes it is re-read and its fields override the
//! base (fields it leaves out keep their base value); when it disappears
//! the base applies again. The stamp is checked with one `stat` per command.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::quirks::Quirks;

/// Name of the control file in the data directory.
pub const FAULTS_FILE: &str = "faults.json";

/// The fault set. The JSON form (the control file) uses these field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every command (SSH exec or REST request).
    pub latency_ms: u64,
    /// Up to this much more, uniformly random, per command.
    pub latency_jitter_ms: u64,
    /// Sessions (SSH exec channels, REST requests in flight) allowed at once.
    pub max_sessions: usize,
    /// The next N commands fail with `fail_message` without running.
    pub fail_next: u32,
    /// The RouterOS error text for `fail_next`.
    pub fail_message: String,
    /// The next N commands get no reply: the TCP connection is closed.
    pub drop_next: u32,
    /// Each command is dropped so, unrun, with this chance in percent (a lost request).
    pub drop_percent: u8,
    /// Each command runs and then loses its reply (the connection is closed) with this chance
    /// in percent: the device changed and the caller cannot know.
    pub lose_reply_percent: u8,
    /// The pool reports no free space; adds and grows fail.
    pub pool_full: bool,
    /// Extra latency per `/disk add` (SSH) or create (REST).
    pub slow_add_ms: u64,
    /// Exit status 1 (instead of 0) when a script ends with an error.
    pub exit_status_on_error: bool,
    /// `:serialize` prints numbers as floats (`1073741824.000000`).
    pub float_numbers: bool,
    /// Every `/disk copy` stops half-way and loses its session, as when the device goes
    /// down in the middle of a copy.
    pub interrupt_copies: bool,
    /// Each of the eight steps of a `/disk copy` takes this much longer (a copy long enough
    /// to watch while it runs).
    pub slow_copy_ms: u64,
    /// Ways the device differs from the facts (see [`crate::quirks`]).
    pub quirks: Quirks,
    /// `/system health` readings laid over the defaults: sensor name → value
    /// (`{"psu2-state": "fail"}`); an empty value removes the sensor (see [`crate::health`]).
    pub health: BTreeMap<String, String>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency_ms: 0,
            latency_jitter_ms: 0,
            max_sessions: 20,
            fail_next: 0,
            fail_message: "failure: simulated failure".to_string(),
            drop_next: 0,
            drop_percent: 0,
            lose_reply_percent: 0,
            pool_full: false,
            slow_add_ms: 0,
            exit_status_on_error: false,
            float_numbers: false,
            interrupt_copies: false,
            slow_copy_ms: 0,
            quirks: Quirks::default(),
            health: BTreeMap::new(),
        }
    }
}

/// What one command gets from the fault set (counters already consumed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandFaults {
    pub latency: Duration,
    pub slow_add: Duration,
    /// Close the connection without a reply, without running.
    pub drop: bool,
    /// Run, then close the connection without a reply.
    pub lose_reply: bool,
    /// Fail with this text without running.
    pub fail: Option<String>,
    pub pool_full: bool,
    pub exit_status_on_error: bool,
    pub float_numbers: bool,
    pub interrupt_copies: bool,
    pub slow_copy_step: Duration,
    pub quirks: Quirks,
    pub health: BTreeMap<String, String>,
}

/// Identity of a version of the control file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

#[derive(Debug)]
struct Inner {
    base: Faults,
    current: Faults,
    file_stamp: Option<Stamp>,
}

/// The live fault set, shared by the servers and the API.
#[derive(Debug)]
pub struct FaultControl {
    inner: Mutex<Inner>,
    file: Option<PathBuf>,
}

impl FaultControl {
    /// Faults with `base` and, if `file` is given, its overrides.
    pub fn new(base: Faults, file: Option<PathBuf>) -> Self {
        let control = Self {
            inner: Mutex::new(Inner {
                current: base.clone(),
                base,
                file_stamp: None,
            }),
            file,
        };
        control.refresh();
        control
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The faults now in force.
    pub fn get(&self) -> Faults {
        self.refresh();
        self.lock().current.clone()
    }

    /// Replaces the fault set (the control file, if it changes later,
    /// overrides fields again).
    pub fn set(&self, faults: Faults) {
        let mut inner = self.lock();
        inner.base = faults.clone();
        inner.current = faults;
    }

    /// Changes the fault set in place, e.g. `update(|f| f.drop_next = 1)`.
    pub fn update(&self, change: impl FnOnce(&mut Faults)) {
        let mut faults = self.get();
        change(&mut faults);
        self.set(faults);
    }

    /// The session cap now in force.
    pub fn max_sessions(&self) -> usize {
        self.refresh();
        self.lock().current.max_sessions
    }

    /// Starts a command: re-reads the control file if it changed, consumes
    /// one `drop_next` or (else) one `fail_next`, and draws the jitter.
    pub fn begin_command(&self) -> CommandFaults {
        self.refresh();
        let mut inner = self.lock();
        let f = &mut inner.current;
        let chance = |percent: u8| percent > 0 && rand::random_range(0..100u8) < percent;
        let drop = f.drop_next > 0 || chance(f.drop_percent);
        let fail = if drop {
            f.drop_next = f.drop_next.saturating_sub(1);
            None
        } else if f.fail_next > 0 {
            f.fail_next -= 1;
            Some(f.fail_message.clone())
        } else {
            None
        };
        let jitter = if f.latency_jitter_ms > 0 {
            rand::random_range(0..=f.latency_jitter_ms)
        } else {
            0
        };
        CommandFaults {
            latency: Duration::from_millis(f.latency_ms + jitter),
            slow_add: Duration::from_millis(f.slow_add_ms),
            drop,
            lose_reply: !drop && fail.is_none() && chance(f.lose_reply_percent),
            fail,
            pool_full: f.pool_full,
            exit_status_on_error: f.exit_status_on_error,
            float_numbers: f.float_numbers,
            interrupt_copies: f.interrupt_copies,
            slow_copy_step: Duration::from_millis(f.slow_copy_ms),
            quirks: f.quirks,
            health: f.health.clone(),
        }
    }

    /// Applies the control file if its stamp changed since the last look.
    fn refresh(&self) {
        let Some(path) = &self.file else { return };
        let stamp = stamp_of(path);
        let mut inner = self.lock();
        if stamp == inner.file_stamp {
            return;
        }
        // Armed counters are not settings: they keep their remaining count
        // unless the file sets them.
        let base = Faults {
            fail_next: inner.current.fail_next,
            drop_next: inner.current.drop_next,
            ..inner.base.clone()
        };
        match &stamp {
            None => {
                tracing::info!(file = %path.display(), "fault control file gone; flag defaults apply");
                inner.current = base;
            }
            Some(_) => match read_overrides(path, &base) {
                Ok(faults) => {
                    tracing::info!(file = %path.display(), ?faults, "fault control file applied");
                    inner.current = faults;
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "fault control file ignored");
                }
            },
        }
        inner.file_stamp = stamp;
    }
}

fn stamp_of(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::metadata(path).ok()?;
    Some(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode: meta.ino(),
    })
}

/// Why the control file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FaultsFileError {
    #[error("reading: {0}")]
    Read(#[from] std::io::Error),
    #[error("parsing: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the file must hold a JSON object")]
    NotAnObject,
}

/// `base` with the fields of the JSON object in `path` laid over it.
fn read_overrides(path: &Path, base: &Faults) -> Result<Faults, FaultsFileError> {
    let text = fs::read_to_string(path)?;
    overlay(base, &text)
}

/// Part of an injected delay left to a high-resolution sleep: tokio's timer ticks in whole
/// milliseconds and rounds up.
const FINE_DELAY: Duration = Duration::from_millis(2);

/// An injected delay, exact to tens of microseconds. A plain tokio sleep of 20 ms ends after
/// about 21.3 ms (its timer ticks in whole milliseconds and rounds up), which would add a
/// millisecond to every injected round trip and blur what a benchmark measures. So the
/// coarse timer covers all but the last [`FINE_DELAY`], and a thread's high-resolution
/// sleep the rest: the blocking thread that runs the command anyway, when there is one.
#[derive(Debug, Clone, Copy)]
pub struct InjectedDelay {
    due: std::time::Instant,
}

impl InjectedDelay {
    /// Waits the coarse part of `delay`.
    pub async fn begin(delay: Duration) -> Self {
        let due = std::time::Instant::now() + delay;
        if let Some(coarse) = delay.checked_sub(FINE_DELAY) {
            tokio::time::sleep(coarse).await;
        }
        Self { due }
    }

    /// Waits the rest on this thread (a blocking one).
    pub fn finish_blocking(&self) {
        let rest = self
            .due
            .saturating_duration_since(std::time::Instant::now());
        if !rest.is_zero() {
            std::thread::sleep(rest);
        }
    }

    /// Waits the rest from async code, on a blocking thread.
    pub async fn finish(self) {
        if self.due > std::time::Instant::now() {
            let _ = tokio::task::spawn_blocking(move || self.finish_blocking()).await;
        }
    }
}

/// Waits `delay`, exactly (see [`InjectedDelay`]).
pub async fn inject_delay(delay: Duration) {
    InjectedDelay::begin(delay).await.finish().await;
}

/// `base` with the fields of the JSON object `text` laid over it. Unknown
/// fields are errors, so a typo does not silently do nothing.
pub fn overlay(base: &Faults, text: &str) -> Result<Faults, FaultsFileError> {
    let overrides: serde_json::Value = serde_json::from_str(text)?;
    let serde_json::Value::Object(overrides) = overrides else {
        return Err(FaultsFileError::NotAnObject);
    };
    let serde_json::Value::Object(mut merged) = serde_json::to_value(base)? else {
        unreachable!("Faults serializes to an object")
    };
    merged.extend(overrides);
    Ok(serde_json::from_value(serde_json::Value::Object(merged))?)
}

/// Counts sessions in flight against the cap.
#[derive(Debug, Default)]
pub struct SessionGate {
    active: AtomicUsize,
}

/// One admitted session; leaving it (drop) frees the slot.
#[derive(Debug)]
pub struct SessionPermit {
    gate: Arc<SessionGate>,
}

impl SessionGate {
    /// Admits a session if fewer than `limit` are active.
    pub fn try_enter(self: &Arc<Self>, limit: usize) -> Option<SessionPermit> {
        self.active
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| SessionPermit {
                gate: Arc::clone(self),
            })
    }

    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.gate.active.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_consumed_drop_before_fail() {
        let control = FaultControl::new(
            Faults {
                drop_next: 1,
                fail_next: 2,
                fail_message: "no such item".into(),
                ..Faults::default()
            },
            None,
        );
        assert!(control.begin_command().drop);
        let next = control.begin_command();
        assert!(!next.drop);
        assert_eq!(next.fail.as_deref(), Some("no such item"));
        assert_eq!(
            control.begin_command().fail.as_deref(),
            Some("no such item")
        );
        assert_eq!(control.begin_command().fail, None);
        assert_eq!(control.get().fail_next, 0);
    }

    #[tokio::test]
    async fn injected_delays_are_never_short_and_not_rounded_up_to_the_next_tick() {
        let delay = Duration::from_millis(20);
        let mut took = Vec::new();
        for _ in 0..7 {
            let started = std::time::Instant::now();
            inject_delay(delay).await;
            took.push(started.elapsed());
        }
        assert!(took.iter().all(|t| *t >= delay), "{took:?}");
        // A tokio sleep alone overshoots by about 1.3 ms, nearly every time; leave room for
        // a loaded machine's scheduling in a few of the runs.
        let close = took
            .iter()
            .filter(|t| **t < delay + Duration::from_micros(700))
            .count();
        assert!(close >= 4, "{took:?}");
    }

    #[test]
    fn latency_and_jitter_stay_in_range() {
        let control = FaultControl::new(
            Faults {
                latency_ms: 10,
                latency_jitter_ms: 5,
                ..Faults::default()
            },
            None,
        );
        for _ in 0..50 {
            let latency = control.begin_command().latency;
            assert!((Duration::from_millis(10)..=Duration::from_millis(15)).contains(&latency));
        }
    }

    #[test]
    fn the_control_file_overrides_and_reverts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FAULTS_FILE);
        let base = Faults {
            latency_ms: 7,
            ..Faults::default()
        };
        let control = FaultControl::new(base.clone(), Some(path.clone()));
        assert_eq!(control.get(), base);

        fs::write(
            &path,
            r#"{"pool_full": true, "fail_next": 1, "fail_message": "failure: boom"}"#,
        )
        .unwrap();
        let faults = control.get();
        assert!(faults.pool_full);
        assert_eq!(faults.latency_ms, 7, "fields left out keep the base value");
        assert_eq!(
            control.begin_command().fail.as_deref(),
            Some("failure: boom")
        );
        // Unchanged file: the consumed counter is not re-armed.
        assert_eq!(control.begin_command().fail, None);

        // A different stamp (here: length) re-arms it.
        fs::write(
            &path,
            r#"{"pool_full": true, "fail_next": 1, "fail_message": "failure: boom!"}"#,
        )
        .unwrap();
        assert_eq!(
            control.begin_command().fail.as_deref(),
            Some("failure: boom!")
        );

        // Garbage is ignored (previous faults stay).
        fs::write(&path, r#"{"pool_ful": true}"#).unwrap();
        assert!(control.get().pool_full);

        fs::remove_file(&path).unwrap();
        assert_eq!(control.get(), base);
    }

    #[test]
    fn consumed_counters_are_not_rearmed_by_other_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FAULTS_FILE);
        let control = FaultControl::new(Faults::default(), Some(path.clone()));
        control.update(|f| f.drop_next = 1);
        assert!(control.begin_command().drop);
        fs::write(&path, r#"{"float_numbers": true}"#).unwrap();
        let next = control.begin_command();
        assert!(!next.drop && next.float_numbers);
        control.update(|f| f.fail_next = 2);
        fs::remove_file(&path).unwrap();
        assert_eq!(
            control.get().fail_next,
            2,
            "an armed counter survives the file going away"
        );
    }

    #[test]
    fn chances_in_percent_drop_or_lose_about_that_share_and_never_both() {
        let control = FaultControl::new(Faults::default(), None);
        let draws = |n: usize| (0..n).map(|_| control.begin_command()).collect::<Vec<_>>();
        assert!(
            draws(200).iter().all(|f| !f.drop && !f.lose_reply),
            "0 % is never"
        );
        control.update(|f| {
            f.drop_percent = 20;
            f.lose_reply_percent = 50;
        });
        let drawn = draws(4000);
        let dropped = drawn.iter().filter(|f| f.drop).count();
        let lost = drawn.iter().filter(|f| f.lose_reply).count();
        assert!(drawn.iter().all(|f| !(f.drop && f.lose_reply)));
        // 20 % of 4000 is 800; 50 % of the 3200 left is 1600 (bounds far beyond chance).
        assert!((600..1000).contains(&dropped), "{dropped}");
        assert!((1350..1850).contains(&lost), "{lost}");
        control.update(|f| f.drop_percent = 100);
        assert!(draws(100).iter().all(|f| f.drop && !f.lose_reply));
    }

    #[test]
    fn overlay_rejects_unknown_fields_and_non_objects() {
        let base = Faults::default();
        assert!(matches!(
            overlay(&base, "[1]"),
            Err(FaultsFileError::NotAnObject)
        ));
        assert!(matches!(
            overlay(&base, r#"{"nope": 1}"#),
            Err(FaultsFileError::Parse(_))
        ));
        assert_eq!(
            overlay(&base, r#"{"max_sessions": 3}"#)
                .unwrap()
                .max_sessions,
            3
        );
    }

    #[test]
    fn the_gate_caps_sessions() {
        let gate = Arc::new(SessionGate::default());
        let a = gate.try_enter(2).unwrap();
        let _b = gate.try_enter(2).unwrap();
        assert!(gate.try_enter(2).is_none());
        drop(a);
        assert_eq!(gate.active(), 1);
        assert!(gate.try_enter(2).is_some());
        assert!(gate.try_enter(0).is_none());
    }
}
