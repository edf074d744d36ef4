//! Per-connection timeouts that hyper cannot express on its own: how long a
//! keep-alive connection may idle between requests (`kms.server.idle-timeout`)
//! and how long a client may take to send a request's headers once it started
//! (`kms.server.header-timeout`). hyper's own header timer also runs while a
//! connection idles, which would cap idle time at the header timeout.
//!
//! The I/O wrapper [`Tracked`] notes the first byte of each request; the
//! service notes when requests start and end; [`Activity::expired`] tells the
//! connection task when to close.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

#[derive(Clone, Copy, Debug)]
enum Phase {
    /// No request in progress since this instant.
    Idle(Instant),
    /// The first bytes of a request head arrived at this instant.
    Head(Instant),
    /// This many requests are being served.
    Busy(usize),
}

/// Why a connection should close now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Idle,
    SlowHeader,
}

/// Shared state of one connection.
#[derive(Clone)]
pub struct Activity(Arc<Mutex<Phase>>);

impl Activity {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(Phase::Idle(Instant::now()))))
    }

    fn with<T>(&self, f: impl FnOnce(&mut Phase) -> T) -> T {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    fn bytes_arrived(&self) {
        self.with(|p| {
            if let Phase::Idle(_) = p {
                *p = Phase::Head(Instant::now());
            }
        });
    }

    /// A request's head is complete and its handler starts.
    pub fn request_started(&self) {
        self.with(|p| {
            *p = match *p {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            }
        });
    }

    /// A request's handler returned.
    pub fn request_ended(&self) {
        self.with(|p| {
            *p = match *p {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            }
        });
    }

    /// Whether a timeout has passed.
    pub fn expired(&self, idle: Duration, header: Duration) -> Option<Expiry> {
        self.with(|p| match *p {
            Phase::Idle(t) if t.elapsed() >= idle => Some(Expiry::Idle),
            Phase::Head(t) if t.elapsed() >= header => Some(Expiry::SlowHeader),
            _ => None,
        })
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// An I/O stream that reports arriving bytes to an [`Activity`].
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases() {
        let a = Activity::new();
        let (idle, header) = (Duration::from_millis(40), Duration::from_millis(20));
        assert_eq!(a.expired(idle, header), None);
        a.bytes_arrived();
        std::thread::sleep(Duration::from_millis(25));
        assert_eq!(a.expired(idle, header), Some(Expiry::SlowHeader));
        a.request_started();
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            a.expired(idle, header),
            None,
            "a busy connection never expires"
        );
        a.request_ended();
        assert_eq!(a.expired(idle, header), None);
        std::thread::sleep(Duration::from_millis(45));
        assert_eq!(a.expired(idle, header), Some(Expiry::Idle));
    }
}
