//! Refused handshakes and throttled requests, aggregated.
//!
//! Anyone who can reach the port can cause a refused handshake, and a client
//! over its rate causes a 429 per request: one record each would let them
//! fill the disk (a refusal used to carry the attacker's 20 KB subject), and a
//! full disk refuses every key operation. So these are *noticed*, not
//! recorded one by one:
//! - per (operation, outcome, certificate fingerprint) and interval
//!   ([`super::AGGREGATE_INTERVAL`]), the first notice is written at once
//!   (`"aggregate":"first"`, `count` 1) and the rest as one
//!   `"aggregate":"summary"` record with their `count`, `first` and `last`
//!   times when the interval ends;
//! - at most [`super::MAX_IDENTITIES`] identities per interval get records
//!   of their own; notices about further ones are counted in one
//!   `"aggregate":"overflow"` record per (operation, outcome);
//! - the subject is escaped and capped at [`super::SUBJECT_CAP`] bytes.
//!
//! So an interval adds at most `2 * MAX_IDENTITIES` + one overflow record per
//! (operation, outcome) pair, each at most [`super::MAX_NOTICE_RECORD_BYTES`].
//! The notice itself is an in-memory update under a short lock: no I/O on
//! the caller's thread (a tokio worker in a TLS handshake). A thread of its
//! own writes the records.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::batch::Queue;
use super::record::unix_ms;
use super::writer::Writer;
use super::{MAX_IDENTITIES, SUBJECT_CAP};

/// One refused handshake or throttled request.
#[derive(Clone, Copy, Debug, Default)]
pub struct Notice<'a> {
    /// `tls-handshake`, or the API operation.
    pub operation: &'static str,
    /// e.g. `refused-not-pinned`, `too-many-requests`.
    pub outcome: &'static str,
    pub fingerprint: &'a str,
    /// Client-controlled for refused handshakes: escaped and capped when written.
    pub subject: &'a str,
    pub alias: &'a str,
    /// `backend`, `device`, or empty before a role is known.
    pub role: &'static str,
}

/// What an aggregated record is about: the operation and outcome, and
/// the client (empty for the overflow record).
#[derive(Clone, Default)]
struct Who {
    operation: &'static str,
    outcome: &'static str,
    fingerprint: String,
    subject: String,
    alias: String,
    role: &'static str,
}

struct Entry {
    who: Who,
    /// The first notice of the interval is written (or being written).
    first_done: bool,
    first_ms: u64,
    /// Notices after the first, for the summary.
    more: u64,
    more_first_ms: u64,
    more_last_ms: u64,
}

#[derive(Default)]
struct Window {
    entries: Vec<Entry>,
    /// Notices beyond MAX_IDENTITIES: (operation, outcome, count, first, last).
    overflow: Vec<(&'static str, &'static str, u64, u64, u64)>,
}

pub(super) enum Cmd {
    /// A first notice is waiting to be written.
    Wake,
    /// Write everything now and take the file to disk (a stop), then answer.
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Default)]
pub(super) struct Aggregator {
    window: Mutex<Window>,
}

impl Aggregator {
    /// Count `n`; true when it is the first of its kind in this interval
    /// (the thread should be woken to write it).
    pub(super) fn notice(&self, n: &Notice<'_>) -> bool {
        let now = unix_ms();
        {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(e) = w.entries.iter_mut().find(|e| {
                e.who.operation == n.operation
                    && e.who.outcome == n.outcome
                    && e.who.fingerprint == n.fingerprint
            }) {
                if e.more == 0 {
                    e.more_first_ms = now;
                }
                e.more += 1;
                e.more_last_ms = now;
                false
            } else if w.entries.len() < MAX_IDENTITIES {
                let cut = |s: &str, cap: usize| {
                    let mut end = s.len().min(cap);
                    while !s.is_char_boundary(end) {
                        end -= 1;
                    }
                    s[..end].to_owned()
                };
                // Keep the subject's length known: the escaper marks the cut.
                let mut subject = cut(n.subject, SUBJECT_CAP);
                if subject.len() < n.subject.len() {
                    subject.push_str("…(");
                    crate::text::push_decimal(&mut subject, n.subject.len() as u64);
                    subject.push_str(" bytes)");
                }
                w.entries.push(Entry {
                    who: Who {
                        operation: n.operation,
                        outcome: n.outcome,
                        fingerprint: cut(n.fingerprint, 128),
                        subject,
                        alias: cut(n.alias, 64),
                        role: n.role,
                    },
                    first_done: false,
                    first_ms: now,
                    more: 0,
                    more_first_ms: 0,
                    more_last_ms: 0,
                });
                true
            } else {
                match w
                    .overflow
                    .iter_mut()
                    .find(|o| o.0 == n.operation && o.1 == n.outcome)
                {
                    Some(o) => {
                        o.2 += 1;
                        o.4 = now;
                    }
                    None => w.overflow.push((n.operation, n.outcome, 1, now, now)),
                }
                false
            }
        }
    }
}

