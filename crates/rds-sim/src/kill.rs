//! Abrupt connection close: a stream that starts failing every read and
//! write once its kill switch is thrown. Used for the drop-connection
//! fault and to end live connections at shutdown.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

#[derive(Debug, Default)]
pub struct KillSwitch {
    killed: AtomicBool,
    read_waker: AtomicWaker,
    write_waker: AtomicWaker,
    notify: Notify,
}

impl KillSwitch {
    pub fn kill(&self) {
        self.killed.store(true, Ordering::Release);
        self.read_waker.wake();
        self.write_waker.wake();
        self.notify.notify_waiters();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// Resolves once the switch is thrown.
    pub async fn killed(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_killed() {
                return;
            }
            notified.await;
        }
    }
}

/// A stream that fails with `ConnectionAborted` once its switch is thrown.
/// The switch wakes one reader and one writer: give each connection its own.
#[derive(Debug)]
pub struct KillableStream<S> {
    inner: S,
    switch: Arc<KillSwitch>,
}

impl<S> KillableStream<S> {
    pub fn new(inner: S, switch: Arc<KillSwitch>) -> Self {
        Self { inner, switch }
    }

    fn killed(&self) -> bool {
        self.switch.is_killed()
    }
}

fn aborted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "connection dropped by the simulator",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for KillableStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.switch.read_waker.register(cx.waker());
        if self.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for KillableStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.switch.write_waker.register(cx.waker());
        if self.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.killed() {
            return Poll::Ready(Err(aborted()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_pending_read_fails_when_killed() {
        let (a, mut b) = tokio::io::duplex(64);
        let switch = Arc::new(KillSwitch::default());
        let mut stream = KillableStream::new(a, Arc::clone(&switch));
        b.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        stream.read_exact(&mut buf).await.unwrap();

        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 1];
            let result = stream.read(&mut buf).await;
            (result.map_err(|e| e.kind()), stream)
        });
        tokio::task::yield_now().await;
        switch.kill();
        let (result, mut stream) = reader.await.unwrap();
        assert_eq!(result, Err(io::ErrorKind::ConnectionAborted));
        assert!(stream.write_all(b"x").await.is_err());
        switch.killed().await;
    }
}
