//! Per-connection timeouts that hyper cannot express on its own: how long a
//! keep-alive connection may idle between requests (`kms.server.idle-timeout`)
//! and how long a client may take to send a request's headers once it started
//! (`kms.server.header-timeout`). hyper's own header timer also runs while a
//! connection idles, which would cap idle time at the header timeout.
//!
//! The I/O wrapper [`Tracked`] notes the first byte of each request; the
//! service notes when requests start and end; [`Activity::expired`] tells the
//! connection task when to close.
//!
//! The connection task does not tick to ask: a [`Watchdog`] sleeps until the
//! earliest moment the current phase could expire, re-armed whenever the
//! connection is polled, so an idle keep-alive connection wakes once, when its
//! idle timeout passes, instead of once a second (10 000 idle agents were
//! 10 000 wake-ups a second).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use std::future::Future as _;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

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

    /// When the current phase expires: `None` while a request is served (its
    /// end starts an idle phase, which the next poll of the connection sees).
    pub fn deadline(&self, idle: Duration, header: Duration) -> Option<Instant> {
        self.with(|p| match *p {
            Phase::Idle(t) => t.checked_add(idle),
            Phase::Head(t) => t.checked_add(header),
            Phase::Busy(_) => None,
        })
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

/// The connection task's timer: armed for the earliest deadline it has been
/// given since it last fired. A later deadline does not move it (that would
/// touch the timer wheel on every request); when it fires, the task checks
/// [`Activity::expired`] and arms it again for the phase as it is then, so a
/// busy keep-alive connection costs one wake-up per header timeout at most.
pub struct Watchdog {
    sleep: Pin<Box<Sleep>>,
    armed: Option<Instant>,
}

impl Watchdog {
    pub fn new() -> Self {
        Self {
            sleep: Box::pin(tokio::time::sleep(Duration::ZERO)),
            armed: None,
        }
    }

    /// Arms the timer for `deadline` if that is earlier than the armed one.
    pub fn arm(&mut self, deadline: Option<Instant>) {
        if let Some(d) = deadline
            && self.armed.is_none_or(|a| d < a)
        {
            self.sleep.as_mut().reset(d.into());
            self.armed = Some(d);
        }
    }

    /// Ready once when the armed deadline passes (then unarmed); pending,
    /// with nothing to wake it, while unarmed.
    pub fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.armed.is_none() {
            return Poll::Pending;
        }
        std::task::ready!(self.sleep.as_mut().poll(cx));
        self.armed = None;
        Poll::Ready(())
    }
}

impl Default for Watchdog {
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

    fn poll_once(w: &mut Watchdog) -> Poll<()> {
        w.poll_fired(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[tokio::test]
    async fn the_watchdog_fires_once_at_the_earliest_deadline_it_was_given() {
        let mut w = Watchdog::new();
        assert!(poll_once(&mut w).is_pending(), "unarmed, it never fires");
        w.arm(None);
        assert_eq!(
            w.armed, None,
            "no deadline (a request in progress) arms nothing"
        );
        let now = Instant::now();
        let (early, late) = (
            now + Duration::from_millis(30),
            now + Duration::from_secs(600),
        );
        w.arm(Some(late));
        assert_eq!(w.armed, Some(late));
        w.arm(Some(early));
        assert_eq!(w.armed, Some(early), "an earlier deadline moves it");
        w.arm(Some(late));
        assert_eq!(w.armed, Some(early), "a later one does not");
        std::future::poll_fn(|cx| w.poll_fired(cx)).await;
        assert!(Instant::now() >= early, "not before its deadline");
        assert_eq!(w.armed, None);
        assert!(poll_once(&mut w).is_pending(), "it fires once per arming");
    }
}
