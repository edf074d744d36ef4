//! The mTLS server and API v1, end to end: a real `cmx-kms serve` with a
//! keystore made by openssl and keytool as the install guide does, and a real
//! HTTPS client with client certificates. Refusals of bad input are in
//! `api_errors.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/api_world.rs"]
mod api_world;
mod support;

use api_world::{Chain, backend, chain, decrypt, device, world};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use support::client::Client;
use support::guide_pki::ClientKind;

#[test]
fn full_chain_returns_the_same_workspace_key_every_time() {
    let ch = chain();
    let first = decrypt(&backend(), &ch);
    assert_eq!(first.status, 200);
    let key = B64
        .decode(first.json()["workspace_key"].as_str().unwrap())
        .unwrap();
    assert_eq!(key.len(), 32);
    for client in [backend(), device(), backend()] {
        let r = decrypt(&client, &ch);
        assert_eq!(r.status, 200);
        assert_eq!(
            B64.decode(r.json()["workspace_key"].as_str().unwrap())
                .unwrap(),
            key
        );
    }
    // A rewrapped customer key still opens the same chain.
    let r = backend().post(
        "/v1/customer-keys/rewrap",
        &json!({"wrapped_customer_key": ch.c}),
    );
    assert_eq!(r.status, 200);
    let c2 = r.json()["wrapped_customer_key"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(c2, ch.c);
    let r = decrypt(
        &device(),
        &Chain {
            c: c2,
            u: ch.u.clone(),
            w: ch.w.clone(),
        },
    );
    assert_eq!(
        B64.decode(r.json()["workspace_key"].as_str().unwrap())
            .unwrap(),
        key
    );
}

#[test]
fn devices_may_only_decrypt() {
    let ch = chain();
    let d = device();
    for (path, body, what) in [
        ("/v1/customer-keys", json!({}), "create a customer key"),
        (
            "/v1/user-keys",
            json!({"wrapped_customer_key": ch.c}),
            "create a user key",
        ),
        (
            "/v1/workspace-keys",
            json!({"wrapped_customer_key": ch.c, "wrapped_user_key": ch.u}),
            "create a workspace key",
        ),
        (
            "/v1/customer-keys/rewrap",
            json!({"wrapped_customer_key": ch.c}),
            "rewrap a customer key",
        ),
    ] {
        let r = d.post(path, &body);
        assert_eq!((r.status, r.label().as_str()), (403, "forbidden"), "{path}");
        assert_eq!(
            r.json()["message"],
            format!("a device client may not {what}; devices may only decrypt workspace keys"),
            "{path}"
        );
    }
    assert_eq!(decrypt(&d, &ch).status, 200);
}

#[test]
fn a_second_device_alias_works_beside_the_first() {
    let w = world();
    let ch = chain();
    let second = w.node.client(&w.pki, &w.pki.extra_devices[0]);
    let (a, b) = std::thread::scope(|s| {
        let t1 = s.spawn(|| decrypt(&device(), &ch));
        let t2 = s.spawn(|| decrypt(&second, &ch));
        (t1.join().unwrap(), t2.join().unwrap())
    });
    assert_eq!((a.status, b.status), (200, 200));
    assert_eq!(a.json(), b.json());
}

#[test]
fn unpinned_and_invalid_certificates_are_refused_at_the_handshake() {
    let w = world();
    let ca = &w.pki.ca.cert;
    let cases = [
        (
            "no certificate",
            "CertificateRequired",
            w.node.anonymous(&w.pki),
        ),
        ("self-signed", "AccessDenied", {
            let id = w.pki.make_client("selfSigned", ClientKind::SelfSigned);
            Client::new(w.node.addr, ca, Some((&id.cert, &id.key)))
        }),
        ("signed by kmipSigningCA", "AccessDenied", {
            let id = w.pki.make_client("hsmSigned", ClientKind::SignedByHsmCa);
            Client::new(w.node.addr, ca, Some((&id.cert, &id.key)))
        }),
        ("signed by the backend's CA, not pinned", "AccessDenied", {
            let id = w.pki.make_client("notPinned", ClientKind::SignedByClientCa);
            Client::new(w.node.addr, ca, Some((&id.cert, &id.key)))
        }),
        (
            "the kmsClient identity (a private key entry, not pinned)",
            "AccessDenied",
            {
                Client::new(
                    w.node.addr,
                    ca,
                    Some((&w.pki.kms_client.cert, &w.pki.kms_client.key)),
                )
            },
        ),
        (
            "expired pinned certificate",
            "CertificateExpired",
            Client::new(w.node.addr, ca, Some((&w.expired.cert, &w.expired.key))),
        ),
    ];
    for (what, alert, client) in cases {
        let r = client.request("GET", "/v1/health", None);
        // The server's own alert, not a dropped connection after accepting.
        let err = r.expect_err(&format!("{what}: accepted"));
        assert!(
            err.contains(&format!("received fatal alert: {alert}")),
            "{what}: {err}"
        );
    }
    let log = w.node.log_text();
    for reason in ["not-pinned", "expired"] {
        assert!(
            log.contains(&format!("reason=\"{reason}\""))
                || log.contains(&format!("reason={reason}")),
            "no {reason} refusal logged"
        );
    }
    assert!(log.contains("refused client certificate"));
}

#[test]
fn tls_12_and_13_both_work() {
    let w = world();
    let id = (
        w.pki.cmx_backend.cert.as_path(),
        w.pki.cmx_backend.key.as_path(),
    );
    for v in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let c = Client::new(w.node.addr, &w.pki.ca.cert, Some(id)).with_versions(
            &[v],
            &w.pki.ca.cert,
            id,
        );
        assert_eq!(c.request("GET", "/v1/health", None).unwrap().status, 200);
    }
}
