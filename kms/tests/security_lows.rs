//! The security review's "lows", end to end through the real binary: cache
//! limits applied on reload, device rate limits per source address, what
//! `/v1/ready` tells whom, and loose Vault secret files refused. `dev` in a
//! folder that is not its own is in `dev_folder.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use serde_json::json;
use support::client::{chain, client_config, wait_ready};
use support::guide_pki::{GuidePki, Identity, PkiOptions};
use support::node::{TestNode, cmx_with_config, output_text};

/// One guide PKI for every test here (keytool is slow); each test runs its own node.
fn pki() -> &'static GuidePki {
    static P: OnceLock<GuidePki> = OnceLock::new();
    P.get_or_init(|| GuidePki::generate(&support::scratch::for_process(), PkiOptions::default()))
}

/// The value of the metric line `series` (name plus labels, exactly), 0 when absent.
fn metric(node: &TestNode, series: &str) -> f64 {
    node.metrics()
        .lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// Rewrite the node's properties with `extra`, send SIGHUP, and wait (up to
/// 60 s) until the reload succeeded.
fn reload(node: &TestNode, extra: &str) {
    let ok = "cmx_kms_reloads_total{result=\"success\"}";
    let before = metric(node, ok);
    let props = TestNode::properties(
        pki(),
        &node.dir,
        node.addr.port(),
        node.metrics_addr.port(),
        extra,
    );
    std::fs::write(&node.properties, props).unwrap();
    node.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(node, ok) <= before {
        assert!(
            Instant::now() < deadline,
            "no successful reload:\n{}",
            node.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_reload_applies_new_cache_limits_to_keys_already_cached() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let node = TestNode::start(pki, &dir.path().join("node"), "kms.cache.ttl=300s\n");
    let b = node.client(pki, &pki.cmx_backend);
    let d = node.client(pki, &pki.cmx_device);
    let body = chain(&b); // leaves the customer key cached
    let counters = || {
        (
            metric(&node, "cmx_kms_cache_hits_total"),
            metric(&node, "cmx_kms_cache_misses_total"),
        )
    };
    let decrypt = || {
        let r = d.post("/v1/workspace-keys/decrypt", &body);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    };
    let (hits, misses) = counters();
    decrypt();
    assert_eq!(counters(), (hits + 1.0, misses), "cached before the reload");

    // TTL 0 on reload: every cached key goes, the next decrypt unwraps again.
    reload(&node, "kms.cache.ttl=0\n");
    decrypt();
    assert_eq!(counters(), (hits + 1.0, misses + 1.0), "a miss after ttl=0");

    // Back to 300 s: had the key only been hidden by ttl=0 rather than
    // dropped from memory, it would be a hit again now.
    reload(&node, "kms.cache.ttl=300s\n");
    decrypt();
    assert_eq!(
        counters(),
        (hits + 1.0, misses + 2.0),
        "the key was purged, not kept"
    );
    decrypt();
    assert_eq!(
        counters(),
        (hits + 2.0, misses + 2.0),
        "caching is on again"
    );
}

/// A TCP connection to `dst` from the local address `src` (any 127/8
/// address works on Linux loopback).
fn connect_from(src: IpAddr, dst: SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind(SocketAddr::new(src, 0)).unwrap();
        let tcp = s.connect(dst).await.unwrap();
        let tcp = tcp.into_std().unwrap();
        tcp.set_nonblocking(false).unwrap();
        tcp
    })
}

/// POST `body` to `path` as `id`, from the local address `src`: (status, body).
fn post_from(
    src: IpAddr,
    node: &TestNode,
    id: &Identity,
    path: &str,
    body: &serde_json::Value,
) -> (u16, String) {
    let config = client_config(&pki().ca.cert, Some((&id.cert, &id.key)));
    let tcp = connect_from(src, node.addr);
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let body = body.to_string();
    write!(
        tls,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    tls.flush().unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // Until the server closes; a close without close_notify ends it too.
    while let Ok(n) = tls.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[test]
fn device_rate_limits_count_per_source_address_not_per_shared_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let node = TestNode::start(
        pki,
        &dir.path().join("node"),
        "kms.limits.device.rate=1\nkms.limits.device.burst=1\n",
    );
    let body = chain(&node.client(pki, &pki.cmx_backend));
    let decrypt = "/v1/workspace-keys/decrypt";
    let first: IpAddr = [127, 0, 0, 2].into();
    let second: IpAddr = [127, 0, 0, 3].into();
    // Agent one, with the company's device certificate, runs into its limit.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, text) = post_from(first, &node, &pki.cmx_device, decrypt, &body);
        if status == 429 {
            assert!(text.contains("too-many-requests"), "{text}");
            break;
        }
        assert_eq!(status, 200, "{text}");
        assert!(Instant::now() < deadline, "127.0.0.2 never hit its limit");
    }
    // Agent two, same certificate, other address: still served.
    let (status, text) = post_from(second, &node, &pki.cmx_device, decrypt, &body);
    assert_eq!(status, 200, "another address is not limited: {text}");
    // The backend's limit is its own (per certificate).
    let (status, text) = post_from(first, &node, &pki.cmx_backend, decrypt, &body);
    assert_eq!(status, 200, "{text}");
}

/// GET `path` on the metrics listener (plain HTTP): (status, body).
fn get_plain(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    (status, out.split_once("\r\n\r\n").unwrap().1.to_owned())
}

#[test]
fn ready_details_go_to_the_backend_and_the_metrics_port_only() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    let node = TestNode::start(pki, &dir.path().join("node"), "");
    let b = node.client(pki, &pki.cmx_backend);
    let d = node.client(pki, &pki.cmx_device);
    wait_ready(&b, "ready");

    let r = d.request("GET", "/v1/ready", None).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"state": "ready"}),
        "a device learns only the state"
    );

    let r = b.request("GET", "/v1/ready", None).unwrap();
    assert_eq!(r.status, 200);
    let v = r.json();
    assert_eq!(v["state"], "ready");
    assert_eq!(v["backend"], "soft");
    assert!(v["detail"].is_string() && v["endpoints"].is_array(), "{v}");

    let (status, text) = get_plain(node.metrics_addr, "/v1/ready");
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["backend"], "soft", "{v}");
    assert!(v["detail"].is_string(), "{v}");
}

