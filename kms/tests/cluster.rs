//! `kms.cache.type=distributed` with three real nodes on 127.0.0.1-3 (the
//! same ports on each address), each with its own `jgroups.xml` listing the
//! two others, over a real PyKMIP HSM, with clients going through a real
//! HAProxy (TLS passthrough, round robin):
//! - 300 concurrent decrypts of one cold customer key, spread over the three
//!   nodes, cost PyKMIP exactly one Decrypt; ten cold keys cost ten;
//! - the owner of a key killed with SIGKILL under load: every request is
//!   answered, rightly, and the key costs at most one more Decrypt;
//! - `cmx-kms cache flush --key-id` on one node reaches all three, and the
//!   next decrypts of that key anywhere cost exactly one more Decrypt.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "support/cluster.rs"]
mod cluster_support;
#[path = "support/kmip_node.rs"]
mod kmip_node;
#[path = "support/pykmip.rs"]
mod pykmip;
mod support;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use sha2::{Digest, Sha256};

use cluster_support::{ClusterNode, Ports, RoundRobin, cluster_props, ip};
use support::client::{Client, chain, wait_ready};
use support::node::{TestNode, cmx_with_config, output_text};
use support::wait_for;

/// No canary during the test (its HSM calls would blur the counts); no rate
/// limits (every request comes through HAProxy from one address).
const EXTRA: &str = "kms.readiness.interval=1h\nkms.limits.device.rate=0\nkms.limits.backend.rate=0\n\
                     kms.server.max-pending-per-source=1000\n";
const WAIT: Duration = Duration::from_secs(60);
const DECRYPT: &str = "/v1/workspace-keys/decrypt";

/// The owner of `body`'s customer key among `nodes` (`ip:cluster port`), as
/// every node ranks them.
fn owner(body: &Value, nodes: &[String]) -> String {
    let blob = B64
        .decode(body["wrapped_customer_key"].as_str().unwrap())
        .unwrap();
    let id: [u8; 32] = Sha256::digest(&blob).into();
    let ranked = cmx_kms::cluster::ring::rank(&id, nodes.iter().map(|n| (n.clone(), ())).collect());
    ranked[0].0.clone()
}

