//! What an open or resumed connection may still do once its certificate has
//! expired or been removed from the keystore, how long a connection may
//! live, how many handshakes one address may keep pending, and the warnings
//! about certificates that expired or soon will, against a real `cmx-kms
//! serve` with certificates made by openssl and keytool here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{pki, wait_for};

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use support::client::connect_from;
use support::guide_pki::{GuidePki, keytool};
use support::node::{TestNode, cmx_with_config, output_text};

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The value of one metric line (`name{labels}`), if present.
fn metric(node: &TestNode, line: &str) -> Option<f64> {
    node.metrics().lines().find_map(|l| {
        l.strip_prefix(line)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}

fn keytool_delete(pki: &GuidePki, alias: &str) {
    keytool(
        &pki.dir,
        &format!(
            "-delete -alias {alias} -keystore {} -storepass {}",
            pki.keystore.display(),
            pki.store_password
        ),
    );
}

/// SIGHUP, then wait until the node logged its `n`-th successful reload.
fn reload(node: &TestNode, n: usize) {
    node.signal("HUP");
    wait_for("the reload", Duration::from_secs(60), || {
        node.log_text().matches("configuration reloaded").count() >= n
    });
}

/// A refused request on an open connection: 403 `forbidden`, the reason in
/// the message, `Connection: close`, and then the connection is closed.
fn assert_refused_then_closed(
    ka: &mut support::client::KeepAlive,
    r: Result<support::client::Resp, String>,
    why: &str,
) {
    let r = r.unwrap_or_else(|e| panic!("expected a 403 answer, the connection failed: {e}"));
    assert_eq!(
        (r.status, r.label().as_str()),
        (403, "forbidden"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let message = r.json()["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains(why), "{message}");
    assert_eq!(r.header("connection"), Some("close"), "{:?}", r.headers);
    assert!(
        ka.read().is_err(),
        "the connection is closed after the refusal"
    );
}

#[test]
fn resumption_is_off() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    // One client configuration (rustls keeps its TLS 1.3 tickets in it): the
    // first connection stores whatever the server offers, the second uses it.
    let client = node.client(&pki, &pki.cmx_device);
    let mut first = client.keep_alive().unwrap();
    assert_eq!(first.get("/v1/health").unwrap().status, 200);
    drop(first);
    let mut second = client.keep_alive().unwrap();
    assert_eq!(second.get("/v1/health").unwrap().status, 200);
    assert_eq!(
        second.handshake_kind(),
        Some(rustls::HandshakeKind::Full),
        "every connection makes a full handshake, with its certificate checked"
    );
}

#[test]
fn an_expired_certificate_is_refused_on_resumed_and_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    // Valid for 30 s from now: enough for keytool, the start and one request
    // on a busy machine (checked below), and within the 60 s idle timeout.
    let not_after = unix_now() + 30;
    let short = pki.make_client_valid_until("cmxDeviceShort", not_after);
    pki.import_certificate("cmxDeviceShort", &short.cert);
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let client = node.client(&pki, &short);
    let r = client.request("GET", "/v1/health", None);
    assert!(
        unix_now() <= not_after,
        "the machine took more than 30 s to start the node; the test could not run"
    );
    assert_eq!(r.unwrap().status, 200, "valid for now");
    let mut ka = client.keep_alive().unwrap();
    assert_eq!(ka.get("/v1/health").unwrap().status, 200);

    wait_for("the certificate to expire", Duration::from_secs(60), || {
        unix_now() > not_after + 1
    });
    // A new connection from the same client configuration: it would resume
    // the session of the first one if the server allowed it.
    let again = client.request("GET", "/v1/health", None);
    assert!(
        again.is_err(),
        "a new (or resumed) connection with an expired certificate is refused: {again:?}"
    );
    let r = ka.get("/v1/health");
    assert_refused_then_closed(&mut ka, r, "expired");
    assert_eq!(
        metric(
            &node,
            "cmx_kms_connections_closed_total{reason=\"expired\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn a_removed_alias_is_refused_on_open_connections_after_reload() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let device = node.client(&pki, &pki.cmx_device);
    let backend = node.client(&pki, &pki.cmx_backend);
    assert_eq!(
        device.request("GET", "/v1/health", None).unwrap().status,
        200
    );
    let mut dev_ka = device.keep_alive().unwrap();
    let mut back_ka = backend.keep_alive().unwrap();
    assert_eq!(dev_ka.get("/v1/health").unwrap().status, 200);
    assert_eq!(back_ka.get("/v1/health").unwrap().status, 200);

    keytool_delete(&pki, "cmxDevice");
    reload(&node, 1);

    let r = dev_ka.get("/v1/health");
    assert_refused_then_closed(&mut dev_ka, r, "no longer pinned");
    assert_eq!(
        back_ka.get("/v1/health").unwrap().status,
        200,
        "a client still pinned keeps its connection across the reload"
    );
    assert!(
        device.request("GET", "/v1/health", None).is_err(),
        "a new (or resumed) connection with the removed certificate is refused"
    );
    assert_eq!(
        metric(
            &node,
            "cmx_kms_connections_closed_total{reason=\"not-pinned\"}"
        ),
        Some(1.0)
    );
    // The refusal is in the audit trail, with the identity it used to have.
    // Notices are written by the audit thread once woken, not by the request:
    // wait for the record rather than read the file at once.
    wait_for(
        "the open-connection record",
        Duration::from_secs(30),
        || std::fs::read_to_string(&node.audit).is_ok_and(|a| a.contains("\"open-connection\"")),
    );
    let audit = std::fs::read_to_string(&node.audit).unwrap();
    let rec: serde_json::Value = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["operation"] == "open-connection")
        .unwrap_or_else(|| panic!("no open-connection record in\n{audit}"));
    assert_eq!(rec["outcome"], "refused-not-pinned", "{rec}");
    assert!(
        rec["client_alias"]
            .as_str()
            .is_some_and(|a| a.eq_ignore_ascii_case("cmxDevice")),
        "{rec}"
    );
    // Refusals serve nothing: an aggregated record (bounded however often a
    // client comes back), the first of its interval written at once.
    assert_eq!(rec["count"], 1, "{rec}");
}

#[test]
fn max_connection_lifetime_closes_between_requests() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(
        &pki,
        &dir.path().join("node"),
        "kms.server.max-connection-lifetime=2s\n",
    );
    let mut ka = node.client(&pki, &pki.cmx_backend).keep_alive().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut answered = 0;
    loop {
        let r = ka
            .get("/v1/health")
            .unwrap_or_else(|e| panic!("request {} on the connection failed: {e}", answered + 1));
        assert_eq!(r.status, 200, "every request is answered in full");
        answered += 1;
        if r.header("connection") == Some("close") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no `Connection: close` after {answered} requests in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ka.read().is_err(), "closed after the last response");
    assert_eq!(
        metric(
            &node,
            "cmx_kms_connections_closed_total{reason=\"max-lifetime\"}"
        ),
        Some(1.0)
    );
}

/// A request hyper cannot parse gets hyper's own 400, which has no body:
/// the node counts it and says why in its log, so an operator can tell a
/// broken client from a network fault.
#[test]
fn a_malformed_request_is_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let mut ka = node.client(&pki, &pki.cmx_device).keep_alive().unwrap();
    ka.send_raw(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nbad header line\r\n\r\n")
        .unwrap();
    let r = ka.read().unwrap();
    assert_eq!(r.status, 400);
    assert!(ka.read().is_err(), "closed after the 400");
    let closed = "cmx_kms_connections_closed_total{reason=\"bad-http\"}";
    wait_for("the count", Duration::from_secs(30), || {
        metric(&node, closed) == Some(1.0)
    });
    wait_for("the log line", Duration::from_secs(30), || {
        node.log_text().contains("malformed HTTP request")
    });
}

/// A requested drain (`cmx-kms drain`) closes an idle keep-alive connection
/// between requests, long before its idle timeout, while the node keeps
/// serving new clients; resumed, a new keep-alive connection stays open
/// across a pause longer than the drain's quiet time (1 s).
#[test]
fn a_drain_closes_idle_keep_alive_connections_and_a_resume_keeps_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(
        &pki,
        &dir.path().join("node"),
        "kms.server.idle-timeout=10m\nkms.server.drain-delay=0s\n",
    );
    let client = node.client(&pki, &pki.cmx_backend);
    let mut held = client.keep_alive().unwrap();
    assert_eq!(held.get("/v1/health").unwrap().status, 200);
    let idle_closes = || metric(&node, "cmx_kms_connections_closed_total{reason=\"idle\"}");
    assert_eq!(idle_closes(), None);

    let out = cmx_with_config(&["drain"], &node.properties);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    // The idle timeout is ten minutes: only the drain can close it now.
    wait_for(
        "the drain to close the idle connection",
        Duration::from_secs(120),
        || idle_closes() == Some(1.0),
    );
    assert!(held.read().is_err(), "closed by the server");
    let r = client.request("GET", "/v1/health", None).unwrap();
    assert_eq!(r.status, 200, "new clients are still served");

    let out = cmx_with_config(&["drain", "--resume"], &node.properties);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    wait_for(
        "the node to be ready again",
        Duration::from_secs(120),
        || client.request("GET", "/v1/ready", None).unwrap().status == 200,
    );
    let mut again = client.keep_alive().unwrap();
    assert_eq!(again.get("/v1/health").unwrap().status, 200);
    std::thread::sleep(Duration::from_millis(2500));
    let r = again
        .get("/v1/health")
        .unwrap_or_else(|e| panic!("closed after a 2.5 s pause: {e}\n{}", node.log_text()));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), None, "kept open after the resume");
    assert_eq!(idle_closes(), Some(1.0), "no other idle close");
}

