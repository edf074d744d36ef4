//! Unit tests of the audit trail: chain, seals, aggregation bounds.

use super::*;

/// A new audit log in a folder of its own (kept while the folder lives).
fn new_log() -> (tempfile::TempDir, PathBuf, std::sync::Arc<AuditLog>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = std::sync::Arc::new(AuditLog::open(&path).unwrap());
    (dir, path, log)
}

/// The audit log at `path` with another aggregation interval.
fn open_with_interval(path: &Path, interval: std::time::Duration) -> AuditLog {
    AuditLog::open_tuned(
        path,
        Tuning {
            aggregate_interval: interval,
            ..Tuning::default()
        },
    )
    .unwrap()
}

fn event(op: &str) -> Event<'_> {
    Event {
        operation: op,
        outcome: "ok".into(),
        status: 200,
        ..Event::default()
    }
}

/// `n` records started together on the current task's runtime.
async fn records_together(log: &std::sync::Arc<AuditLog>, n: usize) -> Vec<Result<(), AuditError>> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                let id = i.to_string();
                log.record(
                    &Event {
                        request_id: &id,
                        ..event("x")
                    },
                    Company::Others,
                )
                .await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test]
async fn chain_survives_reopen_and_detects_edits_and_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    for op in ["a", "b", "c"] {
        log.record(&event(op), Company::Others).await.unwrap();
    }
    drop(log);
    let log = AuditLog::open(&path).unwrap();
    log.record(&event("d"), Company::Others).await.unwrap();
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
    let (_dir, path, log) = new_log();
    for r in records_together(&log, 200).await {
        r.unwrap();
    }
    let v = verify(&path).unwrap();
    assert_eq!((v.records, v.problems.len()), (200, 0), "{:?}", v.problems);
}

#[tokio::test]
async fn a_full_disk_fails_the_record() {
    let log = AuditLog::open(Path::new("/dev/full")).unwrap();
    let e = log.record(&event("a"), Company::Others).await.unwrap_err();
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

#[tokio::test]
async fn a_partial_write_is_sealed_before_the_next_record() {
    let (_dir, path, log) = new_log();
    log.record(&event("a"), Company::Others).await.unwrap();
    // What a write cut short by a full disk leaves, and the writer's view of it.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":1,\"time\":\"2026-").unwrap();
    log.writer.lock().await.mark_failed();
    log.record(&event("b"), Company::Others).await.unwrap();
    // a, the seal, b.
    assert_one_sealed_tear(&path, 3, "lines 2-2: torn record (22 bytes at offset");
    // Editing the torn bytes afterwards is found.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("2026-\n", "2027-\n", 1)).unwrap();
    let v = verify(&path).unwrap();
    assert!(
        v.problems.iter().any(|p| p.contains("seal does not match")),
        "{:?}",
        v.problems
    );
}

#[tokio::test]
async fn a_file_that_is_not_an_audit_trail_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    std::fs::write(&path, "some other log\nline two\n").unwrap();
    assert!(matches!(
        AuditLog::open(&path),
        Err(AuditError::BadTail { .. })
    ));
}

#[tokio::test]
async fn notices_are_counted_and_bounded_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    // A long interval: only the flush ends it.
    let log = open_with_interval(&path, std::time::Duration::from_secs(3600));
    let huge = "B\n".repeat(10_000);
    let fps: Vec<String> = (0..MAX_IDENTITIES + 10).map(|i| format!("fp{i}")).collect();
    for round in 0..50 {
        for fp in &fps[..if round == 0 { fps.len() } else { 1 }] {
            log.notice(&Notice {
                operation: "tls-handshake",
                outcome: "refused-not-pinned",
                fingerprint: fp,
                subject: &huge,
                ..Notice::default()
            });
        }
    }
    log.flush().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let total: u64 = recs.iter().map(|r| r["count"].as_u64().unwrap()).sum();
    assert_eq!(total, fps.len() as u64 + 49);
    // MAX_IDENTITIES firsts, one summary (fp0's 49 more), one overflow.
    assert_eq!(recs.len(), MAX_IDENTITIES + 2, "{text}");
    let overflow: Vec<_> = recs
        .iter()
        .filter(|r| r["aggregate"] == "overflow")
        .collect();
    assert_eq!(overflow.len(), 1);
    assert_eq!(overflow[0]["count"], 10);
    let summary = recs.iter().find(|r| r["aggregate"] == "summary").unwrap();
    assert_eq!(
        (
            summary["client_fingerprint"].as_str(),
            summary["count"].as_u64()
        ),
        (Some("fp0"), Some(49))
    );
    for l in text.lines() {
        assert!(l.len() <= MAX_NOTICE_RECORD_BYTES, "{} bytes", l.len());
    }
    assert!(
        recs[0]["client_subject"]
            .as_str()
            .unwrap()
            .ends_with("…(20000 bytes)")
    );
    assert!(verify(&path).unwrap().problems.is_empty());
}

