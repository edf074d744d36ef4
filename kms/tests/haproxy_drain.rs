//! Nodes behind a real HAProxy (the distribution's 2.6, running the shipped
//! `packaging/haproxy/cmx-kms.cfg` on loopback) stopped, drained and reloaded
//! under keep-alive load without failing a single request: SIGTERM, a rolling
//! restart of three nodes, `cmx-kms drain` and `resume`, and reloads; and what
//! a stopping node says on its check port meanwhile. The client's address and
//! the PROXY protocol: `haproxy.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/behind_haproxy.rs"]
mod behind_haproxy;
mod support;

use behind_haproxy::{
    WAIT, audit_lines, backend, check, cluster_ports, device, node, server, two_nodes,
};
use support::load::load;
use support::{pki, wait_for};

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::client::chain;
use support::haproxy::HaProxy;
use support::node::{TestNode, cmx_with_config, free_port, output_text};

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
    let status = n1.wait_exit("node 1 to exit after SIGTERM", WAIT);
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
        n.wait_exit(&format!("{name} to exit after its drain"), WAIT);
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
    let status = n.wait_exit("an exit after the second SIGTERM", WAIT);
    assert!(status.success(), "{status}\n{}", n.log_text());
    assert!(n.log_text().contains("drain delay cut short"));
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
