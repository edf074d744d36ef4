//! One guide PKI and one node per test binary (keytool is slow), and the
//! key chain helpers the API tests share; included with `#[path]` by
//! `server_api.rs` and `api_errors.rs` (which both have `mod support;`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use serde_json::json;

use crate::support::client::{Client, Resp};
use crate::support::guide_pki::{ClientKind, GuidePki, Identity, PkiOptions, keytool};
use crate::support::node::TestNode;

pub struct World {
    pub pki: GuidePki,
    pub node: TestNode,
    pub expired: Identity,
}

/// One PKI and one node for every test here (keytool is slow).
pub fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let dir = crate::support::scratch::for_process();
        let opts = PkiOptions {
            extra_device_aliases: vec!["cmxDevice20190512".into()],
            ..PkiOptions::default()
        };
        std::fs::create_dir_all(dir.join("pki")).unwrap();
        let pki = GuidePki::generate(&dir.join("pki"), opts);
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
            &dir.join("node"),
            "kms.server.max-request-bytes=4096\n",
        );
        World { pki, node, expired }
    })
}

pub fn backend() -> Client {
    let w = world();
    w.node.client(&w.pki, &w.pki.cmx_backend)
}

pub fn device() -> Client {
    let w = world();
    w.node.client(&w.pki, &w.pki.cmx_device)
}

pub struct Chain {
    pub c: String,
    pub u: String,
    pub w: String,
}

pub fn chain() -> Chain {
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

pub fn decrypt(client: &Client, ch: &Chain) -> Resp {
    client.post(
        "/v1/workspace-keys/decrypt",
        &json!({"wrapped_customer_key": ch.c, "wrapped_user_key": ch.u, "wrapped_workspace_key": ch.w}),
    )
}
