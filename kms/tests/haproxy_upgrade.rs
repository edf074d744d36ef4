//! A rolling upgrade of a three-node cluster behind real HAProxy, with the
//! real RPM and the guide's installer: each node is a scratch root (the
//! installer tests' Debian minbase root, `rpm` really installing into it)
//! whose service runs under the direct-process manager, listening on
//! 127.0.0.1, .2 and .3 with the same ports. HAProxy runs the shipped
//! `packaging/haproxy/cmx-kms.cfg` (its check, drain timings and redispatch
//! unchanged) in front of them while keep-alive clients send requests the
//! whole time.
//!
//! One node at a time: `CMX-KMS-Installer.sh` upgrades it from N-1 to N (the
//! old server drains, HAProxy takes it out, the new one starts, HAProxy
//! takes it back); then a broken N+1 on one node rolls back to N by itself
//! while the two others serve. Not one request may fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

#[path = "../../installer/tests/support/mod.rs"]
mod install_support;

#[path = "support/upgrade_node.rs"]
mod upgrade_node;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use install_support::node::{ScratchRoot, expect_code};
use install_support::{artifacts, text};
use support::client::{Client, chain};
use support::guide_pki::GuidePki;
use support::haproxy::{HaProxy, Server};
use support::load::load;
use support::{pki, wait_for};

const WAIT: Duration = Duration::from_secs(90);

fn client(pki: &GuidePki, addr: SocketAddr, id: &support::guide_pki::Identity) -> Client {
    Client::new(addr, &pki.ca.cert, Some((&id.cert, &id.key)))
}

#[test]
fn rolling_upgrade_and_a_broken_upgrade_under_load_fail_no_request() {
    let a = artifacts();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let prev = a.rpm_prev.to_string_lossy().into_owned();
    let broken = a.rpm_broken.to_string_lossy().into_owned();

    // The cluster's one soft master key, as one HSM would be shared.
    let soft_key = dir.path().join("soft-master.key");
    cmx_kms::backend::soft::SoftBackend::open_or_create(
        &soft_key,
        &secrecy::SecretString::from(pki.store_password.clone()),
    )
    .unwrap();

    // Three nodes on N-1, configured and running.
    let (ips, port, hport) = upgrade_node::three_loopback_nodes();
    let mut roots = Vec::new();
    let mut servers = Vec::new();
    for ip in &ips {
        let root = ScratchRoot::new();
        expect_code(&root.install(a, &["--package", &prev]), 0, "install N-1");
        let addr = SocketAddr::new(*ip, port);
        upgrade_node::configure(&root.p(upgrade_node::CONF), &pki, &soft_key, addr, hport);
        expect_code(&root.install(a, &["--package", &prev]), 0, "start N-1");
        assert_eq!(root.installed().as_deref(), Some("0.1.0-1"));
        servers.push(Server {
            api: addr,
            health: SocketAddr::new(*ip, hport),
        });
        roots.push(root);
    }
    let lb = HaProxy::start(&dir.path().join("lb"), &servers);
    for name in ["kms1", "kms2", "kms3"] {
        lb.wait_server(name, true, WAIT);
    }
    let body = chain(&client(&pki, lb.addr, &pki.cmx_backend));
    let (l, threads) = load(client(&pki, lb.addr, &pki.cmx_device), body.clone(), 4);
    let progress = |what: &str| {
        let before = l.ok.load(Ordering::SeqCst);
        wait_for(what, WAIT, || l.ok.load(Ordering::SeqCst) > before + 20);
    };
    progress("requests before the upgrade");

    // N-1 → N, one node at a time; the next only once HAProxy has taken the
    // upgraded one back (docs/haproxy.md's procedure).
    for (i, root) in roots.iter().enumerate() {
        let name = format!("kms{}", i + 1);
        let out = root.install(a, &[]);
        expect_code(&out, 0, &format!("upgrade {name} to N"));
        assert!(
            text(&out).contains("Upgrade cmx-kms-server 0.1.0-1 to cmx-kms-server 0.1.0-2"),
            "{}",
            text(&out)
        );
        assert_eq!(root.installed().as_deref(), Some("0.1.0-2"));
        lb.wait_server(&name, true, WAIT);
        progress(&format!("requests after upgrading {name}"));
    }

    // A broken N+1 on node 2 rolls back to N by itself; nodes 1 and 3 serve.
    let out = roots[1].install(a, &["--package", &broken]);
    expect_code(&out, 2, "broken upgrade");
    let t = text(&out);
    assert!(
        t.contains("ROLLED BACK") && t.contains("cmx-kms-server 0.1.0-2"),
        "{t}"
    );
    assert_eq!(roots[1].installed().as_deref(), Some("0.1.0-2"));
    lb.wait_server("kms2", true, WAIT);
    progress("requests after the rollback");
    // The rolled-back node serves again: a new connection reaches it.
    let fresh = client(&pki, servers[1].api, &pki.cmx_device);
    assert_eq!(fresh.post("/v1/workspace-keys/decrypt", &body).status, 200);

    let t = l.finish(threads);
    let (ok, failed, closes) = (t.ok, t.failed, t.closes);
    eprintln!(
        "{ok} requests served during the rolling upgrade, {closes} answered with Connection: close, {failed} failed"
    );
    assert_eq!(failed, 0, "{:?}\n{}", t.errors, lb.log_text());
    // Each node served devices' decrypts at some point.
    for (i, root) in roots.iter().enumerate() {
        let audit = std::fs::read_to_string(root.p("/var/log/kms/audit.log")).unwrap_or_default();
        let served = audit
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["status"] == 200 && v["operation"] == "decrypt-workspace-key")
            .count();
        assert!(served > 0, "node {} served no device request", i + 1);
    }
}
