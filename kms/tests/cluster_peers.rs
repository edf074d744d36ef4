//! Who the cluster port talks to: nodes A (127.0.0.4) and B (127.0.0.5)
//! with the same keystore, and C (127.0.0.6) with another keystore (a
//! `kmsserver` rollout half done), listed by A and listing A.
//! - A and B form a cluster; C is left out both ways, says why, and keeps
//!   serving its own clients, caching alone; a listed node that does not
//!   speak our protocol (a Tomcat node: JGroups on its port) is left out
//!   with one warning;
//! - a client presenting another certificate than `kmsserver`, even from a
//!   listed address, is refused at the handshake and gets nothing;
//! - `kmsserver` itself from an unlisted address is dropped before TLS;
//! - an authenticated connection that does not speak the peer protocol, and
//!   plain text, get nothing either: the port speaks only TLS;
//! - a hung member (SIGSTOP) is suspected, then confirmed down, then back up
//!   when it runs again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/cluster.rs"]
mod cluster_support;
mod support;

use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use cluster_support::{ClusterNode, Ports, ip, start_member};
use std::sync::Arc;

use cmx_kms::cluster::wire::{self, Frame};
use rustls::pki_types::ServerName;
use support::client::{Client, chain, client_config, connect_from};
use support::guide_pki::{GuidePki, Identity};
use support::{pki, wait_for};

const WAIT: Duration = Duration::from_secs(60);
const DECRYPT: &str = "/v1/workspace-keys/decrypt";

fn refused(n: &ClusterNode, reason: &str) -> f64 {
    n.metric(&format!(
        "cmx_kms_cluster_refused_total{{reason=\"{reason}\"}}"
    ))
    .unwrap_or(0.0)
}

/// A TLS connection to `n`'s cluster port from `src`, presenting `id`, that
/// sends a valid Hello for `src`; what came back (an error, or a frame).
fn hello_from(
    pki: &GuidePki,
    n: &ClusterNode,
    src: IpAddr,
    id: &Identity,
) -> Result<Frame, String> {
    let cfg = client_config(&pki.ca.cert, Some((&id.cert, &id.key)));
    let tcp = connect_from(src, n.cluster_addr()).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(cfg), ServerName::try_from("localhost").unwrap())
            .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let hello = Frame::Hello {
        version: wire::VERSION,
        node: format!("{src}:{}", n.ports.cluster),
        fingerprint: cert_fingerprint(&id.cert),
    };
    tls.write_all(&hello.encode()).map_err(|e| e.to_string())?;
    let mut len = [0u8; 4];
    tls.read_exact(&mut len).map_err(|e| e.to_string())?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    tls.read_exact(&mut body).map_err(|e| e.to_string())?;
    Frame::decode(&body).map_err(|e| e.to_string())
}

/// SHA-256 of the certificate in PEM file `cert`.
fn cert_fingerprint(cert: &Path) -> [u8; 32] {
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::from_pem_file(cert).unwrap();
    sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        der.as_ref(),
    ))
    .into()
}

fn client(pki: &GuidePki, n: &ClusterNode, id: &Identity) -> Client {
    Client::new(n.api(), &pki.ca.cert, Some((&id.cert, &id.key)))
}

