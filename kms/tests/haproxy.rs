//! Behind a real HAProxy (the distribution's 2.6, running the shipped
//! `packaging/haproxy/cmx-kms.cfg` on loopback): the client's own address
//! reaches logs, audit and the per-source limits through the PROXY protocol;
//! PROXY headers are taken from the trusted balancer only; HAProxy's check
//! follows the deep readiness; and a node stopped with SIGTERM under
//! keep-alive load drains without failing a single request.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::load::load;
use support::{pki, wait_for};

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use support::client::{Client, chain, connect_from};
use support::guide_pki::GuidePki;
use support::haproxy::{HaProxy, SOURCE, Server};
use support::node::{
    TestNode, cmx_with_config, free_port, free_port_on, output_text, soft_node_in_process_at,
};

const WAIT: Duration = Duration::from_secs(60);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The addresses of the three nodes of a cluster on this machine: the same
/// ports, one loopback address each, as on three hosts.
const NODE_IPS: [[u8; 4]; 3] = [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]];

/// Ports free on every node address: (API port, check port).
fn cluster_ports() -> (u16, u16) {
    let ips: Vec<IpAddr> = NODE_IPS.iter().map(|o| IpAddr::from(*o)).collect();
    let api = free_port_on(&ips);
    loop {
        let health = free_port_on(&ips);
        if health != api {
            return (api, health);
        }
    }
}

/// Node `i` (1-3) of a cluster: on 127.0.0.`i`, API and check ports from
/// [`cluster_ports`], trusting HAProxy's address; `extra` lines are
/// appended. The soft master key is copied from `key_from` when given, so
/// nodes can decrypt each other's blobs.
fn node(
    pki: &GuidePki,
    dir: &Path,
    i: usize,
    (port, hport): (u16, u16),
    key_from: Option<&TestNode>,
    extra: &str,
) -> (TestNode, u16) {
    std::fs::create_dir_all(dir).unwrap();
    if let Some(other) = key_from {
        std::fs::copy(
            other.dir.join("soft-master.key"),
            dir.join("soft-master.key"),
        )
        .unwrap();
    }
    let extra =
        format!("kms.server.proxy-protocol.trusted={SOURCE}\nkms.health.port={hport}\n{extra}");
    let addr = SocketAddr::new(IpAddr::from(NODE_IPS[i - 1]), port);
    (TestNode::start_at(pki, dir, addr, &extra), hport)
}

fn server(n: &TestNode, hport: u16) -> Server {
    Server {
        api: n.addr,
        health: SocketAddr::new(n.addr.ip(), hport),
    }
}

/// Two nodes (127.0.0.1 and .2, the same ports, the same soft master key)
/// behind HAProxy, both seen up; `extra` lines for both. Also the nodes'
/// check port.
fn two_nodes(pki: &GuidePki, dir: &Path, extra: &str) -> (TestNode, TestNode, HaProxy, u16) {
    let ports = cluster_ports();
    let (n1, h1) = node(pki, &dir.join("n1"), 1, ports, None, extra);
    let (n2, h2) = node(pki, &dir.join("n2"), 2, ports, Some(&n1), extra);
    let lb = HaProxy::start(&dir.join("lb"), &[server(&n1, h1), server(&n2, h2)]);
    lb.wait_server("kms1", true, WAIT);
    lb.wait_server("kms2", true, WAIT);
    (n1, n2, lb, ports.1)
}

fn device(pki: &GuidePki, addr: SocketAddr) -> Client {
    Client::new(
        addr,
        &pki.ca.cert,
        Some((&pki.cmx_device.cert, &pki.cmx_device.key)),
    )
}

fn backend(pki: &GuidePki, addr: SocketAddr) -> Client {
    Client::new(
        addr,
        &pki.ca.cert,
        Some((&pki.cmx_backend.cert, &pki.cmx_backend.key)),
    )
}