/// A record to write, taken out of the window under its lock.
struct Pending {
    kind: &'static str,
    who: Who,
    count: u64,
    first_ms: u64,
    last_ms: u64,
}

impl Entry {
    /// The record of the interval's first notice.
    fn first(&self) -> Pending {
        Pending {
            kind: "first",
            who: self.who.clone(),
            count: 1,
            first_ms: self.first_ms,
            last_ms: self.first_ms,
        }
    }
}

fn take_firsts(agg: &Aggregator) -> Vec<Pending> {
    let mut w = agg.window.lock().unwrap_or_else(|p| p.into_inner());
    w.entries
        .iter_mut()
        .filter(|e| !e.first_done)
        .map(|e| {
            e.first_done = true;
            e.first()
        })
        .collect()
}

/// Everything not written yet, and a new interval.
fn take_all(agg: &Aggregator) -> Vec<Pending> {
    let w = std::mem::take(&mut *agg.window.lock().unwrap_or_else(|p| p.into_inner()));
    let mut out = Vec::new();
    for e in w.entries {
        if !e.first_done {
            out.push(e.first());
        }
        if e.more > 0 {
            out.push(Pending {
                kind: "summary",
                who: e.who,
                count: e.more,
                first_ms: e.more_first_ms,
                last_ms: e.more_last_ms,
            });
        }
    }
    for (operation, outcome, count, first_ms, last_ms) in w.overflow {
        out.push(Pending {
            kind: "overflow",
            who: Who {
                operation,
                outcome,
                ..Who::default()
            },
            count,
            first_ms,
            last_ms,
        });
    }
    out
}

fn write_all(
    writer: &tokio::sync::Mutex<Writer>,
    queue: &Queue,
    records: Vec<Pending>,
    interval: Duration,
) {
    let mut w = writer.blocking_lock();
    // Key-operation records whose tasks were dropped after queueing them.
    queue.write_queued(&mut w);
    for p in records {
        let r = w.append(|f| {
            f.str("operation", p.who.operation, 64)
                .str("outcome", p.who.outcome, 64)
                .str("client_alias", &p.who.alias, 128)
                .str("client_subject", &p.who.subject, SUBJECT_CAP + 32)
                .str("client_fingerprint", &p.who.fingerprint, 128)
                .str("role", p.who.role, 16)
                .str("aggregate", p.kind, 16)
                .num("count", p.count)
                .time_ms("first", p.first_ms)
                .time_ms("last", p.last_ms)
                .num("interval_s", interval.as_secs());
        });
        match r {
            Ok(()) => tracing::warn!(
                operation = p.who.operation,
                outcome = p.who.outcome,
                count = p.count,
                aggregate = p.kind,
                fingerprint = %crate::text::untrusted(&p.who.fingerprint),
                // Cut at SUBJECT_CAP with the real length already.
                subject = %crate::text::untrusted_capped(&p.who.subject, SUBJECT_CAP + 32),
                "refused or throttled client (audited)"
            ),
            Err(e) => tracing::error!(
                error = %e,
                operation = p.who.operation,
                outcome = p.who.outcome,
                count = p.count,
                "audit record of refused or throttled requests not written"
            ),
        }
    }
}

/// The writing thread: first notices as they come, summaries at each
/// interval's end, everything on a flush or when the log is dropped (then
/// the file's data is synced: a stopped node leaves nothing to writeback).
pub(super) fn run(
    agg: Arc<Aggregator>,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    queue: Arc<Queue>,
    rx: Receiver<Cmd>,
    interval: Duration,
) {
    let mut window_end = Instant::now() + interval;
    loop {
        let wait = window_end.saturating_duration_since(Instant::now());
        match rx.recv_timeout(wait) {
            Ok(Cmd::Wake) => write_all(&writer, &queue, take_firsts(&agg), interval),
            Ok(Cmd::Flush(ack)) => {
                write_all(&writer, &queue, take_all(&agg), interval);
                writer.blocking_lock().sync_written();
                let _ = ack.send(());
            }
            Err(RecvTimeoutError::Timeout) => {
                write_all(&writer, &queue, take_all(&agg), interval);
                window_end = Instant::now() + interval;
            }
            Err(RecvTimeoutError::Disconnected) => {
                write_all(&writer, &queue, take_all(&agg), interval);
                writer.blocking_lock().sync_written();
                return;
            }
        }
    }
}
