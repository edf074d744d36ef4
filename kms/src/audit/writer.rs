//! The end of the chain: appends records (one, or a batch of them) with one
//! `write(2)`, and seals torn data.
//!
//! A write that fails (a full disk) may leave part of a line in the file,
//! after complete lines when it held several records. The writer counts the
//! bytes that got out: the records written whole stay in the chain, and it
//! remembers where the last of them ends (`good_end`);
//! before the next record it *seals* whatever follows: it ends the torn
//! bytes with a newline and appends an `audit-seal` record chained to the
//! last good record, carrying the torn bytes' offset, length and SHA-256.
//! The torn bytes stay in the file as evidence; `audit verify` checks them
//! against the seal and reports where they are. Opening a file whose tail
//! is torn (a crash mid-write) does the same (see [`super::tail`]).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::AuditError;
use super::batch::{Appended, Spare, split, whole_records};
use super::record::{Clock, Fields, unix_ms};
use super::settle::Settle;
use super::tail::torn_region;

mod rotation;
use crate::text::{push_ascii, push_decimal};

/// Operation and outcome of a seal record.
pub const SEAL_OPERATION: &str = "audit-seal";
pub const SEAL_OUTCOME: &str = "torn-data-sealed";
/// Operation and outcome of the first record of a file that goes on with
/// the chain of a file moved away (log rotation, [`super::rotate`]).
pub const CONTINUE_OPERATION: &str = "audit-continue";
pub const CONTINUE_OUTCOME: &str = "file-reopened";
/// Operation and outcome of the record that finds the trail writable again
/// after writes failed ([`super::AuditLog::probe`]).
pub const RESUMED_OPERATION: &str = "audit-resumed";
pub const RESUMED_OUTCOME: &str = "writable-again";

pub(super) struct Writer {
    pub(super) path: PathBuf,
    file: File,
    /// A regular file (a device such as /dev/full has no tail to repair).
    regular: bool,
    pub(super) seq: u64,
    /// Lower-case hex SHA-256 of the previous record line.
    prev: [u8; 64],
    /// File offset just after the last complete record and its newline.
    good_end: u64,
    /// Bytes after `good_end` may be torn: seal before the next record.
    dirty: bool,
    /// The last record lacks its newline (it is complete): add one first.
    pub(super) needs_newline: bool,
    line: String,
    clock: Clock,
    /// The buffers of the key-operation batch being written ([`super::batch`]).
    pub(super) spare: Spare,
    /// `write(2)` calls that wrote records (tests check the batching).
    pub(super) writes: u64,
    /// Where each line of the write being made ends, and its hash (reused).
    ends: Vec<(usize, [u8; 64])>,
    /// Syncs written data and lets go of its pages ([`super::settle`]).
    settle: Option<Settle>,
    /// A new file's `audit-continue` record not written yet (its write
    /// failed): the old file's length, for the next try ([`rotation`]).
    pending_continue: Option<u64>,
    /// The last append failed: key operations get 503 until one succeeds.
    pub(super) failing: bool,
    /// Fail writes after this many more bytes (tests: a real partial write
    /// needs a full disk).
    #[cfg(test)]
    pub(super) cut_after: Option<usize>,
}

/// A buffer grown by a burst is not kept.
fn shrink(line: &mut String) {
    if line.capacity() > 256 * 1024 {
        *line = String::with_capacity(1024);
    }
}

impl Writer {
    pub(super) fn new(
        path: PathBuf,
        file: File,
        regular: bool,
        seq: u64,
        prev: [u8; 64],
        good_end: u64,
        dirty: bool,
    ) -> Self {
        Self {
            path,
            file,
            regular,
            seq,
            prev,
            good_end,
            dirty,
            needs_newline: false,
            line: String::with_capacity(1024),
            clock: Clock::default(),
            spare: Spare::default(),
            writes: 0,
            ends: Vec::new(),
            settle: None,
            pending_continue: None,
            failing: false,
            #[cfg(test)]
            cut_after: None,
        }
    }

