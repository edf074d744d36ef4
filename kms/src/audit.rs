//! The audit trail: one JSON line per key operation and per refused request.
//!
//! Each record carries a sequence number (from 0 in each file) and the
//! SHA-256 of the previous line (`prev`; 64 zeros for the first), so a removed
//! or edited line breaks the chain and `cmx-kms audit verify FILE` finds it.
//! Records never hold key material, passwords or tokens: only identities,
//! key ids, labels and timings.
//!
//! If a record cannot be written, the operation it describes is refused (the
//! caller maps [`AuditError`] to 503 `audit-unavailable`): no key is served
//! unaudited.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit event, as the server fills it in.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Event {
    pub request_id: String,
    pub client_alias: String,
    pub client_subject: String,
    pub client_serial: String,
    pub client_fingerprint: String,
    pub role: String,
    pub operation: String,
    /// Customer key id (hex), when the operation touched one.
    pub key_id: String,
    pub backend: String,
    /// `hit`, `miss` or empty.
    pub cache: String,
    /// `ok` or the error label.
    pub outcome: String,
    pub status: u16,
    pub latency_us: u64,
}

#[derive(Serialize)]
struct Record<'a> {
    seq: u64,
    time: String,
    #[serde(flatten)]
    event: &'a Event,
    prev: &'a str,
}

/// Why the audit trail cannot take a record.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the audit file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the audit file {path} ends with a line that is not an audit record; move it away so a new file starts"
    )]
    BadTail { path: PathBuf },
}

struct Chain {
    file: File,
    seq: u64,
    prev: String,
}

/// The audit log writer.
pub struct AuditLog {
    path: PathBuf,
    chain: Mutex<Chain>,
}

impl AuditLog {
    /// Open (or create, mode 0640) the audit file and continue its chain.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let open_err = |source| AuditError::Open {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o640)
            .open(path)
            .map_err(open_err)?;
        let (seq, prev) = match last_line(&mut file).map_err(open_err)? {
            None => (0, ZERO_HASH.to_string()),
            Some(line) => {
                let v: serde_json::Value =
                    serde_json::from_str(&line).map_err(|_| AuditError::BadTail {
                        path: path.to_owned(),
                    })?;
                let seq = v["seq"].as_u64().ok_or_else(|| AuditError::BadTail {
                    path: path.to_owned(),
                })?;
                (seq + 1, hash_hex(line.as_bytes()))
            }
        };
        Ok(Self {
            path: path.to_owned(),
            chain: Mutex::new(Chain { file, seq, prev }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one record. On error nothing is appended (or a partial line
    /// that `verify` reports), and the chain state is left unchanged.
    pub fn record(&self, event: &Event) -> Result<(), AuditError> {
        let mut chain = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        let rec = Record {
            seq: chain.seq,
            time: rfc3339_now(),
            event,
            prev: &chain.prev,
        };
        let mut line = serde_json::to_string(&rec).unwrap_or_default();
        let hash = hash_hex(line.as_bytes());
        line.push('\n');
        chain
            .file
            .write_all(line.as_bytes())
            .and_then(|()| chain.file.flush())
            .map_err(|source| AuditError::Write {
                path: self.path.clone(),
                source,
            })?;
        chain.seq += 1;
        chain.prev = hash;
        Ok(())
    }
}

fn hash_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// The last non-empty line of a file (reads at most the last 64 KiB).
fn last_line(file: &mut File) -> std::io::Result<Option<String>> {
    let len = file.seek(SeekFrom::End(0))?;
    let start = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = String::new();
    // A tail cut inside a UTF-8 sequence reads as no tail: the chain then
    // restarts, which `verify` reports.
    if file.take(64 * 1024).read_to_string(&mut tail).is_err() {
        tail.clear();
    }
    Ok(tail
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(str::to_owned))
}

/// Problems `verify` found, one per broken link.
#[derive(Debug, Default)]
pub struct Verification {
    pub records: u64,
    pub problems: Vec<String>,
}

/// Check a file's chain: JSON lines, consecutive sequence numbers from 0,
/// each `prev` the SHA-256 of the line before.
pub fn verify(path: &Path) -> std::io::Result<Verification> {
    let reader = BufReader::new(File::open(path)?);
    let mut out = Verification::default();
    let mut prev = ZERO_HASH.to_string();
    let mut expect_seq = 0u64;
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        let n = i + 1;
        if line.trim().is_empty() {
            out.problems.push(format!("line {n}: empty line"));
            continue;
        }
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            out.problems
                .push(format!("line {n}: not a JSON record (edited or truncated)"));
            prev = hash_hex(line.as_bytes());
            continue;
        };
        out.records += 1;
        match v["seq"].as_u64() {
            Some(s) if s == expect_seq => {}
            Some(s) => out.problems.push(format!(
                "line {n}: sequence number {s}, expected {expect_seq} ({} record(s) missing or reordered)",
                s.abs_diff(expect_seq)
            )),
            None => out.problems.push(format!("line {n}: no sequence number")),
        }
        if v["prev"].as_str() != Some(prev.as_str()) {
            out.problems.push(format!(
                "line {n}: hash chain broken: the line before it was edited, removed or inserted"
            ));
        }
        expect_seq = v["seq"].as_u64().unwrap_or(expect_seq) + 1;
        prev = hash_hex(line.as_bytes());
    }
    Ok(out)
}

/// UTC time as RFC 3339 with milliseconds, e.g. `2026-11-28T20:15:03.123Z`.
pub fn rfc3339_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = crate::time::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(op: &str) -> Event {
        Event {
            operation: op.into(),
            outcome: "ok".into(),
            status: 200,
            ..Event::default()
        }
    }

    #[test]
    fn chain_survives_reopen_and_detects_edits_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for op in ["a", "b", "c"] {
            log.record(&event(op)).unwrap();
        }
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        log.record(&event("d")).unwrap();
        let v = verify(&path).unwrap();
        assert_eq!((v.records, v.problems.len()), (4, 0), "{:?}", v.problems);

        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Delete line 2.
        let deleted = [lines[0], lines[2], lines[3]].join("\n") + "\n";
        std::fs::write(&path, deleted).unwrap();
        let v = verify(&path).unwrap();
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("line 2: sequence number 2, expected 1")),
            "{:?}",
            v.problems
        );
        // Edit line 3's outcome.
        let edited = text.replacen("\"operation\":\"c\"", "\"operation\":\"x\"", 1);
        std::fs::write(&path, edited).unwrap();
        let v = verify(&path).unwrap();
        assert_eq!(
            v.problems,
            vec!["line 4: hash chain broken: the line before it was edited, removed or inserted"]
        );
    }

    #[test]
    fn time_format() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
