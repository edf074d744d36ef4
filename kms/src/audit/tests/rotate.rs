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

/// A deleted file (removed, or moved to another file system: a copy, then
/// an unlink) holds records nobody can reach: they are saved beside the path.
#[tokio::test]
async fn a_deleted_file_is_saved_whole_before_the_switch() {
    let (dir, path, log) = new_log();
    log.record(&event("a"), Company::Others).await.unwrap();
    // `mv` to another file system: what it copies, then the original gone.
    let copy = dir.path().join("copied.log");
    std::fs::copy(&path, &copy).unwrap();
    std::fs::remove_file(&path).unwrap();
    // Answered while the file has no name: only in the deleted file.
    log.record(&event("b"), Company::Others).await.unwrap();
    let Reopened::Saved { saved, bytes } = log.reopen_if_moved().await.unwrap() else {
        panic!("the deleted file is saved");
    };
    log.record(&event("c"), Company::Others).await.unwrap();

    assert!(saved.starts_with(dir.path()), "{}", saved.display());
    let name = saved.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("audit.log.deleted-"), "{name}");
    assert_eq!(std::fs::metadata(&saved).unwrap().len(), bytes);
    let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
    let (c, s, n) = (
        verify(&copy).unwrap(),
        verify(&saved).unwrap(),
        verify(&path).unwrap(),
    );
    assert_eq!(
        (c.records, s.records),
        (1, 2),
        "the saved file has the record the copy lacks"
    );
    assert!(s.problems.is_empty(), "{:?}", s.problems);
    let (seq, hash) = s.last.unwrap();
    assert_eq!(
        n.first,
        Some((seq + 1, hash)),
        "the new file continues the saved one"
    );
    assert!(n.problems.is_empty(), "{:?}", n.problems);
}

#[tokio::test]
async fn a_directory_at_the_path_is_refused_as_what_it_is() {
    let (dir, path, log) = new_log();
    log.record(&event("a"), Company::Others).await.unwrap();
    std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
    std::fs::create_dir(&path).unwrap();
    let refused = log.reopen_if_moved().await;
    assert!(
        matches!(&refused, Err(AuditError::Open { reason, .. }) if reason.contains("not a file")),
        "{refused:?}"
    );
    std::fs::remove_dir(&path).unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone/audit.log"), &path).unwrap();
    let refused = log.reopen_if_moved().await;
    assert!(
        matches!(&refused, Err(AuditError::Open { reason, .. }) if reason.contains("symbolic link")),
        "{refused:?}"
    );
}

/// Two writers of one chain would break it: a second open is refused, at
/// start and after a rotation, and the lock goes with the file.
#[tokio::test]
async fn one_writer_per_audit_file() {
    let (dir, path, log) = new_log();
    let second = AuditLog::open(&path);
    assert!(
        matches!(&second, Err(AuditError::Open { reason, .. }) if reason.contains("another process")),
        "{:?}",
        second.err()
    );
    let old = dir.path().join("audit.log.1");
    std::fs::rename(&path, &old).unwrap();
    assert_eq!(log.reopen_if_moved().await.unwrap(), Reopened::Continued);
    assert!(AuditLog::open(&path).is_err(), "the new file is locked");
    // The file moved away is no longer written: another node may take it.
    assert!(AuditLog::open(&old).is_ok());
}
