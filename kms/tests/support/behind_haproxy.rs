//! Nodes of a cluster on this machine's loopback addresses behind a real
//! HAProxy, and the clients and probes the HAProxy tests use; included with
//! `#[path]` by `haproxy.rs` and `haproxy_drain.rs` (which both have `mod
//! support;`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::support::client::Client;
use crate::support::guide_pki::GuidePki;
use crate::support::haproxy::{HaProxy, SOURCE, Server};
use crate::support::node::{TestNode, free_port_on};

pub const WAIT: Duration = Duration::from_secs(60);

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// The addresses of the three nodes of a cluster on this machine: the same
/// ports, one loopback address each, as on three hosts.
pub const NODE_IPS: [[u8; 4]; 3] = [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]];

/// Ports free on every node address: (API port, check port).
pub fn cluster_ports() -> (u16, u16) {
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
pub fn node(
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

pub fn server(n: &TestNode, hport: u16) -> Server {
    Server {
        api: n.addr,
        health: SocketAddr::new(n.addr.ip(), hport),
    }
}

/// Two nodes (127.0.0.1 and .2, the same ports, the same soft master key)
/// behind HAProxy, both seen up; `extra` lines for both. Also the nodes'
/// check port.
pub fn two_nodes(pki: &GuidePki, dir: &Path, extra: &str) -> (TestNode, TestNode, HaProxy, u16) {
    let ports = cluster_ports();
    let (n1, h1) = node(pki, &dir.join("n1"), 1, ports, None, extra);
    let (n2, h2) = node(pki, &dir.join("n2"), 2, ports, Some(&n1), extra);
    let lb = HaProxy::start(&dir.join("lb"), &[server(&n1, h1), server(&n2, h2)]);
    lb.wait_server("kms1", true, WAIT);
    lb.wait_server("kms2", true, WAIT);
    (n1, n2, lb, ports.1)
}

pub fn device(pki: &GuidePki, addr: SocketAddr) -> Client {
    Client::new(
        addr,
        &pki.ca.cert,
        Some((&pki.cmx_device.cert, &pki.cmx_device.key)),
    )
}

pub fn backend(pki: &GuidePki, addr: SocketAddr) -> Client {
    Client::new(
        addr,
        &pki.ca.cert,
        Some((&pki.cmx_backend.cert, &pki.cmx_backend.key)),
    )
}

pub fn audit_lines(n: &TestNode) -> Vec<serde_json::Value> {
    std::fs::read_to_string(&n.audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A PROXY v2 header naming `client` (as HAProxy writes it).
pub fn proxy_v2(client: [u8; 4], dst: SocketAddr) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&4321u16.to_be_bytes());
    h.extend_from_slice(&dst.port().to_be_bytes());
    h
}

/// `GET path` on a node's plain-HTTP check listener: status and body.
pub fn check(addr: impl std::net::ToSocketAddrs, path: &str) -> (u16, String) {
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
