//! One client connection's life: the PROXY header and the TLS handshake
//! ([`establish`](super::establish)), then HTTP/1.1 through hyper, each
//! request judged again ([`session`](super::session)) and served by the
//! [`App`], the connection's timeouts watched beside it, until the client
//! leaves, the connection idles out or outlives its lifetime, its client is
//! refused, or the server stops.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use super::in_place::InPlace;
use super::lines::client_line;
use super::session::{self, Session};
use super::{
    Activity, App, DRAIN_QUIET, Expiry, Peer, ServeSettings, TlsContext, Tracked, Watchdog, body,
    establish, pending, stop,
};
use crate::audit::Notice;
use crate::tls::Refusal;

/// The server's stop signal, as a connection sees it, and the count the
/// backend's reserve is judged by.
pub(super) struct Stop {
    pub(super) rx: stop::Subscriber,
    /// Set when the stop is sent: every response from then on closes.
    pub(super) draining: Arc<AtomicBool>,
    /// Open connections of clients other than the backend.
    pub(super) devices: Arc<AtomicUsize>,
}

/// One client connection: PROXY header (from a trusted balancer), TLS
/// handshake, identity, then HTTP/1.1 until the client leaves, the connection
/// idles out or outlives its lifetime, its client is refused, or the server
/// stops.
pub(super) async fn run(
    tcp: tokio::net::TcpStream,
    (peer, trusted): (SocketAddr, bool),
    tls: Arc<ArcSwap<TlsContext>>,
    slot: pending::Slot,
    app: Arc<App>,
    settings: ServeSettings,
    stop: Stop,
) {
    let Stop {
        rx: mut stop,
        draining,
        devices,
    } = stop;
    let Some((stream, session, addr)) =
        establish::establish(tcp, (peer, trusted), tls, slot, &app, settings).await
    else {
        return;
    };
    let Some(_device) = Device::count(&session, &devices, settings, &app, addr) else {
        return;
    };
    let activity = Activity::new();
    let svc = requests(Arc::clone(&app), session, activity.clone(), draining);
    // hyper's header timer would also run while the connection idles; the
    // activity tracker enforces both timeouts instead. `writev(false)`: the
    // answers are small, so hyper copies the body behind the head and hands
    // the TLS stream one slice (one record, no vector for rustls to gather):
    // about 1 % fewer instructions per request (docs/design/performance.md).
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .writev(false)
        .serve_connection(TokioIo::new(Tracked::new(stream, activity.clone())), svc);
    tokio::pin!(conn);
    let mut watchdog = Watchdog::new();
    let in_place = InPlace::new();
    let mut closing = false;
    let mut idle_limit = settings.idle_timeout;
    loop {
        let watched = watched(
            conn.as_mut(),
            &in_place,
            &activity,
            &mut watchdog,
            closing,
            (idle_limit, settings.header_timeout),
        );
        let event = tokio::select! {
            e = watched => e,
            v = stop.changed(), if idle_limit > DRAIN_QUIET => Event::Stop(v),
        };
        match event {
            Event::Ended(r) => {
                if let Err(e) = r {
                    ended_with(&app, addr, &e);
                }
                return;
            }
            // Draining: the request in progress (and any next one) is
            // answered with `Connection: close`; a connection that idles is
            // closed between requests after a short quiet time. (A resumed
            // drain sends `false`: nothing to do.)
            Event::Stop(true) => idle_limit = DRAIN_QUIET,
            Event::Stop(false) => {}
            Event::Expired(Expiry::Idle) => {
                app.metrics.connection_closed("idle");
                tracing::debug!(peer = %addr, "closing idle connection");
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            Event::Expired(Expiry::SlowHeader) => {
                app.metrics.connection_closed("header-timeout");
                client_line!(app.lines, INFO, peer = %addr, "request headers too slow; closing the connection");
                return;
            }
        }
    }
}

/// Say why a connection ended with an error. A request hyper could not
/// parse it answers itself (400, or 431 for a head over its buffer) and
/// closes: counted and logged as the client's doing, since that answer has
/// no body to tell the client why. (hyper's messages are its own fixed
/// words, never the client's bytes.)
fn ended_with(app: &App, addr: SocketAddr, e: &hyper::Error) {
    if e.is_parse() || e.is_parse_too_large() {
        app.metrics.connection_closed("bad-http");
        client_line!(app.lines, INFO, peer = %addr, error = %e, "malformed HTTP request: answered with hyper's bodiless 400 (431 for a head too large) and closed the connection");
    } else {
        tracing::debug!(peer = %addr, error = %e, "connection ended with an error");
    }
}

/// A connection of a client other than the backend, counted while it lives.
struct Device(Option<Arc<AtomicUsize>>);

impl Device {
    /// Count `session`'s connection if its client is not the backend;
    /// `None` (counted and logged) if it would take one of the connections
    /// kept for the backend: the caller closes it.
    fn count(
        session: &Session,
        devices: &Arc<AtomicUsize>,
        settings: ServeSettings,
        app: &App,
        addr: SocketAddr,
    ) -> Option<Self> {
        if settings.backend_reserved == 0 || session.role() == crate::tls::Role::Backend {
            return Some(Self(None));
        }
        let this = Self(Some(Arc::clone(devices)));
        let open = devices.fetch_add(1, Ordering::Relaxed) + 1;
        let allowed = settings
            .max_connections
            .saturating_sub(settings.backend_reserved);
        if open <= allowed {
            return Some(this);
        }
        app.metrics.connection_closed("reserved-for-backend");
        client_line!(app.lines, WARN, peer = %addr,
            "a device connection would take one of the connections kept for the backend \
             (kms.server.backend-reserved-connections); closed: see who holds the others");
        None
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(d) = &self.0 {
            d.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The connection and its timeouts, polled together: every poll of the
/// connection may have moved its phase (bytes in, a request started or
/// ended), so the watchdog is armed right after it. The connection is polled
/// through `in_place`, which answers its wakes of itself without the
/// scheduler. After a graceful shutdown
/// (`closing`) only the connection is awaited.
fn watched<'a, C>(
    mut conn: std::pin::Pin<&'a mut C>,
    in_place: &'a InPlace,
    activity: &'a Activity,
    watchdog: &'a mut Watchdog,
    closing: bool,
    (idle, header): (Duration, Duration),
) -> impl Future<Output = Event> + 'a
where
    C: Future<Output = Result<(), hyper::Error>>,
{
    std::future::poll_fn(move |cx| {
        if let Poll::Ready(r) = in_place.poll(cx, |cx| conn.as_mut().poll(cx)) {
            return Poll::Ready(Event::Ended(r));
        }
        if closing {
            return Poll::Pending;
        }
        loop {
            watchdog.arm(activity.deadline(idle, header));
            std::task::ready!(watchdog.poll_fired(cx));
            if let Some(e) = activity.expired(idle, header) {
                return Poll::Ready(Event::Expired(e));
            }
        }
    })
}

/// What ends one wait of a connection task.
enum Event {
    Ended(Result<(), hyper::Error>),
    Stop(bool),
    Expired(Expiry),
}

/// The connection's HTTP service: every request through [`serve_one`],
/// its start and end told to `activity` (which enforces the timeouts).
fn requests(
    app: Arc<App>,
    session: Arc<Session>,
    activity: Activity,
    draining: Arc<AtomicBool>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<body::ResponseBody>,
    Error = Infallible,
    Future: Send,
> {
    let closing_for_age = Arc::new(AtomicBool::new(false));
    service_fn(move |req| {
        let (app, session, activity) = (Arc::clone(&app), Arc::clone(&session), activity.clone());
        let closing_for_age = Arc::clone(&closing_for_age);
        let draining = Arc::clone(&draining);
        async move {
            activity.request_started();
            let closing = (&*closing_for_age, &*draining);
            let resp = serve_one(&app, &session, closing, req).await;
            activity.request_ended();
            Ok::<_, Infallible>(resp)
        }
    })
}

/// One request: judge the client again, serve, and say `Connection: close`
/// once the connection has outlived its lifetime or the server drains.
async fn serve_one(
    app: &App,
    session: &Session,
    (closing_for_age, draining): (&AtomicBool, &AtomicBool),
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<body::ResponseBody> {
    let id = app.ids.next();
    let peer = match session.check(crate::time::unix_now()) {
        Ok(peer) => peer,
        Err((why, peer)) => {
            refused(app, &peer, why, id.as_str());
            return session::refusal_response(why, id);
        }
    };
    let mut resp = app.handle(req, &peer, id).await;
    if draining.load(Ordering::Relaxed) {
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    } else if session.outlived() {
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        if !closing_for_age.swap(true, Ordering::Relaxed) {
            app.metrics.connection_closed("max-lifetime");
            tracing::debug!(peer = %peer.addr, "connection reached its maximum lifetime; closing after this response");
        }
    }
    resp
}

/// Log, count and audit a client refused on its open connection.
fn refused(app: &App, peer: &Peer, why: Refusal, request_id: &str) {
    app.metrics.connection_closed(why.label());
    client_line!(
        app.lines,
        WARN,
        request_id,
        peer = %peer.addr,
        client = %peer.alias,
        fingerprint = %peer.fingerprint,
        reason = why.label(),
        "client refused on its open connection; closing it"
    );
    if let Some(audit) = &app.audit {
        // A refusal serves nothing: an aggregated, bounded notice, like a
        // refused handshake (the first of each interval is written at once).
        audit.notice(&Notice {
            operation: "open-connection",
            outcome: why.audit_outcome(),
            fingerprint: &peer.fingerprint,
            subject: &peer.subject,
            alias: &peer.alias,
            role: peer.role.label(),
        });
    }
}
