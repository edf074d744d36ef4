//! The cluster behind `kms.cache.type=distributed`: nodes listed in the
//! operator's `jgroups.xml` share the customer-key cache, so one customer key
//! costs one backend unwrap for the whole cluster per TTL.
//!
//! - `crate::config::jgroups`: the member list from `jgroups.xml`.
//! - [`tls`]: mutual TLS pinned to the keystore's `kmsserver` certificate.
//! - [`wire`]: the versioned, length-prefixed peer frames.
//! - [`peer`]: one outgoing connection per member, with heartbeats.
//! - [`listener`]: the cluster port, serving keys this node owns.
//! - [`ring`]: who owns a key (rendezvous hashing over live members).
//! - The node's side (start-up, the control socket behind `cache flush` and
//!   `cluster status`) is in `crate::node`; the commands in `crate::commands`.
//!
//! [`Cluster::load`] is the cache's loader on a miss: the owner unwraps
//! through the backend (inside the node's single-flight cache), the others
//! ask it over the peer channel and keep the key no longer than the owner
//! does. An owner that does not answer is passed over for the next by rank,
//! and after [`FALLBACK_AFTER`] the node unwraps locally: a client request
//! never fails because of the cluster. See `docs/design/cluster.md`.

pub mod listener;
pub mod peer;
pub mod ring;
pub mod slots;
pub mod tls;
pub mod verify;
pub mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::cache::CacheKey;
use crate::config::ClusterMembers;
use crate::envelope::SecretKey;
use crate::metrics::{by_label, single};
use crate::sync::lock;
pub use listener::Owner;
use peer::{Peer, PeerFail};
use tls::PeerIdentity;

/// The longest a cold key waits on other members before this node unwraps it
/// itself.
pub const FALLBACK_AFTER: Duration = Duration::from_secs(3);

/// This node's part of the cluster.
pub struct Cluster {
    pub settings: ClusterMembers,
    pub identity: PeerIdentity,
    peers: Vec<Arc<Peer>>,
    local_id: String,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    last_refusal_log: Mutex<Option<Instant>>,
    unwraps: Mutex<BTreeMap<&'static str, u64>>,
    served: AtomicU64,
    fetched: AtomicU64,
    unverified: verify::Unverified,
}

impl Cluster {
    pub fn new(settings: ClusterMembers, identity: PeerIdentity) -> Arc<Self> {
        let local = settings.local();
        let peers = settings
            .members
            .iter()
            .map(|m| Peer::new(m.clone(), local, identity.clone()))
            .collect();
        Arc::new(Self {
            local_id: local.to_string(),
            settings,
            identity,
            peers,
            refusals: Mutex::default(),
            last_refusal_log: Mutex::new(None),
            unwraps: Mutex::default(),
            served: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            unverified: verify::Unverified::default(),
        })
    }

    /// Bind the cluster port.
    pub async fn bind(&self) -> std::io::Result<TcpListener> {
        TcpListener::bind(self.settings.local()).await
    }

