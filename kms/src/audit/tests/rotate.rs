//! Log rotation: the audit file moved away, a reload, the chain across files.

use std::os::unix::fs::PermissionsExt;

use super::*;

#[tokio::test]
async fn a_moved_file_goes_on_in_a_new_one_with_the_chain() {
    let (dir, path, log) = new_log();
    for op in ["a", "b"] {
        log.record(&event(op), Company::Others).await.unwrap();
    }
    assert_eq!(log.reopen_if_moved().await.unwrap(), Reopened::Same);
    let old = dir.path().join("audit.log.1");
    std::fs::rename(&path, &old).unwrap();
    // Until the reload, records go on in the file moved away.
    log.record(&event("c"), Company::Others).await.unwrap();
    assert!(!path.exists());
    assert_eq!(log.reopen_if_moved().await.unwrap(), Reopened::Continued);
    log.record(&event("d"), Company::Others).await.unwrap();

    let (a, b) = (verify(&old).unwrap(), verify(&path).unwrap());
    assert_eq!((a.records, a.problems.len()), (3, 0), "{:?}", a.problems);
    assert_eq!((b.records, b.problems.len()), (2, 0), "{:?}", b.problems);
    let (last_seq, last_hash) = a.last.unwrap();
    assert_eq!(b.first, Some((last_seq + 1, last_hash)));
    assert!(b.notes[0].contains("continues the chain"), "{:?}", b.notes);
    let text = std::fs::read_to_string(&path).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["operation"], CONTINUE_OPERATION);
    assert_eq!(first["outcome"], CONTINUE_OUTCOME);
    assert_eq!(
        first["previous_file_bytes"],
        std::fs::metadata(&old).unwrap().len()
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    // Nothing more to do until the next move.
    assert_eq!(log.reopen_if_moved().await.unwrap(), Reopened::Same);
}

#[tokio::test]
async fn an_empty_file_left_by_logrotate_is_taken_and_another_trail_is_not() {
    let (dir, path, log) = new_log();
    log.record(&event("a"), Company::Others).await.unwrap();
    std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
    // What logrotate's `create` leaves at the path.
    std::fs::write(&path, "").unwrap();
    assert_eq!(log.reopen_if_moved().await.unwrap(), Reopened::Continued);
    log.record(&event("b"), Company::Others).await.unwrap();
    assert_eq!(verify(&path).unwrap().records, 2);

    // A non-empty file at the path is another trail: refused, and records
    // stay in the file being written.
    let current = dir.path().join("audit.log.2");
    std::fs::rename(&path, &current).unwrap();
    std::fs::write(&path, "{\"seq\":0}\n").unwrap();
    let refused = log.reopen_if_moved().await;
    assert!(
        matches!(&refused, Err(AuditError::Open { reason, .. }) if reason.contains("move it away")),
        "{refused:?}"
    );
    log.record(&event("c"), Company::Others).await.unwrap();
    let v = verify(&current).unwrap();
    assert_eq!((v.records, v.problems.len()), (3, 0), "{:?}", v.problems);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"seq\":0}\n");
}

#[tokio::test]
async fn a_continue_record_the_disk_refused_is_written_before_the_next_record() {
    // 0: the disk takes nothing; 10: it takes the record's first bytes.
    for (cut, want) in [
        (0, vec!["audit-continue", "c"]),
        (10, vec!["audit-seal", "audit-continue", "c"]),
    ] {
        let (dir, path, log) = new_log();
        log.record(&event("a"), Company::Others).await.unwrap();
        let old = dir.path().join("audit.log.1");
        std::fs::rename(&path, &old).unwrap();
        log.writer.lock().await.cut_after = Some(cut);
        assert_eq!(log.reopen_if_moved().await.unwrap(), Reopened::Continued);
        // Still full: the record fails, and its file's first record with it.
        assert!(log.record(&event("b"), Company::Others).await.is_err());
        log.writer.lock().await.cut_after = None;
        log.record(&event("c"), Company::Others).await.unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        let ops: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .map(|v| v["operation"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ops, want, "cut {cut}: {text}");
        let (a, b) = (verify(&old).unwrap(), verify(&path).unwrap());
        assert!(b.problems.is_empty(), "cut {cut}: {:?}", b.problems);
        assert!(
            b.notes.iter().any(|n| n.contains("continues the chain")),
            "cut {cut}: {:?}",
            b.notes
        );
        let (seq, hash) = a.last.unwrap();
        assert_eq!(b.first, Some((seq + 1, hash)), "cut {cut}");
    }
}
