//! A listed member that accepts and never answers (a hung host, or a port
//! that swallows connections): `down` with the reason, redialed at the
//! normal pace, never `incompatible` ("does not speak the protocol").

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::cluster_support::{Ports, ip, start_member};
use crate::support::{pki, wait_for};

#[test]
fn a_member_that_never_answers_is_down_not_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"));
    let ports = Ports::pick();
    let hole = TcpListener::bind((ip(52), ports.cluster)).unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        for s in hole.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            kept.push(s);
        }
    });
    let a = start_member(&pki, &dir.path().join("a"), ip(51), ports, &[ip(52)]);
    wait_for("A dialed the member twice", Duration::from_secs(30), || {
        accepted.load(Ordering::SeqCst) >= 2
    });
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        a.metric("cmx_kms_cluster_peers{state=\"down\"}"),
        Some(1.0),
        "{}",
        a.metrics()
    );
    assert_eq!(
        a.metric("cmx_kms_cluster_peers{state=\"incompatible\"}"),
        Some(0.0)
    );
    let log = a.log_text();
    assert!(!log.contains("does not speak"), "{log}");
    assert!(log.contains("no answer to the TLS handshake"), "{log}");
}
