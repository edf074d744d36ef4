//! The cluster port under a flood of idle connections from a member address
//! (127.0.0.33, listed by A, running no node): A (127.0.0.31) keeps only a
//! few of them (per source and in total), closes the ones it keeps after the
//! short handshake timeout, counts the refusals, keeps its file descriptors,
//! and keeps serving its clients and its real peer B (127.0.0.32).

use std::io::Read as _;
use std::time::Duration;

use crate::cluster_support::{ClusterNode, Ports, ip, start_member};
use crate::support::client::{Client, chain, connect_from};
use crate::support::{pki, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn fds(n: &ClusterNode) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", n.child.id()))
        .unwrap()
        .count()
}

#[test]
fn idle_connections_from_a_member_address_cannot_exhaust_the_cluster_port() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"));
    let ports = Ports::pick();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let a = start_member(&pki, &a_dir, ip(31), ports, &[ip(32), ip(33)]);
    std::fs::create_dir_all(&b_dir).unwrap();
    std::fs::copy(a_dir.join("soft-master.key"), b_dir.join("soft-master.key")).unwrap();
    let b = start_member(&pki, &b_dir, ip(32), ports, &[ip(31)]);
    wait_for("A sees B up", WAIT, || {
        a.metric("cmx_kms_cluster_peers{state=\"up\"}") == Some(1.0)
    });
    let before = fds(&a);

    // 300 idle connections from the member address, held.
    let mut held: Vec<_> = (0..300)
        .filter_map(|_| connect_from(ip(33), a.cluster_addr()).ok())
        .collect();
    assert!(held.len() > 250, "only {} connections opened", held.len());
    wait_for("the refusals counted", WAIT, || {
        a.metric("cmx_kms_cluster_refused_total{reason=\"pending-per-source\"}")
            .unwrap_or(0.0)
            > 0.0
    });
    let during = fds(&a);
    assert!(
        during < before + 40,
        "A holds {during} file descriptors (was {before}) for 300 idle connections"
    );
    // The client API and the real peer are untouched.
    let body = chain(&Client::new(
        b.api(),
        &pki.ca.cert,
        Some((&pki.cmx_backend.cert, &pki.cmx_backend.key)),
    ));
    let r = Client::new(
        a.api(),
        &pki.ca.cert,
        Some((&pki.cmx_device.cert, &pki.cmx_device.key)),
    )
    .post("/v1/workspace-keys/decrypt", &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(a.metric("cmx_kms_cluster_peers{state=\"up\"}"), Some(1.0));

    // The ones A kept are closed by A after its handshake timeout (counted
    // as such), never served.
    let first = &mut held[0];
    first
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = first.read(&mut buf);
    assert!(
        matches!(n, Ok(0) | Err(_)),
        "an idle connection got bytes: {n:?}"
    );
    wait_for("the handshake timeouts counted", WAIT, || {
        a.metric("cmx_kms_cluster_refused_total{reason=\"tls-timeout\"}")
            .unwrap_or(0.0)
            > 0.0
    });
    assert!(
        a.log_text()
            .contains("too many connections not past their handshake"),
        "{}",
        a.log_text()
    );
    drop(held);
}