/// Whether the server closed `s` (EOF or reset) rather than kept it open:
/// the read timeout (30 s) is far below the handshake timeout the test sets.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

#[test]
fn pending_handshakes_are_bounded_per_source_and_in_total() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(
        &pki,
        &dir.path().join("node"),
        "kms.server.max-pending-per-source=2\nkms.server.max-pending=3\n\
         kms.server.handshake-timeout=300s\n",
    );
    let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(127, 0, 0, n));
    let pending = |want: f64| {
        wait_for(
            &format!("{want} pending connections"),
            Duration::from_secs(60),
            || metric(&node, "cmx_kms_pending_connections") == Some(want),
        )
    };
    let closed = |reason: &str| {
        metric(
            &node,
            &format!("cmx_kms_connections_closed_total{{reason=\"{reason}\"}}"),
        )
    };
    // The start-up probe's connection is gone before the test begins.
    pending(0.0);
    let client = node.client(&pki, &pki.cmx_device);

    // Agents that connect, make one request and leave are never counted
    // against each other, however many come from one address.
    for _ in 0..10 {
        assert_eq!(
            client.request("GET", "/v1/health", None).unwrap().status,
            200
        );
    }

    // Two handshakes that never start hold 127.0.0.1's two slots.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| connect_from(ip(1), node.addr).unwrap())
        .collect();
    pending(2.0);
    let mut third = connect_from(ip(1), node.addr).unwrap();
    assert!(
        closed_by_server(&mut third),
        "the third pending handshake from one address is closed at once"
    );
    assert_eq!(closed("pending-per-source"), Some(1.0));

    // Another address still gets in, and then holds the last global slot.
    assert_eq!(
        client
            .request_from(ip(2), "GET", "/v1/health")
            .unwrap()
            .status,
        200
    );
    let _other = connect_from(ip(2), node.addr).unwrap();
    pending(3.0);
    let mut fourth = connect_from(ip(3), node.addr).unwrap();
    assert!(
        closed_by_server(&mut fourth),
        "over the global bound, a new address is closed at once too"
    );
    assert_eq!(closed("pending-total"), Some(1.0));

    // Once the stalled handshakes go, 127.0.0.1 connects again.
    drop(held);
    pending(1.0);
    assert_eq!(
        client.request("GET", "/v1/health", None).unwrap().status,
        200
    );
}

// The node warns, at start and at every reload, about keystore certificates that are not valid now
// or expire soon: a pinned client whose certificate expired is refused, and the operator should
// learn it from the log before the clients' failures do.
#[test]
fn expired_and_expiring_certificates_are_warned_about_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let soon = pki.make_client_valid_until("cmxDeviceSoon", now + 10 * 86_400);
    pki.import_certificate("cmxDeviceSoon", &soon.cert);
    let gone = pki.make_client_valid_until("cmxDeviceGone", now - 30);
    pki.import_certificate("cmxDeviceGone", &gone.cert);
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    // Aliases are case-insensitive; keytool may keep or lower their case.
    let log = node.log_text().to_lowercase();
    let line = |alias: &str| {
        log.lines()
            .find(|l| l.contains("warn") && l.contains(alias))
            .unwrap_or_else(|| panic!("no warning names {alias}:\n{log}"))
            .to_owned()
    };
    assert!(line("cmxdevicesoon").contains("expires soon"), "{log}");
    assert!(line("cmxdevicegone").contains("has expired"), "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("warn") && l.contains("alias=\"cmxdevice\"")),
        "the guide's own certificates are valid for years: {log}"
    );
}
