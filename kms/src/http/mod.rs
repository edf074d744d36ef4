//! The HTTPS server: our own accept loop over rustls, so each connection's
//! client certificate is known, then hyper's HTTP/1.1 per connection
//! (`connection.rs`).
//!
//! Before its handshake a connection holds a [`pending`] slot (bounded per
//! source and in total); after it, a [`session`] judges the client again
//! before every request (against the pins of the latest reload and the
//! certificate's validity) and ends the connection, between requests, once it
//! has lived `kms.server.max-connection-lifetime`.
//!
//! Behind a load balancer that passes TLS through, a connection from a
//! trusted balancer starts with a [`proxy`] header naming the client, read
//! within the handshake timeout before the handshake; the client's address is
//! then what logs, audit, and the per-source bounds and limits use.
//!
//! When `shutdown` resolves the server stops accepting and drains: every
//! response from then on says `Connection: close`, a keep-alive connection
//! idle for [`DRAIN_QUIET`] is closed between requests, and whatever is still
//! open after `kms.server.shutdown-grace` is dropped.

pub mod activity;
pub mod api;
pub mod body;
mod connection;
pub mod error;
mod establish;
pub mod health;
mod in_place;
mod lines;
pub mod metrics;
pub mod pending;
pub mod probing;
pub mod proxy;
mod request;
mod request_id;
mod respond;
mod served;
pub mod session;
mod stop;
#[cfg(test)]
mod test_wakers;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};

pub use activity::{Activity, Expiry, Tracked, Watchdog};
pub use api::App;
pub use lines::LineBudget;
pub use request_id::{RequestId, RequestIds};

use crate::config::FrontSettings;
use crate::tls::{PinnedClients, Role};
use pending::Pending;

/// The authenticated client of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub alias: String,
    pub role: Role,
    pub subject: String,
    pub serial: String,
    /// The certificate's SHA-256 fingerprint, as colon-separated hex (for
    /// logs and audit records) and as bytes (the backend rate limit's key).
    pub fingerprint: String,
    pub fingerprint_sha256: crate::tls::pinning::Fingerprint,
    /// The client's address: the TCP peer, or the source a trusted load
    /// balancer's PROXY header named.
    pub addr: SocketAddr,
    /// The load balancer the connection came through (PROXY protocol).
    pub via: Option<SocketAddr>,
    /// `addr`'s and `via`'s addresses as text (empty without `via`), made
    /// once per connection for the audit records of its requests.
    pub addr_text: String,
    pub via_text: String,
    /// The client's fields of an audit record, rendered for the first
    /// key operation (an idle connection never needs them).
    audit_client: std::sync::OnceLock<crate::audit::Client>,
}

impl Peer {
    /// The client's fields of an audit record (rendered on first use).
    pub fn audit_client(&self) -> &crate::audit::Client {
        self.audit_client.get_or_init(|| {
            crate::audit::Client::new(&crate::audit::ClientFields {
                alias: &self.alias,
                subject: &self.subject,
                serial: &self.serial,
                fingerprint: &self.fingerprint,
                addr: &self.addr_text,
                proxy_addr: &self.via_text,
                role: self.role.label(),
            })
        })
    }
}

/// The TLS side of the server, swapped as a whole on reload.
pub struct TlsContext {
    pub config: Arc<ServerConfig>,
    pub pins: Arc<PinnedClients>,
    /// Different for every context built ([`next_generation`]): an open
    /// connection derives its client's identity again only when it changed.
    pub generation: u64,
}

/// A new pin-set generation number (never the same twice in a process).
pub fn next_generation() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Connection limits and timeouts.
#[derive(Clone, Copy, Debug)]
pub struct ServeSettings {
    pub handshake_timeout: Duration,
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// The most a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    /// After this long, the next response says `Connection: close`.
    pub max_lifetime: Duration,
    /// Most connections not authenticated yet, per source and in total.
    pub max_pending_per_source: usize,
    pub max_pending: usize,
    /// Of `max_connections`, kept for the backend role: a connection of
    /// another client past `max_connections - backend_reserved` of them is
    /// closed after its handshake.
    pub backend_reserved: usize,
}

/// While draining, a keep-alive connection with no request for this long is
/// closed between requests. Not at once: a client that just got a response
/// may already be sending its next request on the connection, and closing
/// under it would fail that request; one that said nothing for a second is
/// not about to, and any request it sends later is refused cleanly.
pub const DRAIN_QUIET: Duration = Duration::from_secs(1);