#[tokio::test]
async fn the_interval_ends_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = open_with_interval(&path, std::time::Duration::from_millis(200));
    for _ in 0..5 {
        log.notice(&Notice {
            operation: "decrypt-workspace-key",
            outcome: "too-many-requests",
            fingerprint: "AA:BB",
            role: "device",
            ..Notice::default()
        });
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        if text.contains("\"aggregate\":\"summary\"") {
            assert!(text.contains("\"count\":4"), "{text}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no summary: {text}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_worst_case_notice_record_fits_the_documented_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = open_with_interval(&path, std::time::Duration::from_secs(3600));
    let controls = "\u{1}".repeat(5000);
    let fp = crate::tls::pinning::fingerprint_hex(&[0xff; 32]);
    for _ in 0..2 {
        log.notice(&Notice {
            operation: "rewrap-customer-key",
            outcome: "too-many-requests",
            fingerprint: &fp,
            subject: &controls,
            alias: &controls,
            role: "backend",
        });
    }
    log.flush().await;
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2, "a first and a summary");
    for l in text.lines() {
        assert!(l.len() <= MAX_NOTICE_RECORD_BYTES, "{} bytes", l.len());
    }
}

#[tokio::test]
async fn a_last_record_without_its_newline_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let log = AuditLog::open(&path).unwrap();
    log.record(&event("a"), Company::Others).await.unwrap();
    log.record(&event("b"), Company::Others).await.unwrap();
    drop(log);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.trim_end()).unwrap();
    let log = AuditLog::open(&path).unwrap();
    log.record(&event("c"), Company::Others).await.unwrap();
    assert_clean(&path, 3);
}

/// The file verifies, with `records` records, no problem and no note.
fn assert_clean(path: &Path, records: u64) {
    let v = verify(path).unwrap();
    assert_eq!(
        (v.records, v.problems.len(), v.notes.len()),
        (records, 0, 0),
        "{v:?}"
    );
}

/// The file verifies, with `records` records and one sealed tear whose note
/// starts with `note`.
fn assert_one_sealed_tear(path: &Path, records: u64, note: &str) {
    let v = verify(path).unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.records, records, "{v:?}");
    assert_eq!(v.notes.len(), 1, "{:?}", v.notes);
    assert!(v.notes[0].starts_with(note), "{:?}", v.notes);
}

mod group_commit;

mod rotate;

/// After a failed write the trail reports itself unwritable until a probe
/// gets a record out: the `audit-resumed` record marks where in the chain.
#[tokio::test]
async fn a_probe_finds_the_trail_writable_again_and_says_so_in_it() {
    let (_dir, path, log) = new_log();
    log.probe().await.unwrap();
    log.record(&event("a"), Company::Others).await.unwrap();
    log.writer.lock().await.cut_after = Some(0);
    assert!(log.record(&event("b"), Company::Others).await.is_err());
    assert!(log.probe().await.is_err(), "still full");
    log.writer.lock().await.cut_after = None;
    log.probe().await.unwrap();
    // Writable: no further record.
    log.probe().await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let ops: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["operation"].to_string())
        .collect();
    assert_eq!(ops, ["\"a\"", "\"audit-resumed\""]);
    assert_clean(&path, 2);
}
