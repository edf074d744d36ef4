//! Behind a real HAProxy (the distribution's 2.6, running the shipped
//! `packaging/haproxy/cmx-kms.cfg` on loopback): the client's own address
//! reaches logs, audit and the per-source limits through the PROXY protocol;
//! PROXY headers are taken from the trusted balancer only; HAProxy's check
//! follows the deep readiness; and the pending-handshake bound counts the
//! client, not the balancer. Stopping, draining and reloading nodes behind it:
//! `haproxy_drain.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/behind_haproxy.rs"]
mod behind_haproxy;
mod support;

use behind_haproxy::{
    NODE_IPS, WAIT, audit_lines, backend, cluster_ports, device, ip, node, proxy_v2, server,
};
use support::{pki, wait_for};

use std::io::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use support::client::{chain, connect_from};
use support::haproxy::{HaProxy, SOURCE, Server};
use support::node::{free_port_on, soft_node_in_process_at};

#[test]
fn the_clients_own_address_reaches_audit_logs_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (n1, h1) = node(
        &pki,
        &dir.path().join("n1"),
        1,
        cluster_ports(),
        None,
        "kms.limits.device.rate=1\nkms.limits.device.burst=3\n",
    );
    let lb = HaProxy::start(&dir.path().join("lb"), &[server(&n1, h1)]);
    lb.wait_server("kms1", true, WAIT);

    let body = chain(&backend(&pki, lb.addr));
    let d = device(&pki, lb.addr);
    let r = d
        .post_from(ip("127.0.0.9"), "/v1/workspace-keys/decrypt", &body)
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let request_id = r.header("x-request-id").unwrap().to_owned();

    // The audit record names the client, and the balancer as the hop.
    let rec = audit_lines(&n1)
        .into_iter()
        .find(|v| v["request_id"] == request_id.as_str())
        .expect("an audit record of the request");
    assert_eq!(rec["client_addr"], "127.0.0.9", "{rec}");
    assert_eq!(rec["proxy_addr"], SOURCE.to_string(), "{rec}");
    // So does the request's log line.
    wait_for("the request's log line", WAIT, || {
        n1.log_text().lines().any(|l| {
            l.contains(&request_id)
                && l.contains("source=127.0.0.9")
                && l.contains("via=127.0.0.10")
        })
    });

    // The device limit (burst 3, 1/s) trips for 127.0.0.9 only...
    let mut limited = false;
    for _ in 0..30 {
        let r = d
            .post_from(ip("127.0.0.9"), "/v1/workspace-keys/decrypt", &body)
            .unwrap();
        if r.status == 429 {
            limited = true;
            break;
        }
        assert_eq!(r.status, 200);
    }
    assert!(limited, "127.0.0.9 was never limited");
    // ...while another client through the same HAProxy is still served.
    let r = d
        .post_from(ip("127.0.0.8"), "/v1/workspace-keys/decrypt", &body)
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[test]
fn proxy_headers_only_from_the_trusted_balancer_and_always_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let (n1, _) = node(&pki, &dir.path().join("n1"), 1, cluster_ports(), None, "");
    let d = device(&pki, n1.addr);
    let health = |tcp: std::net::TcpStream| d.request_on(tcp, "GET", "/v1/health", None);

    // The trusted address with a valid header: served, as the named client.
    let mut tcp = connect_from(SOURCE, n1.addr).unwrap();
    tcp.write_all(&proxy_v2([127, 0, 0, 77], n1.addr)).unwrap();
    let r = health(tcp).unwrap();
    assert_eq!(r.status, 200);
    // Another address without a header: plain TLS, served.
    let r = health(connect_from(ip("127.0.0.9"), n1.addr).unwrap()).unwrap();
    assert_eq!(r.status, 200);

    // A spoofed header from an untrusted address: refused (it is not a
    // TLS ClientHello).
    let mut tcp = connect_from(ip("127.0.0.9"), n1.addr).unwrap();
    tcp.write_all(&proxy_v2([127, 0, 0, 77], n1.addr)).unwrap();
    assert!(health(tcp).is_err(), "a spoofed PROXY header was accepted");
    let mut tcp = connect_from(ip("127.0.0.9"), n1.addr).unwrap();
    tcp.write_all(b"PROXY TCP4 127.0.0.77 127.0.0.1 4321 8443\r\n")
        .unwrap();
    assert!(health(tcp).is_err(), "a spoofed PROXY v1 line was accepted");
    // Both counted under their own reason, and the first one warned about,
    // naming the address and the setting (the second is held back).
    wait_for("the untrusted headers counted", WAIT, || {
        n1.metrics()
            .contains("cmx_kms_connections_closed_total{reason=\"proxy-untrusted\"} 2")
    });
    let warned = |log: &str| {
        log.lines()
            .filter(|l| {
                l.contains("WARN")
                    && l.contains("PROXY protocol header from 127.0.0.9")
                    && l.contains("add its address to kms.server.proxy-protocol.trusted")
            })
            .count()
    };
    assert_eq!(warned(&n1.log_text()), 1, "{}", n1.log_text());
    assert!(
        !n1.metrics()
            .contains("cmx_kms_tls_handshake_failures_total{reason=\"protocol\"}"),
        "not counted as a TLS failure"
    );

    // The trusted address without a header: refused.
    let r = health(connect_from(SOURCE, n1.addr).unwrap());
    assert!(
        r.is_err(),
        "a balancer connection without a header was served: {r:?}"
    );
    wait_for("the refusal counted", WAIT, || {
        n1.metrics()
            .contains("cmx_kms_connections_closed_total{reason=\"proxy-missing\"} 1")
    });
}

