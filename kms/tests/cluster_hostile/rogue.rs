//! A rogue member: something at a listed address that holds the `kmsserver`
//! private key (so it passes the pin and the Hello) but not the master key,
//! and answers every `Get` with 32 bytes of its choosing.
//! - Node A (127.0.0.21) lists the rogue (127.0.0.22); keys the rogue owns
//!   are fetched from it. A must not wrap new user or workspace keys under
//!   the rogue's bytes: every chain made on A opens on B (127.0.0.23, the
//!   same master key, no cluster), and A says which member lied.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::cluster_support::{Ports, ip, start_member};
use crate::support::client::Client;
use crate::support::guide_pki::GuidePki;
use crate::support::{pki, wait_for};
use cmx_kms::cluster::wire::{self, Frame, SecretKeyBytes};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const WAIT: Duration = Duration::from_secs(60);

fn read_frame(s: &mut impl std::io::Read) -> Option<Frame> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut body).ok()?;
    Frame::decode(&body).ok()
}

/// The rogue member on `at`: TLS with `kmsserver`, a correct Hello (the
/// certificate's fingerprint is public), then 0x41 x 32 for every key.
fn rogue(pki: &GuidePki, at: SocketAddr, gets: Arc<AtomicUsize>) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&pki.kms_server.cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let fingerprint: [u8; 32] = sha2::Digest::finalize(sha2::Digest::chain_update(
        <sha2::Sha256 as sha2::Digest>::new(),
        certs[0].as_ref(),
    ))
    .into();
    let key = PrivateKeyDer::from_pem_file(&pki.kms_server.key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"cmx-kms-peer".to_vec()];
    let cfg = Arc::new(cfg);
    let listener = TcpListener::bind(at).unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let (cfg, gets) = (Arc::clone(&cfg), Arc::clone(&gets));
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, tcp);
                while let Some(f) = read_frame(&mut tls) {
                    let reply = match f {
                        Frame::Hello { .. } => Frame::Hello {
                            version: wire::VERSION,
                            node: at.to_string(),
                            fingerprint,
                        },
                        Frame::Ping(n) => Frame::Pong(n),
                        Frame::Get { id, .. } => {
                            gets.fetch_add(1, Ordering::SeqCst);
                            Frame::Key {
                                id,
                                ttl_ms: 3_600_000,
                                key: SecretKeyBytes(zeroize::Zeroizing::new(vec![0x41; 32])),
                            }
                        }
                        _ => break,
                    };
                    if tls.write_all(&reply.encode()).is_err() {
                        break;
                    }
                }
            });
        }
    });
}

#[test]
fn a_key_served_by_a_rogue_member_is_never_used_to_wrap_new_keys() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"));
    let ports = Ports::pick();
    let gets = Arc::new(AtomicUsize::new(0));
    rogue(
        &pki,
        SocketAddr::new(ip(22), ports.cluster),
        Arc::clone(&gets),
    );
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let a = start_member(&pki, &a_dir, ip(21), ports, &[ip(22)]);
    std::fs::create_dir_all(&b_dir).unwrap();
    std::fs::copy(a_dir.join("soft-master.key"), b_dir.join("soft-master.key")).unwrap();
    let b = start_member(&pki, &b_dir, ip(23), ports, &[]);
    wait_for("A sees the rogue up", WAIT, || {
        a.metric("cmx_kms_cluster_peers{state=\"up\"}") == Some(1.0)
    });

    let on_a = Client::new(
        a.api(),
        &pki.ca.cert,
        Some((&pki.cmx_backend.cert, &pki.cmx_backend.key)),
    );
    let on_b = Client::new(
        b.api(),
        &pki.ca.cert,
        Some((&pki.cmx_device.cert, &pki.cmx_device.key)),
    );
    let post = |c: &Client, path: &str, body: serde_json::Value| {
        let r = c.post(path, &body);
        (r.status, String::from_utf8_lossy(&r.body).into_owned(), r)
    };
    let mut chains = Vec::new();
    for _ in 0..12 {
        let (st, text, r) = post(&on_a, "/v1/customer-keys", serde_json::json!({}));
        assert_eq!(st, 201, "{text}");
        let c = r.json()["wrapped_customer_key"].clone();
        let (st, text, r) = post(
            &on_a,
            "/v1/user-keys",
            serde_json::json!({"wrapped_customer_key": c}),
        );
        assert_eq!(st, 201, "{text}");
        let u = r.json()["wrapped_user_key"].clone();
        let (st, text, r) = post(
            &on_a,
            "/v1/workspace-keys",
            serde_json::json!({"wrapped_customer_key": c, "wrapped_user_key": u}),
        );
        assert_eq!(st, 201, "{text}");
        let w = r.json()["wrapped_workspace_key"].clone();
        chains.push(serde_json::json!({"wrapped_customer_key": c, "wrapped_user_key": u, "wrapped_workspace_key": w}));
    }
    assert!(
        gets.load(Ordering::SeqCst) > 0,
        "the rogue owned none of 12 keys"
    );
    // Every chain made on A opens with the real customer keys.
    for chain in &chains {
        let (st, text, _) = post(&on_b, "/v1/workspace-keys/decrypt", chain.clone());
        assert_eq!(st, 200, "a chain made on A does not open on B: {text}");
    }
    let log = a.log_text();
    assert!(
        log.contains("served a customer key that is not the plaintext")
            && log.contains("127.0.0.22"),
        "{log}"
    );
    assert!(a.metric("cmx_kms_cluster_refused_total{reason=\"wrong-key\"}") >= Some(1.0));
    // A decrypt on A of a chain whose key A now holds right still works.
    let on_a_dev = Client::new(
        a.api(),
        &pki.ca.cert,
        Some((&pki.cmx_device.cert, &pki.cmx_device.key)),
    );
    for chain in &chains {
        let (st, text, _) = post(&on_a_dev, "/v1/workspace-keys/decrypt", chain.clone());
        assert_eq!(st, 200, "{text}");
    }
}
