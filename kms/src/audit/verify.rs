//! `cmx-kms audit verify FILE`: check the chain and account for sealed tears.
//!
//! Records must be JSON lines with consecutive sequence numbers from 0, each
//! `prev` the SHA-256 of the record line before. Lines that are not records
//! (torn writes) followed by an `audit-seal` record whose offset, length and
//! SHA-256 match them are *sealed*: reported as notes saying where they are,
//! not as problems. Unsealed ones are problems, reported with the number of
//! records before them that verify.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::writer::{CONTINUE_OPERATION, SEAL_OPERATION, hash_hex};

const ZERO_HASH: [u8; 64] = [b'0'; 64];

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Verification {
    pub records: u64,
    /// The first record's sequence number and `prev` (lower-case hex).
    pub first: Option<(u64, [u8; 64])>,
    /// The last record's sequence number and the hash of its line.
    pub last: Option<(u64, [u8; 64])>,
    /// How many bytes the file before held when the node went on in this
    /// one (the first record's `previous_file_bytes`, after a rotation).
    pub previous_file_bytes: Option<u64>,
    /// Broken links, one per line.
    pub problems: Vec<String>,
    /// Sealed torn data: where it is and which seal covers it.
    pub notes: Vec<String>,
}

/// Lines that are not records, since the last record.
struct Junk {
    first_line: usize,
    offset: u64,
    bytes: u64,
    hasher: Sha256,
    problems: Vec<String>,
    records_before: u64,
}

/// A file whose first record is an `audit-continue` record goes on with the
/// chain of a file moved away at a log rotation: its first sequence number
/// and `prev` are that file's, said in a note (the earlier file's last line
/// hashes to that `prev`). So does one whose first record seals torn bytes
/// at its very start: the first try of that record, cut short by a full disk.
fn continued(
    out: &mut Verification,
    v: &serde_json::Value,
    n: usize,
    seq: &mut u64,
    prev: &mut [u8; 64],
) {
    let starts = match v["operation"].as_str() {
        Some(CONTINUE_OPERATION) => true,
        Some(SEAL_OPERATION) => v["torn_offset"].as_u64() == Some(0),
        _ => false,
    };
    if !starts {
        return;
    }
    let (Some(s), p) = (v["seq"].as_u64(), prev_of(v)) else {
        return;
    };
    if p == ZERO_HASH || p == NO_PREV {
        // The start of a chain, not the rest of one; or no chain at all.
        return;
    }
    *seq = s;
    *prev = p;
    out.previous_file_bytes = v["previous_file_bytes"].as_u64();
    out.notes.push(format!(
        "line {n}: continues the chain of an earlier file (a log rotation): its first record is number {s}, \
         chained to a line that hashes to {}",
        String::from_utf8_lossy(&p)
    ));
}

/// What [`prev_of`] gives for a record without a `prev` of 64 bytes.
const NO_PREV: [u8; 64] = [b'?'; 64];

/// A record's `prev`, or [`NO_PREV`] where it has none of 64 bytes.
fn prev_of(v: &serde_json::Value) -> [u8; 64] {
    let p = v["prev"].as_str().map(str::as_bytes);
    p.and_then(|p| <[u8; 64]>::try_from(p).ok())
        .unwrap_or(NO_PREV)
}

/// Why the file is not one to read line by line: compressed.
fn not_plain(reader: &mut BufReader<File>) -> std::io::Result<Option<String>> {
    let gzip = reader.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(gzip.then(|| {
        "compressed with gzip: decompress it first (`gunzip -k`) and verify the plain file".into()
    }))
}

/// Check a file's chain (see the module documentation).
pub fn verify(path: &Path) -> std::io::Result<Verification> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut out = Verification::default();
    if let Some(problem) = not_plain(&mut reader)? {
        out.problems.push(problem);
        return Ok(out);
    }
    let mut prev = ZERO_HASH;
    let mut expect_seq = 0u64;
    let mut junk: Option<Junk> = None;
    let mut offset = 0u64;
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        n += 1;
        let line_offset = offset;
        offset += read as u64;
        let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let v = serde_json::from_slice::<serde_json::Value>(line)
            .ok()
            .filter(|v| v.is_object());
        let Some(v) = v else {
            let j = junk.get_or_insert_with(|| Junk {
                first_line: n,
                offset: line_offset,
                bytes: 0,
                hasher: Sha256::new(),
                problems: Vec::new(),
                records_before: out.records,
            });
            if n > j.first_line {
                j.hasher.update(b"\n");
                j.bytes += 1;
            }
            j.hasher.update(line);
            j.bytes += line.len() as u64;
            j.problems
                .push(if line.iter().all(u8::is_ascii_whitespace) {
                    format!("line {n}: empty line")
                } else {
                    format!("line {n}: not a JSON record (edited or truncated)")
                });
            continue;
        };
        if let Some(j) = junk.take() {
            settle(&mut out, j, &v, n);
        }
        if out.records == 0 {
            continued(&mut out, &v, n, &mut expect_seq, &mut prev);
        }
        out.records += 1;
        match v["seq"].as_u64() {
            Some(s) if s == expect_seq => {}
            Some(s) => out.problems.push(format!(
                "line {n}: sequence number {s}, expected {expect_seq} ({} record(s) missing or reordered)",
                s.abs_diff(expect_seq)
            )),
            None => out.problems.push(format!("line {n}: no sequence number")),
        }
        if v["prev"].as_str().map(str::as_bytes) != Some(&prev[..]) {
            out.problems.push(format!(
                "line {n}: hash chain broken: the line before it was edited, removed or inserted"
            ));
        }
        let seq = v["seq"].as_u64().unwrap_or(expect_seq);
        out.first.get_or_insert_with(|| (seq, prev_of(&v)));
        expect_seq = seq + 1;
        prev = hash_hex(line);
        out.last = Some((seq, prev));
    }
    if let Some(j) = junk {
        out.problems.push(unsealed_tail(&j));
    }
    Ok(out)
}

/// The problem of torn data at the end of a file that no seal covers.
fn unsealed_tail(j: &Junk) -> String {
    format!(
        "line {}: torn last record ({} bytes at offset {}), not sealed yet: the {} record(s) before it verify; \
         if the node writes this file, its next start seals it (in a file rotated away, the file was cut or \
         edited after the node left it)",
        j.first_line, j.bytes, j.offset, j.records_before
    )
}

/// Junk followed by the record `v` on line `n`: sealed if `v` is a seal
/// that matches it, problems otherwise.
fn settle(out: &mut Verification, j: Junk, v: &serde_json::Value, n: usize) {
    let sha = crate::hex::encode(&j.hasher.finalize());
    let sealed = v["operation"] == SEAL_OPERATION
        && v["torn_offset"].as_u64() == Some(j.offset)
        && v["torn_bytes"].as_u64() == Some(j.bytes)
        && v["torn_sha256"].as_str() == Some(sha.as_str());
    let last = n - 1;
    if sealed {
        out.notes.push(format!(
            "lines {}-{last}: torn record ({} bytes at offset {}) sealed by line {n}; the {} record(s) before it verify",
            j.first_line, j.bytes, j.offset, j.records_before
        ));
    } else {
        out.problems.extend(j.problems);
        if v["operation"] == SEAL_OPERATION {
            out.problems.push(format!(
                "line {n}: seal does not match the torn data before it (edited)"
            ));
        }
    }
}
