//! The API v1's refusals, end to end against a real `cmx-kms serve` (the
//! same PKI and node as `server_api.rs`): invalid wrapped keys, bad
//! requests, every answer against the OpenAPI document, and no key material
//! or password in the logs or the audit trail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/api_world.rs"]
mod api_world;
mod support;

use api_world::{Chain, backend, chain, decrypt, device, world};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::json;

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
    assert_eq!(
        r.header("allow"),
        Some("POST"),
        "a 405 names what its path takes"
    );
    let r = b.request("POST", "/v1/health", Some(b"{}")).unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // HEAD is GET's head without the body.
    let get = b.request("GET", "/v1/health", None).unwrap();
    let head = b.request("HEAD", "/v1/health", None).unwrap();
    assert_eq!((get.status, head.status), (200, 200));
    assert!(head.body.is_empty(), "HEAD sends no body");
    assert_eq!(head.header("content-length"), get.header("content-length"));
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
