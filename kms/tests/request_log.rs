//! What a node logs per request at the default level (`info`), against a real
//! `cmx-kms serve`: no line for a key operation served (its audit record
//! holds it) or throttled (counted in the trail's notices); one line for a
//! bad request, at most 20 a second, the rest held back and counted in a
//! warning before the next line. A busy node must not flood journald, whose
//! rate limit would then drop its other lines.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::client::{Client, chain};
use support::node::TestNode;
use support::{pki, wait_for};

const PATH: &str = "/v1/workspace-keys/decrypt";

/// A node logging at `level` (`CMX_KMS_LOG`; the default is `info`).
fn node_at(
    level: &str,
    pki: &support::guide_pki::GuidePki,
    dir: &std::path::Path,
    extra: &str,
) -> TestNode {
    let ndir = dir.join("node");
    TestNode::start_with(
        &ndir,
        |port, mport| TestNode::properties(pki, &ndir, port, mport, extra),
        &[("CMX_KMS_LOG", level)],
    )
}

/// Sends with `send` (50 at a time) until a line was held back, then one
/// every 300 ms until every line held back is counted in a warning (each
/// comes with the first line let through in a later second; a flood that
/// spans two seconds holds lines back in both, and the second's are counted
/// by a second warning), and checks that the warnings count exactly what
/// was sent and not logged. `logged` counts the lines of `sent` in a log.
/// Returns what was sent, in order, and the log.
fn flood_until_capped<T>(
    node: &TestNode,
    what: &str,
    mut send: impl FnMut() -> T,
    logged: impl Fn(&str, &[T]) -> usize,
) -> (Vec<T>, String) {
    let started = Instant::now();
    let mut sent = Vec::new();
    loop {
        for _ in 0..50 {
            sent.push(send());
        }
        if logged(&node.log_text(), &sent) < sent.len() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} {what}, every one logged at info: no cap",
            sent.len()
        );
    }
    // Lines are written before the answer (or the close), so the log read
    // after a send holds every line of what was sent.
    wait_for(
        "a warning for every held-back line",
        Duration::from_secs(30),
        || {
            std::thread::sleep(Duration::from_millis(300));
            sent.push(send());
            let log = node.log_text();
            held_in_warnings(&log) == sent.len() - logged(&log, &sent)
        },
    );
    let log = node.log_text();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains(HELD_BACK)).collect();
    assert!(!warnings.is_empty(), "no warning");
    for w in &warnings {
        assert!(w.contains(" WARN "), "{w}");
    }
    (sent, log)
}

const HELD_BACK: &str = "were held back at debug level";

/// The lines the warnings of `log` say were held back, summed.
fn held_in_warnings(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(HELD_BACK))
        .map(|l| {
            let n = l
                .split("held=")
                .nth(1)
                .unwrap_or_else(|| panic!("no count: {l}"));
            let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
            digits
                .parse::<usize>()
                .unwrap_or_else(|_| panic!("no count: {l}"))
        })
        .sum()
}

/// Sends a decrypt with an unknown field on `c`'s keep-alive connection;
/// returns its request id (the answer must be a 400).
fn bad_request(c: &Client, conn: &mut Option<support::client::KeepAlive>) -> String {
    if conn.is_none() {
        *conn = Some(c.keep_alive().unwrap());
    }
    let r = match conn
        .as_mut()
        .map(|k| k.post(PATH, &json!({ "nonsense": 1 })))
    {
        Some(Ok(r)) => r,
        _ => {
            // The connection was closed between requests: a fresh one.
            let mut k = c.keep_alive().unwrap();
            let r = k.post(PATH, &json!({ "nonsense": 1 })).unwrap();
            *conn = Some(k);
            r
        }
    };
    assert_eq!(r.status, 400, "{}", r.label());
    r.header("x-request-id").unwrap().to_owned()
}

