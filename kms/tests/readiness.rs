//! Deep readiness follows the backend: a node whose soft backend is switched
//! off (the one fake here: it stands for an unreachable HSM) turns
//! `unavailable` and answers `backend-unavailable` with Retry-After, then
//! recovers by itself when the backend returns, without a restart; after a
//! reload, it follows the new backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::client::{Client, wait_ready};
use support::guide_pki::{GuidePki, PkiOptions};
use support::node::{TestNode, soft_node_in_process};

/// A folder, the guide's PKI in it, and a runtime for an in-process node.
fn world() -> (tempfile::TempDir, GuidePki, tokio::runtime::Runtime) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pki")).unwrap();
    let pki = GuidePki::generate(&dir.path().join("pki"), PkiOptions::default());
    (dir, pki, tokio::runtime::Runtime::new().unwrap())
}

/// Run `node` until the sender is used (then await the handle), with a
/// backend client of it.
fn serve(
    rt: &tokio::runtime::Runtime,
    node: cmx_kms::Node,
    pki: &GuidePki,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
    Client,
) {
    let client = Client::new(
        node.local_addr,
        &pki.ca.cert,
        Some((&pki.cmx_backend.cert, &pki.cmx_backend.key)),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let served = rt.spawn(node.run(async {
        let _ = stop_rx.await;
    }));
    (stop_tx, served, client)
}

#[test]
fn readiness_tracks_the_backend_without_a_restart() {
    let (dir, pki, rt) = world();
    let (node, soft) = soft_node_in_process(&rt, &pki, dir.path(), "", Duration::from_millis(100));
    let (stop_tx, served, client) = serve(&rt, node, &pki);
    let state = || {
        let r = client.request("GET", "/v1/ready", None).unwrap();
        (r.status, r.json()["state"].as_str().unwrap().to_owned())
    };
    let wait_state = |want: (u16, &str)| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = state();
            if (s.0, s.1.as_str()) == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "readiness stuck at {s:?}, wanted {want:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_state((200, "ready"));
    let c = client.post("/v1/customer-keys", &json!({}));
    assert_eq!(c.status, 201);

    soft.set_unavailable(true);
    wait_state((503, "unavailable"));
    let r = client.post("/v1/customer-keys", &json!({}));
    assert_eq!((r.status, r.label().as_str()), (503, "backend-unavailable"));
    assert!(r.header("retry-after").is_some());
    assert_eq!(
        client.request("GET", "/v1/health", None).unwrap().status,
        200,
        "liveness stays up"
    );

    soft.set_unavailable(false);
    wait_state((200, "ready"));
    assert_eq!(client.post("/v1/customer-keys", &json!({})).status, 201);

    stop_tx.send(()).unwrap();
    rt.block_on(served).unwrap();
}

#[test]
fn the_canary_probes_the_backend_of_the_latest_reload() {
    let (dir, pki, rt) = world();
    let (node, soft) = soft_node_in_process(&rt, &pki, dir.path(), "", Duration::from_millis(100));
    // The file a reload reads: the same settings (a reload builds a new backend from them).
    let props = TestNode::properties(&pki, dir.path(), node.local_addr.port(), 0, "");
    std::fs::write(dir.path().join("kms.properties"), props).unwrap();
    let reloader = node.reloader();
    let (stop_tx, served, client) = serve(&rt, node, &pki);
    // The backend the node started with goes down; a reload replaces it.
    soft.set_unavailable(true);
    wait_ready(&client, "unavailable");
    rt.block_on(rt.spawn_blocking(move || reloader.reload()))
        .unwrap()
        .unwrap();
    wait_ready(&client, "ready");
    assert_eq!(client.post("/v1/customer-keys", &json!({})).status, 201);

    stop_tx.send(()).unwrap();
    rt.block_on(served).unwrap();
}
