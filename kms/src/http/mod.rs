//! The HTTPS server: our own accept loop over rustls, so each connection's
//! client certificate is known, then hyper's HTTP/1.1 per connection.

pub mod activity;
pub mod api;
pub mod body;
pub mod error;
pub mod metrics;
pub mod probing;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;

pub use activity::{Activity, Expiry, Tracked};
pub use api::App;

use crate::tls::{PinnedClients, Role, pinning};

/// The authenticated client of a connection.
#[derive(Clone, Debug)]
pub struct Peer {
    pub alias: String,
    pub role: Role,
    pub subject: String,
    pub serial: String,
    pub fingerprint: String,
    pub addr: SocketAddr,
}

/// The TLS side of the server, swapped as a whole on reload.
pub struct TlsContext {
    pub config: Arc<ServerConfig>,
    pub pins: Arc<PinnedClients>,
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
}

/// Serve until `shutdown` resolves, then stop accepting and let open
/// connections finish for at most `shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ArcSwap<TlsContext>>,
    app: Arc<App>,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) {
    // Every connection task holds a clone of `alive`; once all are gone the
    // channel closes, which is how draining ends.
    let (alive, mut drained) = mpsc::channel::<()>(1);
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            p = Arc::clone(&slots).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, addr) = tokio::select! {
            () = &mut shutdown => break,
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
        let _ = tcp.set_nodelay(true);
        let ctx = tls.load_full();
        let app = Arc::clone(&app);
        let (alive, stop) = (alive.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let _alive = alive;
            let _permit = permit;
            connection(tcp, addr, ctx, app, settings, stop).await;
        });
    }
    drop(listener);
    drop(alive);
    tracing::info!("stopped accepting; draining open connections");
    let _ = stop_tx.send(true);
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

/// One client connection: TLS handshake, identity, then HTTP/1.1 until the
/// client leaves, the connection idles out, or the server stops.
async fn connection(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    ctx: Arc<TlsContext>,
    app: Arc<App>,
    settings: ServeSettings,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(Arc::clone(&ctx.config));
    let stream = match tokio::time::timeout(settings.handshake_timeout, acceptor.accept(tcp)).await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            app.metrics.handshake_failure(handshake_reason(&e));
            tracing::info!(peer = %addr, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            app.metrics.handshake_failure("timeout");
            tracing::info!(peer = %addr, "TLS handshake timed out");
            return;
        }
    };
    let Some(peer) = identify(&stream, &ctx.pins, addr) else {
        tracing::warn!(peer = %addr, "handshake completed without a pinned client certificate");
        return;
    };
    let peer = Arc::new(peer);
    let activity = Activity::new();
    let svc = {
        let activity = activity.clone();
        service_fn(move |req| {
            let (app, peer, activity) = (Arc::clone(&app), Arc::clone(&peer), activity.clone());
            async move {
                activity.request_started();
                let id = app.ids.next();
                let resp = app.handle(req, &peer, &id).await;
                activity.request_ended();
                Ok::<_, Infallible>(resp)
            }
        })
    };
    // hyper's header timer would also run while the connection idles; the
    // activity tracker enforces both timeouts instead.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .serve_connection(TokioIo::new(Tracked::new(stream, activity.clone())), svc);
    tokio::pin!(conn);
    let period = settings.header_timeout.min(settings.idle_timeout) / 4;
    let mut tick =
        tokio::time::interval(period.clamp(Duration::from_millis(25), Duration::from_secs(1)));
    let mut closing = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                // Finish the request in progress, then close.
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = tick.tick(), if !closing => match activity.expired(settings.idle_timeout, settings.header_timeout) {
                Some(Expiry::Idle) => {
                    tracing::debug!(peer = %addr, "closing idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                Some(Expiry::SlowHeader) => {
                    tracing::info!(peer = %addr, "request headers too slow; closing the connection");
                    return;
                }
                None => {}
            },
        }
    }
}

fn identify(
    stream: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    pins: &PinnedClients,
    addr: SocketAddr,
) -> Option<Peer> {
    let cert = stream.get_ref().1.peer_certificates()?.first()?;
    let pin = pins.lookup(cert)?;
    Some(Peer {
        alias: pin.alias.clone(),
        role: pin.role,
        subject: pin.subject.clone(),
        serial: pin.serial.clone(),
        fingerprint: pinning::fingerprint_hex(&pin.fingerprint),
        addr,
    })
}

/// A stable reason label for a failed handshake.
fn handshake_reason(e: &std::io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) else {
        return "io";
    };
    match tls {
        Error::NoCertificatesPresented => "no-certificate",
        Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure) => "not-pinned",
        Error::InvalidCertificate(CertificateError::Expired) => "expired",
        Error::InvalidCertificate(CertificateError::NotValidYet) => "not-yet-valid",
        Error::InvalidCertificate(_) => "bad-certificate",
        Error::PeerIncompatible(_) => "incompatible",
        Error::NoApplicationProtocol => "no-alpn",
        Error::AlertReceived(_) => "alert-received",
        _ => "protocol",
    }
}

/// Request ids: a random prefix drawn once per process, then a counter, so
/// ids are unique across nodes and restarts without a system call per request.
pub struct RequestIds {
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        let mut b = [0u8; 4];
        // Without randomness the ids are still unique within this process.
        let _ = getrandom::fill(&mut b);
        Self {
            prefix: crate::hex::encode(&b),
            next: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// The next id: 8 hex digits of prefix, 8 of counter.
    pub fn next(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut id = self.prefix.clone();
        id.push_str(&crate::hex::encode(&(n as u32).to_be_bytes()));
        id
    }
}

impl Default for RequestIds {
    fn default() -> Self {
        Self::new()
    }
}
