//! Wrapped keys a client forges get nothing, on a node whose real PyKMIP HSM
//! is pinned to KMIP 1.2 (so wraps are AES-CBC, the mode that invites a
//! padding oracle):
//! - the padding-oracle attack itself, run with the device certificate,
//!   gets one answer for every guess and the HSM decrypts none of them;
//! - a blob naming another HSM key is refused before the HSM is asked;
//! - every cause of refusal answers alike (status, label, message) and in
//!   like time (medians of interleaved tries compared with each other);
//! - legacy unauthenticated CBC blobs open only through a backend rewrap;
//! - a burst of refusals is counted per client and warned about once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/kmip_node.rs"]
mod kmip_node;
#[path = "support/pykmip.rs"]
mod pykmip;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use cmx_kms::backend::WrapAlgorithm;
use cmx_kms::envelope::{CustomerEnvelope, Envelope};
use serde_json::{Value, json};
use support::client::{KeepAlive, Resp, chain, wait_ready};
use support::node::{TestNode, cmx_with_config, output_text};

/// KMIP 1.2 (AES-CBC wraps); no canary during the test (its HSM calls would
/// blur the counts); no rate limit (the attack sends hundreds of requests).
const EXTRA: &str = "kms.hsm.kmip.version=1.2\nkms.readiness.interval=1h\n\
                     kms.limits.device.rate=0\nkms.limits.backend.rate=0\n";

fn decode(v: &Value) -> CustomerEnvelope {
    let bytes = B64.decode(v.as_str().unwrap()).unwrap();
    Envelope::decode_customer(&bytes).unwrap()
}

fn encode(env: &CustomerEnvelope) -> Value {
    Value::String(B64.encode(env.encode().unwrap()))
}

fn flip(v: &Value, byte_from_end: usize) -> Value {
    let mut bytes = B64.decode(v.as_str().unwrap()).unwrap();
    let i = bytes.len() - 1 - byte_from_end;
    bytes[i] ^= 0x01;
    Value::String(B64.encode(bytes))
}

/// What a client can observe of an answer, besides time.
fn answer(r: &Resp) -> (u16, String, String) {
    (
        r.status,
        r.label(),
        r.json()["message"].as_str().unwrap_or_default().to_owned(),
    )
}