/// Serve until `shutdown` resolves, then stop accepting and let open
/// connections finish for at most `shutdown_grace`.
///
/// `retire` turning true (a requested drain, `cmx-kms drain`, once its delay
/// is over) retires the open keep-alive connections as a stop does (their
/// next response says `Connection: close`; idle ones close between
/// requests) while the node keeps accepting and serving; turning false
/// (`cmx-kms drain --resume`) keeps connections open again.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ArcSwap<TlsContext>>,
    app: Arc<App>,
    settings: ServeSettings,
    front: Arc<FrontSettings>,
    shutdown: impl Future<Output = ()>,
    mut retire: watch::Receiver<bool>,
) {
    // Every connection task holds a clone of `alive`; once all are gone the
    // channel closes, which is how draining ends.
    let (alive, mut drained) = mpsc::channel::<()>(1);
    let stop_tx = stop::channel();
    let stop_rx = stop_tx.subscribe();
    let draining = Arc::new(AtomicBool::new(false));
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    let conns = Connections::new(tls, app, settings, front, alive, stop_rx, &draining);
    tokio::pin!(shutdown);
    let mut retire_open = true;
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            r = retire.changed(), if retire_open => {
                retire_open = r.is_ok();
                retire_connections(&retire, &draining, &stop_tx);
                continue;
            }
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, addr) = tokio::select! {
            () = &mut shutdown => break,
            r = retire.changed(), if retire_open => {
                retire_open = r.is_ok();
                retire_connections(&retire, &draining, &stop_tx);
                continue;
            }
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        conns.start(tcp, addr, permit);
    }
    drop(listener);
    drop(conns);
    tracing::info!("stopped accepting; draining open connections");
    draining.store(true, Ordering::Relaxed);
    stop_tx.send(true);
    if tokio::time::timeout(settings.shutdown_grace, drained.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = settings.shutdown_grace.as_secs(),
            "connections still open after the grace period"
        );
    }
}

/// What a server's connection tasks share.
struct Connections {
    tls: Arc<ArcSwap<TlsContext>>,
    app: Arc<App>,
    settings: ServeSettings,
    front: Arc<FrontSettings>,
    pending: Arc<Pending>,
    /// Held by every connection task: the channel closes when all are gone.
    alive: mpsc::Sender<()>,
    /// Never polled: every connection's copy starts from nothing seen.
    stop: stop::Subscriber,
    draining: Arc<AtomicBool>,
    /// Connections of clients other than the backend, past their handshake
    /// (the backend's reserve is judged by it).
    devices: Arc<AtomicUsize>,
}

impl Connections {
    fn new(
        tls: Arc<ArcSwap<TlsContext>>,
        app: Arc<App>,
        settings: ServeSettings,
        front: Arc<FrontSettings>,
        alive: mpsc::Sender<()>,
        stop: stop::Subscriber,
        draining: &Arc<AtomicBool>,
    ) -> Self {
        let pending = Arc::new(Pending::new(
            settings.max_pending_per_source,
            settings.max_pending,
            Arc::clone(&app.metrics),
        ));
        Self {
            tls,
            app,
            settings,
            front,
            pending,
            alive,
            stop,
            draining: Arc::clone(draining),
            devices: Arc::default(),
        }
    }

    /// Takes an accepted connection into a pending slot and serves it in a
    /// task of its own, or closes it at once when there are too many
    /// pending connections.
    fn start(&self, tcp: tokio::net::TcpStream, addr: SocketAddr, permit: OwnedSemaphorePermit) {
        // A trusted balancer carries many clients: its slot is charged to
        // the client its PROXY header names (see `pending`).
        let trusted = self.front.trusts(addr.ip());
        let entered = if trusted {
            self.pending.enter_unsourced()
        } else {
            self.pending.enter(addr.ip())
        };
        let slot = match entered {
            Ok(slot) => slot,
            Err(over) => {
                // Closed at once: dropping the stream resets or ends it.
                self.app.metrics.connection_closed(over.label());
                tracing::debug!(peer = %addr, reason = over.label(), "too many pending connections; closed");
                return;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = Arc::clone(&self.app);
        let tls = Arc::clone(&self.tls);
        let (alive, stop) = (self.alive.clone(), self.stop.clone());
        let draining = Arc::clone(&self.draining);
        let devices = Arc::clone(&self.devices);
        let settings = self.settings;
        tokio::spawn(async move {
            let _alive = alive;
            let _permit = permit;
            let stop = connection::Stop {
                rx: stop,
                draining,
                devices,
            };
            connection::run(tcp, (addr, trusted), tls, slot, app, settings, stop).await;
        });
    }
}

/// Apply a requested drain's state to the connections: every response says
/// `Connection: close` while it holds, and open connections are told (as on
/// a stop) to close between requests.
fn retire_connections(
    retire: &watch::Receiver<bool>,
    draining: &AtomicBool,
    stop_tx: &stop::Sender,
) {
    let on = *retire.borrow();
    draining.store(on, Ordering::Relaxed);
    stop_tx.send(on);
}
