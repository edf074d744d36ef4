//! Written audit data out of memory: a thread of its own writes the file's
//! new data to disk (`fdatasync`) every [`SETTLE_EVERY`] bytes and then
//! tells the kernel that those pages will not be read again
//! (`posix_fadvise(DONTNEED)`), so it frees them.
//!
//! Why: nothing reads the audit file back while the node runs, yet every
//! record stays in the page cache until memory runs short. A busy node
//! writes hundreds of bytes per request, gigabytes an hour, which crowd out
//! what other programs cache, come to disk in large bursts (a writer the
//! kernel finds too far ahead is made to wait in its `write(2)`, which here
//! is a runtime worker), and need fresh memory pages for every new page of
//! the file. Fresh pages are the cost that showed: on a virtual machine a
//! guest page the host has not backed yet (or took back) faults in the host
//! on first touch, and the node's CPU per request rose by a fifth once two
//! gigabytes of audit data sat in the cache (`docs/design/performance.md`,
//! "The audit file's pages"). Freed pages are reused at once instead.
//!
//! The request path is untouched: the writer only hands the thread an
//! offset, without waiting, and a record is still answered once its line is
//! in the kernel. The sync is extra: records reach the disk every
//! [`SETTLE_EVERY`] bytes instead of when the kernel gets to them (while a
//! slow disk holds the thread, the writer's next write after it is free
//! hands it the newest end; a node that stops writing for a while leaves the
//! last chunk to the kernel's own writeback, and a node that stops syncs
//! it: [`super::AuditLog::flush`]). A failed
//! sync is logged as an error (the disk is failing; the records are still in
//! the file as far as the kernel knows) and the next chunk tries again.

use std::fs::File;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use nix::fcntl::{PosixFadviseAdvice, posix_fadvise};

/// Bytes written between two syncs.
pub const SETTLE_EVERY: u64 = 8 * 1024 * 1024;

/// Where a dropped range's last, partial page may start: a multiple of
/// every page size Linux uses (4, 16 or 64 KiB).
const PAGE_ROUND: u64 = 64 * 1024;

/// The writer's end: where the next sync is due, and the thread's channel.
pub(super) struct Settle {
    tx: SyncSender<u64>,
    every: u64,
    next_at: u64,
}

impl Settle {
    /// Start the thread for `file` (a clone of the writer's), whose data up
    /// to `written` is already there; syncs every `every` bytes after it.
    pub(super) fn start(file: File, written: u64, every: u64) -> std::io::Result<Self> {
        // One offset in flight: while the thread syncs, the writer tries
        // again after its next write, with a later offset.
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("audit-settle".into())
            .spawn(move || run(&file, written, &rx))?;
        Ok(Self {
            tx,
            every,
            next_at: written.saturating_add(every),
        })
    }

