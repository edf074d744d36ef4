//! The audit trail: one JSON line per key operation, and aggregated records
//! of refused handshakes and throttled requests.
//!
//! Each record carries a sequence number (from 0 in each file) and the
//! SHA-256 of the previous record line (`prev`; 64 zeros for the first), so
//! a removed or edited line breaks the chain and `cmx-kms audit verify FILE`
//! finds it. Records never hold key material, passwords or tokens: only
//! identities, key ids, labels and timings. Client-controlled strings are
//! escaped and capped ([`crate::text`]).
//!
//! If a key operation's record cannot be written, the operation is refused
//! (the caller maps [`AuditError`] to 503 `audit-unavailable`): no key is
//! served unaudited. The request is answered only after its line is written.
//!
//! Submodules: [`record`] builds lines without `format!`, [`batch`] groups
//! the records of concurrent requests into one write, [`writer`] appends
//! and seals torn data, [`settle`] takes written data to disk and out of
//! memory, [`tail`] finds where an existing file's chain
//! continues, [`aggregate`] bounds refusal and 429 records, [`verify`]
//! checks a file. Decisions: `docs/design/audit.md`.

pub mod aggregate;
mod batch;
mod client;
mod record;
mod rotate;
mod settle;
mod tail;
mod verify;
mod writer;

use std::borrow::Cow;
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

pub use aggregate::Notice;
pub use client::{Client, ClientFields};
pub use record::rfc3339_now;
pub use rotate::Reopened;
pub use settle::SETTLE_EVERY;
pub use tail::{TAIL_SCAN_BYTES, continues};
pub use verify::{Verification, verify};
pub use writer::{CONTINUE_OPERATION, CONTINUE_OUTCOME, SEAL_OPERATION, SEAL_OUTCOME};

use aggregate::{Aggregator, Cmd};
use batch::Queue;
use writer::Writer;

/// How long refused handshakes and 429s are counted before their summary
/// record is written.
pub const AGGREGATE_INTERVAL: Duration = Duration::from_secs(60);
/// Identities (certificate fingerprints) with records of their own per
/// interval and (operation, outcome); beyond, one overflow record counts them.
pub const MAX_IDENTITIES: usize = 64;
/// Bytes of a refused certificate's subject kept in its record (escaped
/// afterwards; the original length is noted when cut).
pub const SUBJECT_CAP: usize = 256;
/// Bytes of any other string field of a record.
pub const FIELD_CAP: usize = 1024;
/// Upper bound of one aggregated (refusal or 429) record line, escaping
/// included: what the bounds in `docs/design/audit.md` are computed from.
pub const MAX_NOTICE_RECORD_BYTES: usize = 4096;

/// Whether other requests may have records ready to join this one's write
/// (the group commit of [`batch`]); [`Company::now`] asks the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Company {
    /// No other task is ready to run: the record is written at once. A yield
    /// would find nothing to wait for, and on an idle node it wakes the
    /// runtime's idle workers for nothing: two thread wake-ups per request,
    /// measured (docs/design/performance.md, "The cold path beside an nginx
    /// TLS proxy").
    Alone,
    /// Other tasks are ready (requests whose bytes have arrived): the task
    /// yields first (twice, unless its record was written in between), so
    /// that the records they have ready are written with this one.
    Others,
}

impl Company {
    /// `Others` while any task waits in the current runtime's queues (a
    /// worker's or the shared one), else `Alone`. The requests in flight are
    /// not the measure: in a closed loop a request is often the only one
    /// being served while others wait, read but not yet run (counted by
    /// them, a third more writes per request). Outside a runtime, or in a
    /// build without tokio's unstable metrics, `Others`: always yield.
    pub fn now() -> Self {
        #[cfg(tokio_unstable)]
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let m = handle.metrics();
            // Indices below num_workers(), which worker_local_queue_depth requires.
            // Stops at the first queue with a task in it.
            let queued = (0..m.num_workers()).any(|w| m.worker_local_queue_depth(w) > 0)
                || m.global_queue_depth() > 0;
            return if queued { Self::Others } else { Self::Alone };
        }
        Self::Others
    }
}

/// The audit log's intervals: [`AuditLog::open`] takes the defaults, tests
/// shorter ones.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// How long refusals and 429s are counted before their summary record.
    pub aggregate_interval: Duration,
    /// Bytes written between two syncs of the file's data ([`settle`]).
    pub settle_every: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            aggregate_interval: AGGREGATE_INTERVAL,
            settle_every: SETTLE_EVERY,
        }
    }
}

