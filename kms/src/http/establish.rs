//! A client connection up to its first request: the PROXY header (from a
//! trusted balancer), the TLS handshake, and the client's identity, all
//! within the handshake timeout. A refusal on the way is logged and counted
//! here, with a stable reason label.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

use super::api::App;
use super::lines::client_line;
use super::proxy::untrusted;
use super::session::Session;
use super::{ServeSettings, TlsContext, pending, proxy};
use crate::tls::{Refusal, pinning};

/// Read the PROXY header of a connection from a trusted balancer `peer` by
/// `deadline`: the client's address, the balancer's (`None` for its own
/// `LOCAL` connections), and the pending slot charged to the client. `None`
/// when the connection is refused (logged and counted here).
async fn proxied(
    tcp: &mut tokio::net::TcpStream,
    peer: SocketAddr,
    slot: pending::Slot,
    app: &App,
    deadline: tokio::time::Instant,
) -> Option<(SocketAddr, Option<SocketAddr>, pending::Slot)> {
    let header = match tokio::time::timeout_at(deadline, proxy::read(tcp)).await {
        Ok(Ok(h)) => h,
        Ok(Err(m)) => {
            app.metrics.connection_closed(m.label());
            client_line!(app.lines, WARN, peer = %peer, reason = m.label(), error = %m,
                "refused a connection from a trusted load balancer: no valid PROXY protocol header \
                 (does the balancer send send-proxy-v2 to this node?)");
            return None;
        }
        Err(_) => {
            app.metrics.connection_closed("proxy-timeout");
            client_line!(app.lines, INFO, peer = %peer, "PROXY header timed out");
            return None;
        }
    };
    let client = header.client(peer);
    let via = matches!(header, proxy::Header::Proxied { .. }).then_some(peer);
    match slot.attribute(client.ip()) {
        Ok(slot) => Some((client, via, slot)),
        Err(over) => {
            app.metrics.connection_closed(over.label());
            tracing::debug!(peer = %client, via = %peer, reason = over.label(), "too many pending connections; closed");
            None
        }
    }
}

/// Refuse a connection from `peer`, not a trusted balancer, that starts
/// with a PROXY header of `version`: warn (once per address per 10 s, under
/// the client-line budget) and count it.
fn refuse_untrusted_header(peer: SocketAddr, version: u8, app: &App) {
    app.metrics.connection_closed("proxy-untrusted");
    let Some(held_back) = app.proxy_warnings.open(peer.ip()) else {
        tracing::debug!(peer = %peer, "PROXY header from an untrusted address; refused");
        return;
    };
    client_line!(app.lines, WARN, peer = %peer, proxy_version = version, held_back,
        "refused a connection that starts with a PROXY protocol header from {}, which \
         kms.server.proxy-protocol.trusted does not list: if it is your load balancer, add its \
         address to kms.server.proxy-protocol.trusted and restart the node (until then every \
         connection it sends here fails; held_back = the ones from this address not logged in \
         the last 10 s)", peer.ip());
}

/// The TLS stream of a client connection.
pub(super) type ClientTls = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// A connection up to the first request: PROXY header (from a trusted
/// balancer), TLS handshake and the client's identity, within the handshake
/// timeout. Returns the stream, the session and the client's address; `None`
/// when the connection is refused (logged and counted here). The pending
/// slot is given back once the client is known.
pub(super) async fn establish(
    mut tcp: tokio::net::TcpStream,
    (peer, trusted): (SocketAddr, bool),
    tls: Arc<ArcSwap<TlsContext>>,
    slot: pending::Slot,
    app: &App,
    settings: ServeSettings,
) -> Option<(ClientTls, Arc<Session>, SocketAddr)> {
    // One deadline for the PROXY header and the handshake together.
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    let (addr, via, slot) = if trusted {
        proxied(&mut tcp, peer, slot, app, deadline).await?
    } else {
        // On timeout the handshake below times out at once, as it would have.
        let sniffed = tokio::time::timeout_at(deadline, untrusted::sniff(&tcp)).await;
        if let Ok(untrusted::Start::Proxy(version)) = sniffed {
            refuse_untrusted_header(peer, version, app);
            return None;
        }
        (peer, None, slot)
    };
    let ctx = tls.load_full();
    let acceptor = TlsAcceptor::from(Arc::clone(&ctx.config));
    // Fallible: a failed handshake gives the connection back, so it is
    // closed only after its line is written.
    let accept = acceptor.accept(tcp).into_fallible();
    let stream = match tokio::time::timeout_at(deadline, accept).await {
        Ok(Ok(s)) => s,
        Ok(Err((e, tcp))) => {
            app.metrics.handshake_failure(handshake_reason(&e));
            client_line!(app.lines, INFO, peer = %addr, error = %e, "TLS handshake failed");
            drop(tcp);
            return None;
        }
        Err(_) => {
            app.metrics.handshake_failure("timeout");
            client_line!(app.lines, INFO, peer = %addr, "TLS handshake timed out");
            return None;
        }
    };
    let session = match identify(&stream, tls, &ctx, (addr, via), settings.max_lifetime) {
        Ok(s) => Arc::new(s),
        Err(why) => {
            // The verifier accepted this certificate a moment ago, so only a
            // clock step or a certificate without a leaf gets here.
            app.metrics.connection_closed(why.label());
            client_line!(app.lines, WARN, peer = %addr, reason = why.label(), "client refused after the handshake");
            return None;
        }
    };
    drop((slot, ctx));
    Some((stream, session, addr))
}

/// The session of a handshaken connection: its client's identity derived
/// from the leaf certificate and `ctx`'s pins, validity checked now.
fn identify(
    stream: &ClientTls,
    tls: Arc<ArcSwap<TlsContext>>,
    ctx: &TlsContext,
    addr: (SocketAddr, Option<SocketAddr>),
    max_lifetime: Duration,
) -> Result<Session, Refusal> {
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or(Refusal::NotPinned)?;
    let now = crate::time::unix_now();
    Session::start(
        tls,
        ctx,
        pinning::fingerprint(cert),
        addr,
        max_lifetime,
        now,
    )
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
