//! The connections kept for the backend (`kms.server.backend-reserved-connections`):
//! devices holding every other connection cannot lock the backend out. An
//! outside review held all 4 096 connections with the device certificate,
//! under its rate limit, and new backend clients hung for minutes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::node::TestNode;
use support::pki;

#[test]
fn devices_holding_every_other_connection_leave_the_backends_reserve() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(
        &pki,
        &dir.path().join("node"),
        "kms.server.max-connections=6\nkms.server.backend-reserved-connections=2\n",
    );
    let device = node.client(&pki, &pki.cmx_device);
    let mut held = Vec::new();
    for i in 0..4 {
        let mut c = device.keep_alive().unwrap();
        assert_eq!(c.get("/v1/health").unwrap().status, 200, "device {i}");
        held.push(c);
    }
    // A fifth would take one of the two kept for the backend: closed right
    // after its handshake, before any request is served.
    let fifth = device.keep_alive().and_then(|mut c| c.get("/v1/health"));
    assert!(
        fifth.is_err(),
        "the fifth device connection was served: {:?}",
        fifth.map(|r| r.status)
    );
    // The backend still gets both.
    let backend = node.client(&pki, &pki.cmx_backend);
    for i in 0..2 {
        let mut c = backend.keep_alive().unwrap();
        assert_eq!(c.get("/v1/health").unwrap().status, 200, "backend {i}");
        held.push(c);
    }
    let metrics = node.metrics();
    assert!(
        metrics.contains("cmx_kms_connections_closed_total{reason=\"reserved-for-backend\"} 1"),
        "{metrics}"
    );
    assert!(node.log_text().contains("kept for the backend"));
    // A device connection that closes gives its place back.
    held.swap_remove(0);
    support::wait_for(
        "a device connection again",
        std::time::Duration::from_secs(30),
        || {
            device
                .keep_alive()
                .and_then(|mut c| c.get("/v1/health"))
                .is_ok_and(|r| r.status == 200)
        },
    );
}