#[test]
fn the_cluster_port_talks_only_to_listed_nodes_with_the_same_kmsserver() {
    let dir = tempfile::tempdir().unwrap();
    let pki1 = pki(&dir.path().join("one"));
    let pki2 = pki(&dir.path().join("two"));
    let ports = Ports::pick();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    // 127.0.0.7 stands for a Tomcat node of the legacy cluster: its port
    // speaks JGroups, not TLS.
    let jgroups = std::net::TcpListener::bind((ip(7), ports.cluster)).unwrap();
    std::thread::spawn(move || {
        for mut s in jgroups.incoming().flatten() {
            let _ = s.write_all(b"JGRP\x00\x05\x00\x00not a TLS server hello");
        }
    });
    let a = start_member(&pki1, &a_dir, ip(4), ports, &[ip(5), ip(6), ip(7)]);
    // B shares A's soft master key, as nodes share an HSM.
    std::fs::create_dir_all(&b_dir).unwrap();
    std::fs::copy(a_dir.join("soft-master.key"), b_dir.join("soft-master.key")).unwrap();
    let b = start_member(&pki1, &b_dir, ip(5), ports, &[ip(4)]);
    let c = start_member(&pki2, &dir.path().join("c"), ip(6), ports, &[ip(4)]);

    wait_for(
        "A: B up, C a keystore mismatch, the Tomcat node incompatible",
        WAIT,
        || {
            a.metric("cmx_kms_cluster_peers{state=\"up\"}") == Some(1.0)
                && a.metric("cmx_kms_cluster_peers{state=\"keystore-mismatch\"}") == Some(1.0)
                && a.metric("cmx_kms_cluster_peers{state=\"incompatible\"}") == Some(1.0)
        },
    );
    let warned = a
        .log_text()
        .matches("does not speak the cmx-kms peer protocol")
        .count();
    assert_eq!(
        warned,
        1,
        "one warning for the incompatible peer:\n{}",
        a.log_text()
    );
    wait_for("C: A a keystore mismatch", WAIT, || {
        c.metric("cmx_kms_cluster_peers{state=\"keystore-mismatch\"}") == Some(1.0)
    });
    assert!(
        a.log_text()
            .contains("presents another kmsserver certificate"),
        "{}",
        a.log_text()
    );

    // A and B share keys; C serves its own clients, caching alone.
    let body = chain(&client(&pki1, &b, &pki1.cmx_backend));
    let r = client(&pki1, &a, &pki1.cmx_device).post(DECRYPT, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body = chain(&client(&pki2, &c, &pki2.cmx_backend));
    let r = client(&pki2, &c, &pki2.cmx_device).post(DECRYPT, &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(c.health_ok(), "the mismatch does not touch C's readiness");
    let o = support::node::cmx_with_config(&["cluster", "status"], &a.dir.join("kms.properties"));
    let text = support::node::output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert!(
        text.contains("127.0.0.5[") && text.contains(" up"),
        "{text}"
    );
    assert!(
        text.contains("keystore-mismatch: it presents kmsserver"),
        "{text}"
    );

    // The control: kmsserver from a listed address, with a Hello, is answered.
    let me = &pki1.kms_server;
    match hello_from(&pki1, &a, ip(5), me) {
        Ok(Frame::Hello { node, .. }) => assert_eq!(node, a.cluster_addr().to_string()),
        other => panic!("a listed member with kmsserver got {other:?}"),
    }
    // Another certificate, from a listed address, with a valid Hello: nothing.
    let before = refused(&a, "tls");
    let r = hello_from(&pki1, &a, ip(5), &pki1.cmx_backend);
    assert!(r.is_err(), "another certificate got {r:?}");
    wait_for("the refusal counted", WAIT, || refused(&a, "tls") > before);
    // kmsserver itself from an address jgroups.xml does not list: dropped.
    let before = refused(&a, "not-a-member");
    let r = hello_from(&pki1, &a, ip(9), me);
    assert!(r.is_err(), "an unlisted address got {r:?}");
    wait_for("the refusal counted", WAIT, || {
        refused(&a, "not-a-member") > before
    });
    let before = refused(&a, "hello");
    let member_cert = Client::new(a.cluster_addr(), &pki1.ca.cert, Some((&me.cert, &me.key)));
    // The right certificate from a listed address, speaking HTTP: nothing.
    assert!(member_cert.request_from(ip(5), "GET", "/").is_err());
    wait_for("the refusal counted", WAIT, || {
        refused(&a, "hello") > before
    });

    // Plain text: nothing but, at most, a TLS alert record.
    let mut s = connect_from(ip(5), a.cluster_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(
        got.is_empty() || got[0] == 0x15,
        "plain text got {:?}",
        String::from_utf8_lossy(&got)
    );

    // A hung member (SIGSTOP: no FIN, no answers): suspect, then down;
    // back up once it runs again.
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(b.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    };
    let state = |st: &str| a.metric(&format!("cmx_kms_cluster_peers{{state=\"{st}\"}}"));
    signal("STOP");
    wait_for("A suspects the hung B", WAIT, || {
        state("suspect") == Some(1.0)
    });
    wait_for("A confirms B down", WAIT, || state("down") == Some(1.0));
    assert_eq!(state("up"), Some(0.0));
    signal("CONT");
    wait_for("B back up at A", WAIT, || state("up") == Some(1.0));
    drop(b);
}