/// Properties for a Vault node; Vault itself is never reached by these tests.
fn vault_props(dir: &Path, auth: &str) -> String {
    TestNode::properties(pki(), dir, 8443, 0, "").replace("kms.hsm.protocol=soft\n", "")
        + "kms.hsm.protocol=vault\nkms.hsm.server.url=http://127.0.0.1:9\n"
        + auth
}

fn check_vault_secret_file(key: &str, auth: impl Fn(&Path) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "s.0123456789\n").unwrap();
    let config = dir.path().join("kms.properties");
    std::fs::write(&config, vault_props(dir.path(), &auth(&secret))).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();

    for mode in [0o644, 0o604] {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        for cmd in ["check-config", "serve"] {
            let o = cmx_with_config(&[cmd], &config);
            let text = output_text(&o);
            assert_eq!(
                o.status.code(),
                Some(78),
                "{cmd} with mode {mode:o}: {text}"
            );
            let line = text
                .lines()
                .find(|l| l.contains("readable by other users"))
                .unwrap_or_else(|| panic!("{cmd}: no complaint about the mode: {text}"));
            assert!(
                line.contains(&format!("{}:", config.display()))
                    && line.contains(key)
                    && line.contains(&secret.display().to_string())
                    && line.contains(&format!("(mode {mode:o})"))
                    && line.contains("chmod 600"),
                "{line}"
            );
            assert!(!text.contains("s.0123456789"), "the secret is never shown");
        }
    }
    for mode in [0o600, 0o640] {
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(mode)).unwrap();
        let o = cmx_with_config(&["check-config"], &config);
        let text = output_text(&o);
        assert!(!text.contains("readable by other users"), "{text}");
        assert_eq!(o.status.code(), Some(0), "mode {mode:o}: {text}");
    }
}

#[test]
fn a_vault_token_file_other_users_can_read_is_a_config_error() {
    check_vault_secret_file("kms.hsm.vault.token.file", |p| {
        format!("kms.hsm.vault.token.file={}\n", p.display())
    });
}

#[test]
fn an_approle_secret_id_file_other_users_can_read_is_a_config_error() {
    check_vault_secret_file("kms.hsm.vault.auth.approle.secret-id.file", |p| {
        format!(
            "kms.hsm.vault.auth=approle\nkms.hsm.vault.auth.approle.role-id=kms\n\
             kms.hsm.vault.auth.approle.secret-id.file={}\n",
            p.display()
        )
    });
}
