//! A request refused before its body is read (429, 404, 415, a device's
//! 403) leaves its keep-alive connection usable: the node reads the body
//! (within the body limit and timeout) before it answers. An outside review
//! saw clients lose the connection after a 429, with no `Connection: close`,
//! when the body came in a TLS record after the head: hyper closed it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::client::KeepAlive;
use support::node::TestNode;
use support::pki;

/// Send a request's head, then (a little later, in a record of its own) its
/// body; return the answer's status and whether it says `Connection: close`.
fn head_then_body(c: &mut KeepAlive, method: &str, path: &str, ctype: &str) -> (u16, bool) {
    let body = b"{}";
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: kms\r\ncontent-type: {ctype}\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    c.send_raw(head.as_bytes()).unwrap();
    // Only what the unfixed node needs to answer before the body comes;
    // the fixed one waits for the body whatever the delay.
    std::thread::sleep(Duration::from_millis(200));
    c.send_raw(body).unwrap();
    let r = c.read().unwrap();
    let close = r
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    (r.status, close)
}

#[test]
fn a_request_refused_before_its_body_keeps_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(
        &pki,
        &dir.path().join("node"),
        "kms.limits.device.rate=1\nkms.limits.device.burst=1\n",
    );
    let device = node.client(&pki, &pki.cmx_device);
    let json = "application/json";
    let cases: [(&str, &str, &str, &[u16]); 4] = [
        // The second decrypt within the second is over the device's rate.
        ("POST", "/v1/workspace-keys/decrypt", json, &[429, 422, 400]),
        ("POST", "/v1/no-such-route", json, &[404]),
        ("POST", "/v1/customer-keys", json, &[403, 429]),
        (
            "POST",
            "/v1/workspace-keys/decrypt",
            "text/plain",
            &[415, 429],
        ),
    ];
    for (method, path, ctype, want) in cases {
        let mut c = device.keep_alive().unwrap();
        // Takes the burst's one token.
        let first = c
            .post("/v1/workspace-keys/decrypt", &serde_json::json!({}))
            .unwrap();
        assert_ne!(first.status, 0);
        let (status, close) = head_then_body(&mut c, method, path, ctype);
        assert!(want.contains(&status), "{method} {path}: {status}");
        assert!(!close, "{method} {path}: the answer closes the connection");
        let next = c.get("/v1/health");
        assert!(
            next.as_ref().is_ok_and(|r| r.status == 200),
            "{method} {path}: the connection after a {status}: {:?}",
            next.map(|r| r.status)
        );
    }
}
