//! The readiness check port against one host holding idle connections
//! (127.0.0.9, not a balancer): it cannot fill every slot, so the real
//! HAProxy keeps the node in; its extra connections are closed at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/behind_haproxy.rs"]
mod behind_haproxy;
mod support;

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use behind_haproxy::{WAIT, check, cluster_ports, ip, node, server};
use support::client::connect_from;
use support::haproxy::HaProxy;
use support::pki;

#[test]
fn one_host_holding_idle_check_connections_cannot_take_the_node_out() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (n1, h1) = node(&pki, &dir.path().join("n1"), 1, cluster_ports(), None, "");
    let lb = HaProxy::start(&dir.path().join("lb"), &[server(&n1, h1)]);
    lb.wait_server("kms1", true, WAIT);
    let health = SocketAddr::new(n1.addr.ip(), h1);

    // 64 idle connections from one address, reopened as the node closes them,
    // for 12 s (HAProxy: a check every 2 s, 2 s timeout, down after 3 fails).
    let mut held: Vec<TcpStream> = Vec::new();
    let mut closed_at_once = 0;
    let closed = |s: &TcpStream| {
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let r = (&*s).read(&mut b);
        matches!(&r, Ok(0)) || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
    };
    let end = Instant::now() + Duration::from_secs(12);
    while Instant::now() < end {
        held.retain(|s| !closed(s));
        let mut fresh: Vec<TcpStream> = (held.len()..64)
            .map(|_| connect_from(ip("127.0.0.9"), health).unwrap())
            .collect();
        // Connections over the bound are closed at once, not after 2 s.
        std::thread::sleep(Duration::from_millis(150));
        let before = fresh.len();
        fresh.retain(|s| !closed(s));
        closed_at_once += before - fresh.len();
        held.extend(fresh);
        assert!(
            lb.is_up("kms1"),
            "HAProxy took the node out:\n{}",
            lb.log_text()
        );
        let (status, _) = check(health, "/v1/ready");
        assert_eq!(status, 200, "the check from another address got no answer");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        closed_at_once > 0,
        "no connection was refused ({} held)\n{}",
        held.len(),
        n1.log_text()
    );
    assert!(
        n1.log_text()
            .contains("readiness check port: too many open connections"),
        "{}",
        n1.log_text()
    );
    drop(held);
}
