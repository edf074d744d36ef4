//! The end of the chain: appends one line per record with one `write(2)`,
//! and seals torn data.
//!
//! A write that fails (a full disk) may leave part of a line in the file.
//! The writer remembers where its last complete record ends (`good_end`);
//! before the next record it *seals* whatever follows: it ends the torn
//! bytes with a newline and appends an `audit-seal` record chained to the
//! last good record, carrying the torn bytes' offset, length and SHA-256.
//! The torn bytes stay in the file as evidence; `audit verify` checks them
//! against the seal and reports where they are. Opening a file whose tail
//! is torn (a crash mid-write) does the same (see [`super::tail`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use super::AuditError;
use super::record::{Clock, Fields};
use crate::text::push_decimal;

/// Operation and outcome of a seal record.
pub const SEAL_OPERATION: &str = "audit-seal";
pub const SEAL_OUTCOME: &str = "torn-data-sealed";

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
        }
    }

    fn write_err(&self, e: &std::io::Error) -> AuditError {
        AuditError::Write {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Append one record whose fields `fill` pushes (after `seq` and
    /// `time`, before `prev`). On failure the chain stays as it was.
    pub(super) fn append(&mut self, fill: impl FnOnce(&mut Fields<'_>)) -> Result<(), AuditError> {
        if self.dirty {
            self.seal()?;
        }
        let prefix = self.needs_newline.then_some("\n");
        self.append_now(prefix, fill)?;
        self.needs_newline = false;
        Ok(())
    }

    pub(super) fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// As after a failed write (tests: a real partial write needs a full disk).
    #[cfg(test)]
    pub(super) fn mark_failed(&mut self) {
        self.dirty = true;
    }

    /// `prefix` (a newline ending torn bytes) is written in the same `write(2)`.
    fn append_now(
        &mut self,
        prefix: Option<&str>,
        fill: impl FnOnce(&mut Fields<'_>),
    ) -> Result<(), AuditError> {
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let start = prefix.map_or(0, str::len);
        line.push_str(prefix.unwrap_or_default());
        line.push_str("{\"seq\":");
        push_decimal(&mut line, self.seq);
        line.push_str(",\"time\":\"");
        self.clock.push_now(&mut line);
        line.push('"');
        fill(&mut Fields::after(&mut line));
        line.push_str(",\"prev\":\"");
        line.extend(self.prev.iter().map(|&b| char::from(b)));
        line.push_str("\"}\n");
        let result = self.file.write_all(line.as_bytes());
        match result {
            Ok(()) => {
                let record = &line.as_bytes()[start..line.len() - 1];
                self.prev = hash_hex(record);
                self.seq += 1;
                self.good_end += line.len() as u64;
                self.line = line;
                Ok(())
            }
            Err(e) => {
                self.dirty = self.regular;
                self.line = line;
                Err(self.write_err(&e))
            }
        }
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
        let r = self.append_now(prefix, |f| {
            f.str("operation", SEAL_OPERATION, 64)
                .str("outcome", SEAL_OUTCOME, 64)
                .num("torn_offset", offset)
                .num("torn_bytes", torn.bytes)
                .str("torn_sha256", &torn.sha256, 64);
        });
        if r.is_ok() {
            // append_now counted the seal line; add the torn bytes it follows.
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

/// What follows the last good record.
pub(super) struct Torn {
    pub(super) file_len: u64,
    /// Length of the torn data, without a final newline if it has one.
    pub(super) bytes: u64,
    pub(super) sha256: String,
    pub(super) ends_with_newline: bool,
}

/// Hash the bytes from `from` to the end of the file (without a final
/// newline); `None` when there are none.
pub(super) fn torn_region(file: &mut File, from: u64) -> std::io::Result<Option<Torn>> {
    let file_len = file.seek(SeekFrom::End(0))?;
    if file_len <= from {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(from))?;
    let mut hasher = Sha256::new();
    let mut held: Option<u8> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut reader = file.take(file_len - from);
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if let Some(b) = held.take() {
            hasher.update([b]);
        }
        hasher.update(&buf[..n - 1]);
        held = Some(buf[n - 1]);
    }
    let ends_with_newline = held == Some(b'\n');
    if let Some(b) = held.filter(|&b| b != b'\n') {
        hasher.update([b]);
    }
    let total = file_len - from;
    Ok(Some(Torn {
        file_len,
        bytes: total - u64::from(ends_with_newline),
        sha256: crate::hex::encode(&hasher.finalize()),
        ends_with_newline,
    }))
}

pub(super) fn hash_hex(b: &[u8]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = Sha256::digest(b);
    let mut out = [0u8; 64];
    for (i, byte) in d.iter().enumerate() {
        out[2 * i] = HEX[usize::from(byte >> 4)];
        out[2 * i + 1] = HEX[usize::from(byte & 0xf)];
    }
    out
}