    fn write_err(&self, e: &std::io::Error) -> AuditError {
        AuditError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Append one record whose fields `fill` pushes (after `seq` and
    /// `time`, before `prev`). On failure the record is not in the chain
    /// (unless only its newline is missing) and whatever part of it got out
    /// is sealed before the next record.
    pub(super) fn append(&mut self, fill: impl FnOnce(&mut Fields<'_>)) -> Result<(), AuditError> {
        let done = self.append_records(std::iter::once((unix_ms(), fill)), |fill, line| {
            fill(&mut Fields::after(line));
        });
        done.result(0)
    }

    /// Append the records whose fields were queued in `bodies` (each ending
    /// at the next of `ends`, stamped with the time it was queued), chained
    /// in that order, with one `write(2)`.
    pub(super) fn append_bodies(&mut self, bodies: &str, ends: &[(usize, u64)]) -> Appended {
        self.append_records(split(bodies, ends), |body, line| line.push_str(body))
    }

    /// Write `records` after the last good record. If the write fails part
    /// way, the records it got out whole stay in the chain (the file holds
    /// them, valid and chained: `verify` counts them) and only what follows
    /// them is torn, to be sealed before the next record.
    fn append_records<T>(
        &mut self,
        records: impl IntoIterator<Item = (u64, T)>,
        push: impl FnMut(T, &mut String),
    ) -> Appended {
        let done = self.try_append(records, push);
        self.failing = done.error.is_some();
        done
    }

    /// [`Writer::append_records`]' work.
    fn try_append<T>(
        &mut self,
        records: impl IntoIterator<Item = (u64, T)>,
        push: impl FnMut(T, &mut String),
    ) -> Appended {
        if self.dirty
            && let Err(e) = self.seal()
        {
            return Appended::failed(e);
        }
        if self.pending_continue.is_some()
            && let Err(e) = self.write_pending_continue()
        {
            return Appended::failed(e);
        }
        let prefix = self.needs_newline.then_some("\n");
        let (len, written, error) = self.write_lines(prefix, records, push);
        match error {
            None => {
                self.keep(self.ends.len(), len, false);
                Appended {
                    records: self.ends.len(),
                    error: None,
                }
            }
            Some(e) => {
                let (kept, end, newline_missing) = whole_records(
                    written,
                    prefix.map_or(0, str::len),
                    self.needs_newline,
                    &self.ends,
                );
                self.keep(kept, end, newline_missing);
                self.dirty = self.regular && written > end;
                Appended {
                    records: kept,
                    error: Some(self.write_err(&e)),
                }
            }
        }
    }

    /// Build `records` after `prefix` (see [`Writer::build`]) and write them;
    /// `self.ends` then says where each line ends. Returns the bytes built,
    /// the bytes that got out and the error that stopped the rest.
    fn write_lines<T>(
        &mut self,
        prefix: Option<&str>,
        records: impl IntoIterator<Item = (u64, T)>,
        push: impl FnMut(T, &mut String),
    ) -> (usize, usize, Option<std::io::Error>) {
        let mut line = std::mem::take(&mut self.line);
        let mut ends = std::mem::take(&mut self.ends);
        self.build(&mut line, &mut ends, prefix, records, push);
        let (written, error) = self.write_counted(line.as_bytes());
        if error.is_none() {
            self.writes += 1;
        }
        let len = line.len();
        shrink(&mut line);
        self.line = line;
        self.ends = ends;
        (len, written, error)
    }

    /// Sync the file's data and drop its written pages every `every` bytes,
    /// on a thread of its own ([`super::settle`]); regular files only.
    pub(super) fn start_settling(&mut self, every: u64) -> std::io::Result<()> {
        if self.regular {
            let file = self.file.try_clone()?;
            self.settle = Some(Settle::start(file, self.good_end, every)?);
        }
        Ok(())
    }

    /// Take everything written so far to disk (`fdatasync`), at a stop:
    /// the settle thread syncs only whole chunks, and the kernel would
    /// write back the rest in its own time. A failure is logged, not
    /// returned: the records are in the file as far as the kernel knows.
    pub(super) fn sync_written(&self) {
        if !self.regular {
            return;
        }
        if let Err(e) = self.file.sync_data() {
            tracing::error!(
                error = %e,
                "cannot write the audit file's data to disk at stop; check the disk and the kernel log"
            );
        }
    }

    pub(super) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// As after a failed write (tests: a real partial write needs a full disk).
    #[cfg(test)]
    pub(super) fn mark_failed(&mut self) {
        self.dirty = true;
    }

    /// Move the chain past the first `kept` records of the last write
    /// (`self.ends`), which end `end` bytes into it.
    fn keep(&mut self, kept: usize, end: usize, newline_missing: bool) {
        if let Some(&(_, hash)) = kept.checked_sub(1).and_then(|i| self.ends.get(i)) {
            self.prev = hash;
            self.seq += kept as u64;
        }
        self.good_end += end as u64;
        self.needs_newline = newline_missing;
        if let Some(settle) = &mut self.settle
            && !settle.written(self.good_end)
        {
            self.settle = None;
        }
    }

    /// Build the lines of `records` (each one's time, Unix milliseconds, and
    /// fields pushed by `push`) chained from the last good record into
    /// `line`, after `prefix`; `ends` gets where each line ends (after its
    /// newline) and its hash.
    fn build<T>(
        &mut self,
        line: &mut String,
        ends: &mut Vec<(usize, [u8; 64])>,
        prefix: Option<&str>,
        records: impl IntoIterator<Item = (u64, T)>,
        mut push: impl FnMut(T, &mut String),
    ) {
        line.clear();
        ends.clear();
        line.push_str(prefix.unwrap_or_default());
        let (mut seq, mut prev) = (self.seq, self.prev);
        for (at, record) in records {
            let start = line.len();
            line.push_str("{\"seq\":");
            push_decimal(line, seq);
            line.push_str(",\"time\":\"");
            self.clock.push_at(line, at);
            line.push('"');
            push(record, line);
            line.push_str(",\"prev\":\"");
            push_ascii(line, &prev);
            line.push_str("\"}");
            prev = hash_hex(&line.as_bytes()[start..]);
            line.push('\n');
            ends.push((line.len(), prev));
            seq += 1;
        }
    }

    /// `write(2)` until `bytes` are out or one fails; how many got out.
    fn write_counted(&mut self, bytes: &[u8]) -> (usize, Option<std::io::Error>) {
        let mut done = 0;
        while let Some(rest) = bytes.get(done..).filter(|r| !r.is_empty()) {
            #[cfg(test)]
            let rest = match self.cut_after {
                Some(0) => return (done, Some(std::io::Error::other("cut short (test)"))),
                Some(left) => &rest[..rest.len().min(left)],
                None => rest,
            };
            match self.file.write(rest) {
                Ok(0) => return (done, Some(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    done += n;
                    #[cfg(test)]
                    if let Some(left) = self.cut_after.as_mut() {
                        *left -= n;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return (done, Some(e)),
            }
        }
        (done, None)
    }

    /// Seal the bytes after the last good record, if there are any.
    pub(super) fn seal(&mut self) -> Result<(), AuditError> {
        if !self.regular {
            self.dirty = false;
            return Ok(());
        }
        if self.needs_newline {
            // A failed write began with the newline the last record lacked:
            // that newline belongs to the record, the rest is torn.
            let mut first = [0u8; 1];
            let n = std::os::unix::fs::FileExt::read_at(&self.file, &mut first, self.good_end)
                .map_err(|e| self.write_err(&e))?;
            if n == 1 && first[0] == b'\n' {
                self.good_end += 1;
                self.needs_newline = false;
            }
        }
        let torn = torn_region(&mut self.file, self.good_end).map_err(|e| self.write_err(&e))?;
        let Some(torn) = torn else {
            self.dirty = false;
            return Ok(());
        };
        let offset = self.good_end;
        // Complete torn bytes that end with a newline need none.
        let prefix = (!torn.ends_with_newline).then_some("\n");
        let written_before = torn.file_len - self.good_end;
        let seal = |f: &mut Fields<'_>| {
            f.str("operation", SEAL_OPERATION, 64)
                .str("outcome", SEAL_OUTCOME, 64)
                .num("torn_offset", offset)
                .num("torn_bytes", torn.bytes)
                .str("torn_sha256", &torn.sha256, 64);
        };
        let seal = std::iter::once((unix_ms(), seal));
        let (len, _, error) = self.write_lines(prefix, seal, |fill, line| {
            fill(&mut Fields::after(line));
        });
        // All or nothing: a seal cut short is torn data itself, sealed with
        // the bytes before it by the next try.
        let r = match error {
            None => {
                self.keep(1, len, false);
                Ok(())
            }
            Some(e) => Err(self.write_err(&e)),
        };
        if r.is_ok() {
            // `keep` counted the seal line; add the torn bytes it follows.
            self.good_end += written_before;
            self.dirty = false;
            tracing::warn!(
                path = %self.path.display(),
                offset,
                bytes = torn.bytes,
                "audit file: torn data after the last complete record sealed"
            );
        }
        r
    }
}

pub(super) fn hash_hex(b: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    crate::hex::lower_into(&mut out, &Sha256::digest(b));
    out
}