/// Decrypts `body` through `client`, retrying only a connection that failed
/// before any answer (a node killed mid-request); returns the workspace key.
fn decrypt(client: &Client, body: &Value, retried: &AtomicUsize) -> Result<Value, String> {
    for _ in 0..200 {
        match client.request("POST", DECRYPT, Some(body.to_string().as_bytes())) {
            Ok(r) if r.status == 200 => return Ok(r.json()["workspace_key"].clone()),
            Ok(r) => return Err(format!("{} {}", r.status, String::from_utf8_lossy(&r.body))),
            Err(_) => {
                retried.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    Err("no answer after 200 connections".into())
}

/// `n` concurrent decrypts per body, all started at once; panics on any wrong answer.
fn burst(client: &Client, bodies: &[(Value, Value)], n: usize) {
    let start = Arc::new(Barrier::new(bodies.len() * n));
    let retried = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = bodies
        .iter()
        .flat_map(|b| std::iter::repeat_n(b.clone(), n))
        .map(|(body, want)| {
            let (client, start, retried) =
                (client.clone(), Arc::clone(&start), Arc::clone(&retried));
            std::thread::spawn(move || {
                start.wait();
                let got = decrypt(&client, &body, &retried).unwrap();
                assert_eq!(got, want, "a wrong workspace key");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

fn served(n: &ClusterNode) -> f64 {
    n.metric("cmx_kms_cache_hits_total").unwrap_or(0.0)
        + n.metric("cmx_kms_cache_misses_total").unwrap_or(0.0)
}

#[test]
fn three_nodes_make_one_hsm_decrypt_per_customer_key() {
    let dir = tempfile::tempdir().unwrap();
    let (pki, hsm) = kmip_node::setup(dir.path());

    // A standalone node makes the keys (and the expected answers), then
    // goes: the cluster starts with every customer key cold.
    let maker_dir = dir.path().join("maker");
    std::fs::create_dir_all(&maker_dir).unwrap();
    let props = |p, m| kmip_node::props(&pki, &maker_dir, hsm.port, p, m, EXTRA);
    let cfg = maker_dir.join("cmd.properties");
    std::fs::write(&cfg, props(1, 0)).unwrap();
    let o = cmx_with_config(&["hsm", "init"], &cfg);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let bodies: Vec<(Value, Value)> = {
        let maker = TestNode::start_with(&maker_dir, props, &[]);
        let (b, d) = (
            maker.client(&pki, &pki.cmx_backend),
            maker.client(&pki, &pki.cmx_device),
        );
        wait_ready(&b, "ready");
        (0..12)
            .map(|_| {
                let body = chain(&b);
                let r = d.post(DECRYPT, &body);
                assert_eq!(r.status, 200);
                let want = r.json()["workspace_key"].clone();
                (body, want)
            })
            .collect()
    };

    let ports = Ports::pick();
    let ips = [ip(1), ip(2), ip(3)];
    let mut nodes: Vec<ClusterNode> = ips
        .iter()
        .enumerate()
        .map(|(i, me)| {
            let others: Vec<IpAddr> = ips.iter().copied().filter(|o| o != me).collect();
            let ndir = dir.path().join(format!("node{}", i + 1));
            let base = kmip_node::props(&pki, &ndir, hsm.port, ports.api, ports.metrics, EXTRA)
                .replace(
                    "kms.server.address=127.0.0.1",
                    &format!("kms.server.address={me}"),
                );
            let props = base + &cluster_props(&ndir, *me, ports, &others);
            ClusterNode::start(&ndir, *me, ports, &props)
        })
        .collect();
    for n in &nodes {
        wait_for("every node ready and seeing its two peers up", WAIT, || {
            n.health_ok() && n.metric("cmx_kms_cluster_peers{state=\"up\"}") == Some(2.0)
        });
    }
    let lb = RoundRobin::start(
        &dir.path().join("haproxy"),
        &nodes.iter().map(ClusterNode::server).collect::<Vec<_>>(),
    );
    let device = Client::new(
        lb.addr,
        &pki.ca.cert,
        Some((&pki.cmx_device.cert, &pki.cmx_device.key)),
    );

    // 1. One cold key, 300 concurrent decrypts over the three nodes: one Decrypt.
    let before = hsm.operations_logged("Decrypt");
    let served_before: Vec<f64> = nodes.iter().map(served).collect();
    burst(&device, &bodies[..1], 300);
    assert_eq!(
        hsm.operations_logged("Decrypt") - before,
        1,
        "one HSM Decrypt for the cluster"
    );
    for (n, b) in nodes.iter().zip(&served_before) {
        assert!(
            served(n) - b >= 50.0,
            "node {} served {} of the 300",
            n.ip,
            served(n) - b
        );
    }

    // 2. Ten cold keys, 30 concurrent decrypts each, all at once: ten.
    let before = hsm.operations_logged("Decrypt");
    burst(&device, &bodies[1..11], 30);
    assert_eq!(
        hsm.operations_logged("Decrypt") - before,
        10,
        "one HSM Decrypt per key"
    );
    let unwraps = |reason: &str| -> f64 {
        nodes
            .iter()
            .map(|n| {
                n.metric(&format!(
                    "cmx_kms_backend_unwraps_total{{reason=\"{reason}\"}}"
                ))
                .unwrap_or(0.0)
            })
            .sum()
    };
    assert_eq!(
        unwraps("cold"),
        11.0,
        "eleven cold keys, each unwrapped by its owner"
    );

    // 3. `cmx-kms cache flush --key-id` on one node: every node acknowledges,
    // and the next decrypts of that key anywhere cost one more Decrypt.
    let blob = B64
        .decode(bodies[1].0["wrapped_customer_key"].as_str().unwrap())
        .unwrap();
    let key_id = cmx_kms::envelope::Envelope::decode_customer(&blob)
        .unwrap()
        .header
        .key_id
        .to_hex();
    let before = hsm.operations_logged("Decrypt");
    burst(&device, &bodies[1..3], 10);
    assert_eq!(
        hsm.operations_logged("Decrypt"),
        before,
        "both keys still cached"
    );
    // From a node that does not own the key: the owner must hear of it.
    let ids: Vec<String> = nodes.iter().map(|n| n.cluster_addr().to_string()).collect();
    let key_owner = owner(&bodies[1].0, &ids);
    let flusher = nodes
        .iter()
        .find(|n| n.cluster_addr().to_string() != key_owner)
        .unwrap();
    let o = cmx_with_config(
        &["cache", "flush", "--key-id", &key_id],
        &flusher.properties,
    );
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert_eq!(text.matches(": acknowledged").count(), 3, "{text}");
    burst(&device, &bodies[1..3], 30);
    assert_eq!(
        hsm.operations_logged("Decrypt") - before,
        1,
        "one Decrypt after the flush, for the flushed key only"
    );
    assert_eq!(
        unwraps("flush"),
        1.0,
        "the unwrap after the flush is counted as such"
    );
    let o = cmx_with_config(&["cluster", "status"], &nodes[0].properties);
    let text = output_text(&o);
    assert_eq!(o.status.code(), Some(0), "{text}");
    assert_eq!(text.matches(" up").count(), 2, "{text}");
    println!("{text}");

    // 4. The owner of a cold key killed with SIGKILL under load.
    let (body, want) = bodies[11].clone();
    let ids: Vec<String> = nodes.iter().map(|n| n.cluster_addr().to_string()).collect();
    let owner_at = ids.iter().position(|i| *i == owner(&body, &ids)).unwrap();
    let before = hsm.operations_logged("Decrypt");
    let (stop, answered, retried) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let wrong = Arc::new(Mutex::new(Vec::<String>::new()));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (client, body, want) = (device.clone(), body.clone(), want.clone());
            let (stop, answered, retried, wrong) = (
                Arc::clone(&stop),
                Arc::clone(&answered),
                Arc::clone(&retried),
                Arc::clone(&wrong),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match decrypt(&client, &body, &retried) {
                        Ok(got) if got == want => {
                            answered.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => wrong.lock().unwrap().push("a wrong workspace key".into()),
                        Err(e) => wrong.lock().unwrap().push(e),
                    }
                }
            })
        })
        .collect();
    wait_for("60 answers before the kill", WAIT, || {
        answered.load(Ordering::Relaxed) >= 60
    });
    nodes[owner_at].kill();
    let at_kill = answered.load(Ordering::Relaxed);
    wait_for("200 answers after the kill", WAIT, || {
        answered.load(Ordering::Relaxed) >= at_kill + 200
    });
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let wrong = wrong.lock().unwrap();
    assert!(
        wrong.is_empty(),
        "{} requests failed or were wrong: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    let decrypts = hsm.operations_logged("Decrypt") - before;
    assert!(
        (1..=2).contains(&decrypts),
        "{decrypts} HSM Decrypts for the key: one, plus at most one after its owner died"
    );
    println!(
        "owner {} killed: {} answered, {} connections retried (cut by the kill), {decrypts} Decrypts",
        ids[owner_at],
        answered.load(Ordering::Relaxed),
        retried.load(Ordering::Relaxed)
    );
    let survivors: Vec<&ClusterNode> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != owner_at)
        .map(|(_, n)| n)
        .collect();
    for n in survivors {
        wait_for("the survivors see the dead owner down", WAIT, || {
            n.metric("cmx_kms_cluster_peers{state=\"up\"}") == Some(1.0)
        });
    }
}
