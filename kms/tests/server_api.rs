//! The mTLS server and API v1, end to end: a real `cmx-kms serve` with a
//! keystore made by openssl and keytool as the install guide does, and a real
//! HTTPS client with client certificates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;
use support::client::Client;
use support::guide_pki::{ClientKind, GuidePki, Identity, PkiOptions, keytool};
use support::node::TestNode;

struct World {
    _dir: tempfile::TempDir,
    pki: GuidePki,
    node: TestNode,
    expired: Identity,
}

/// One PKI and one node for every test here (keytool is slow).
fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let opts = PkiOptions {
            extra_device_aliases: vec!["cmxDevice20190512".into()],
            ..PkiOptions::default()
        };
        std::fs::create_dir_all(dir.path().join("pki")).unwrap();
        let pki = GuidePki::generate(&dir.path().join("pki"), opts);
        // A pinned but expired device certificate.
        let expired = pki.make_client("expiredDevice", ClientKind::Expired);
        keytool(
            &pki.dir,
            &format!(
                "-import -noprompt -alias cmxDeviceExpired -file {} -keystore {} -storepass {}",
                expired.cert.display(),
                pki.keystore.display(),
                pki.store_password
            ),
        );
        let node = TestNode::start_for_process(
            &pki,
            &dir.path().join("node"),
            "kms.server.max-request-bytes=4096\n",
        );
        World {
            _dir: dir,
            pki,
            node,
            expired,
        }
    })
}

fn backend() -> Client {
    let w = world();
    w.node.client(&w.pki, &w.pki.cmx_backend)
}

fn device() -> Client {
    let w = world();
    w.node.client(&w.pki, &w.pki.cmx_device)
}

struct Chain {
    c: String,
    u: String,
    w: String,
}

