//! HAProxy's check follows the node's real HSM path: node 1 over a real
//! PyKMIP, node 2 over the soft backend, both behind real HAProxy running the
//! shipped configuration. When node 1's PyKMIP stops, node 1's readiness
//! canary fails, its check listener answers `unavailable` and HAProxy takes
//! it out (within `inter × fall` after the canary notices) while node 2
//! serves; when PyKMIP is back, HAProxy takes node 1 back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/kmip_node.rs"]
mod kmip_node;
#[path = "support/pykmip.rs"]
mod pykmip;
mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use support::client::{Client, chain};
use support::haproxy::{HaProxy, SOURCE, Server};
use support::node::{TestNode, cmx_with_config, free_port_on, output_text};
use support::wait_for;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn haproxy_takes_out_a_node_whose_real_hsm_stops_and_takes_it_back_after() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, mut hsm) = kmip_node::setup(dir.path());
    let ips = [IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2])];
    let hport = free_port_on(&ips);
    // A canary every second, so the figure printed below is mostly HAProxy's.
    let front = format!(
        "kms.server.proxy-protocol.trusted={SOURCE}\nkms.health.port={hport}\n\
         kms.readiness.interval=1s\nkms.readiness.timeout=2s\n"
    );

    // Node 1: kmip1 at PyKMIP, its master key made by `cmx-kms hsm init`.
    let d1 = dir.path().join("n1");
    std::fs::create_dir_all(&d1).unwrap();
    let cfg = d1.join("init.properties");
    std::fs::write(&cfg, kmip_node::props(&pki, &d1, hsm.port, 1, 0, "")).unwrap();
    let o = cmx_with_config(&["hsm", "init"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let n1 = TestNode::start_with(
        &d1,
        |p, m| kmip_node::props(&pki, &d1, hsm.port, p, m, &front),
        &[],
    );
    // Node 2: soft backend, on 127.0.0.2.
    let n2_addr = SocketAddr::new(ips[1], free_port_on(&ips[1..]));
    let n2 = TestNode::start_at(&pki, &dir.path().join("n2"), n2_addr, &front);
    let servers = [
        Server {
            api: n1.addr,
            health: SocketAddr::new(n1.addr.ip(), hport),
        },
        Server {
            api: n2.addr,
            health: SocketAddr::new(n2.addr.ip(), hport),
        },
    ];
    let lb = HaProxy::start(&dir.path().join("lb"), &servers);
    lb.wait_server("kms1", true, WAIT);
    lb.wait_server("kms2", true, WAIT);
    let n1_backend = Client::new(
        n1.addr,
        &pki.ca.cert,
        Some((&pki.cmx_backend.cert, &pki.cmx_backend.key)),
    );
    let body = chain(&n1_backend);

    // The HSM goes away for node 1 only.
    let stopping = Instant::now();
    hsm.stop();
    let stop_took = stopping.elapsed();
    lb.wait_server("kms1", false, WAIT);
    eprintln!(
        "kms1 taken out {:?} after PyKMIP was told to stop (its exit took {stop_took:?}; \
         canary every 1 s, then inter 2s x fall 3)",
        stopping.elapsed()
    );
    assert!(lb.is_up("kms2"), "{:?}", lb.servers_up());
    let r = n1_backend.request("GET", "/v1/ready", None).unwrap();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    // Every new connection through HAProxy now reaches node 2, which serves.
    let through = Client::new(
        lb.addr,
        &pki.ca.cert,
        Some((&pki.cmx_backend.cert, &pki.cmx_backend.key)),
    );
    for _ in 0..10 {
        let r = through.request("GET", "/v1/ready", None).unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["backend"], "soft");
    }

    // Back: HAProxy takes node 1 back, and it unwraps through PyKMIP again.
    let restarted = Instant::now();
    hsm.start_again();
    lb.wait_server("kms1", true, WAIT);
    eprintln!(
        "kms1 back {:?} after its PyKMIP returned (rise 2 x inter 2s)",
        restarted.elapsed()
    );
    let device = Client::new(
        n1.addr,
        &pki.ca.cert,
        Some((&pki.cmx_device.cert, &pki.cmx_device.key)),
    );
    wait_for("node 1 unwrapping again", WAIT, || {
        device.post("/v1/workspace-keys/decrypt", &body).status == 200
    });
}
