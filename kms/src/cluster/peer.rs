//! One other member, as this node sees it: a long-lived outgoing mTLS
//! connection that carries this node's requests to it, and its liveness.
//!
//! The connection leaves from this node's cluster address (the peer accepts
//! only listed addresses). After the handshake both sides exchange Hello;
//! then this side pings every [`PING_EVERY`]. Liveness follows JGroups'
//! FD_SOCK + VERIFY_SUSPECT: a closed connection means down at once; no
//! frame for [`SUSPECT_AFTER`] makes the peer suspect (it stays a member and
//! gets one more ping); still nothing after [`CONFIRM_AFTER`] confirms it
//! down, and the connection is dropped and dialed again.
//!
//! A peer that does not speak this protocol (another version, or a JGroups
//! node of the legacy cluster) or that presents another `kmsserver`
//! certificate is warned about once and left out; the node caches without it
//! and keeps dialing it, slowly, so the cluster heals when the rollout ends.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, oneshot};
use zeroize::Zeroizing;

use super::tls::{PeerIdentity, peer_server_name};
use super::wire::{self, Frame, VERSION};
use crate::config::Member;
use crate::envelope::SecretKey;
use crate::sync::lock;

pub const PING_EVERY: Duration = Duration::from_secs(1);
pub const SUSPECT_AFTER: Duration = Duration::from_secs(5);
pub const CONFIRM_AFTER: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const RETRY: Duration = Duration::from_secs(1);
const RETRY_INCOMPATIBLE: Duration = Duration::from_secs(15);

/// What this node knows of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Connecting,
    Up,
    Suspect,
    Down(String),
    /// It does not speak our protocol version.
    Incompatible(String),
    /// It presents another `kmsserver` certificate (fingerprint, hex).
    Mismatch(String),
}

impl Status {
    /// The state and why, for people.
    pub fn describe(&self) -> String {
        match self {
            Status::Down(why) | Status::Incompatible(why) => format!("{}: {why}", self.label()),
            Status::Mismatch(fp) => format!("{}: it presents kmsserver {fp}", self.label()),
            other => other.label().to_owned(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Up => "up",
            Status::Suspect => "suspect",
            Status::Down(_) => "down",
            Status::Incompatible(_) => "incompatible",
            Status::Mismatch(_) => "keystore-mismatch",
        }
    }
}

/// Why a request to a peer got no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerFail {
    NotConnected,
    Lost,
    Refused,
    Unavailable,
}

type Reply = Result<(SecretKey, Duration), PeerFail>;

/// What a request's waiter gets.
enum Answer {
    Key(SecretKey, Duration),
    Flushed(u64),
    Fail(PeerFail),
}

/// The live connection.
struct Conn {
    node: String,
    tx: mpsc::Sender<Zeroizing<Vec<u8>>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

/// A peer.
pub struct Peer {
    pub member: Member,
    local: SocketAddr,
    identity: PeerIdentity,
    status: Mutex<Status>,
    conn: ArcSwapOption<Conn>,
    next_id: AtomicU64,
}

impl Peer {
    pub fn new(member: Member, local: SocketAddr, identity: PeerIdentity) -> Arc<Self> {
        Arc::new(Self {
            member,
            local,
            identity,
            status: Mutex::new(Status::Connecting),
            conn: ArcSwapOption::empty(),
            next_id: AtomicU64::new(1),
        })
    }

    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// The peer's identity in the owner ranking (`ip:port` from its Hello),
    /// while it is a member (up or suspect).
    pub fn live_node(&self) -> Option<String> {
        matches!(self.status(), Status::Up | Status::Suspect)
            .then(|| self.conn.load().as_ref().map(|c| c.node.clone()))
            .flatten()
    }

