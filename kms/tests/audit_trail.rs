//! The audit trail against a real `cmx-kms serve`: every key operation and
//! refusal recorded and verifiable (tampering found), and key operations
//! refused while the trail cannot be written.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{pki, wait_for};

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::client::{Client, chain};
use support::guide_pki::ClientKind;
use support::node::TestNode;

#[test]
fn audit_records_operations_and_refusals_and_verify_finds_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let node = TestNode::start(&pki, &dir.path().join("node"), "");
    let b = node.client(&pki, &pki.cmx_backend);
    let d = node.client(&pki, &pki.cmx_device);
    let body = chain(&b);
    let key = d.post("/v1/workspace-keys/decrypt", &body).json()["workspace_key"]
        .as_str()
        .unwrap()
        .to_owned();
    b.post(
        "/v1/customer-keys/rewrap",
        &json!({"wrapped_customer_key": body["wrapped_customer_key"]}),
    );
    assert_eq!(d.post("/v1/customer-keys", &json!({})).status, 403);
    assert_eq!(
        b.post("/v1/user-keys", &json!({"wrapped_customer_key": "AAAA"}))
            .status,
        422
    );
    let stranger = pki.make_client("stranger", ClientKind::SignedByClientCa);
    let _ = Client::new(
        node.addr,
        &pki.ca.cert,
        Some((&stranger.cert, &stranger.key)),
    )
    .request("GET", "/v1/health", None);
    // The refused handshake is an aggregated notice, written by the audit
    // thread once woken: wait for it instead of a fixed pause.
    wait_for(
        "the refused handshake's record",
        Duration::from_secs(30),
        || std::fs::read_to_string(&node.audit).is_ok_and(|a| a.contains("\"tls-handshake\"")),
    );

    let text = std::fs::read_to_string(&node.audit).unwrap();
    let recs: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |op: &str, outcome: &str| {
        recs.iter()
            .find(|r| r["operation"] == op && r["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {op}/{outcome} record in\n{text}"))
    };
    for op in [
        "create-customer-key",
        "create-user-key",
        "create-workspace-key",
        "decrypt-workspace-key",
        "rewrap-customer-key",
    ] {
        let r = find(op, "ok");
        assert_eq!(r["backend"], "soft");
        assert_eq!(r["key_id"].as_str().unwrap().len(), 32, "{r}");
        for field in [
            "time",
            "request_id",
            "client_subject",
            "client_serial",
            "client_fingerprint",
            "role",
            "latency_us",
            "seq",
            "prev",
        ] {
            assert!(!r[field].is_null(), "{op}: {field} missing");
        }
    }
    assert_eq!(find("decrypt-workspace-key", "ok")["role"], "device");
    assert!(
        ["hit", "miss"].contains(
            &find("decrypt-workspace-key", "ok")["cache"]
                .as_str()
                .unwrap()
        )
    );
    assert_eq!(find("create-customer-key", "forbidden")["role"], "device");
    find("create-user-key", "invalid-wrapped-key");
    let refused = find("tls-handshake", "refused-not-pinned");
    assert!(
        refused["client_subject"]
            .as_str()
            .unwrap()
            .contains("stranger")
    );
    assert!(!text.contains(&key), "no key material in the audit trail");

    let verify = |path: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_cmx-kms"))
            .args(["audit", "verify"])
            .arg(path)
            .output()
            .unwrap()
    };
    let out = verify(&node.audit);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = text.lines().collect();
    let deleted = dir.path().join("deleted.log");
    std::fs::write(
        &deleted,
        lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, l)| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let out = verify(&deleted);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stdout).contains("line 3: sequence number 3, expected 2"));
    let edited = dir.path().join("edited.log");
    std::fs::write(
        &edited,
        text.replacen("\"role\":\"device\"", "\"role\":\"backend\"", 1),
    )
    .unwrap();
    let out = verify(&edited);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stdout).contains("hash chain broken"));
}

#[test]
fn key_operations_are_refused_when_the_audit_trail_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let ndir = dir.path().join("node");
    // /dev/full fails every write with ENOSPC: a full disk.
    let node = TestNode::start_with(
        &ndir,
        |p, m| {
            TestNode::properties(&pki, &ndir, p, m, "kms.readiness.interval=200ms\n").replace(
                &format!("kms.audit.file={}", ndir.join("audit.log").display()),
                "kms.audit.file=/dev/full",
            )
        },
        &[],
    );
    let b = node.client(&pki, &pki.cmx_backend);
    // Nothing written yet: nothing known to fail.
    support::client::wait_ready(&b, "ready");
    let r = b.post("/v1/customer-keys", &json!({}));
    assert_eq!((r.status, r.label().as_str()), (503, "audit-unavailable"));
    assert!(
        r.json().get("wrapped_customer_key").is_none(),
        "no key leaves unaudited"
    );
    assert_eq!(b.request("GET", "/v1/health", None).unwrap().status, 200);
    let m = node.metrics();
    assert!(m.contains("cmx_kms_audit_failures_total 1"), "{m}");
    assert!(node.log_text().contains("audit record not written"));
    // Balancers must send clients elsewhere: the canary finds the trail
    // unwritable (its `audit-resumed` record fails too) and says why.
    support::client::wait_ready(&b, "unavailable");
    let ready = b.request("GET", "/v1/ready", None).unwrap();
    assert_eq!(ready.status, 503);
    let detail = ready.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("audit trail cannot be written"), "{detail}");
}
