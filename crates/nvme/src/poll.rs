//! Bounded waiting for sysfs to reach a state. Sysfs offers no practical change notification
//! for these objects, but the device nodes that come and go with them do: devtmpfs creates and
//! removes them under `/dev`, and inotify reports that. So a wait re-checks as soon as the
//! watched directory changes ([`DirEvents`]), and otherwise polls, starting at 2 ms and backing
//! off to 32 ms (for what `/dev` does not show, such as a controller's state, or when inotify
//! is unavailable), until an overall deadline.

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustix::fs::inotify;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::{Error, Result};

pub(crate) enum Check<T> {
    Ready(T),
    /// Not yet; the text describes what was seen, for the timeout error.
    Pending(String),
}

/// How often a wait re-checks when nothing wakes it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub first: Duration,
    pub longest: Duration,
}

/// A namespace usually appears within milliseconds of a connect.
pub(crate) const POLL: Backoff = Backoff {
    first: Duration::from_millis(2),
    longest: Duration::from_millis(32),
};

/// Entries created, removed or changed in one directory, for any number of waits.
///
/// One inotify instance serves its owner's whole life, read by a task of its own: closing an
/// instance waits for an RCU grace period in the kernel (tens of milliseconds), far too long
/// to pay per wait. The instance is made on first use (it needs the runtime) and closed by its
/// task once the owner and every subscription are gone.
#[derive(Debug)]
pub(crate) struct DirEvents {
    dir: PathBuf,
    /// Never waited on itself: the template of every subscription, and what keeps the task.
    changes: Mutex<Option<watch::Receiver<u64>>>,
}

/// What one wait sees of a [`DirEvents`]: the changes after it subscribed.
#[derive(Debug)]
pub(crate) struct DirChanges(watch::Receiver<u64>);

impl DirEvents {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            changes: Mutex::new(None),
        }
    }

    /// Changes from now on. None when inotify cannot be had (no instances left, an unusual
    /// filesystem); waits then poll alone, slower but as correct. Must run within the runtime.
    pub fn subscribe(&self) -> Option<DirChanges> {
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        if changes.is_none() {
            match watch_dir(&self.dir) {
                Ok(receiver) => *changes = Some(receiver),
                Err(error) => {
                    tracing::debug!(dir = %self.dir.display(), %error, "no inotify watch; polling only");
                    return None;
                }
            }
        }
        let mut receiver = changes.as_ref()?.clone();
        receiver.mark_unchanged();
        Some(DirChanges(receiver))
    }
}

impl DirChanges {
    /// Returns at the next change. Never returns once the watch has failed: the wait's polling
    /// carries on alone.
    async fn next(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Starts the task that turns inotify events on `dir` into a change count.
fn watch_dir(dir: &Path) -> std::io::Result<watch::Receiver<u64>> {
    let fd = inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC)?;
    let events = inotify::WatchFlags::CREATE
        | inotify::WatchFlags::DELETE
        | inotify::WatchFlags::ATTRIB
        | inotify::WatchFlags::MOVED_TO
        | inotify::WatchFlags::ONLYDIR;
    inotify::add_watch(&fd, dir, events)?;
    // SAFETY: the descriptor is owned (OwnedFd) and moves into the AsyncFd, so it stays open and
    // the same until the AsyncFd is dropped.
    let fd = unsafe { AsyncFd::register(fd) }?;
    let (sender, receiver) = watch::channel(0u64);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = sender.closed() => break,
                ready = fd.readable() => {
                    let Ok(mut ready) = ready else { break };
                    match drain(ready.get_inner()) {
                        Ok(true) => sender.send_modify(|count| *count += 1),
                        Ok(false) => ready.clear_ready(),
                        Err(error) => {
                            tracing::debug!(%error, "inotify read failed; polling only");
                            break;
                        }
                    }
                }
            }
        }
        // The close waits for the kernel's grace period: not on a runtime thread.
        drop(tokio::task::spawn_blocking(move || drop(fd)));
    });
    Ok(receiver)
}

/// Reads every pending event (their content does not matter: any change means "check
/// again"); true when there was at least one.
fn drain(fd: &OwnedFd) -> rustix::io::Result<bool> {
    let mut seen = false;
    let mut events = [0u8; 4096];
    loop {
        match rustix::io::read(fd, &mut events) {
            Ok(0) => return Ok(seen),
            Ok(_) => seen = true,
            Err(rustix::io::Errno::AGAIN) => return Ok(seen),
            Err(rustix::io::Errno::INTR) => {}
            Err(error) => return Err(error),
        }
    }
}

/// Calls `check` until it is ready, it fails, or `deadline` passes (checking once more at the
/// deadline itself). Each of `changes` triggers a check at once. `check` is async so that its
/// sysfs and `/dev` reads can run on blocking threads.
pub(crate) async fn wait_for<T, F>(
    waiting_for: &str,
    deadline: Instant,
    changes: Option<&mut DirChanges>,
    check: impl FnMut() -> F,
) -> Result<T>
where
    F: Future<Output = Result<Check<T>>>,
{
    wait_with(POLL, waiting_for, deadline, changes, check).await
}