#[test]
fn haproxy_takes_a_node_out_while_its_backend_is_down_and_back_after() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut servers = Vec::new();
    let mut softs = Vec::new();
    let mut stops = Vec::new();
    for i in 1..=2 {
        let ndir = dir.path().join(format!("n{i}"));
        let hport = free_port_on(&[IpAddr::from(NODE_IPS[i - 1])]);
        let (n, soft) = soft_node_in_process_at(
            &rt,
            &pki,
            &ndir,
            IpAddr::from(NODE_IPS[i - 1]),
            &format!("kms.server.proxy-protocol.trusted={SOURCE}\nkms.health.port={hport}\n"),
            Duration::from_millis(200),
        );
        servers.push(Server {
            api: n.local_addr,
            health: n.health_addr.unwrap(),
        });
        softs.push(soft);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        stops.push(tx);
        rt.spawn(n.run(async {
            let _ = rx.await;
        }));
    }
    let lb = HaProxy::start(&dir.path().join("lb"), &servers);
    lb.wait_server("kms1", true, WAIT);
    lb.wait_server("kms2", true, WAIT);

    softs[0].set_unavailable(true);
    let out = lb.wait_server("kms1", false, WAIT);
    eprintln!("kms1 taken out {out:?} after its backend went down (inter 2s x fall 3 + canary)");
    assert!(lb.is_up("kms2"));
    // Every new connection now goes to the ready node.
    let b = backend(&pki, lb.addr);
    for _ in 0..10 {
        let r = b.request("GET", "/v1/ready", None).unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    softs[0].set_unavailable(false);
    let back = lb.wait_server("kms1", true, WAIT);
    eprintln!("kms1 back {back:?} after its backend returned (rise 2 x inter 2s)");
    drop(stops);
    drop(lb);
}

#[test]
fn the_pending_handshake_bound_counts_the_client_not_the_balancer() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    // One pending handshake per source; long handshake timeout so the held
    // connections stay pending for the whole test.
    let (n1, _) = node(
        &pki,
        &dir.path().join("n1"),
        1,
        cluster_ports(),
        None,
        "kms.server.max-pending-per-source=1\nkms.server.handshake-timeout=5m\n",
    );
    // Two balancer connections for 127.0.0.9 that never start their
    // handshake: the second is over 127.0.0.9's bound.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = connect_from(SOURCE, n1.addr).unwrap();
        tcp.write_all(&proxy_v2([127, 0, 0, 9], n1.addr)).unwrap();
        held.push(tcp);
    }
    wait_for("127.0.0.9 over its pending bound", WAIT, || {
        n1.metrics()
            .contains("cmx_kms_connections_closed_total{reason=\"pending-per-source\"} 1")
    });
    // The balancer itself is not bounded per source: another client through
    // it still gets its handshake, while 127.0.0.9's first one is pending.
    let mut tcp = connect_from(SOURCE, n1.addr).unwrap();
    tcp.write_all(&proxy_v2([127, 0, 0, 8], n1.addr)).unwrap();
    let r = device(&pki, n1.addr)
        .request_on(tcp, "GET", "/v1/health", None)
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        n1.metrics()
            .contains("cmx_kms_connections_closed_total{reason=\"pending-per-source\"} 1")
    );
    drop(held);
}

/// The readiness check port against one host holding idle connections
/// (127.0.0.9, not a balancer): it cannot fill every slot, so the real
/// HAProxy keeps the node in; its extra connections are closed at once.
mod health_port {
    use std::io::Read as _;
    use std::net::{SocketAddr, TcpStream};
    use std::time::{Duration, Instant};

    use crate::behind_haproxy::{WAIT, check, cluster_ports, ip, node, server};
    use crate::support::client::connect_from;
    use crate::support::haproxy::HaProxy;
    use crate::support::pki;

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
            matches!(&r, Ok(0))
                || matches!(&r, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock)
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
}
