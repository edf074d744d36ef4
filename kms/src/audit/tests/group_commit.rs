//! Unit tests of the group commit: records ready together written together,
//! batches that fail or are cut short, records whose request went away.

use super::*;

#[tokio::test]
async fn records_ready_together_are_written_together() {
    let (_dir, path, log) = new_log();
    log.record(&event("first"), Company::Others).await.unwrap();
    assert_eq!(log.writer.lock().await.writes, 1);
    for r in records_together(&log, 50).await {
        r.unwrap();
    }
    let writes = log.writer.lock().await.writes - 1;
    assert!(
        writes < 10,
        "50 records ready together took {writes} writes"
    );
    let v = verify(&path).unwrap();
    assert_eq!((v.records, v.problems.len()), (51, 0), "{:?}", v.problems);
    // In the order they were queued: the spawned tasks ran in order.
    let text = std::fs::read_to_string(&path).unwrap();
    let ids: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| {
            l.split("\"request_id\":\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
        })
        .collect();
    let expected: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(ids, expected);
}

/// How often `fut` returned `Pending` before it completed.
async fn pendings<F: std::future::Future>(fut: F) -> (F::Output, usize) {
    let mut fut = std::pin::pin!(fut);
    let mut n = 0;
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready((v, n)),
        std::task::Poll::Pending => {
            n += 1;
            std::task::Poll::Pending
        }
    })
    .await
}

/// With company, a record yields twice before taking the writer (so the
/// requests that become ready during the first round join its write too),
/// but only once when another task has written it in between.
#[tokio::test]
async fn a_record_with_company_yields_twice_unless_written_meanwhile() {
    let (_dir, path, log) = new_log();
    let (r, n) = pendings(log.record(&event("a"), Company::Others)).await;
    r.unwrap();
    assert_eq!(n, 2, "yields of a record with company, nobody writing it");
    let writes = log.writer.lock().await.writes;
    // Another task, run during the first yield, writes alone at once: the
    // queued record goes out with its own, and no second yield follows.
    let other = {
        let log = log.clone();
        tokio::spawn(async move { log.record(&event("b"), Company::Alone).await })
    };
    let c = event("c");
    let ((r, n), other) = tokio::join!(pendings(log.record(&c, Company::Others)), other);
    r.unwrap();
    other.unwrap().unwrap();
    assert_eq!(n, 1, "yields of a record written by another task meanwhile");
    assert_eq!(
        log.writer.lock().await.writes,
        writes + 1,
        "one write for both"
    );
    assert_clean(&path, 3);
}

#[tokio::test]
async fn every_record_of_a_failed_batch_fails() {
    let log = std::sync::Arc::new(AuditLog::open(Path::new("/dev/full")).unwrap());
    let results = records_together(&log, 20).await;
    assert_eq!(results.len(), 20);
    for r in results {
        let e = r.unwrap_err();
        assert!(e.to_string().contains("/dev/full"), "{e}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn the_company_is_what_the_runtime_has_ready() {
    // On the runtime's one worker, with two tasks spawned there and not yet run.
    let seen = tokio::spawn(async {
        let alone = Company::now();
        let queued = [tokio::spawn(async {}), tokio::spawn(async {})];
        let company = Company::now();
        for t in queued {
            t.await.unwrap();
        }
        (alone, company)
    })
    .await
    .unwrap();
    assert_eq!(seen, (Company::Alone, Company::Others));
    assert_eq!(
        std::thread::spawn(Company::now).join().unwrap(),
        Company::Others,
        "outside a runtime: always yield"
    );
}

#[tokio::test]
async fn a_record_alone_is_written_without_yielding() {
    let (_dir, path, log) = new_log();
    let alone = event("alone");
    let mut fut = Box::pin(log.record(&alone, Company::Alone));
    // Polled once: no other request to wait for, so no yield before the write.
    let first = tokio::select! {
        biased;
        r = &mut fut => Some(r),
        () = std::future::ready(()) => None,
    };
    assert!(
        matches!(first, Some(Ok(()))),
        "a record alone yielded or failed: {first:?}"
    );
    let v = verify(&path).unwrap();
    assert_eq!((v.records, v.problems.len()), (1, 0), "{:?}", v.problems);
}

#[tokio::test]
async fn a_record_whose_request_went_away_is_still_written() {
    let (_dir, path, log) = new_log();
    let orphan = event("orphan");
    let mut fut = Box::pin(log.record(&orphan, Company::Others));
    // Poll it once (it queues its record and yields), then drop it.
    tokio::select! {
        biased;
        _ = &mut fut => panic!("the record was written before its task yielded"),
        () = std::future::ready(()) => {}
    }
    drop(fut);
    assert_eq!(verify(&path).unwrap().records, 0);
    log.flush().await;
    let v = verify(&path).unwrap();
    assert_eq!((v.records, v.problems.len()), (1, 0), "{:?}", v.problems);
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains("\"operation\":\"orphan\"")
    );
}

#[tokio::test]
async fn a_batch_cut_short_keeps_the_records_it_wrote_whole() {
    let (_dir, path, log) = new_log();
    log.record(&event("a"), Company::Others).await.unwrap();
    let one = std::fs::metadata(&path).unwrap().len() as usize;
    // The batch's lines are about as long as the first: cut in its second.
    log.writer.lock().await.cut_after = Some(one + one / 2);
    let results = records_together(&log, 3).await;
    let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [true, false, false], "{results:?}");
    // The first is in the file and the chain; the rest of the write is torn.
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains("\"request_id\":\"0\""),
        "{text}"
    );
    log.writer.lock().await.cut_after = None;
    log.record(&event("b"), Company::Others).await.unwrap();
    // a, the batch's first, the seal, b.
    assert_one_sealed_tear(&path, 4, "lines 3-3: torn record");
}

#[tokio::test]
async fn a_record_cut_short_of_only_its_newline_is_kept() {
    let (_dir, path, log) = new_log();
    log.record(&event("a"), Company::Others).await.unwrap();
    let one = std::fs::metadata(&path).unwrap().len() as usize;
    // The same fields and a one-digit sequence number: the same length.
    log.writer.lock().await.cut_after = Some(one - 1);
    log.record(&event("a"), Company::Others).await.unwrap();
    assert!(!std::fs::read_to_string(&path).unwrap().ends_with('\n'));
    log.writer.lock().await.cut_after = None;
    log.record(&event("c"), Company::Others).await.unwrap();
    assert_clean(&path, 3);
}
