//! The cluster port: serves other members' requests for keys this node owns.
//!
//! A connection is dropped before any TLS byte unless it comes from a listed
//! member address; then the handshake must present exactly this node's
//! `kmsserver` certificate ([`super::tls`]); then the peer's Hello must speak
//! our version and name an address equal to the connection's source. Only
//! then does anything but a TLS alert leave this node. The port speaks
//! nothing but TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::Cluster;
use super::wire::{self, FailCode, Frame, Outbox, SecretKeyBytes, VERSION};
use crate::envelope::SecretKey;

/// Longest a connection may take from accept to the end of the Hellos (a
/// member on a LAN needs milliseconds; the dialer gives up after 3 s too).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections not past their Hello yet, in total and per source address:
/// a member needs one or two (its dialer, a redial), a handful of members a
/// few; idle connections from a member address must not exhaust the node's
/// file descriptors (the client API shares them).
const MAX_PENDING: usize = 64;
const MAX_PENDING_PER_SOURCE: usize = 8;
/// Most key requests one peer connection may have in flight.
const MAX_IN_FLIGHT: usize = 256;

/// What serves a peer's request: the node's key service, through its cache
/// (single flight with this node's own requests for the same key).
#[async_trait]
pub trait Owner: Send + Sync {
    /// The plaintext of `blob` and how long this node keeps it cached.
    async fn unwrap_for_peer(&self, blob: &[u8]) -> Result<(Arc<SecretKey>, Duration), FailCode>;
    /// Forget customer key `key` (its id), or everything; entries removed.
    fn flush(&self, key: Option<[u8; 16]>) -> u64;
}

/// Accept peers forever.
pub async fn serve(cluster: Arc<Cluster>, listener: TcpListener, owner: Arc<dyn Owner>) {
    let acceptor = match cluster.identity.server_config() {
        Ok(cfg) => tokio_rustls::TlsAcceptor::from(cfg),
        Err(e) => {
            tracing::error!(error = %e, "cluster port: TLS configuration failed; this node caches alone");
            return;
        }
    };
    let pending = super::slots::Slots::new(MAX_PENDING, MAX_PENDING_PER_SOURCE);
    loop {
        let Ok((tcp, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if !cluster.settings.is_member_ip(from.ip()) {
            if cluster.count_refusal("not-a-member") {
                tracing::warn!(source = %from, "cluster port: connection from an address jgroups.xml does not list; dropped (more in the next 10 s are only counted)");
            }
            drop(tcp);
            continue;
        }
        let slot = match pending.enter(from.ip()) {
            Ok(slot) => slot,
            Err(full) => {
                if cluster.count_refusal(full.label()) {
                    tracing::warn!(
                        source = %from, reason = full.label(),
                        "cluster port: too many connections not past their handshake (at most \
                         {MAX_PENDING_PER_SOURCE} per address, {MAX_PENDING} in all); closed (more in the next 10 s are only counted)"
                    );
                }
                drop(tcp);
                continue;
            }
        };
        let (cluster, acceptor, owner) =
            (Arc::clone(&cluster), acceptor.clone(), Arc::clone(&owner));
        tokio::spawn(async move {
            if let Err(why) = session(&cluster, acceptor, tcp, from, owner, slot).await {
                tracing::debug!(source = %from, reason = why, "cluster port: peer connection ended");
            }
        });
    }
}

/// The TLS stream of a peer connection.
type PeerTls = tokio_rustls::server::TlsStream<TcpStream>;

/// One peer connection: TLS, Hellos, then the peer's requests until it
/// goes quiet, sends something unexpected or cannot keep up.
async fn session(
    cluster: &Cluster,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    from: SocketAddr,
    owner: Arc<dyn Owner>,
    slot: super::slots::Slot,
) -> Result<(), &'static str> {
    let _ = tcp.set_nodelay(true);
    // One deadline for the handshake and the Hellos.
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    let tls = accept_tls(cluster, acceptor, tcp, from, deadline).await?;
    let (mut rd, mut wr) = tokio::io::split(tls);
    exchange_hellos(cluster, &mut rd, &mut wr, from, deadline).await?;
    drop(slot);
    let (tx, writer) = wire::spawn_writer(wr);
    let result = serve_requests(cluster, &mut rd, &tx, from, &owner).await;
    writer.abort();
    result
}

/// The TLS handshake, in which the peer must present this node's certificate.
async fn accept_tls(
    cluster: &Cluster,
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: TcpStream,
    from: SocketAddr,
    deadline: tokio::time::Instant,
) -> Result<PeerTls, &'static str> {
    match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => {
            if cluster.count_refusal("tls") {
                tracing::warn!(source = %from, error = %e, "cluster port: TLS refused (a peer must present this node's kmsserver certificate; more in the next 10 s are only counted)");
            }
            Err("tls")
        }
        Err(_) => {
            if cluster.count_refusal("tls-timeout") {
                tracing::warn!(source = %from, "cluster port: no TLS handshake from a member address in {} s; closed (more in the next 10 s are only counted)", HANDSHAKE_TIMEOUT.as_secs());
            }
            Err("tls timeout")
        }
    }
}