fn audit_lines(n: &TestNode) -> Vec<serde_json::Value> {
    std::fs::read_to_string(&n.audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

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

/// A PROXY v2 header naming `client` (as HAProxy writes it).
fn proxy_v2(client: [u8; 4], dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&4321u16.to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
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
fn sigterm_under_keep_alive_load_through_haproxy_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    // Unlimited devices: every client arrives from 127.0.0.1 here.
    let extra = "kms.limits.device.rate=0\n";
    let (mut n1, n2, lb, _) = two_nodes(&pki, dir.path(), extra);
    let body = chain(&backend(&pki, lb.addr));

    let (l, threads) = load(device(&pki, lb.addr), body, 4);
    // Both nodes serve some of the load before the stop.
    wait_for("both nodes under load", WAIT, || {
        audit_lines(&n1).len() > 20 && audit_lines(&n2).len() > 20
    });
    n1.signal("TERM");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = n1.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "node 1 still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // HAProxy saw the node draining before it went away.
    assert!(!lb.is_up("kms1"), "{:?}", lb.servers_up());
    let after = l.ok.load(Ordering::SeqCst);
    wait_for("load going on after the stop", WAIT, || {
        l.ok.load(Ordering::SeqCst) > after + 50
    });
    let t = l.finish(threads);
    let (ok, failed, closes) = (t.ok, t.failed, t.closes);
    eprintln!("{ok} requests served, {closes} answered with Connection: close, {failed} failed");
    assert!(status.success(), "node 1 exit: {status}\n{}", n1.log_text());
    assert_eq!(failed, 0, "{:?}\n{}", t.errors, lb.log_text());
    let log = n1.log_text();
    assert!(log.contains("draining"), "{log}");
}

/// A rolling restart: each of three nodes in turn is stopped with SIGTERM
/// (it drains), started again on the same ports, and taken back by HAProxy's
/// check before the next one goes, while keep-alive clients send requests
/// through HAProxy the whole time. Not one request fails.
#[test]
fn rolling_restart_of_three_nodes_under_load_fails_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let extra = "kms.limits.device.rate=0\n";
    let ports = cluster_ports();
    let (n1, h1) = node(&pki, &dir.path().join("n1"), 1, ports, None, extra);
    let (n2, h2) = node(&pki, &dir.path().join("n2"), 2, ports, Some(&n1), extra);
    let (n3, h3) = node(&pki, &dir.path().join("n3"), 3, ports, Some(&n1), extra);
    let servers = [server(&n1, h1), server(&n2, h2), server(&n3, h3)];
    let lb = HaProxy::start(&dir.path().join("lb"), &servers);
    let mut nodes = [n1, n2, n3];
    for name in ["kms1", "kms2", "kms3"] {
        lb.wait_server(name, true, WAIT);
    }
    let body = chain(&backend(&pki, lb.addr));
    let (l, threads) = load(device(&pki, lb.addr), body.clone(), 4);
    for (i, n) in nodes.iter_mut().enumerate() {
        let name = format!("kms{}", i + 1);
        let before = l.ok.load(Ordering::SeqCst);
        wait_for("requests before the restart", WAIT, || {
            l.ok.load(Ordering::SeqCst) > before + 20
        });
        n.signal("TERM");
        wait_for(&format!("{name} to exit after its drain"), WAIT, || {
            n.child.try_wait().unwrap().is_some()
        });
        assert!(!lb.is_up(&name), "{:?}", lb.servers_up());
        n.restart();
        lb.wait_server(&name, true, WAIT);
        // The running clients keep their connections to the other nodes; a
        // new connection goes to the least loaded one, this node.
        let served = audit_lines(n).len();
        let fresh = device(&pki, lb.addr);
        wait_for(&format!("{name} serving again"), WAIT, || {
            assert_eq!(fresh.post("/v1/workspace-keys/decrypt", &body).status, 200);
            audit_lines(n).len() > served
        });
    }
    let t = l.finish(threads);
    let (ok, failed) = (t.ok, t.failed);
    eprintln!("{ok} requests served during the rolling restart, {failed} failed");
    assert_eq!(failed, 0, "{:?}\n{}", t.errors, lb.log_text());
}

/// `GET path` on a node's plain-HTTP check listener: status and body.
fn check(addr: impl std::net::ToSocketAddrs, path: &str) -> (u16, String) {
    use std::io::Read as _;
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: kms\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

#[test]
fn sigterm_says_stopping_and_draining_first_and_keeps_serving_until_the_delay_ends() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let recv_until = |want: &str| {
        let mut buf = [0u8; 4096];
        loop {
            let n = sock
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no {want}: {e}"));
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == want)
            {
                return;
            }
        }
    };
    let hport = free_port();
    let ndir = dir.path().join("n1");
    // A long delay, ended by a second SIGTERM: nothing here races a timer.
    let extra = format!("kms.health.port={hport}\nkms.server.drain-delay=5m\n");
    let mut n = TestNode::start_with(
        &ndir,
        |p, m| TestNode::properties(&pki, &ndir, p, m, &extra),
        &[("NOTIFY_SOCKET", sock_path.to_str().unwrap())],
    );
    recv_until("READY=1");
    wait_for("the check says ready", WAIT, || {
        check(("127.0.0.1", hport), "/v1/ready") == (200, "ready".into())
    });
    // Nothing but the one word, and nothing else served.
    assert_eq!(
        check(("127.0.0.1", hport), "/metrics"),
        (404, String::new())
    );
    assert_eq!(
        check(("127.0.0.1", hport), "/v1/health"),
        (404, String::new())
    );
    let b = backend(&pki, n.addr);
    let mut ka = b.keep_alive().unwrap();
    assert_eq!(ka.get("/v1/health").unwrap().status, 200);

    n.signal("TERM");
    recv_until("STOPPING=1");
    wait_for("the check says draining", WAIT, || {
        check(("127.0.0.1", hport), "/v1/ready") == (503, "draining".into())
    });
    // Still serving, keep-alive included, without closing anything yet.
    let r = ka.get("/v1/health").unwrap();
    assert_eq!((r.status, r.header("connection")), (200, None));
    assert_eq!(b.request("GET", "/v1/health", None).unwrap().status, 200);
    assert!(n.child.try_wait().unwrap().is_none());

    // A second SIGTERM cuts the delay short; the node exits cleanly.
    n.signal("TERM");
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(s) = n.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "still running after the second SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}\n{}", n.log_text());
    assert!(n.log_text().contains("drain delay cut short"));
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