    /// The file's good data now ends at `written`: hand it to the thread if
    /// a sync is due. Never waits. `false` once the thread is gone.
    pub(super) fn written(&mut self, written: u64) -> bool {
        if written < self.next_at {
            return true;
        }
        match self.tx.try_send(written) {
            Ok(()) => {
                self.next_at = written.saturating_add(self.every);
                true
            }
            Err(TrySendError::Full(_)) => true,
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Until the writer drops its end: sync, then let go of what was synced.
fn run(file: &File, mut settled: u64, rx: &Receiver<u64>) {
    while let Ok(end) = rx.recv() {
        if end <= settled {
            continue;
        }
        if let Err(e) = file.sync_data() {
            tracing::error!(
                error = %e,
                "cannot write the audit file's data to disk; check the disk and the kernel log"
            );
            continue;
        }
        // The kernel drops whole pages only and keeps the partial one at each
        // end, so the page the writer is filling stays. The next range
        // starts at that page again (rounded down to 64 KiB, a multiple of
        // every page size), to drop it once it is full.
        let (Ok(offset), Ok(len)) = (settled.try_into(), (end - settled).try_into()) else {
            continue;
        };
        if let Err(e) = posix_fadvise(file, offset, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED) {
            tracing::debug!(error = %e, "audit file: the kernel did not take the advice to drop written pages");
        }
        settled = end & !(PAGE_ROUND - 1);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::super::{AuditLog, Company, Event, Tuning, verify};

    /// Pages of `path` in the page cache, as util-linux's `fincore` counts them.
    fn resident_pages(path: &Path) -> u64 {
        let out = std::process::Command::new("fincore")
            .args(["--raw", "--noheadings", "--output", "PAGES"])
            .arg(path)
            .output()
            .expect("fincore (util-linux) runs");
        assert!(out.status.success(), "fincore: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a page count")
    }

    /// An audit file's path in a folder of its own on a disk-backed file
    /// system (beside the test binary): tmpfs pages are never dirty and
    /// cannot be dropped. The folder lives as long as the guard.
    fn disk_backed_log_path() -> (tempfile::TempDir, std::path::PathBuf) {
        let exe = std::env::current_exe().unwrap();
        let dir = tempfile::tempdir_in(exe.parent().unwrap()).unwrap();
        let path = dir.path().join("audit.log");
        (dir, path)
    }

    /// Record the `i`th decrypt, alone (written at once).
    async fn record(log: &AuditLog, i: u64) {
        let id = format!("request-{i}");
        let event = Event {
            request_id: &id,
            operation: "decrypt-workspace-key",
            outcome: "ok".into(),
            status: 200,
            ..Event::default()
        };
        log.record(&event, Company::Alone).await.unwrap();
    }

    /// The file's pages that are dirty or being written back, as the kernel
    /// counts them (`cachestat(2)`, Linux 6.5 and later; through Python's
    /// `ctypes`: the workspace forbids `unsafe`, and no crate here wraps it).
    fn unsynced_pages(path: &Path) -> u64 {
        const CACHESTAT: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
class Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]
class Stat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in ("cache", "dirty", "writeback", "evicted", "recent")]
fd = os.open(sys.argv[1], os.O_RDONLY)
r, st = Range(0, 0), Stat()
if libc.syscall(451, fd, ctypes.byref(r), ctypes.byref(st), 0) != 0:
    sys.exit("cachestat: " + os.strerror(ctypes.get_errno()))
print(st.dirty + st.writeback)
"#;
        let out = std::process::Command::new("python3")
            .args(["-c", CACHESTAT])
            .arg(path)
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "cachestat: {out:?}");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a page count")
    }

    /// A stopping node takes what it wrote to disk: after `flush` no page of
    /// the file is left dirty, though far less than a settle chunk was
    /// written. The kernel's own writeback may clean the pages first (a busy
    /// disk); so the test writes until it sees dirty pages, then flushes.
    #[tokio::test]
    async fn a_flush_at_stop_leaves_no_page_to_writeback() {
        let (_dir, path) = disk_backed_log_path();
        let log = AuditLog::open(&path).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut records = 0u64;
        loop {
            for _ in 0..50 {
                record(&log, records).await;
                records += 1;
            }
            if unsynced_pages(&path) > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no dirty page of the audit file seen in 60 s ({records} records)"
            );
        }
        assert!(
            std::fs::metadata(&path).unwrap().len() < super::SETTLE_EVERY,
            "the settle thread must not be the one syncing here"
        );
        log.flush().await;
        assert_eq!(unsynced_pages(&path), 0, "pages left after the flush");
        drop(log);
        let v = verify(&path).unwrap();
        assert_eq!(v.records, records, "{v:?}");
    }

    /// The file's written data leaves the page cache as it grows, the chain
    /// stays whole.
    #[tokio::test]
    async fn written_pages_leave_the_cache_and_the_chain_stays_whole() {
        let (_dir, path) = disk_backed_log_path();
        let every = 64 * 1024;
        let log = AuditLog::open_tuned(
            &path,
            Tuning {
                settle_every: every,
                ..Tuning::default()
            },
        )
        .unwrap();
        let mut records = 0u64;
        while records < 20_000 {
            record(&log, records).await;
            records += 1;
        }
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len > 40 * every, "{len} bytes written");
        // The thread may still be syncing an earlier chunk (a slow or busy
        // disk); a node keeps writing, and its next write past a chunk hands
        // the thread the new end. So does this test, a record per look, a
        // few hundred bytes. Then what stays cached is less than a chunk
        // past the last end handed over, and a partial page at each end of
        // a dropped range.
        let bound = 2 * every / 4096 + 4;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut resident = resident_pages(&path);
        while resident > bound && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            record(&log, records).await;
            records += 1;
            resident = resident_pages(&path);
        }
        assert!(
            resident <= bound,
            "{resident} pages of a {len}-byte audit file still cached (at most {bound} expected)"
        );
        drop(log);
        let v = verify(&path).unwrap();
        assert_eq!(v.records, records, "{v:?}");
        assert!(v.problems.is_empty(), "{v:?}");
    }
}
