//! `hop`: what one peer hop adds to a cold customer key in a cluster
//! (`scripts/bench-cluster`).
//!
//! The nodes must have started with every customer key of `--requests`
//! cold (keys made on another node). The owner of each key is computed
//! here by the rule the nodes use (`cmx_kms::cluster::ring::rank` over the
//! members' cluster addresses, SHA-256 of the wrapped customer key), and
//! checked afterwards on each node's own counters (`cold` backend unwraps,
//! keys served to peers, keys fetched from owners): the benchmark does not
//! guess who owns what.
//!
//! Keys go by pairs (a, b), one decrypt at a time:
//! 1. a cold on its owner (a backend unwrap there) and b cold on a
//!    non-owner (one hop; the owner unwraps through the backend), the order
//!    alternating from pair to pair. Both pay one backend unwrap, on the
//!    owner: the difference of the medians is the hop (the headline).
//! 2. a again on its owner (a cache hit) and a on a non-owner (one hop to
//!    an owner that holds it): the hop with the backend out of the picture,
//!    which also holds with a slow or noisy HSM.
//! 3. b again on its non-owner: the copy it keeps, a local hit.
//!
//! The non-owner alternates between the two others from pair to pair;
//! every answer for one key must be the same whichever node gave it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use rustls_pki_types::ServerName;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::BenchError;
use crate::cluster_report::{
    HopCheck, HopSeries, NodeCheck, OWNER_COLD, OWNER_HIT, PEER_COLD, PEER_HIT, PEER_WARM,
};
use crate::http::{Connection, Target};
use crate::tls::ClientFiles;

/// Options of `cmx-kms-bench hop`.
#[derive(clap::Args)]
pub struct HopArgs {
    /// A node's client API address (repeat; the same order as --peer-id and --metrics).
    #[arg(long = "node", required = true)]
    nodes: Vec<SocketAddr>,
    /// The node's cluster address, `ip:port`, as the nodes rank it.
    #[arg(long = "peer-id", required = true)]
    peer_ids: Vec<String>,
    /// The node's Prometheus metrics address (plain HTTP).
    #[arg(long = "metrics", required = true)]
    metrics: Vec<SocketAddr>,
    #[command(flatten)]
    client: ClientFiles,
    /// A name in the nodes' server certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Decrypt requests, one a line (`chains`), each with its own customer key.
    #[arg(long)]
    requests: PathBuf,
    /// Keys (pairs' worth) gone through first, unmeasured.
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Write a decrypt request whose customer key the first node does not
    /// own here (for the hot-path rounds).
    #[arg(long)]
    hot_out: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
}

/// One key: its request and the nodes ranked for it (indices, owner first).
struct Key {
    body: Bytes,
    rank: Vec<usize>,
}

fn parse_keys(a: &HopArgs) -> Result<Vec<Key>, BenchError> {
    let bad = |reason: String| BenchError::Io {
        path: a.requests.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&a.requests).map_err(|e| bad(e.to_string()))?;
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.is_empty()) {
        let v: Value =
            serde_json::from_str(line).map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        let blob = v
            .get("wrapped_customer_key")
            .and_then(Value::as_str)
            .and_then(|s| B64.decode(s).ok())
            .ok_or_else(|| bad(format!("line {}: no wrapped_customer_key", i + 1)))?;
        let id: [u8; 32] = Sha256::digest(&blob).into();
        let nodes = a.peer_ids.iter().cloned().zip(0..).collect();
        let rank = cmx_kms::cluster::ring::rank(&id, nodes)
            .into_iter()
            .map(|(_, i)| i)
            .collect();
        keys.push(Key {
            body: Bytes::from(line.to_owned()),
            rank,
        });
    }
    Ok(keys)
}