    /// Start the listener and one dialer per member.
    pub fn spawn(
        self: &Arc<Self>,
        listener: TcpListener,
        owner: Arc<dyn Owner>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(listener::serve(
            Arc::clone(self),
            listener,
            owner,
        ))];
        for p in &self.peers {
            tasks.push(tokio::spawn(Arc::clone(p).run()));
        }
        tracing::info!(
            address = %self.settings.local(),
            members = self.peers.len(),
            "cluster: sharing the customer-key cache with the members of {}",
            self.settings.file.display()
        );
        tasks
    }

    /// Count a refused connection; whether to log it at warn (at most one
    /// line per 10 s, so strangers knocking cannot flood the log).
    pub(crate) fn count_refusal(&self, why: &'static str) -> bool {
        *lock(&self.refusals).entry(why).or_default() += 1;
        let mut last = lock(&self.last_refusal_log);
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(10)) {
            return false;
        }
        *last = Some(now);
        true
    }

    pub(crate) fn count_served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a backend unwrap this node made, by why.
    pub(crate) fn count_unwrap(&self, reason: &'static str) {
        *lock(&self.unwraps).entry(reason).or_default() += 1;
    }

    /// The cache's loader for `id` (the hash of `blob`, not in the cache
    /// because `why`): ask the owner, or run `local` (the backend unwrap)
    /// when this node owns the key or no other member answers in time. Returns the key and, when it came from
    /// another member, how long that member keeps it.
    pub async fn load<F, Fut, E>(
        &self,
        id: &CacheKey,
        blob: &[u8],
        why: crate::cache::MissReason,
        local: F,
    ) -> Result<(SecretKey, Option<Duration>), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<SecretKey, E>>,
    {
        let mut nodes: Vec<(String, Option<&Arc<Peer>>)> = vec![(self.local_id.clone(), None)];
        nodes.extend(
            self.peers
                .iter()
                .filter_map(|p| p.live_node().map(|n| (n, Some(p)))),
        );
        let deadline = tokio::time::Instant::from_std(Instant::now() + FALLBACK_AFTER);
        let mut reason = why.label();
        for (_, peer) in ring::rank(id, nodes) {
            let Some(peer) = peer else { break };
            match tokio::time::timeout_at(deadline, peer.get(blob)).await {
                Ok(Ok((key, ttl))) => {
                    self.fetched.fetch_add(1, Ordering::Relaxed);
                    // Not to wrap new material under until this node's own
                    // backend agrees (verify.rs).
                    self.unverified.mark(*id, &peer.member.name, ttl);
                    return Ok((key, Some(ttl)));
                }
                // The owner's backend refused the blob: this node's backend
                // gives the client its own, exact answer.
                Ok(Err(PeerFail::Refused)) => {
                    reason = "fallback";
                    break;
                }
                // The owner's own backend is down: the next by rank, at once.
                Ok(Err(PeerFail::Unavailable)) => reason = "owner_unavailable",
                Ok(Err(_)) => reason = "owner_down",
                Err(_) => {
                    reason = "owner_down";
                    break;
                }
            }
        }
        self.count_unwrap(reason);
        local().await.map(|k| (k, None))
    }

    /// Have every live member forget customer key `key` (or everything):
    /// each member's answer, by its `initial_hosts` name.
    pub async fn flush_peers(
        &self,
        generation: u64,
        key: Option<[u8; 16]>,
    ) -> Vec<(String, Result<u64, String>)> {
        let mut set = tokio::task::JoinSet::new();
        for p in &self.peers {
            let p = Arc::clone(p);
            set.spawn(async move {
                let name = p.member.name.clone();
                let r = match tokio::time::timeout(FALLBACK_AFTER, p.flush(generation, key)).await {
                    Ok(Ok(n)) => Ok(n),
                    Ok(Err(_)) => Err(p.status().describe()),
                    // Its state here may still say up: the heartbeat has
                    // not noticed yet.
                    Err(_) => Err(format!(
                        "no answer in {} s (hung?)",
                        FALLBACK_AFTER.as_secs()
                    )),
                };
                (name, r)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// This node's identity in the owner ranking.
    pub fn local_id(&self) -> &str {
        &self.local_id
    }

    /// The share of customer keys each live node owns, in this node's view
    /// (from 4096 sample keys).
    pub fn owner_split(&self) -> Vec<(String, f64)> {
        let mut nodes = vec![self.local_id.clone()];
        nodes.extend(self.peers.iter().filter_map(|p| p.live_node()));
        let mut counts: BTreeMap<String, u32> = nodes.iter().map(|n| (n.clone(), 0)).collect();
        for i in 0..4096u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            let key: CacheKey = sha2::Digest::finalize(sha2::Digest::chain_update(
                <sha2::Sha256 as sha2::Digest>::new(),
                key,
            ))
            .into();
            let ranked = ring::rank(&key, nodes.iter().map(|n| (n.clone(), ())).collect());
            if let Some((owner, ())) = ranked.into_iter().next() {
                *counts.entry(owner).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(n, c)| (n, f64::from(c) / 4096.0))
            .collect()
    }

    /// Members and their state, for `cluster status` and the metrics.
    pub fn members(&self) -> Vec<(String, peer::Status)> {
        self.peers
            .iter()
            .map(|p| (p.member.name.clone(), p.status()))
            .collect()
    }

    /// The cluster's Prometheus lines.
    pub fn render_metrics(&self, o: &mut String) {
        let mut by: BTreeMap<&'static str, u64> = [
            "up",
            "suspect",
            "down",
            "connecting",
            "incompatible",
            "keystore-mismatch",
        ]
        .into_iter()
        .map(|s| (s, 0))
        .collect();
        for p in &self.peers {
            *by.entry(p.status().label()).or_default() += 1;
        }
        by_label(
            o,
            "cmx_kms_cluster_peers",
            "gauge",
            "Cluster members by this node's view of their state.",
            "state",
            &by,
        );
        by_label(
            o,
            "cmx_kms_backend_unwraps_total",
            "counter",
            "Backend unwraps of customer keys by why this node made them (cold, expired, flush, owner_down, owner_unavailable, fallback, verify).",
            "reason",
            &lock(&self.unwraps),
        );
        single(
            o,
            "cmx_kms_cluster_keys_served_total",
            "counter",
            "Customer keys requested by other members.",
            self.served.load(Ordering::Relaxed),
        );
        single(
            o,
            "cmx_kms_cluster_keys_fetched_total",
            "counter",
            "Customer keys this node got from their owner.",
            self.fetched.load(Ordering::Relaxed),
        );
        by_label(
            o,
            "cmx_kms_cluster_refused_total",
            "counter",
            "Connections refused on the cluster port, by reason.",
            "reason",
            &lock(&self.refusals),
        );
    }
}
