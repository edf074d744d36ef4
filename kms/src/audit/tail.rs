//! Where an existing audit file's chain continues: its last complete record.
//!
//! A crash or a full disk can leave a torn last line. Instead of refusing to
//! start (which turned a full disk into an outage that outlived it), the
//! tail is scanned backwards for the last line that is a record; whatever
//! follows it is torn and gets sealed by the writer. Only a file with no
//! record in its last [`TAIL_SCAN_BYTES`] is refused: that is not a torn
//! audit file but something else, and appending to it would be wrong.
//! [`torn_region`] measures and hashes what follows the last good record,
//! for the writer's seal.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use sha2::{Digest, Sha256};

use super::writer::hash_hex;

/// How far back from the end a record is looked for at start.
pub const TAIL_SCAN_BYTES: u64 = 1024 * 1024;

/// Where the chain continues.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Tail {
    pub(super) seq: u64,
    pub(super) prev: [u8; 64],
    /// Offset just after the last record's newline (where torn data starts).
    pub(super) good_end: u64,
    /// The last record lacks only its newline: add it, nothing is torn.
    pub(super) missing_newline: bool,
    /// Bytes follow the last record.
    pub(super) torn: bool,
}

/// The next sequence number of a record line, if `line` is one.
pub(super) fn record_seq(line: &[u8]) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    v.get("prev")?.as_str()?;
    v.get("seq")?.as_u64()
}

/// `Ok(None)`: the file holds no record and no torn first record either.
/// `Err(())`: no record found in the scanned tail (not an audit file).
pub(super) fn scan(file: &mut File) -> std::io::Result<Result<Option<Tail>, ()>> {
    let len = file.seek(SeekFrom::End(0))?;
    if len == 0 {
        return Ok(Ok(None));
    }
    let start = len.saturating_sub(TAIL_SCAN_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity(usize::try_from(len - start).unwrap_or(0));
    file.take(len - start).read_to_end(&mut buf)?;
    // Complete lines in the window: the first one only if the window starts
    // at the beginning of the file or just after a newline.
    let mut end = buf.len();
    loop {
        let line_start = match buf[..end].iter().rposition(|&b| b == b'\n') {
            Some(p) => p + 1,
            None if start == 0 => 0,
            None => return Ok(Err(())),
        };
        let line = &buf[line_start..end];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some(seq) = record_seq(line) {
            let line_end = start + (line_start + line.len()) as u64;
            let missing_newline = line_end == len;
            let good_end = if missing_newline { len } else { line_end + 1 };
            return Ok(Ok(Some(Tail {
                seq: seq + 1,
                prev: hash_hex(line),
                good_end,
                missing_newline,
                torn: good_end < len,
            })));
        }
        if line_start == 0 {
            break;
        }
        end = line_start - 1;
    }
    // No record at all: a torn first record (a crash during the very first
    // write) starts like one; anything else is not ours.
    if start == 0 && buf.starts_with(b"{\"seq\":0,") {
        return Ok(Ok(Some(Tail {
            seq: 0,
            prev: [b'0'; 64],
            good_end: 0,
            missing_newline: false,
            torn: true,
        })));
    }
    Ok(Err(()))
}

/// Whether the file (open for reading) can go on as an audit trail: empty, or
/// with a record (or a torn first one) in its last [`TAIL_SCAN_BYTES`]. The
/// question [`super::AuditLog::open`] asks, without opening it for writing
/// (`check-config`).
pub fn continues(file: &mut File) -> std::io::Result<bool> {
    Ok(scan(file)?.is_ok())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn scan_bytes(b: &[u8]) -> Result<Option<Tail>, ()> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b).unwrap();
        scan(&mut f).unwrap()
    }

    const R0: &str = "{\"seq\":0,\"prev\":\"00\"}";
    const R1: &str = "{\"seq\":1,\"prev\":\"ab\"}";

    #[test]
    fn finds_the_last_record_and_what_follows() {
        assert_eq!(scan_bytes(b""), Ok(None));
        let clean = format!("{R0}\n{R1}\n");
        let t = scan_bytes(clean.as_bytes()).unwrap().unwrap();
        assert_eq!((t.seq, t.good_end, t.torn), (2, clean.len() as u64, false));
        assert_eq!(t.prev, hash_hex(R1.as_bytes()));
        let torn = format!("{clean}{{\"seq\":2,\"ti");
        let t = scan_bytes(torn.as_bytes()).unwrap().unwrap();
        assert_eq!((t.seq, t.good_end, t.torn), (2, clean.len() as u64, true));
        // Torn inside a UTF-8 sequence, then a newline and more junk.
        let mut odd = clean.clone().into_bytes();
        odd.extend_from_slice(b"{\"seq\":2,\"s\":\"\xc3\n\x00junk");
        let t = scan_bytes(&odd).unwrap().unwrap();
        assert_eq!((t.seq, t.good_end, t.torn), (2, clean.len() as u64, true));
        let no_nl = format!("{R0}\n{R1}");
        let t = scan_bytes(no_nl.as_bytes()).unwrap().unwrap();
        assert!(t.missing_newline && !t.torn && t.seq == 2);
        let first = scan_bytes(b"{\"seq\":0,\"time\":\"20").unwrap().unwrap();
        assert!(first.torn && first.seq == 0 && first.good_end == 0);
        assert_eq!(scan_bytes(b"not an audit file\n"), Err(()));
        let mut f = tempfile::tempfile().unwrap();
        assert!(continues(&mut f).unwrap());
        f.write_all(b"not an audit file\n").unwrap();
        assert!(!continues(&mut f).unwrap());
        f.write_all(clean.as_bytes()).unwrap();
        assert!(continues(&mut f).unwrap());
    }
}