/// One audit event, as the server fills it in. Borrows its strings, and the
/// client's fields rendered once per connection ([`Client`]): building one
/// per request costs no copies.
#[derive(Clone, Debug)]
pub struct Event<'a> {
    pub request_id: &'a str,
    /// Who asked: alias, subject, serial, fingerprint, address, load
    /// balancer and role.
    pub client: &'a Client,
    pub operation: &'a str,
    /// Customer key id (hex), when the operation touched one.
    pub key_id: &'a str,
    pub backend: &'a str,
    /// `hit`, `miss` or empty.
    pub cache: &'a str,
    /// `ok` or the error label.
    pub outcome: Cow<'a, str>,
    pub status: u16,
    pub latency_us: u64,
}

impl Default for Event<'_> {
    fn default() -> Self {
        Self {
            request_id: "",
            client: Client::nobody(),
            operation: "",
            key_id: "",
            backend: "",
            cache: "",
            outcome: Cow::Borrowed(""),
            status: 0,
            latency_us: 0,
        }
    }
}

/// Why the audit trail cannot take a record.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit file {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("cannot write the audit file {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error(
        "the audit file {path} has no audit record in its last {TAIL_SCAN_BYTES} bytes: it is not an audit trail; \
         move it away so a new file starts"
    )]
    BadTail { path: PathBuf },
}

/// Open the audit file for appending, or create it with mode 0640: at start,
/// and for the new file after a rotation ([`rotate`]).
fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .mode(0o640)
        .open(path)?;
    warn_if_open_to_all(path, &file);
    Ok(file)
}

/// A trail every user may read (client identities) or write (forge or cut
/// records) is worth a warning; the node itself creates it 0640.
fn warn_if_open_to_all(path: &Path, file: &std::fs::File) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = file.metadata() else {
        return;
    };
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o006 != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:o}"),
            "the audit file can be read or written by every user: chmod 640 it (and check the `create` mode of its logrotate configuration)"
        );
    }
}

/// Lock the audit file `file` just opened at `path` (`flock`, exclusive)
/// for as long as the node writes it: two processes appending to one chain
/// would break it for good. The lock is on a descriptor of its own, held by
/// the [`AuditLog`], so that it ends with it (the writer's descriptor lives
/// on in its threads a little longer). `None` for a device such as
/// /dev/stderr, or a file system without locks (some network mounts).
fn lock_file(path: &Path, file: &std::fs::File) -> std::io::Result<Option<Flock<std::fs::File>>> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let lock = std::fs::File::open(path)?;
    let same = lock.metadata()?;
    if (same.dev(), same.ino()) != (meta.dev(), meta.ino()) {
        return Err(std::io::Error::other(
            "the file at this path changed while it was opened; try again",
        ));
    }
    match Flock::lock(lock, FlockArg::LockExclusiveNonblock) {
        Ok(locked) => Ok(Some(locked)),
        Err((_, Errno::EWOULDBLOCK)) => Err(std::io::Error::other(
            "another process is writing this audit file (another cmx-kms node on this host?); \
             each node needs an audit file of its own: stop the other process, or give this \
             node another kms.audit.file",
        )),
        Err((_, Errno::ENOLCK | Errno::EOPNOTSUPP)) => Ok(None),
        Err((_, e)) => Err(e.into()),
    }
}

/// The audit log.
///
/// Key-operation records are queued and written by the requests' own tasks,
/// those ready together with one `write(2)` ([`batch`]) under a
/// `tokio::sync::Mutex` that also extends the hash chain: waiting for it
/// parks the task, never a worker thread, and each request is answered after
/// its line is written. Refusals and 429s are aggregated in memory and
/// written by a thread of their own.
pub struct AuditLog {
    path: PathBuf,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    queue: Arc<Queue>,
    aggregator: Arc<Aggregator>,
    /// Bytes between two syncs of the file's data (kept for a new file).
    settle_every: u64,
    /// Wakes the aggregate thread; dropping it ends the thread.
    wake: std::sync::Mutex<Sender<Cmd>>,
    /// The lock on the file being written ([`lock_file`]).
    lock: std::sync::Mutex<Option<Flock<std::fs::File>>>,
}

