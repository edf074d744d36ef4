//! Metrics and limits against a real `cmx-kms serve`: the Prometheus
//! endpoint parses and counts requests, the per-device rate limit answers
//! 429 while the backend still serves, and idle and slow connections are
//! closed by their timeouts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{pki, wait_for};

use std::time::Duration;

use serde_json::json;
use support::client::chain;
use support::node::TestNode;

#[test]
fn metrics_parse_and_count_requests() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let scrape = || {
        let text = node.metrics();
        let lines = text.lines().map(|l| Ok(l.to_owned()));
        prometheus_parse::Scrape::parse(lines).unwrap()
    };
    let value = |s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]| -> f64 {
        s.samples
            .iter()
            .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
            .map(|x| match x.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    let before = scrape();
    let b = node.client(&pki, &pki.cmx_backend);
    let body = chain(&b);
    for _ in 0..3 {
        assert_eq!(
            node.client(&pki, &pki.cmx_device)
                .post("/v1/workspace-keys/decrypt", &body)
                .status,
            200
        );
    }
    let _ = node.anonymous(&pki).request("GET", "/v1/health", None);
    let after = scrape();
    let ok_decrypts = [
        ("operation", "decrypt-workspace-key"),
        ("role", "device"),
        ("outcome", "ok"),
    ];
    assert_eq!(
        value(&after, "cmx_kms_requests_total", &ok_decrypts)
            - value(&before, "cmx_kms_requests_total", &ok_decrypts),
        3.0
    );
    assert!(
        value(&after, "cmx_kms_cache_hits_total", &[]) >= 3.0,
        "decrypts after create hit the cache"
    );
    assert!(value(&after, "cmx_kms_cache_misses_total", &[]) >= 1.0);
    // The client reads the server's alert a moment before the server's task
    // counts the failure: poll.
    wait_for("handshake failure metric", Duration::from_secs(5), || {
        value(
            &scrape(),
            "cmx_kms_tls_handshake_failures_total",
            &[("reason", "no-certificate")],
        ) == 1.0
    });
    assert!(
        value(
            &after,
            "cmx_kms_certificate_expiry_days",
            &[("alias", "cmxbackend")]
        ) + value(
            &after,
            "cmx_kms_certificate_expiry_days",
            &[("alias", "cmxBackend")]
        ) > 300.0
    );
    let hist = after
        .samples
        .iter()
        .find(|s| s.metric == "cmx_kms_request_duration_seconds")
        .expect("latency histogram");
    assert!(
        matches!(hist.value, prometheus_parse::Value::Histogram(_)),
        "{:?}",
        hist.value
    );
    assert_eq!(value(&after, "cmx_kms_ready", &[]), 2.0);
}

#[test]
fn device_rate_limit_answers_429_while_the_backend_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(
        &pki,
        &dir.path().join("node"),
        "kms.limits.device.rate=1\nkms.limits.device.burst=2\n",
    );
    let b = node.client(&pki, &pki.cmx_backend);
    let body = chain(&b);
    let d = node.client(&pki, &pki.cmx_device);
    let statuses: Vec<_> = (0..4)
        .map(|_| d.post("/v1/workspace-keys/decrypt", &body))
        .collect();
    let limited = statuses
        .iter()
        .find(|r| r.status == 429)
        .expect("a 429 after the burst");
    assert_eq!(limited.label(), "too-many-requests");
    let ra: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&ra), "Retry-After {ra}");
    assert_eq!(statuses.iter().filter(|r| r.status == 200).count(), 2);
    for _ in 0..5 {
        assert_eq!(
            b.post("/v1/workspace-keys/decrypt", &body).status,
            200,
            "backend still served"
        );
    }
}

#[test]
fn idle_and_slow_connections_are_closed_by_their_timeouts() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(
        &pki,
        &dir.path().join("node"),
        "kms.server.header-timeout=1s\nkms.server.idle-timeout=5s\n",
    );
    let b = node.client(&pki, &pki.cmx_backend);
    // Idle longer than the header timeout but well within the idle timeout:
    // kept (the header timer runs only once a request has begun).
    let mut ka = b.keep_alive().unwrap();
    assert_eq!(
        ka.post("/v1/customer-keys", &json!({})).unwrap().status,
        201
    );
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        ka.post("/v1/customer-keys", &json!({})).unwrap().status,
        201,
        "idle 2 s, header timeout 1 s: kept"
    );
    let closed = |reason: &str| {
        node.metrics().contains(&format!(
            "cmx_kms_connections_closed_total{{reason=\"{reason}\"}} 1"
        ))
    };
    assert!(!closed("idle"), "closed while in use");
    // Idle past the idle timeout: the server closes it, counts it, and the
    // next request on it fails.
    wait_for("the idle close", Duration::from_secs(60), || closed("idle"));
    assert!(
        ka.post("/v1/customer-keys", &json!({})).is_err(),
        "idle past 5 s: closed"
    );
    // A client that starts a request and stalls in its headers is cut off:
    // closed without an answer by the node's header timer (hyper's own is
    // off), which counts the close before it closes. Not the client's own
    // 30 s read timeout.
    let mut slow = b.keep_alive().unwrap();
    slow.send_raw(b"POST /v1/customer-keys HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let r = slow.read();
    let err = r.expect_err("no answer expected");
    assert!(
        !err.contains("timed out") && !err.contains("temporarily unavailable"),
        "the client gave up before the server closed: {err}"
    );
    assert!(closed("header-timeout"), "{}", node.metrics());
}
