//! Running blocking work (syscalls that may hang on a dead device) under a deadline.

use tokio::time::Instant;

/// The deadline passed before blocking work finished.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} did not finish before its deadline")]
pub struct DeadlinePassed {
    pub op: String,
}

/// Runs `work` on the blocking pool and waits for it until `deadline`.
///
/// When the deadline passes first, the error made from [`DeadlinePassed`] is returned at once
/// and the thread is left to finish on its own: a syscall stuck in the kernel cannot be
/// interrupted from here, but the caller (an RPC handler) must not hang with it.
pub async fn run_blocking<T, E, F>(op: &str, deadline: Instant, work: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<DeadlinePassed> + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    let passed = || DeadlinePassed { op: op.to_owned() }.into();
    let task = tokio::task::spawn_blocking(work);
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(join_error)) if join_error.is_panic() => {
            std::panic::resume_unwind(join_error.into_panic())
        }
        // Only a runtime shutting down cancels blocking work; the caller is going away too.
        Ok(Err(_cancelled)) => Err(passed()),
        Err(_) => Err(passed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use std::time::Duration;

    #[tokio::test]
    async fn returns_the_result_of_quick_work() {
        let deadline = Instant::now() + Duration::from_secs(5);
        let sum: Result<i32, Error> = run_blocking("add", deadline, || Ok(2 + 2)).await;
        assert_eq!(sum.unwrap(), 4);
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_while_the_work_is_stuck() {
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let started = Instant::now();
        let result: Result<(), Error> =
            run_blocking("stuck", started + Duration::from_millis(50), move || {
                let _ = stuck.recv();
                Ok(())
            })
            .await;
        assert!(matches!(result, Err(Error::TimedOut { op }) if op == "stuck"));
        assert!(started.elapsed() < Duration::from_secs(2));
        release.send(()).unwrap();
    }
}
