//! The `kmip1` backend through cmx-kms's HTTPS API, against a real PyKMIP
//! server: `hsm init`, the full key chain, rotation then rewrap, decrypt of
//! pre-rotation blobs, single flight (100 concurrent decrypts of one uncached
//! customer key cost PyKMIP one Decrypt), and an HSM outage with recovery.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/kmip_node.rs"]
mod kmip_node;
#[path = "support/pykmip.rs"]
mod pykmip;
mod support;

use kmip_node::setup;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::json;
use support::client::{chain, wait_ready};
use support::guide_pki::GuidePki;
use support::node::{TestNode, cmx_with_config, output_text};

#[test]
fn kmip_backend_through_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, mut hsm) = setup(dir.path());
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let cfg = node_dir.join("cmd.properties");
    std::fs::write(&cfg, props(&pki, &node_dir, hsm.port, 1, 0)).unwrap();

    // hsm check names the missing key; hsm init creates it; check then passes.
    let o = cmx_with_config(&["hsm", "check"], &cfg);
    // A missing master key is for the operator to fix: 78, not 69 (retry).
    assert_eq!(o.status.code(), Some(78), "{}", output_text(&o));
    assert!(
        output_text(&o).to_lowercase().contains("not found")
            || output_text(&o).contains("hsm init"),
        "{}",
        output_text(&o)
    );
    // A node started before the key exists: it starts anyway, and readiness
    // says what is missing in plain words.
    let node = TestNode::start_with(
        &node_dir,
        |p, m| props(&pki, &node_dir, hsm.port, p, m),
        &[],
    );
    let b = node.client(&pki, &pki.cmx_backend);
    let d = node.client(&pki, &pki.cmx_device);
    wait_ready(&b, "unavailable");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let detail = b.request("GET", "/v1/ready", None).unwrap().json()["detail"].to_string();
        if detail.contains("cmx-api-master") && detail.to_lowercase().contains("not found") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness does not name the missing key: {detail}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let o = cmx_with_config(&["hsm", "init"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let o = cmx_with_config(&["hsm", "check"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let o = cmx_with_config(&["check-config"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));

    wait_ready(&b, "ready");
    let before = chain(&b);
    let key = d.post("/v1/workspace-keys/decrypt", &before).json()["workspace_key"].clone();
    assert!(key.is_string());

    // Rotate the master key; the node picks the new version up on reload.
    let o = cmx_with_config(&["hsm", "rotate"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    node.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node.log_text().contains("configuration reloaded") {
        assert!(Instant::now() < deadline, "no reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = b.post(
        "/v1/customer-keys/rewrap",
        &json!({"wrapped_customer_key": before["wrapped_customer_key"]}),
    );
    assert_eq!(r.status, 200);
    let rewrapped = r.json()["wrapped_customer_key"].clone();
    assert_ne!(rewrapped, before["wrapped_customer_key"]);
    let mut after = before.clone();
    after["wrapped_customer_key"] = rewrapped;
    for body in [&before, &after] {
        let r = d.post("/v1/workspace-keys/decrypt", body);
        assert_eq!(
            r.status, 200,
            "pre-rotation and rewrapped blobs both decrypt"
        );
        assert_eq!(r.json()["workspace_key"], key);
    }
    drop(node);

    // Single flight: a fresh node (empty cache), 100 concurrent decrypts of
    // one customer key, exactly one Decrypt at the HSM.
    let fresh_dir = dir.path().join("fresh");
    let fresh = TestNode::start_with(
        &fresh_dir,
        |p, m| props(&pki, &fresh_dir, hsm.port, p, m),
        &[],
    );
    let fd = fresh.client(&pki, &pki.cmx_backend);
    wait_ready(&fd, "ready");
    let decrypts_before = hsm.operations_logged("Decrypt");
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..100)
            .map(|_| s.spawn(|| fd.post("/v1/workspace-keys/decrypt", &after).status))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // PyKMIP logs an operation before it answers, so every Decrypt behind
    // these 200s is in its log by now.
    assert_eq!(
        hsm.operations_logged("Decrypt") - decrypts_before,
        1,
        "one HSM Decrypt for 100 requests"
    );

    // Outage: fast 503 with Retry-After, readiness unavailable; recovery
    // after PyKMIP restarts, without restarting cmx-kms.
    hsm.stop();
    let new_key = || fd.post("/v1/customer-keys", &json!({}));
    let r = new_key();
    assert_eq!(
        (r.status, r.label().as_str()),
        (503, "backend-unavailable"),
        "{:?}",
        r.json()
    );
    fresh.assert_backend_refused(&r);
    assert!(r.header("retry-after").is_some());
    wait_ready(&fd, "unavailable");
    // Cached customer keys still serve decrypts while the HSM is down.
    assert_eq!(fd.post("/v1/workspace-keys/decrypt", &after).status, 200);
    hsm.start_again();
    wait_ready(&fd, "ready");
    assert_eq!(new_key().status, 201);
}

fn props(pki: &GuidePki, node_dir: &Path, hsm_port: u16, port: u16, mport: u16) -> String {
    kmip_node::props(pki, node_dir, hsm_port, port, mport, "")
}
