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

use std::borrow::Cow;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Most records written with one `write(2)`.
const MAX_BATCH: usize = 512;

/// One audit event, as the server fills it in. Borrows its strings: building
/// one per request costs no copies.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Event<'a> {
    pub request_id: &'a str,
    pub client_alias: &'a str,
    pub client_subject: &'a str,
    pub client_serial: &'a str,
    pub client_fingerprint: &'a str,
    pub role: &'a str,
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

/// Why the audit trail cannot take a record.
#[derive(Clone, Debug, thiserror::Error)]
pub enum AuditError {
    #[error("cannot open the audit file {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("cannot write the audit file {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error(
        "the audit file {path} ends with a line that is not an audit record; move it away so a new file starts"
    )]
    BadTail { path: PathBuf },
    #[error("the audit writer for {path} stopped")]
    WriterGone { path: PathBuf },
}

/// A record on its way to the writer: its time, its fields as JSON without
/// the outer braces, and who waits for the outcome.
struct Job {
    time: String,
    fields: String,
    done: Option<oneshot::Sender<Result<(), AuditError>>>,
}

/// The audit log. Records go to a writer thread that appends them in batches
/// (one `write(2)` for all records waiting), extends the hash chain, and only
/// then answers each waiting request: no key is served before its record is
/// in the file (group commit).
pub struct AuditLog {
    path: PathBuf,
    jobs: mpsc::Sender<Job>,
}

impl AuditLog {
    /// Open (or create, mode 0640) the audit file, continue its chain and
    /// start the writer thread.
    pub fn open(path: &Path) -> Result<Self, AuditError> {
        let open_err = |e: std::io::Error| AuditError::Open {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o640)
            .open(path)
            .map_err(open_err)?;
        // A device such as /dev/full has no tail to continue from.
        let regular = file.metadata().map_err(open_err)?.is_file();
        let tail = if regular {
            last_line(&mut file).map_err(open_err)?
        } else {
            None
        };
        let (seq, prev) = match tail {
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
        let (jobs, rx) = mpsc::channel();
        let writer = Writer {
            path: path.to_owned(),
            file,
            seq,
            prev,
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(&rx))
            .map_err(open_err)?;
        Ok(Self {
            path: path.to_owned(),
            jobs,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn job(event: &Event<'_>, done: Option<oneshot::Sender<Result<(), AuditError>>>) -> Job {
        let json = serde_json::to_string(event).unwrap_or_default();
        let fields = json
            .strip_prefix('{')
            .and_then(|j| j.strip_suffix('}'))
            .unwrap_or_default()
            .to_owned();
        Job {
            time: rfc3339_now(),
            fields,
            done,
        }
    }

    /// Append one record; resolves once it is written (or failed to be).
    pub async fn record(&self, event: &Event<'_>) -> Result<(), AuditError> {
        let (tx, rx) = oneshot::channel();
        let gone = || AuditError::WriterGone {
            path: self.path.clone(),
        };
        self.jobs
            .send(Self::job(event, Some(tx)))
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// Append one record without waiting (for refused handshakes, which
    /// serve nothing that must wait for its record).
    pub fn submit(&self, event: &Event<'_>) {
        if self.jobs.send(Self::job(event, None)).is_err() {
            tracing::error!(path = %self.path.display(), "the audit writer stopped; record lost");
        }
    }
}

struct Writer {
    path: PathBuf,
    file: File,
    seq: u64,
    prev: String,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Job>) {
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            let (seq0, prev0) = (self.seq, self.prev.clone());
            let mut buf = String::new();
            for job in &batch {
                let line = format!(
                    "{{\"seq\":{},\"time\":\"{}\",{},\"prev\":\"{}\"}}",
                    self.seq, job.time, job.fields, self.prev
                );
                self.prev = hash_hex(line.as_bytes());
                self.seq += 1;
                buf.push_str(&line);
                buf.push('\n');
            }
            let result = self
                .file
                .write_all(buf.as_bytes())
                .and_then(|()| self.file.flush())
                .map_err(|e| {
                    // Nothing of the batch counts: the chain goes on from before it.
                    self.seq = seq0;
                    self.prev = prev0;
                    AuditError::Write {
                        path: self.path.clone(),
                        reason: e.to_string(),
                    }
                });
            for job in batch {
                if let Some(done) = job.done {
                    let _ = done.send(result.clone());
                }
            }
        }
    }
}

fn hash_hex(b: &[u8]) -> String {
    crate::hex::encode(&Sha256::digest(b))
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

    fn event(op: &str) -> Event<'_> {
        Event {
            operation: op,
            outcome: "ok".into(),
            status: 200,
            ..Event::default()
        }
    }

    #[tokio::test]
    async fn chain_survives_reopen_and_detects_edits_and_deletions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path).unwrap();
        for op in ["a", "b", "c"] {
            log.record(&event(op)).await.unwrap();
        }
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        log.record(&event("d")).await.unwrap();
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_records_form_one_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = std::sync::Arc::new(AuditLog::open(&path).unwrap());
        let mut tasks = Vec::new();
        for i in 0..200 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                let id = i.to_string();
                log.record(&Event {
                    request_id: &id,
                    ..event("x")
                })
                .await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let v = verify(&path).unwrap();
        assert_eq!((v.records, v.problems.len()), (200, 0), "{:?}", v.problems);
    }

    #[tokio::test]
    async fn a_full_disk_fails_the_record() {
        let log = AuditLog::open(Path::new("/dev/full")).unwrap();
        let e = log.record(&event("a")).await.unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot write the audit file /dev/full"),
            "{e}"
        );
    }

    #[test]
    fn time_format() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 24, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