/// The peer's Hello (our version, its address the connection's source),
/// then ours.
async fn exchange_hellos(
    cluster: &Cluster,
    rd: &mut ReadHalf<PeerTls>,
    wr: &mut WriteHalf<PeerTls>,
    from: SocketAddr,
    deadline: tokio::time::Instant,
) -> Result<(), &'static str> {
    let hello = tokio::time::timeout_at(deadline, wire::read_frame(rd)).await;
    match hello {
        // The fingerprint is the certificate the TLS pin already checked:
        // a consistency check, not a defence (it is public).
        Ok(Ok(Frame::Hello {
            version,
            node,
            fingerprint,
        })) if version == VERSION
            && fingerprint == cluster.identity.fingerprint
            && node.parse::<SocketAddr>().map(|n| n.ip()) == Ok(from.ip()) => {}
        _ => {
            let _ = cluster.count_refusal("hello");
            return Err("no valid Hello");
        }
    }
    let ours = Frame::Hello {
        version: VERSION,
        node: cluster.settings.local().to_string(),
        fingerprint: cluster.identity.fingerprint,
    };
    wire::write_frame(wr, &ours).await.map_err(|_| "write")
}

/// Answers the peer's frames: pings, key requests (at most
/// [`MAX_IN_FLIGHT`] at once) and flushes. Returns why it stopped.
async fn serve_requests(
    cluster: &Cluster,
    rd: &mut ReadHalf<PeerTls>,
    tx: &Outbox,
    from: SocketAddr,
    owner: &Arc<dyn Owner>,
) -> Result<(), &'static str> {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        // No heartbeat from a peer in this long: it is gone.
        let frame = match tokio::time::timeout(super::peer::CONFIRM_AFTER * 2, wire::read_frame(rd))
            .await
        {
            Ok(Ok(f)) => f,
            Ok(Err(_)) => return Err("read"),
            Err(_) => return Err("silent peer"),
        };
        match frame {
            Frame::Ping(n) => {
                if tx.try_send(Frame::Pong(n).encode()).is_err() {
                    return Err("send queue full");
                }
            }
            Frame::Get { id, blob } => serve_get(cluster, &slots, tx, owner, id, blob),
            Frame::Flush {
                id,
                generation,
                key,
            } => {
                let removed = owner.flush(key);
                tracing::info!(
                    source = %from, generation, removed,
                    scope = if key.is_some() { "one customer key" } else { "every key" },
                    "cache flushed at a cluster member's request"
                );
                if tx
                    .try_send(Frame::Flushed { id, removed }.encode())
                    .is_err()
                {
                    return Err("send queue full");
                }
            }
            _ => return Err("unexpected frame"),
        }
    }
}

/// A key request, answered by a task of its own; `Unavailable` at once
/// when the peer already has [`MAX_IN_FLIGHT`] in flight.
fn serve_get(
    cluster: &Cluster,
    slots: &Arc<Semaphore>,
    tx: &Outbox,
    owner: &Arc<dyn Owner>,
    id: u64,
    blob: Vec<u8>,
) {
    let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
        let _ = tx.try_send(
            Frame::Fail {
                id,
                code: FailCode::Unavailable,
            }
            .encode(),
        );
        return;
    };
    let (tx, owner) = (tx.clone(), Arc::clone(owner));
    cluster.count_served();
    tokio::spawn(async move {
        let reply = match owner.unwrap_for_peer(&blob).await {
            Ok((key, ttl)) => Frame::Key {
                id,
                ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
                key: SecretKeyBytes::from_key(&key),
            },
            Err(code) => Frame::Fail { id, code },
        };
        let _ = tx.send(reply.encode()).await;
        drop(permit);
    });
}