/// GET /metrics.
async fn scrape(addr: SocketAddr) -> Result<String, BenchError> {
    let err = |e: std::io::Error| BenchError::Connect(addr, format!("metrics: {e}"));
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(err)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(err)?;
    let mut out = String::new();
    s.read_to_string(&mut out).await.map_err(err)?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// A metric's value (0 when absent: counters appear on first use).
fn value(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// (cold unwraps, other unwraps, keys served, keys fetched) of one node.
async fn counters(addr: SocketAddr) -> Result<[u64; 4], BenchError> {
    let t = scrape(addr).await?;
    let cold = value(&t, "cmx_kms_backend_unwraps_total{reason=\"cold\"} ");
    let all: u64 = t
        .lines()
        .filter(|l| l.starts_with("cmx_kms_backend_unwraps_total{"))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum();
    Ok([
        cold,
        all.saturating_sub(cold),
        value(&t, "cmx_kms_cluster_keys_served_total "),
        value(&t, "cmx_kms_cluster_keys_fetched_total "),
    ])
}

/// Until every node sees all the others up (at most 60 s).
async fn wait_for_peers(a: &HopArgs) -> Result<(), BenchError> {
    let want = format!(
        "cmx_kms_cluster_peers{{state=\"up\"}} {}",
        a.nodes.len() - 1
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    for m in &a.metrics {
        while !scrape(*m)
            .await
            .unwrap_or_default()
            .lines()
            .any(|l| l == want)
        {
            if Instant::now() > deadline {
                return Err(BenchError::Connect(*m, format!("no `{want}` after 60 s")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

#[derive(Default)]
struct Series {
    samples: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

/// The measurement state: connections, series, the first answer per key.
struct Run {
    conns: Vec<Connection>,
    series: HashMap<&'static str, Series>,
    answers: HashMap<usize, Bytes>,
    wrong: u64,
    measured: bool,
}

impl Run {
    /// Decrypt key `k` (index `ki`) on node `n`, into series `label`.
    async fn ask(&mut self, label: &'static str, ki: usize, k: &Key, n: usize) {
        let t0 = Instant::now();
        let r = match self.conns.get_mut(n) {
            Some(c) => c.post("/v1/workspace-keys/decrypt", k.body.clone()).await,
            None => Err(BenchError::Request(format!("no node {n}"))),
        };
        let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
        let s = self.series.entry(label).or_default();
        match r {
            Ok(r) if r.status == 200 => {
                if self.answers.entry(ki).or_insert_with(|| r.body.clone()) != &r.body {
                    self.wrong += 1;
                }
                if self.measured {
                    s.samples.push(us);
                }
            }
            Ok(r) => {
                s.errors += 1;
                s.first_error.get_or_insert_with(|| {
                    format!("status {}: {}", r.status, String::from_utf8_lossy(&r.body))
                });
            }
            Err(e) => {
                s.errors += 1;
                s.first_error.get_or_insert(e.to_string());
            }
        }
    }
}

/// Runs the pairs; the five series and the ownership check.
pub async fn run(a: HopArgs) -> Result<(Vec<HopSeries>, HopCheck), BenchError> {
    let n = a.nodes.len();
    if n < 2 || a.peer_ids.len() != n || a.metrics.len() != n {
        return Err(BenchError::Request(
            "give at least two nodes, each with --node, --peer-id and --metrics".into(),
        ));
    }
    let keys = parse_keys(&a)?;
    wait_for_peers(&a).await?;
    let tls = crate::tls::client_config(&a.client)?;
    let name = ServerName::try_from(a.server_name.clone())
        .map_err(|e| BenchError::Tls(format!("--server-name: {e}")))?;
    let mut conns = Vec::with_capacity(n);
    for addr in &a.nodes {
        let t = Target {
            addr: *addr,
            server_name: name.clone(),
            tls: tls.clone(),
        };
        conns.push(Connection::open(&t).await?);
    }
    let mut before = Vec::with_capacity(n);
    for m in &a.metrics {
        before.push(counters(*m).await?);
    }
    let mut run = Run {
        conns,
        series: HashMap::new(),
        answers: HashMap::new(),
        wrong: 0,
        measured: false,
    };
    let mut expected = vec![NodeCheck::default(); n];
    let pairs = keys.len() / 2;
    for j in 0..pairs {
        let (ia, ib) = (2 * j, 2 * j + 1);
        // In bounds: ib < 2 * pairs <= keys.len(); every rank holds the n
        // node indices 0..n (n >= 2, checked above), as does `expected`.
        let (ka, kb) = (&keys[ia], &keys[ib]);
        run.measured = ia >= a.warmup;
        let flip = j % 2 == 1;
        let (oa, ob) = (ka.rank[0], kb.rank[0]);
        // The non-owners alternate between the second and the last rank.
        let na = ka.rank[if flip { n - 1 } else { 1 }];
        let nb = kb.rank[if flip { 1 } else { n - 1 }];
        for e in [oa, ob] {
            expected[e].cold_expected += 1;
            expected[e].served_expected += 1;
        }
        for e in [na, nb] {
            expected[e].fetched_expected += 1;
        }
        if flip {
            run.ask(PEER_COLD, ib, kb, nb).await;
            run.ask(OWNER_COLD, ia, ka, oa).await;
            run.ask(PEER_WARM, ia, ka, na).await;
            run.ask(OWNER_HIT, ia, ka, oa).await;
        } else {
            run.ask(OWNER_COLD, ia, ka, oa).await;
            run.ask(PEER_COLD, ib, kb, nb).await;
            run.ask(OWNER_HIT, ia, ka, oa).await;
            run.ask(PEER_WARM, ia, ka, na).await;
        }
        run.ask(PEER_HIT, ib, kb, nb).await;
    }
    for (i, m) in a.metrics.iter().enumerate() {
        let after = counters(*m).await?;
        let d = |k: usize| after[k].saturating_sub(before[i][k]);
        let e = &mut expected[i];
        e.node = a.peer_ids[i].clone();
        e.cold_counted = d(0);
        e.other_unwraps = d(1);
        e.served_counted = d(2);
        e.fetched_counted = d(3);
    }
    if let Some(path) = &a.hot_out {
        let k = keys.iter().find(|k| k.rank[0] != 0).or(keys.first());
        if let Some(k) = k {
            std::fs::write(path, &k.body).map_err(|e| BenchError::Io {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        }
    }
    let series = [OWNER_COLD, PEER_COLD, OWNER_HIT, PEER_WARM, PEER_HIT]
        .into_iter()
        .map(|l| {
            let s = run.series.remove(l).unwrap_or_default();
            HopSeries::new(l, &s.samples, s.errors, s.first_error)
        })
        .collect();
    let check = HopCheck {
        kind: "hop-check".into(),
        keys: pairs * 2,
        wrong_answers: run.wrong,
        nodes: expected,
    };
    Ok((series, check))
}
