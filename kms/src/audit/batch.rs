//! Group commit of key-operation records, on the requests' own tasks.
//!
//! Each record's fields are queued (a short `std` mutex, no I/O); the task
//! then yields if other tasks are ready ([`super::Company`]), twice unless
//! its record got written in between, so the other requests its worker has
//! ready, and those that become ready meanwhile, queue theirs too; the first
//! task to come back (or a request alone, at once) takes the writer's lock and
//! writes everything queued with one `write(2)`, chaining the records in queue
//! order. Every task returns its own record's outcome: a request is still
//! answered only after its line is written. If the write fails part way
//! (a full disk), the records it got out whole stay in the chain and their
//! requests are answered; the others get the error (503
//! `audit-unavailable`) and the torn rest is sealed before the next record.
//!
//! No thread and no cross-thread hand-off: the measured cost of a writer
//! thread was its wake-ups (`docs/design/audit.md`). A record whose task is
//! dropped after queueing (its connection closed) is not lost: the next
//! batch, the aggregate thread's next pass or the shutdown flush writes it.

use std::sync::{Arc, Mutex, OnceLock};

use super::AuditError;
use super::record::{Fields, unix_ms};
use super::writer::Writer;

/// Buffers above this are given back after a batch (a burst of thousands of
/// records must not keep megabytes around).
const KEEP_CAPACITY: usize = 256 * 1024;

/// The outcome of one batch, shared by the records written with it.
#[derive(Default)]
pub(super) struct Batch {
    outcome: OnceLock<Appended>,
}

impl Batch {
    /// The outcome of the batch's `index`th record; `None` while the batch
    /// is still queued.
    pub(super) fn outcome(&self, index: usize) -> Option<Result<(), AuditError>> {
        self.outcome.get().map(|done| done.result(index))
    }
}

/// Records' fields waiting for the next write, in order.
#[derive(Default)]
struct Queued {
    /// Each record's fields (`,"name":value` …), one after the other.
    bodies: String,
    /// Where each record's fields end in `bodies`, and when it was queued
    /// (Unix milliseconds: its `time`).
    ends: Vec<(usize, u64)>,
    batch: Arc<Batch>,
}

/// The queue of key-operation records.
#[derive(Default)]
pub(super) struct Queue {
    queued: Mutex<Queued>,
}

/// The buffers of the batch being written; they swap with the queue's, so a
/// steady load allocates nothing. Lives in the [`Writer`], under its lock.
#[derive(Default)]
pub(super) struct Spare {
    bodies: String,
    ends: Vec<(usize, u64)>,
}

impl Queue {
    /// Queue one record whose fields `fill` pushes; returns its batch and
    /// its place in it.
    pub(super) fn push(&self, fill: impl FnOnce(&mut Fields<'_>)) -> (Arc<Batch>, usize) {
        let now = unix_ms();
        let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        fill(&mut Fields::after(&mut q.bodies));
        let (end, index) = (q.bodies.len(), q.ends.len());
        q.ends.push((end, now));
        (Arc::clone(&q.batch), index)
    }

    /// Write everything queued with one `write(2)` and settle its batch.
    /// The caller holds the writer's lock, so batches are written in order
    /// and a batch not yet settled is still in the queue.
    pub(super) fn write_queued(&self, w: &mut Writer) {
        let mut spare = std::mem::take(&mut w.spare);
        let batch = {
            let mut q = self.queued.lock().unwrap_or_else(|p| p.into_inner());
            if q.ends.is_empty() {
                w.spare = spare;
                return;
            }
            std::mem::swap(&mut q.bodies, &mut spare.bodies);
            std::mem::swap(&mut q.ends, &mut spare.ends);
            std::mem::take(&mut q.batch)
        };
        let outcome = w.append_bodies(&spare.bodies, &spare.ends);
        // Only this writer, under the lock, settles a batch it has taken.
        let _ = batch.outcome.set(outcome);
        spare.bodies.clear();
        spare.ends.clear();
        if spare.bodies.capacity() > KEEP_CAPACITY {
            spare.bodies.shrink_to(KEEP_CAPACITY);
        }
        if spare.ends.capacity() > KEEP_CAPACITY / 64 {
            spare.ends.shrink_to(KEEP_CAPACITY / 64);
        }
        w.spare = spare;
    }
}

/// Each record in `bodies` as (queued at, fields), split at `ends`.
pub(super) fn split<'a>(
    bodies: &'a str,
    ends: &'a [(usize, u64)],
) -> impl Iterator<Item = (u64, &'a str)> + 'a {
    ends.iter().scan(0, move |start, &(end, at)| {
        let s = bodies.get(*start..end).unwrap_or_default();
        *start = end;
        Some((at, s))
    })
}

/// What an append got into the chain: its first `records` records, and the
/// error that stopped the rest, if one did.
#[derive(Clone, Debug)]
pub(super) struct Appended {
    pub(super) records: usize,
    pub(super) error: Option<AuditError>,
}

impl Appended {
    pub(super) fn failed(error: AuditError) -> Self {
        Self {
            records: 0,
            error: Some(error),
        }
    }

    /// The outcome for the `index`th record of the append.
    pub(super) fn result(&self, index: usize) -> Result<(), AuditError> {
        match &self.error {
            Some(e) if index >= self.records => Err(e.clone()),
            _ => Ok(()),
        }
    }
}

/// After a write that got `written` bytes out: how many records of `ends`
/// it wrote whole, where the last of them ends, and whether that one lacks
/// only its newline (it counts: its line is complete, as at start). The
/// `prefix_len` bytes first are the newline the record before lacked.
pub(super) fn whole_records(
    written: usize,
    prefix_len: usize,
    lacked_newline: bool,
    ends: &[(usize, [u8; 64])],
) -> (usize, usize, bool) {
    let (mut end, mut newline_missing) = if written >= prefix_len {
        (prefix_len, false)
    } else {
        (0, lacked_newline)
    };
    let mut kept = 0;
    for (i, &(line_end, _)) in ends.iter().enumerate() {
        if written >= line_end {
            (kept, end, newline_missing) = (i + 1, line_end, false);
        } else {
            if written + 1 == line_end {
                (kept, end, newline_missing) = (i + 1, written, true);
            }
            break;
        }
    }
    (kept, end, newline_missing)
}

#[cfg(test)]
mod tests {
    use super::whole_records;

    #[test]
    fn records_written_whole() {
        let h = [b'0'; 64];
        // Two lines ending at 10 and 20; no prefix.
        let ends = [(10, h), (20, h)];
        let cases = [
            (0, (0, 0, false)),
            (5, (0, 0, false)),
            (9, (1, 9, true)),
            (10, (1, 10, false)),
            (15, (1, 10, false)),
            (19, (2, 19, true)),
            (20, (2, 20, false)),
        ];
        for (written, want) in cases {
            assert_eq!(whole_records(written, 0, false, &ends), want, "{written}");
        }
        // After the newline the last record lacked (one byte of prefix).
        let ends = [(11, h)];
        assert_eq!(whole_records(0, 1, true, &ends), (0, 0, true));
        assert_eq!(whole_records(1, 1, true, &ends), (0, 1, false));
        assert_eq!(whole_records(10, 1, true, &ends), (1, 10, true));
    }
}