async fn wait_with<T, F>(
    backoff: Backoff,
    waiting_for: &str,
    deadline: Instant,
    mut changes: Option<&mut DirChanges>,
    mut check: impl FnMut() -> F,
) -> Result<T>
where
    F: Future<Output = Result<Check<T>>>,
{
    let mut step = backoff.first;
    let mut last_seen = String::from("nothing yet");
    loop {
        match check().await {
            Ok(Check::Ready(value)) => return Ok(value),
            Ok(Check::Pending(seen)) => last_seen = seen,
            // The look itself ran into the deadline (its blocking read has no time left at
            // the last check): what the previous look saw is the news.
            Err(Error::TimedOut { .. }) if Instant::now() >= deadline => {
                return Err(Error::TimedOut {
                    waiting_for: waiting_for.to_owned(),
                    last_seen,
                });
            }
            Err(error) => return Err(error),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::TimedOut {
                waiting_for: waiting_for.to_owned(),
                last_seen,
            });
        }
        let timer = tokio::time::sleep_until((now + step).min(deadline));
        if woken(timer, changes.as_deref_mut()).await {
            continue;
        }
        step = (step * 2).min(backoff.longest);
    }
}

/// Waits for `timer` or one of `changes`; true when the change came first.
async fn woken(timer: impl Future<Output = ()>, changes: Option<&mut DirChanges>) -> bool {
    match changes {
        Some(changes) => tokio::select! {
            () = timer => false,
            () = changes.next() => true,
        },
        None => {
            timer.await;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_as_soon_as_ready() {
        let mut calls = 0;
        let started = Instant::now();
        let value = wait_for(
            "three calls",
            started + Duration::from_secs(5),
            None,
            || {
                calls += 1;
                let calls = calls;
                async move {
                    Ok(if calls == 3 {
                        Check::Ready(calls)
                    } else {
                        Check::Pending(format!("call {calls}"))
                    })
                }
            },
        )
        .await
        .unwrap();
        assert_eq!(value, 3);
        assert!(started.elapsed() < Duration::from_millis(500));
    }

    #[tokio::test]
    async fn times_out_with_the_last_observation() {
        let started = Instant::now();
        let result: Result<()> = wait_for(
            "never",
            started + Duration::from_millis(60),
            None,
            || async { Ok(Check::Pending("still nothing".into())) },
        )
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
    async fn a_look_cut_off_by_the_deadline_reports_what_was_seen_before() {
        let deadline = Instant::now() + Duration::from_millis(50);
        let result: Result<()> = wait_for("a slow look", deadline, None, || async move {
            if Instant::now() >= deadline {
                Err(Error::TimedOut {
                    waiting_for: "sysfs scan".into(),
                    last_seen: "still running".into(),
                })
            } else {
                Ok(Check::Pending("controller connecting".into()))
            }
        })
        .await;
        match result {
            Err(Error::TimedOut {
                waiting_for,
                last_seen,
            }) => {
                assert_eq!(waiting_for, "a slow look");
                assert_eq!(last_seen, "controller connecting");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn errors_stop_the_wait() {
        let result: Result<()> = wait_for(
            "broken",
            Instant::now() + Duration::from_secs(5),
            None,
            || async { Err(Error::BadReply("x".into())) },
        )
        .await;
        assert!(matches!(result, Err(Error::BadReply(_))));
    }

    /// A poll step far longer than the test: only the watch can end the wait in time.
    const SLOW: Backoff = Backoff {
        first: Duration::from_secs(30),
        longest: Duration::from_secs(30),
    };

    #[tokio::test]
    async fn a_node_appearing_in_the_watched_directory_ends_the_wait_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let events = DirEvents::new(dir.path());
        let mut changes = events.subscribe().expect("inotify works here");
        let node = dir.path().join("nvme3n1");
        let creator = {
            let node = node.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                std::fs::write(node, b"").unwrap();
            })
        };
        let started = Instant::now();
        let found = wait_with(
            SLOW,
            "a node",
            started + Duration::from_secs(60),
            Some(&mut changes),
            || async {
                Ok(if node.exists() {
                    Check::Ready(())
                } else {
                    Check::Pending("absent".into())
                })
            },
        )
        .await;
        creator.join().unwrap();
        assert!(found.is_ok());
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn changes_that_do_not_satisfy_the_check_keep_the_wait_going() {
        let dir = tempfile::tempdir().unwrap();
        let events = DirEvents::new(dir.path());
        let mut changes = events.subscribe().expect("inotify works here");
        for name in ["loop0", "nvme0"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        let mut checks = 0;
        let result: Result<()> = wait_with(
            SLOW,
            "nothing",
            Instant::now() + Duration::from_millis(200),
            Some(&mut changes),
            || {
                checks += 1;
                let checks = checks;
                async move { Ok(Check::Pending(format!("check {checks}"))) }
            },
        )
        .await;
        assert!(matches!(result, Err(Error::TimedOut { .. })), "{result:?}");
        // The first check, one or two after the changes (read at once or apart), one at the
        // deadline; without the changes there would be two.
        assert!((3..=4).contains(&checks), "{checks} checks");
    }

    #[tokio::test]
    async fn a_subscription_sees_only_later_changes_and_many_can_wait() {
        let dir = tempfile::tempdir().unwrap();
        let events = DirEvents::new(dir.path());
        let mut early = events.subscribe().unwrap();
        std::fs::write(dir.path().join("a"), b"").unwrap();
        tokio::time::timeout(Duration::from_secs(10), early.next())
            .await
            .expect("the early subscription sees the change");
        let mut late = events.subscribe().unwrap();
        let quiet = tokio::time::timeout(Duration::from_millis(100), late.next()).await;
        assert!(quiet.is_err(), "a change from before it subscribed");
        std::fs::remove_file(dir.path().join("a")).unwrap();
        for changes in [&mut early, &mut late] {
            tokio::time::timeout(Duration::from_secs(10), changes.next())
                .await
                .expect("both see the removal");
        }
    }

    #[tokio::test]
    async fn a_directory_that_cannot_be_watched_means_polling_only() {
        let events = DirEvents::new("/nonexistent/dev");
        assert!(events.subscribe().is_none());
    }
}
