//! A listed member that accepts and never answers (a hung host, or a port
//! that swallows connections): `down` with the reason, redialed at the
//! normal pace, never `incompatible` ("does not speak the protocol").
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/cluster.rs"]
mod cluster_support;
mod support;

use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cluster_support::{ClusterNode, Ports, cluster_props};
use support::guide_pki::GuidePki;
use support::node::TestNode;
use support::{pki, wait_for};

fn ip(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

fn node(pki: &GuidePki, dir: &Path, me: IpAddr, ports: Ports, others: &[IpAddr]) -> ClusterNode {
    let base = TestNode::properties(
        pki,
        dir,
        ports.api,
        ports.metrics,
        "kms.readiness.interval=1h\n",
    )
    .replace(
        "kms.server.address=127.0.0.1",
        &format!("kms.server.address={me}"),
    );
    let props = base + &cluster_props(dir, me, ports, others);
    ClusterNode::start(dir, me, ports, &props)
}

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
    let a = node(&pki, &dir.path().join("a"), ip(51), ports, &[ip(52)]);
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
