//! Polls a connection again in place when it wakes itself while it runs.
//!
//! hyper's HTTP/1 dispatcher wakes its own task in the middle of a poll (by
//! our reading of its source, the request body's channel: it tells the
//! dispatcher the handler wants the body, and hands the body over, both within
//! the poll that parsed the request). tokio queues a task woken while it runs
//! as a yield, at the back of the worker's queue, and a queued task makes the
//! worker wake a parked one to steal it. That worker finds nothing (the first
//! worker polls the task itself) and parks again: a thread woken for nothing
//! on every request that arrives while the pool idles, which is every cold
//! decrypt and every request of a quiet node
//! (docs/design/performance.md, "A worker woken for nothing on every
//! request").
//!
//! [`InPlace`] polls the connection with a waker of its own. A wake that comes
//! while that poll runs, from this thread or another, is noted and answered by
//! polling again before the poll returns, up to [`MAX_REPOLLS`] times (then it
//! goes to the scheduler, so that one connection cannot hold a worker); a wake
//! at any other time goes straight to the task's waker, as before.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

/// Polls in a row for wakes that came while the connection ran, before the
/// rest goes through the scheduler. A request wakes its connection once or
/// twice this way; hyper's own loop bounds the work of each poll.
const MAX_REPOLLS: usize = 4;

/// Nobody polls the connection: a wake goes to the task.
const IDLE: u8 = 0;
/// A poll runs: a wake is noted.
const POLLING: u8 = 1;
/// A poll runs and was woken: it polls again before it returns.
const WOKEN: u8 = 2;

struct Shared {
    state: AtomicU8,
    /// The waker of the task that last polled.
    task: Mutex<Option<Waker>>,
}

impl Shared {
    fn task(&self) -> std::sync::MutexGuard<'_, Option<Waker>> {
        // A poisoned lock still holds a valid waker (or none).
        self.task.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Wake for Shared {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        match self
            .state
            .compare_exchange(POLLING, WOKEN, Ordering::AcqRel, Ordering::Acquire)
        {
            // Noted: the running poll polls again.
            Ok(_) | Err(WOKEN) => {}
            _ => {
                if let Some(w) = self.task().as_ref() {
                    w.wake_by_ref();
                }
            }
        }
    }
}

/// The waker and state of one connection's polls.
pub struct InPlace {
    shared: Arc<Shared>,
    waker: Waker,
}

impl InPlace {
    pub fn new() -> Self {
        let shared = Arc::new(Shared {
            state: AtomicU8::new(IDLE),
            task: Mutex::new(None),
        });
        Self {
            waker: Waker::from(Arc::clone(&shared)),
            shared,
        }
    }

    /// Polls `f` with this waker, again at once when it woke itself.
    pub fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut f: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        {
            let mut task = self.shared.task();
            if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let mut inner = Context::from_waker(&self.waker);
        for _ in 0..=MAX_REPOLLS {
            self.shared.state.store(POLLING, Ordering::Release);
            if let Poll::Ready(v) = f(&mut inner) {
                self.shared.state.store(IDLE, Ordering::Release);
                return Poll::Ready(v);
            }
            if self
                .shared
                .state
                .compare_exchange(POLLING, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Pending;
            }
            // Woken while it ran: poll again here, not through the queue.
        }
        // Still waking itself: let the scheduler run others first.
        self.shared.state.store(IDLE, Ordering::Release);
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Default for InPlace {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::test_wakers::counter as task;

    #[test]
    fn a_wake_during_the_poll_polls_again_in_place() {
        let (count, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let p = InPlace::new();
        let mut polls = 0;
        // Wakes itself on its first poll (as hyper's body channel does),
        // finishes on the second.
        let r = p.poll(&mut cx, |cx| {
            polls += 1;
            if polls == 1 {
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(7)
            }
        });
        assert_eq!(r, Poll::Ready(7));
        assert_eq!(polls, 2);
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "the task was not woken");
    }

    #[test]
    fn a_wake_after_the_poll_goes_to_the_task() {
        let (count, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let p = InPlace::new();
        let mut kept = None;
        let r: Poll<()> = p.poll(&mut cx, |cx| {
            kept = Some(cx.waker().clone());
            Poll::Pending
        });
        assert_eq!(r, Poll::Pending);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        // Later, from the I/O driver or another thread.
        let kept = kept.unwrap();
        std::thread::spawn(move || kept.wake()).join().unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "a wake was lost");
    }

    #[test]
    fn the_latest_task_waker_is_woken() {
        let (first, w1) = task();
        let (second, w2) = task();
        let p = InPlace::new();
        let mut kept = None;
        let _: Poll<()> = p.poll(&mut Context::from_waker(&w1), |cx| {
            kept = Some(cx.waker().clone());
            Poll::Pending
        });
        // The connection moved to another task (or its waker changed).
        let _: Poll<()> = p.poll(&mut Context::from_waker(&w2), |_| Poll::Pending);
        kept.unwrap().wake_by_ref();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_future_that_always_wakes_itself_goes_back_to_the_scheduler() {
        let (count, waker) = task();
        let mut cx = Context::from_waker(&waker);
        let p = InPlace::new();
        let mut polls = 0;
        let r: Poll<()> = p.poll(&mut cx, |cx| {
            polls += 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        assert_eq!(r, Poll::Pending);
        assert_eq!(polls, MAX_REPOLLS + 1);
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "handed to the scheduler");
        // And the state is idle again: a later wake reaches the task.
        let _ = p.poll(&mut cx, |_| Poll::<()>::Pending);
        p.waker.wake_by_ref();
        assert_eq!(count.0.load(Ordering::SeqCst), 2);
    }
}
