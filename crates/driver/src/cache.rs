//! A value read from the device, reused for a short time and fetched by one caller at a time.
//!
//! Concurrent callers that find the value stale queue on one async mutex: the first fetches,
//! the others then find the fresh value. So a burst of probes or capacity queries costs one
//! device session, and failures are cached too, so an outage does not turn into a storm of
//! connection attempts.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// A cached, single-flight reading. `E` is cached as well as `T`.
#[derive(Debug)]
pub struct Cached<T, E> {
    ttl: Duration,
    slot: Mutex<Option<Reading<T, E>>>,
}

#[derive(Debug, Clone)]
struct Reading<T, E> {
    taken_at: Instant,
    value: Result<T, E>,
}

impl<T: Clone, E: Clone> Cached<T, E> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            slot: Mutex::new(None),
        }
    }

    /// The cached reading if younger than the TTL, else a new one from `fetch`. Returns the
    /// value and when it was taken.
    pub async fn get<F, Fut>(&self, fetch: F) -> (Result<T, E>, Instant)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        self.get_newer_than(None, fetch).await
    }

    /// Like [`Cached::get`], but a reading taken at or before `not_before` counts as stale:
    /// for a caller that saw a reading and needs a later one. A reading another caller took in
    /// the meantime is reused.
    pub async fn get_newer_than<F, Fut>(
        &self,
        not_before: Option<Instant>,
        fetch: F,
    ) -> (Result<T, E>, Instant)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(reading) = slot.as_ref() {
            let fresh = reading.taken_at.elapsed() < self.ttl;
            let new_enough = not_before.is_none_or(|t| reading.taken_at > t);
            if fresh && new_enough {
                return (reading.value.clone(), reading.taken_at);
            }
        }
        let value = fetch().await;
        let taken_at = Instant::now();
        *slot = Some(Reading {
            taken_at,
            value: value.clone(),
        });
        (value, taken_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn counted(calls: &AtomicUsize, delay: Duration) -> Result<usize, String> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(delay).await;
        Ok(n)
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(Cached::<usize, String>::new(Duration::from_secs(60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let readers = (0..50).map(|_| {
            let (cache, calls) = (cache.clone(), calls.clone());
            tokio::spawn(async move {
                cache
                    .get(|| counted(&calls, Duration::from_millis(20)))
                    .await
                    .0
            })
        });
        for r in futures::future::join_all(readers).await {
            assert_eq!(r.unwrap(), Ok(1));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn stale_readings_and_explicit_refreshes_fetch_again() {
        let cache = Cached::<usize, String>::new(Duration::from_millis(30));
        let calls = AtomicUsize::new(0);
        let (first, at) = cache.get(|| counted(&calls, Duration::ZERO)).await;
        assert_eq!(first, Ok(1));
        // Fresh: reused.
        assert_eq!(cache.get(|| counted(&calls, Duration::ZERO)).await.0, Ok(1));
        // A caller needing something newer than what it saw gets a new reading...
        let (second, at2) = cache
            .get_newer_than(Some(at), || counted(&calls, Duration::ZERO))
            .await;
        assert_eq!(second, Ok(2));
        assert!(at2 > at);
        // ...and one whose reading is already outdated by someone else reuses theirs.
        assert_eq!(
            cache
                .get_newer_than(Some(at), || counted(&calls, Duration::ZERO))
                .await
                .0,
            Ok(2)
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(cache.get(|| counted(&calls, Duration::ZERO)).await.0, Ok(3));
    }

    #[tokio::test]
    async fn failures_are_cached_too() {
        let cache = Cached::<usize, String>::new(Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let fail = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<usize, _>("down".to_owned())
        };
        assert_eq!(cache.get(fail).await.0, Err("down".into()));
        assert_eq!(cache.get(fail).await.0, Err("down".into()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
