//! The `VAULT` backend through cmx-kms's HTTPS API, against a real OpenBao
//! dev server: `hsm init` in a real namespace with the guide's policy, the
//! full key chain, rotation in OpenBao plus rewrap, decrypt of pre-rotation
//! blobs, a clear error after `min_decryption_version` is raised, and an
//! outage with recovery after OpenBao restarts, without restarting cmx-kms.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/openbao.rs"]
mod openbao;
mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use openbao::{GUIDE_POLICY, OpenBao};
use serde_json::json;
use support::client::{chain, wait_ready};
use support::guide_pki::{GuidePki, PkiOptions};
use support::node::{TestNode, cmx_with_config, output_text};

const NS: Option<&str> = Some("engineering");
const KEY: &str = "kms-kek";
/// Namespace, Transit and the guide's policy; returns a token holding it.
async fn provision(bao: &OpenBao) -> String {
    bao.create_namespace("engineering").await;
    bao.enable_transit(NS).await;
    bao.write_policy(NS, "kms-app", GUIDE_POLICY).await;
    bao.create_token(NS, json!({"policies": ["kms-app"], "ttl": "1h"}))
        .await
}

fn write_token(path: &Path, token: &str) {
    std::fs::write(path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn props(pki: &GuidePki, dir: &Path, vault: &str, port: u16, mport: u16) -> String {
    TestNode::properties(pki, dir, port, mport, "").replace("kms.hsm.protocol=soft\n", "")
        + &format!(
            "kms.hsm.protocol=VAULT\nkms.hsm.server.url={vault}\nkms.hsm.vault.namespace=engineering\n\
             kms.hsm.vault.token.file={}\nkms.hsm.key.name={KEY}\nkms.cache.ttl=0\n\
             kms.hsm.request-timeout=2s\nkms.hsm.connect-timeout=2s\n",
            dir.join("vault-token").display()
        )
}

#[test]
fn vault_backend_through_the_api() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut bao = rt.block_on(OpenBao::start());
    let token = rt.block_on(provision(&bao));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pki")).unwrap();
    let pki = GuidePki::generate(&dir.path().join("pki"), PkiOptions::default());
    let node_dir = dir.path().join("node");
    std::fs::create_dir_all(&node_dir).unwrap();
    let token_file = node_dir.join("vault-token");
    write_token(&token_file, &token);
    let cfg = node_dir.join("cmd.properties");
    std::fs::write(&cfg, props(&pki, &node_dir, &bao.addr(), 1, 0)).unwrap();

    let o = cmx_with_config(&["hsm", "check"], &cfg);
    // A missing master key is for the operator to fix: 78, not 69 (retry).
    assert_eq!(o.status.code(), Some(78), "{}", output_text(&o));
    assert!(output_text(&o).contains("not found"), "{}", output_text(&o));
    let o = cmx_with_config(&["hsm", "init"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let o = cmx_with_config(&["hsm", "check"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));

    let node = TestNode::start_with(
        &node_dir,
        |p, m| props(&pki, &node_dir, &bao.addr(), p, m),
        &[],
    );
    assert!(
        node.log_text().contains("plain http"),
        "loopback http warns at start"
    );
    let b = node.client(&pki, &pki.cmx_backend);
    let d = node.client(&pki, &pki.cmx_device);
    wait_ready(&b, "ready");
    let before = chain(&b);
    let key = d.post("/v1/workspace-keys/decrypt", &before).json()["workspace_key"].clone();
    assert!(key.is_string());

    // Rotation, then rewrap moves the blob to v2; both decrypt.
    // Rotation with `cmx-kms hsm rotate`, under the guide's policy.
    let o = cmx_with_config(&["hsm", "rotate"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("version 1 -> 2"),
        "{}",
        output_text(&o)
    );
    let r = b.post(
        "/v1/customer-keys/rewrap",
        &json!({"wrapped_customer_key": before["wrapped_customer_key"]}),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    let mut after = before.clone();
    after["wrapped_customer_key"] = r.json()["wrapped_customer_key"].clone();
    for body in [&before, &after] {
        let r = d.post("/v1/workspace-keys/decrypt", body);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["workspace_key"], key);
    }

    // min_decryption_version=2: the v1 blob is refused, the operator reads why.
    rt.block_on(bao.set_min_decryption_version(NS, KEY, 2));
    let r = d.post("/v1/workspace-keys/decrypt", &before);
    assert_eq!(
        (r.status, r.label().as_str()),
        (502, "backend-error"),
        "{:?}",
        r.json()
    );
    assert!(
        !r.json()["message"]
            .as_str()
            .unwrap()
            .contains("min_decryption_version"),
        "5xx says nothing internal"
    );
    // Logged before the answer was sent.
    assert!(
        node.log_text().contains("min_decryption_version"),
        "the log tells the operator"
    );
    assert_eq!(d.post("/v1/workspace-keys/decrypt", &after).status, 200);

    // Outage and recovery. The dev server forgets everything on restart, so
    // the test provisions it again and writes the new token where the node
    // reads it (as Vault Agent would), then runs hsm init.
    bao.stop();
    let r = b.post("/v1/customer-keys", &json!({}));
    assert_eq!((r.status, r.label().as_str()), (503, "backend-unavailable"));
    node.assert_backend_refused(&r);
    wait_ready(&b, "unavailable");
    rt.block_on(bao.restart());
    write_token(&token_file, &rt.block_on(provision(&bao)));
    let o = cmx_with_config(&["hsm", "init"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    wait_ready(&b, "ready");
    let fresh = chain(&b);
    assert_eq!(d.post("/v1/workspace-keys/decrypt", &fresh).status, 200);
}