#[test]
fn at_info_only_what_the_audit_trail_lacks_is_logged_and_that_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = node_at(
        "info",
        &pki,
        dir.path(),
        "kms.limits.device.rate=1\nkms.limits.device.burst=1\n",
    );
    let b = node.client(&pki, &pki.cmx_backend);
    let body = chain(&b);
    let d = node.client(&pki, &pki.cmx_device);
    let served = d.post(PATH, &body);
    assert_eq!(served.status, 200);
    let served_id = served.header("x-request-id").unwrap().to_owned();
    let throttled = d.post(PATH, &body);
    assert_eq!(throttled.status, 429);
    let throttled_id = throttled.header("x-request-id").unwrap().to_owned();

    // Lines are written before the answer, so the log is complete when it
    // comes.
    let mut conn = None;
    let logged = |log: &str, ids: &[String]| ids.iter().filter(|id| log.contains(*id)).count();
    let (sent, log) =
        flood_until_capped(&node, "bad requests", || bad_request(&b, &mut conn), logged);
    // The line let through after the warning is the last request's.
    let last = sent.last().unwrap();
    assert!(
        log.contains(last.as_str()),
        "the line after the warning is missing"
    );
    let line = log.lines().find(|l| l.contains(last.as_str())).unwrap();
    assert!(
        line.contains(" INFO ") && line.contains("status=400"),
        "{line}"
    );

    // Served and throttled requests left no line at info...
    assert!(
        !log.contains(&served_id),
        "a served request was logged at info"
    );
    assert!(
        !log.contains(&throttled_id),
        "a throttled request was logged at info"
    );
    // ...because the audit trail holds them.
    let audit = std::fs::read_to_string(&node.audit).unwrap();
    assert!(
        audit.contains(&served_id),
        "the served request has no audit record"
    );
    assert!(
        audit.contains("too-many-requests"),
        "the throttled request is not counted in the trail"
    );
}

/// The lines anyone can cause, without a certificate, are under the same
/// cap: connections that send something other than TLS.
#[test]
fn failed_handshakes_cannot_flood_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = node_at("info", &pki, dir.path(), "");
    // Returns the connection's port: the node's lines name it (its own
    // start probe fails a handshake too, and is not ours to count).
    let not_tls = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(node.addr).unwrap();
        let port = s.local_addr().unwrap().port();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        // The node ends the connection once the handshake failed and its
        // line is written.
        let _ = s.read(&mut [0u8; 256]);
        port
    };
    let logged = |log: &str, ports: &[u16]| {
        let ours: std::collections::HashSet<String> = ports
            .iter()
            .map(|p| format!("peer=127.0.0.1:{p} "))
            .collect();
        log.lines()
            .filter(|l| l.contains("TLS handshake failed"))
            .filter(|l| ours.iter().any(|p| l.contains(p.as_str())))
            .count()
    };
    let (sent, log) = flood_until_capped(&node, "failed handshakes", not_tls, logged);
    assert!(
        logged(&log, &sent) >= 20,
        "the first 20 a second are logged"
    );
}

/// A line the filter drops spends nothing of the cap: at `warn`, a flood of
/// bad requests (their lines are `info`) holds nothing back, so no warning
/// about held-back lines appears once the next second comes.
#[test]
fn lines_the_filter_drops_do_not_spend_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = node_at("warn", &pki, dir.path(), "");
    let b = node.client(&pki, &pki.cmx_backend);
    let mut conn = None;
    for _ in 0..100 {
        bad_request(&b, &mut conn);
    }
    // Requests go on for 1.5 s after the flood, so at least one falls in a
    // later second of the cap than the flood's last (its line is written, or
    // not, before its answer comes).
    let flood_end = Instant::now();
    while flood_end.elapsed() < Duration::from_millis(1500) {
        bad_request(&b, &mut conn);
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = node.log_text();
    assert!(
        !log.contains("were held back"),
        "lines never written were counted as held back:\n{log}"
    );
}
