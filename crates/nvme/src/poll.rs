//! Bounded waiting for sysfs to reach a state. Sysfs offers no practical change notification
//! for these objects, so it is polled, starting at 2 ms (a namespace usually appears within
//! milliseconds of a connect) and backing off to 32 ms, until an overall deadline.

use std::time::Duration;

use tokio::time::Instant;

use crate::{Error, Result};

pub(crate) enum Check<T> {
    Ready(T),
    /// Not yet; the text describes what was seen, for the timeout error.
    Pending(String),
}

const FIRST_STEP: Duration = Duration::from_millis(2);
const LONGEST_STEP: Duration = Duration::from_millis(32);

/// Calls `check` until it is ready, it fails, or `deadline` passes (checking once more at the
/// deadline itself).
pub(crate) async fn wait_for<T>(
    waiting_for: &str,
    deadline: Instant,
    mut check: impl FnMut() -> Result<Check<T>>,
) -> Result<T> {
    let mut step = FIRST_STEP;
    loop {
        let last_seen = match check()? {
            Check::Ready(value) => return Ok(value),
            Check::Pending(seen) => seen,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::TimedOut {
                waiting_for: waiting_for.to_owned(),
                last_seen,
            });
        }
        tokio::time::sleep_until((now + step).min(deadline)).await;
        step = (step * 2).min(LONGEST_STEP);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_as_soon_as_ready() {
        let mut calls = 0;
        let started = Instant::now();
        let value = wait_for("three calls", started + Duration::from_secs(5), || {
            calls += 1;
            Ok(if calls == 3 {
                Check::Ready(calls)
            } else {
                Check::Pending(format!("call {calls}"))
            })
        })
        .await
        .unwrap();
        assert_eq!(value, 3);
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn times_out_with_the_last_observation() {
        let started = Instant::now();
        let result: Result<()> = wait_for("never", started + Duration::from_millis(60), || {
            Ok(Check::Pending("still nothing".into()))
        })
        .await;
        match result {
            Err(Error::TimedOut {
                waiting_for,
                last_seen,
            }) => {
                assert_eq!(waiting_for, "never");
                assert_eq!(last_seen, "still nothing");
            }
            other => panic!("{other:?}"),
        }
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(60) && elapsed < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn errors_stop_the_wait() {
        let result: Result<()> =
            wait_for("broken", Instant::now() + Duration::from_secs(5), || {
                Err(Error::BadReply("x".into()))
            })
            .await;
        assert!(matches!(result, Err(Error::BadReply(_))));
    }
}