/// `cmx-kms drain` takes a node out of HAProxy without stopping it: every
/// readiness check says `draining`, its keep-alive connections are told to
/// close once the drain delay is over, it still serves whoever comes; and
/// `cmx-kms drain --resume` puts it back.
#[test]
fn cmx_kms_drain_takes_a_node_out_without_stopping_it_and_resume_puts_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let extra = "kms.server.drain-delay=2s\n";
    let (n1, _n2, lb, h1) = two_nodes(&pki, dir.path(), extra);
    let body = chain(&backend(&pki, lb.addr));
    // A keep-alive client of node 1 itself, from before the drain.
    let mut held = device(&pki, n1.addr).keep_alive().unwrap();
    let r = held.post("/v1/workspace-keys/decrypt", &body).unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("connection").is_none(),
        "{:?}",
        r.header("connection")
    );

    // No node serves this configuration: a clear refusal.
    let stray = dir.path().join("stray.properties");
    std::fs::write(&stray, "").unwrap();
    let out = cmx_with_config(&["drain"], &stray);
    assert_eq!(out.status.code(), Some(69), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("no running `cmx-kms serve`"),
        "{}",
        output_text(&out)
    );

    let out = cmx_with_config(&["drain"], &n1.properties);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        output_text(&out).contains(&format!("(pid {}) draining", n1.child.id())),
        "{}",
        output_text(&out)
    );
    // A busy keep-alive connection is served until the delay is over, then
    // told to close (an idle one would be closed between requests).
    wait_for("Connection: close on the held connection", WAIT, || {
        let r = held.post("/v1/workspace-keys/decrypt", &body).unwrap();
        assert_eq!(r.status, 200);
        r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    });
    // Every readiness check says so; HAProxy takes the node out.
    let (_, word) = check(SocketAddr::new(n1.addr.ip(), h1), "/v1/ready");
    assert_eq!(word, "draining");
    let r = backend(&pki, n1.addr)
        .request("GET", "/v1/ready", None)
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["state"], "draining");
    assert_eq!(r.json()["canary"], "ready");
    lb.wait_server("kms1", false, WAIT);
    assert!(lb.is_up("kms2"));
    // New clients of node 1 itself are still served.
    assert_eq!(
        device(&pki, n1.addr)
            .post("/v1/workspace-keys/decrypt", &body)
            .status,
        200
    );
    assert!(
        n1.log_text().contains("draining on request"),
        "{}",
        n1.log_text()
    );

    let out = cmx_with_config(&["drain", "--resume"], &n1.properties);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    lb.wait_server("kms1", true, WAIT);
    let (status, word) = check(SocketAddr::new(n1.addr.ip(), h1), "/v1/ready");
    assert_eq!((status, word.as_str()), (200, "ready"));
    let mut again = device(&pki, n1.addr).keep_alive().unwrap();
    for _ in 0..3 {
        let r = again
            .post("/v1/workspace-keys/decrypt", &body)
            .unwrap_or_else(|e| panic!("{e}\n{}", n1.log_text()));
        assert_eq!(r.status, 200);
        assert!(
            r.header("connection").is_none(),
            "connections stay open again"
        );
    }
}

/// `systemctl reload` (SIGHUP) under keep-alive load through HAProxy: the
/// node stays in, no request fails, and no connection is even told to close.
#[test]
fn reloads_under_keep_alive_load_through_haproxy_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let extra = "kms.limits.device.rate=0\n";
    let (n1, n2, lb, _) = two_nodes(&pki, dir.path(), extra);
    let body = chain(&backend(&pki, lb.addr));
    let (l, threads) = load(device(&pki, lb.addr), body, 4);
    wait_for("both nodes under load", WAIT, || {
        audit_lines(&n1).len() > 20 && audit_lines(&n2).len() > 20
    });
    for i in 1..=5 {
        n1.signal("HUP");
        wait_for(&format!("reload {i} done"), WAIT, || {
            n1.log_text().matches("configuration reloaded").count() >= i
        });
        let before = audit_lines(&n1).len();
        wait_for("node 1 serving after the reload", WAIT, || {
            audit_lines(&n1).len() > before + 10
        });
    }
    assert!(
        lb.is_up("kms1") && lb.is_up("kms2"),
        "{:?}",
        lb.servers_up()
    );
    let t = l.finish(threads);
    let (ok, failed, closes) = (t.ok, t.failed, t.closes);
    eprintln!("{ok} requests served across 5 reloads, {closes} Connection: close, {failed} failed");
    assert_eq!(failed, 0, "{:?}", t.errors);
    assert_eq!(closes, 0, "a reload closed connections");
}