fn chain() -> Chain {
    let b = backend();
    let r = b.post("/v1/customer-keys", &json!({}));
    assert_eq!(r.status, 201, "{:?}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    let c = v["wrapped_customer_key"].as_str().unwrap().to_owned();
    let key_id = v["key_id"].as_str().unwrap();
    assert_eq!(key_id.len(), 32);
    assert!(key_id.chars().all(|ch| ch.is_ascii_hexdigit()));
    let r = b.post("/v1/user-keys", &json!({"wrapped_customer_key": c}));
    assert_eq!(r.status, 201);
    let u = r.json()["wrapped_user_key"].as_str().unwrap().to_owned();
    let r = b.post(
        "/v1/workspace-keys",
        &json!({"wrapped_customer_key": c, "wrapped_user_key": u}),
    );
    assert_eq!(r.status, 201);
    let w = r.json()["wrapped_workspace_key"]
        .as_str()
        .unwrap()
        .to_owned();
    Chain { c, u, w }
}

fn decrypt(client: &Client, ch: &Chain) -> support::client::Resp {
    client.post(
        "/v1/workspace-keys/decrypt",
        &json!({"wrapped_customer_key": ch.c, "wrapped_user_key": ch.u, "wrapped_workspace_key": ch.w}),
    )
}

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
    for (path, body) in [
        ("/v1/customer-keys", json!({})),
        ("/v1/user-keys", json!({"wrapped_customer_key": ch.c})),
        (
            "/v1/workspace-keys",
            json!({"wrapped_customer_key": ch.c, "wrapped_user_key": ch.u}),
        ),
        (
            "/v1/customer-keys/rewrap",
            json!({"wrapped_customer_key": ch.c}),
        ),
    ] {
        let r = d.post(path, &body);
        assert_eq!((r.status, r.label().as_str()), (403, "forbidden"), "{path}");
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

#[test]
fn invalid_wrapped_keys_are_rejected() {
    let ch = chain();
    let raw = |s: &str| B64.decode(s).unwrap();
    let enc = |b: &[u8]| B64.encode(b);
    let mut flipped = raw(&ch.w);
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let mut other_version = raw(&ch.c);
    other_version[4] = 9;
    let truncated = raw(&ch.u);
    let cases = [
        (
            "truncated user key",
            Chain {
                c: ch.c.clone(),
                u: enc(&truncated[..truncated.len() / 2]),
                w: ch.w.clone(),
            },
        ),
        (
            "flipped bit",
            Chain {
                c: ch.c.clone(),
                u: ch.u.clone(),
                w: enc(&flipped),
            },
        ),
        (
            "user key as workspace key",
            Chain {
                c: ch.c.clone(),
                u: ch.u.clone(),
                w: ch.u.clone(),
            },
        ),
        (
            "customer key of another format version",
            Chain {
                c: enc(&other_version),
                u: ch.u.clone(),
                w: ch.w.clone(),
            },
        ),
    ];
    // Every cause answers alike: no answer tells which check a blob failed.
    let mut messages = std::collections::BTreeSet::new();
    for (what, bad) in cases {
        let r = decrypt(&backend(), &bad);
        assert_eq!(
            (r.status, r.label().as_str()),
            (422, "invalid-wrapped-key"),
            "{what}: {:?}",
            r.json()
        );
        messages.insert(r.json()["message"].as_str().unwrap().to_owned());
    }
    assert_eq!(messages.len(), 1, "{messages:?}");
    // The operator finds the cause in the server log under the request id.
    let r = decrypt(
        &backend(),
        &Chain {
            c: enc(&other_version),
            u: ch.u.clone(),
            w: ch.w.clone(),
        },
    );
    let id = r.header("x-request-id").unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let log = world().node.log_text();
        if log
            .lines()
            .any(|l| l.contains(&id) && l.contains("format version 9"))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no log line names the cause under request id {id}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn bad_requests() {
    let b = backend();
    let bad = |body: &[u8]| b.request("POST", "/v1/user-keys", Some(body)).unwrap();
    for (what, body) in [
        ("malformed JSON", b"{\"wrapped_customer_key\": ".as_slice()),
        ("missing field", b"{}".as_slice()),
        (
            "unknown field",
            b"{\"wrapped_customer_key\":\"AAAA\",\"x\":1}".as_slice(),
        ),
        (
            "bad base64",
            b"{\"wrapped_customer_key\":\"***\"}".as_slice(),
        ),
    ] {
        let r = bad(body);
        assert_eq!(
            (r.status, r.label().as_str()),
            (400, "bad-request"),
            "{what}"
        );
        assert!(r.json()["message"].as_str().unwrap().len() > 10);
    }
    let big = vec![b' '; 10_000];
    let r = b.request("POST", "/v1/user-keys", Some(&big)).unwrap();
    assert_eq!((r.status, r.label().as_str()), (413, "payload-too-large"));
    // A declared length over the limit is refused before the body is sent.
    let r = b
        .request_with(
            "POST",
            "/v1/user-keys",
            None,
            &[
                ("Content-Length", "100000000"),
                ("Content-Type", "application/json"),
            ],
        )
        .unwrap();
    assert_eq!(r.status, 413);
    let r = b.request("GET", "/v1/nothing", None).unwrap();
    assert_eq!((r.status, r.label().as_str()), (404, "not-found"));
    let r = b.request("GET", "/v1/customer-keys", None).unwrap();
    assert_eq!((r.status, r.label().as_str()), (405, "method-not-allowed"));
    let r = b
        .request_with(
            "POST",
            "/v1/customer-keys",
            Some(b"{}"),
            &[("Content-Type", "text/plain")],
        )
        .unwrap();
    assert_eq!(
        (r.status, r.label().as_str()),
        (415, "unsupported-media-type")
    );
}

#[test]
fn responses_agree_with_the_openapi_document() {
    let doc: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
    let ch = chain();
    let b = backend();
    let calls = [
        (
            "/v1/customer-keys",
            "post",
            b.post("/v1/customer-keys", &json!({})),
        ),
        (
            "/v1/user-keys",
            "post",
            b.post("/v1/user-keys", &json!({"wrapped_customer_key": ch.c})),
        ),
        ("/v1/workspace-keys/decrypt", "post", decrypt(&b, &ch)),
        (
            "/v1/health",
            "get",
            b.request("GET", "/v1/health", None).unwrap(),
        ),
        (
            "/v1/ready",
            "get",
            b.request("GET", "/v1/ready", None).unwrap(),
        ),
        (
            "/v1/user-keys",
            "post",
            b.request("POST", "/v1/user-keys", Some(b"{")).unwrap(),
        ),
    ];
    for (path, method, r) in calls {
        let responses = &doc["paths"][path][method]["responses"];
        let spec = &responses[r.status.to_string()];
        assert!(
            spec.is_object(),
            "{method} {path} answered {} which the document does not list",
            r.status
        );
        if let Some(required) = spec["content"]["application/json"]["schema"]["required"].as_array()
        {
            for field in required {
                assert!(
                    r.json().get(field.as_str().unwrap()).is_some(),
                    "{path}: {field} missing"
                );
            }
        }
        assert!(r.header("x-request-id").is_some());
    }
}

#[test]
fn no_key_material_or_password_in_logs_or_audit() {
    let w = world();
    let ch = chain();
    let r = decrypt(&device(), &ch);
    let key_b64 = r.json()["workspace_key"].as_str().unwrap().to_owned();
    let key = B64.decode(&key_b64).unwrap();
    let key_hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    // The request's log line, waited for (it may be written after the answer).
    let id = r.header("x-request-id").unwrap().to_owned();
    support::wait_for(
        "the request's log line",
        std::time::Duration::from_secs(30),
        || w.node.log_text().contains(&id),
    );
    let log = w.node.log_text();
    let audit = std::fs::read_to_string(&w.node.audit).unwrap();
    assert!(log.contains("decrypt-workspace-key"), "trace log captured");
    for (name, text) in [("log", &log), ("audit", &audit)] {
        assert!(
            !text.contains(&key_b64),
            "workspace key (base64) in the {name}"
        );
        assert!(
            !text.contains(&key_hex),
            "workspace key (hex) in the {name}"
        );
        assert!(
            !text.contains(&w.pki.store_password),
            "keystore password in the {name}"
        );
    }
}
