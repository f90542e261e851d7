//! When a failed list or watch is retried. The first retry after a success is immediate: a
//! 410 Gone or a closed watch is routine, and the index must catch up at once (kube's default
//! waits 0.8 s first). Failures in a row back off exponentially, so an API server in trouble
//! is not hammered.

use std::time::Duration;

use kube::runtime::utils::Backoff;

const FIRST: Duration = Duration::from_millis(100);
const MAX: Duration = Duration::from_secs(30);

/// Zero, then 100 ms doubling to 30 s; back to zero after any success.
#[derive(Debug, Default, Clone)]
pub struct RetryBackoff {
    failures: u32,
}

impl Iterator for RetryBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = match self.failures {
            0 => Duration::ZERO,
            n => FIRST.saturating_mul(1 << (n - 1).min(16)).min(MAX),
        };
        self.failures = self.failures.saturating_add(1);
        Some(delay)
    }
}

impl Backoff for RetryBackoff {
    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediate_then_doubling_to_a_cap_and_reset_by_success() {
        let mut b = RetryBackoff::default();
        let ms: Vec<u128> = b.by_ref().take(4).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [0, 100, 200, 400]);
        assert_eq!(b.by_ref().nth(20), Some(MAX));
        b.reset();
        assert_eq!(b.next(), Some(Duration::ZERO));
    }
}
