//! The server's stop and drain signal, as every open connection waits for it.
//!
//! A connection task waits for its connection and for this signal together,
//! so it polls the signal each time it wakes: about twice per request. A
//! pending `changed()` of tokio's `watch` takes a mutex on every such poll,
//! one of a few shared by every connection on both workers. Here a
//! [`Subscriber`] that is pending, polled again by the same task, reads one
//! atomic and compares wakers: no lock. The lock is taken when a subscriber
//! first waits (or its task's waker changes), when it goes, and when the
//! signal is sent.
//!
//! The value is a `bool`, as the watch's was: `true` tells open connections
//! to close between requests (a stop, or a requested drain), `false` to stay
//! open again (a drain resumed). Dropping the [`Sender`] sends `true`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

struct Shared {
    value: AtomicBool,
    /// How many times a value was sent; a subscriber has seen up to `seen`.
    version: AtomicU64,
    waiters: Mutex<Waiters>,
}

#[derive(Default)]
struct Waiters {
    next_id: u64,
    wakers: HashMap<u64, Waker>,
}

impl Shared {
    fn waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side, held by the accept loop.
pub struct Sender(Arc<Shared>);

/// One connection's view of the signal.
pub struct Subscriber {
    shared: Arc<Shared>,
    /// The version this subscriber has answered for.
    seen: u64,
    /// Once it has waited: its id in the waiters, and the waker stored there.
    waiting: Option<(u64, Waker)>,
}

/// A signal that no value was sent to yet.
pub fn channel() -> Sender {
    Sender(Arc::new(Shared {
        value: AtomicBool::new(false),
        version: AtomicU64::new(0),
        waiters: Mutex::new(Waiters::default()),
    }))
}

impl Sender {
    /// Sets the value and wakes every subscriber waiting.
    pub fn send(&self, value: bool) {
        self.0.value.store(value, Ordering::SeqCst);
        self.0.version.fetch_add(1, Ordering::SeqCst);
        for waker in self.0.waiters().wakers.values() {
            waker.wake_by_ref();
        }
    }

    /// A subscriber that has seen nothing yet: if a value was sent already,
    /// its first wait answers at once with the value as it is now.
    pub fn subscribe(&self) -> Subscriber {
        Subscriber {
            shared: Arc::clone(&self.0),
            seen: 0,
            waiting: None,
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.send(true);
    }
}

impl Subscriber {
    /// Ready with the value once one was sent since this last answered.
    pub fn poll_changed(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        if let Some(v) = self.take_change() {
            return Poll::Ready(v);
        }
        if let Some((_, w)) = &self.waiting
            && w.will_wake(cx.waker())
        {
            return Poll::Pending;
        }
        let waker = cx.waker().clone();
        {
            let mut waiters = self.shared.waiters();
            let id = match &self.waiting {
                Some((id, _)) => *id,
                None => {
                    waiters.next_id += 1;
                    waiters.next_id
                }
            };
            waiters.wakers.insert(id, waker.clone());
            self.waiting = Some((id, waker));
        }
        // A send between the check above and the registration woke nobody
        // here; the version says whether there was one.
        match self.take_change() {
            Some(v) => Poll::Ready(v),
            None => Poll::Pending,
        }
    }

    /// Waits until a value is sent (see [`poll_changed`](Self::poll_changed)).
    pub fn changed(&mut self) -> impl Future<Output = bool> + '_ {
        std::future::poll_fn(|cx| self.poll_changed(cx))
    }

    fn take_change(&mut self) -> Option<bool> {
        let version = self.shared.version.load(Ordering::SeqCst);
        if version == self.seen {
            return None;
        }
        self.seen = version;
        Some(self.shared.value.load(Ordering::SeqCst))
    }
}

/// A copy that has seen what this one has, and waits on its own.
impl Clone for Subscriber {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            seen: self.seen,
            waiting: None,
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some((id, _)) = &self.waiting {
            self.shared.waiters().wakers.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_wakers::counter;

    fn waiting(tx: &Sender) -> usize {
        tx.0.waiters().wakers.len()
    }

    #[test]
    fn pending_until_sent_then_ready_once_with_the_value() {
        let tx = channel();
        let mut rx = tx.subscribe();
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        for _ in 0..3 {
            assert!(rx.poll_changed(&mut cx).is_pending());
        }
        assert_eq!(waiting(&tx), 1, "polled again by one task: one entry");
        tx.send(true);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "the waiter was woken");
        assert_eq!(rx.poll_changed(&mut cx), Poll::Ready(true));
        assert!(rx.poll_changed(&mut cx).is_pending(), "answered once");
        tx.send(false);
        assert_eq!(rx.poll_changed(&mut cx), Poll::Ready(false));
    }

    #[test]
    fn a_subscriber_after_a_send_sees_the_value_at_once() {
        let tx = channel();
        tx.send(true);
        let mut rx = tx.subscribe();
        let waker = Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert_eq!(rx.poll_changed(&mut cx), Poll::Ready(true));
        assert!(rx.poll_changed(&mut cx).is_pending());
    }

    #[test]
    fn a_new_waker_replaces_the_old_one_and_a_dropped_subscriber_leaves() {
        let tx = channel();
        let mut rx = tx.subscribe();
        let (old, old_waker) = counter();
        let (new, new_waker) = counter();
        assert!(
            rx.poll_changed(&mut Context::from_waker(&old_waker))
                .is_pending()
        );
        assert!(
            rx.poll_changed(&mut Context::from_waker(&new_waker))
                .is_pending()
        );
        assert_eq!(waiting(&tx), 1);
        tx.send(true);
        assert_eq!(
            old.0.load(Ordering::SeqCst),
            0,
            "the replaced waker is not woken"
        );
        assert_eq!(new.0.load(Ordering::SeqCst), 1);
        drop(rx);
        assert_eq!(waiting(&tx), 0);
    }

    #[test]
    fn dropping_the_sender_sends_stop() {
        let tx = channel();
        let mut rx = tx.subscribe();
        let (count, waker) = counter();
        let mut cx = Context::from_waker(&waker);
        assert!(rx.poll_changed(&mut cx).is_pending());
        drop(tx);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(rx.poll_changed(&mut cx), Poll::Ready(true));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_waiting_task_on_every_worker_wakes() {
        let tx = channel();
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(100);
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let mut rx = tx.subscribe();
                let ready = ready_tx.clone();
                tokio::spawn(async move {
                    // Registered before the send: the first poll waits.
                    let mut first = true;
                    let v = std::future::poll_fn(|cx| {
                        let p = rx.poll_changed(cx);
                        if std::mem::take(&mut first) {
                            let _ = ready.try_send(());
                        }
                        p
                    })
                    .await;
                    assert!(v);
                })
            })
            .collect();
        for _ in 0..100 {
            ready_rx.recv().await.unwrap();
        }
        tx.send(true);
        for t in tasks {
            tokio::time::timeout(std::time::Duration::from_secs(60), t)
                .await
                .expect("a waiting task was never woken")
                .unwrap();
        }
        assert_eq!(waiting(&tx), 0, "every subscriber left with its task");
    }
}