    fn set_status(&self, s: Status) {
        let mut cur = lock(&self.status);
        if *cur == s {
            return;
        }
        let name = crate::text::untrusted(&self.member.name);
        match &s {
            Status::Up => tracing::info!(peer = %name, "cluster peer up"),
            Status::Suspect => {
                tracing::warn!(peer = %name, "cluster peer suspect: no answer to heartbeats")
            }
            Status::Down(why) if matches!(*cur, Status::Up | Status::Suspect) => {
                tracing::warn!(peer = %name, reason = %why, "cluster peer down; this node caches without it")
            }
            Status::Down(why) => {
                tracing::debug!(peer = %name, reason = %why, "cluster peer not reachable")
            }
            Status::Incompatible(why) => tracing::warn!(
                peer = %name, reason = %why,
                "cluster peer does not speak the cmx-kms peer protocol version {VERSION}: left out, this node caches without it"
            ),
            Status::Mismatch(fp) => tracing::warn!(
                peer = %name, peer_kmsserver = %fp,
                "cluster peer presents another kmsserver certificate than this node's keystore: left out, \
                 this node caches without it (distribute the same keystore to every node)"
            ),
            Status::Connecting => {}
        }
        *cur = s;
    }

    /// Ask the peer for the plaintext of `blob`: the key and how long the
    /// peer keeps it cached.
    pub async fn get(&self, blob: &[u8]) -> Reply {
        let blob = blob.to_vec();
        match self.ask(|id| Frame::Get { id, blob }).await {
            Answer::Key(k, ttl) => Ok((k, ttl)),
            Answer::Fail(f) => Err(f),
            Answer::Flushed(_) => Err(PeerFail::Lost),
        }
    }

    /// Have the peer forget `key` (or everything); how many entries went.
    pub async fn flush(&self, generation: u64, key: Option<[u8; 16]>) -> Result<u64, PeerFail> {
        match self
            .ask(|id| Frame::Flush {
                id,
                generation,
                key,
            })
            .await
        {
            Answer::Flushed(n) => Ok(n),
            Answer::Fail(f) => Err(f),
            Answer::Key(..) => Err(PeerFail::Lost),
        }
    }

    async fn ask(&self, frame: impl FnOnce(u64) -> Frame) -> Answer {
        let Some(conn) = self.conn.load_full() else {
            return Answer::Fail(PeerFail::NotConnected);
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&conn.pending).insert(id, tx);
        if conn.tx.send(frame(id).encode()).await.is_err() {
            lock(&conn.pending).remove(&id);
            return Answer::Fail(PeerFail::Lost);
        }
        let reply = rx.await.unwrap_or(Answer::Fail(PeerFail::Lost));
        lock(&conn.pending).remove(&id);
        reply
    }