fn hsm_operations(hsm: &pykmip::PyKmip) -> usize {
    hsm.log()
        .lines()
        .filter(|l| l.contains("Processing operation: "))
        .count()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[test]
fn forged_wrapped_keys_get_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, hsm) = kmip_node::setup(dir.path());
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let cfg = node_dir.join("cmd.properties");
    let props = |p, m| kmip_node::props(&pki, &node_dir, hsm.port, p, m, EXTRA);
    std::fs::write(&cfg, props(1, 0)).unwrap();
    let o = cmx_with_config(&["hsm", "init"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    // Another key the kmsClient identity may use at the same HSM.
    let other_cfg = node_dir.join("other.properties");
    std::fs::write(
        &other_cfg,
        props(1, 0).replace("cmx-api-master", "some-other-key"),
    )
    .unwrap();
    let o = cmx_with_config(&["hsm", "init"], &other_cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let text = output_text(&o);
    let other_uid = text
        .split("unique identifier ")
        .nth(1)
        .and_then(|t| t.split_whitespace().next())
        .expect("hsm init names the identifier")
        .to_owned();

    let node = TestNode::start_with(&node_dir, props, &[]);
    let b = node.client(&pki, &pki.cmx_backend);
    let d = node.client(&pki, &pki.cmx_device);
    wait_ready(&b, "ready");
    let body = chain(&b);
    let other_chain = chain(&b);
    let real = decode(&body["wrapped_customer_key"]);
    assert_eq!(real.master.algorithm, WrapAlgorithm::AesCbcPkcs5HmacSha256);
    assert_eq!(
        (real.master.iv.len(), real.master.tag.len()),
        (16, 32),
        "CBC wraps carry a 32-byte tag"
    );
    let ok = d.post("/v1/workspace-keys/decrypt", &body);
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    let workspace_key = ok.json()["workspace_key"].clone();
    let mut conn = d.keep_alive().unwrap();
    let send = |conn: &mut KeepAlive, body: &Value| {
        conn.post("/v1/workspace-keys/decrypt", body)
            .expect("the connection stays open")
    };
    let attack_start = Instant::now();

    // 1. The padding-oracle attack on the last byte of the key's first block:
    // send that block alone, under every value of the IV's last byte. With
    // an oracle, the one guess that makes valid padding answers differently.
    // Both framings: the legacy unauthenticated one, and the tagged one with
    // a guessed tag.
    let decrypts_before = hsm.operations_logged("Decrypt");
    for legacy in [true, false] {
        let mut answers: BTreeMap<(u16, String, String), Vec<u8>> = BTreeMap::new();
        for guess in 0..=255u8 {
            let mut forged = real.clone();
            forged.master.iv[15] ^= guess;
            forged.master.ciphertext.truncate(16);
            if legacy {
                forged.master.algorithm = WrapAlgorithm::AesCbcPkcs5;
                forged.master.tag.clear();
            } else {
                forged.master.tag = vec![guess; 32];
            }
            let mut req = body.clone();
            req["wrapped_customer_key"] = encode(&forged);
            let r = send(&mut conn, &req);
            answers.entry(answer(&r)).or_default().push(guess);
        }
        assert_eq!(
            answers.len(),
            1,
            "legacy={legacy}: the answers tell guesses apart (a padding oracle): {answers:?}"
        );
        let (status, label, _) = answers.keys().next().unwrap().clone();
        assert_eq!((status, label.as_str()), (422, "invalid-wrapped-key"));
    }
    assert_eq!(
        hsm.operations_logged("Decrypt"),
        decrypts_before,
        "the HSM decrypted material a client forged"
    );

    // 2. A blob naming another key at the same HSM is refused before the HSM
    // is asked anything about it. (The node may refresh its list of master
    // key versions by name, at most once per 10 s; never Encrypt or Decrypt.)
    let (ops_before, locates_before) = (hsm_operations(&hsm), hsm.operations_logged("Locate"));
    let other_start = Instant::now();
    for gcm in [false, true] {
        let mut forged = real.clone();
        forged.master.key_id = other_uid.clone();
        if gcm {
            forged.master.algorithm = WrapAlgorithm::AesGcm;
            forged.master.iv.truncate(12);
            forged.master.tag.truncate(16);
        }
        let mut req = body.clone();
        req["wrapped_customer_key"] = encode(&forged);
        for _ in 0..10 {
            let r = send(&mut conn, &req);
            assert_eq!(r.label(), "invalid-wrapped-key", "gcm={gcm}");
        }
    }
    let refreshes = hsm.operations_logged("Locate") - locates_before;
    let allowed = 1 + other_start.elapsed().as_secs() as usize / 10;
    assert!(
        refreshes <= allowed,
        "{refreshes} Locate calls for 20 refusals"
    );
    let new_ops = hsm_operations(&hsm) - ops_before;
    let by_name = refreshes * 3; // Locate + Get Attributes of each version (2 here)
    assert!(
        new_ops <= by_name,
        "the HSM was asked {new_ops} times for a blob naming key {other_uid} (refreshes: {refreshes})"
    );
    assert_eq!(hsm.operations_logged("Decrypt"), decrypts_before);

    // 3. Every cause of refusal: one answer, and like time.
    let mut legacy = real.clone();
    legacy.master.algorithm = WrapAlgorithm::AesCbcPkcs5;
    legacy.master.tag.clear();
    let mut unknown = real.clone();
    unknown.master.key_id = "999999".into();
    let c = &body["wrapped_customer_key"];
    let mut truncated = B64.decode(c.as_str().unwrap()).unwrap();
    truncated.pop();
    let with = |field: &str, v: Value| {
        let mut req = body.clone();
        req[field] = v;
        req
    };
    let cust = "wrapped_customer_key";
    let causes: Vec<(&str, Value)> = vec![
        (
            "truncated",
            with(cust, Value::String(B64.encode(&truncated))),
        ),
        ("legacy CBC", with(cust, encode(&legacy))),
        ("ciphertext bit", with(cust, flip(c, 40))),
        ("tag bit", with(cust, flip(c, 60))),
        ("unknown key id", with(cust, encode(&unknown))),
        (
            "user key as customer key",
            with(cust, body["wrapped_user_key"].clone()),
        ),
        (
            "user key bit",
            with("wrapped_user_key", flip(&body["wrapped_user_key"], 3)),
        ),
        (
            "workspace key bit",
            with(
                "wrapped_workspace_key",
                flip(&body["wrapped_workspace_key"], 3),
            ),
        ),
        (
            "other customer's user key",
            with("wrapped_user_key", other_chain["wrapped_user_key"].clone()),
        ),
    ];
    let first = answer(&send(&mut conn, &causes[0].1));
    assert_eq!((first.0, first.1.as_str()), (422, "invalid-wrapped-key"));
    for (name, req) in &causes {
        assert_eq!(answer(&send(&mut conn, req)), first, "cause: {name}");
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); causes.len()];
    for round in 0..150 {
        for k in 0..causes.len() {
            let i = (round + k) % causes.len();
            let t = Instant::now();
            let r = send(&mut conn, &causes[i].1);
            times[i].push(t.elapsed());
            assert_eq!(r.status, 422);
        }
    }
    let medians: Vec<(&str, Duration)> = causes
        .iter()
        .zip(times)
        .map(|((name, _), t)| (*name, median(t)))
        .collect();
    let fastest = medians.iter().map(|m| m.1).min().unwrap();
    let slowest = medians.iter().map(|m| m.1).max().unwrap();
    println!("median time to refusal by cause: {medians:?}");
    assert!(
        slowest.as_secs_f64() <= 1.5 * fastest.as_secs_f64(),
        "refusals differ in time by cause: {medians:?}"
    );
    assert_eq!(hsm.operations_logged("Decrypt"), decrypts_before);

    // 4. A legacy unauthenticated blob opens only through a backend rewrap,
    // which moves it to an authenticated wrap of the same customer key.
    let r = b.post(
        "/v1/user-keys",
        &json!({"wrapped_customer_key": encode(&legacy)}),
    );
    assert_eq!(answer(&r), first, "backend create from a legacy blob");
    let r = d.post(
        "/v1/customer-keys/rewrap",
        &json!({"wrapped_customer_key": encode(&legacy)}),
    );
    assert_eq!(r.status, 403, "devices never rewrap");
    let r = b.post(
        "/v1/customer-keys/rewrap",
        &json!({"wrapped_customer_key": encode(&legacy)}),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let moved = r.json()["wrapped_customer_key"].clone();
    assert_eq!(
        decode(&moved).master.algorithm,
        WrapAlgorithm::AesCbcPkcs5HmacSha256
    );
    let r = d.post("/v1/workspace-keys/decrypt", &with(cust, moved));
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["workspace_key"], workspace_key);
    // A forged legacy blob (valid padding is a matter of luck) is not
    // rewrapped into a short key either: same answer as any refusal.
    let mut short = legacy.clone();
    short.master.ciphertext.truncate(16);
    let r = b.post(
        "/v1/customer-keys/rewrap",
        &json!({"wrapped_customer_key": encode(&short)}),
    );
    assert_eq!(answer(&r), first);

    // 5. The burst is visible: counted per client, one warning per window.
    let metrics = node.metrics();
    let count: f64 = metrics
        .lines()
        .find(|l| l.starts_with("cmx_kms_invalid_wrapped_keys_total{client=\"cmxDevice\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no per-client refusal counter:\n{metrics}"));
    assert!(count >= 512.0 + 20.0 + 150.0 * 9.0, "{count}");
    let warnings = node
        .log_text()
        .matches("a burst of refused wrapped keys")
        .count();
    let windows = 1 + attack_start.elapsed().as_secs() as usize / 60;
    assert!(
        (1..=windows).contains(&warnings),
        "{warnings} burst warnings in {windows} window(s)"
    );
}