impl AuditLog {
    /// Open (or create, mode 0640) the audit file, continue its chain (sealing
    /// a torn tail) and start the aggregate thread ([`AGGREGATE_INTERVAL`])
    /// and the settle thread ([`SETTLE_EVERY`]).
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        Self::open_tuned(path, Tuning::default())
    }

    /// As [`AuditLog::open`], with other intervals (tests).
    pub fn open_tuned(path: &Path, tuning: Tuning) -> Result<Self, AuditError> {
        let open_err = |e: std::io::Error| AuditError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut file = open_file(path).map_err(open_err)?;
        let lock = lock_file(path, &file).map_err(open_err)?;
        // A device such as /dev/full has no tail to continue from.
        let regular = file.metadata().map_err(open_err)?.is_file();
        let tail = if regular {
            tail::scan(&mut file)
                .map_err(open_err)?
                .map_err(|()| AuditError::BadTail {
                    path: path.to_owned(),
                })?
        } else {
            None
        };
        let mut writer = match tail {
            None => Writer::new(path.to_owned(), file, regular, 0, [b'0'; 64], 0, false),
            Some(t) => {
                let mut w = Writer::new(
                    path.to_owned(),
                    file,
                    regular,
                    t.seq,
                    t.prev,
                    t.good_end,
                    t.torn,
                );
                w.needs_newline = t.missing_newline;
                w
            }
        };
        writer
            .start_settling(tuning.settle_every)
            .map_err(|e| AuditError::Open {
                path: path.to_owned(),
                reason: format!("cannot start the audit settle thread: {e}"),
            })?;
        if writer.is_dirty() {
            // A full disk at start: the node still starts (key operations
            // get 503 until the seal and their records can be written).
            if let Err(e) = writer.seal() {
                tracing::error!(error = %e, "cannot seal the torn tail of the audit file yet; retrying before the next record");
            }
        }
        let writer = Arc::new(tokio::sync::Mutex::new(writer));
        let aggregator = Arc::new(Aggregator::default());
        let queue = Arc::new(Queue::default());
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let (agg, w, q) = (
                Arc::clone(&aggregator),
                Arc::clone(&writer),
                Arc::clone(&queue),
            );
            std::thread::Builder::new()
                .name("audit-aggregate".into())
                .spawn(move || aggregate::run(agg, w, q, rx, tuning.aggregate_interval))
                .map_err(|e| AuditError::Open {
                    path: path.to_owned(),
                    reason: format!("cannot start the audit aggregation thread: {e}"),
                })?;
        }
        Ok(Self {
            path: path.to_owned(),
            writer,
            queue,
            aggregator,
            settle_every: tuning.settle_every,
            wake: std::sync::Mutex::new(tx),
            lock: std::sync::Mutex::new(lock),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the trail takes records (the readiness canary asks): while
    /// writes succeed, at once; after one failed (a full disk, an I/O
    /// error), by writing an `audit-resumed` record, which marks in the
    /// trail where it became writable again.
    pub async fn probe(&self) -> Result<(), AuditError> {
        let mut w = self.writer.lock().await;
        if !w.failing {
            return Ok(());
        }
        w.append(|f| {
            f.str("operation", writer::RESUMED_OPERATION, 64).str(
                "outcome",
                writer::RESUMED_OUTCOME,
                64,
            );
        })
    }

    /// Append one key-operation record; returns once it is written (or failed
    /// to be), possibly with the records of other requests ([`batch`]).
    pub async fn record(&self, event: &Event<'_>, company: Company) -> Result<(), AuditError> {
        let (batch, index) = self.queue.push(|f| {
            f.str("request_id", event.request_id, FIELD_CAP)
                .rendered(event.client.rendered())
                .str("operation", event.operation, FIELD_CAP)
                .str("key_id", event.key_id, FIELD_CAP)
                .str("backend", event.backend, FIELD_CAP)
                .str("cache", event.cache, FIELD_CAP)
                .str("outcome", &event.outcome, FIELD_CAP)
                .num("status", u64::from(event.status))
                .num("latency_us", event.latency_us);
        });
        if company == Company::Others {
            // Let the other requests that are ready queue their records too;
            // then, unless one of them has written this record meanwhile,
            // once more, for the requests that became ready during the first
            // round (their bytes arrived; the I/O driver's turn). Batches of
            // about ten records instead of one or two: 6-8 % less CPU per
            // request and 3-4 % more requests/s, quiet and busy
            // (docs/design/performance.md, "A second yield").
            tokio::task::yield_now().await;
            if batch.outcome(index).is_none() {
                tokio::task::yield_now().await;
            }
        }
        if let Some(outcome) = batch.outcome(index) {
            return outcome;
        }
        let mut w = self.writer.lock().await;
        if batch.outcome(index).is_none() {
            self.queue.write_queued(&mut w);
        }
        // Under the lock an unsettled batch is still queued, so the write
        // above settled it; the fallback is never taken.
        batch.outcome(index).unwrap_or_else(|| {
            Err(AuditError::Write {
                path: self.path.clone(),
                reason: "the record was not written".into(),
            })
        })
    }

    /// Count a refused handshake or a throttled request (see [`aggregate`]).
    /// Never does I/O on the caller's thread; never fails.
    pub fn notice(&self, n: &Notice<'_>) {
        if self.aggregator.notice(n) {
            self.send(Cmd::Wake);
        }
    }

    fn send(&self, cmd: Cmd) {
        // The thread lives as long as this log; were it gone, the next
        // notice would still be counted and the records written by `Drop`.
        let _ = self
            .wake
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(cmd);
    }

    /// Write every pending aggregate record now and take the file's data to
    /// disk (at shutdown).
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Cmd::Flush(tx));
        let _ = rx.await;
    }
}

#[cfg(test)]
mod tests;