    /// Dial, serve and redial the peer until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        loop {
            let pause = match self.session().await {
                Err(Status::Incompatible(w)) => {
                    self.set_status(Status::Incompatible(w));
                    RETRY_INCOMPATIBLE
                }
                Err(Status::Mismatch(w)) => {
                    self.set_status(Status::Mismatch(w));
                    RETRY_INCOMPATIBLE
                }
                Err(other) => {
                    self.set_status(other);
                    RETRY
                }
                Ok(()) => RETRY,
            };
            tokio::time::sleep(pause).await;
        }
    }

    async fn connect_tcp(&self) -> Result<(tokio::net::TcpStream, SocketAddr), Status> {
        let mut last = String::from("no address");
        for addr in &self.member.addrs {
            let sock = match addr {
                SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
                SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
            };
            let attempt = async {
                let sock = sock?;
                sock.bind(SocketAddr::new(self.local.ip(), 0))?;
                sock.connect(*addr).await
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    return Ok((s, *addr));
                }
                Ok(Err(e)) => last = format!("{addr}: {e}"),
                Err(_) => last = format!("{addr}: connect timed out"),
            }
        }
        Err(Status::Down(last))
    }

    /// One connection, from dialing to its end.
    async fn session(&self) -> Result<(), Status> {
        let (tcp, addr) = self.connect_tcp().await?;
        let tls = self.connect_tls(tcp, addr).await?;
        let (mut rd, mut wr) = tokio::io::split(tls);
        let node = self.exchange_hellos(&mut rd, &mut wr, addr).await?;
        let (tx, writer) = wire::spawn_writer(wr);
        let conn = Arc::new(Conn {
            node,
            tx: tx.clone(),
            pending: Mutex::new(HashMap::new()),
        });
        self.conn.store(Some(Arc::clone(&conn)));
        self.set_status(Status::Up);
        let end = self.read_loop(rd, &conn, &tx).await;
        writer.abort();
        self.conn.store(None);
        // Waiters see their sender dropped: Lost.
        lock(&conn.pending).clear();
        Err(Status::Down(end))
    }

    /// The TLS handshake, in which the peer must present this node's
    /// certificate; a failure tells a wrong certificate, a peer that does
    /// not list this node and a peer that speaks no TLS apart.
    async fn connect_tls(
        &self,
        tcp: tokio::net::TcpStream,
        addr: SocketAddr,
    ) -> Result<PeerTls, Status> {
        let (cfg, verifier) = self
            .identity
            .client_config()
            .map_err(|e| Status::Down(format!("TLS: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(cfg);
        match tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(peer_server_name(), tcp))
            .await
        {
            Ok(Ok(t)) => Ok(t),
            Ok(Err(e)) => Err(match verifier.last_seen() {
                Some(fp) if fp != self.identity.fingerprint => {
                    Status::Mismatch(crate::tls::pinning::fingerprint_hex(&fp))
                }
                Some(_) => Status::Down(format!(
                    "{addr}: TLS refused ({e}): does its jgroups.xml list this node's address?"
                )),
                // Bytes that are not TLS: a JGroups node, or another service.
                None if e.kind() == std::io::ErrorKind::InvalidData => {
                    Status::Incompatible(format!("{addr}: not a cmx-kms TLS peer ({e})"))
                }
                None => Status::Down(format!(
                    "{addr}: closed before TLS ({e}): does its jgroups.xml list this node's address?"
                )),
            }),
            // Silence is a hung host or a filtered port, not another
            // protocol: down, redialed at the normal pace.
            Err(_) => Err(Status::Down(format!(
                "{addr}: no answer to the TLS handshake in {} s: host hung or port filtered?",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Our Hello, then the peer's: our version, and its address the one
    /// dialed. Returns the peer's name for itself.
    async fn exchange_hellos(
        &self,
        rd: &mut ReadHalf<PeerTls>,
        wr: &mut WriteHalf<PeerTls>,
        addr: SocketAddr,
    ) -> Result<String, Status> {
        let hello = Frame::Hello {
            version: VERSION,
            node: self.local.to_string(),
            fingerprint: self.identity.fingerprint,
        };
        let theirs = async {
            wire::write_frame(wr, &hello).await?;
            wire::read_frame(rd).await
        };
        let node = match tokio::time::timeout(CONNECT_TIMEOUT, theirs).await {
            Ok(Ok(Frame::Hello {
                version,
                node,
                fingerprint,
            })) if version == VERSION => {
                // The TLS pin checked the certificate; a Hello naming
                // another one is not a cmx-kms node of this cluster.
                if fingerprint != self.identity.fingerprint {
                    return Err(Status::Incompatible(format!(
                        "{addr}: its Hello names another kmsserver certificate than the one it presented"
                    )));
                }
                node
            }
            Ok(Ok(Frame::Hello { version, .. })) => {
                return Err(Status::Incompatible(format!(
                    "{addr}: speaks version {version}"
                )));
            }
            Ok(Ok(_)) | Ok(Err(wire::WireError::Malformed(_))) => {
                return Err(Status::Incompatible(format!("{addr}: no cmx-kms Hello")));
            }
            Ok(Err(e)) => {
                return Err(Status::Down(format!(
                    "{addr}: {e} (refused by the peer? it must list this node)"
                )));
            }
            Err(_) => return Err(Status::Down(format!("{addr}: no Hello in time"))),
        };
        if node.parse::<SocketAddr>().map(|n| n.ip()) != Ok(addr.ip()) {
            return Err(Status::Incompatible(format!(
                "{addr}: calls itself {}",
                crate::text::untrusted(&node)
            )));
        }
        Ok(node)
    }
}

/// The TLS stream of a connection to a peer.
type PeerTls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

#[path = "peer_dispatch.rs"]
mod dispatch;
