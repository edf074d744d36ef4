//! A connection's client, judged again before every request.
//!
//! The handshake derives the client's identity from the pins of the moment.
//! A connection may stay open for many requests, across reloads and past the
//! certificate's `notAfter`, so before each request [`Session::check`]:
//!
//! - compares the pin set's generation number with the one the identity was
//!   derived under and, only when a reload changed it, derives the identity
//!   again from the new pins (by the certificate's fingerprint, through
//!   [`PinnedClients::admit`](crate::tls::PinnedClients::admit));
//! - checks the certificate's validity period against the clock.
//!
//! A client that fails either is answered 403 `forbidden` with
//! `Connection: close`, and the connection closes. The same session also
//! tells when the connection has outlived `kms.server.max-connection-lifetime`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::Response;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue};
use zeroize::Zeroizing;

use super::body::{ResponseBody, body};
use super::{Peer, TlsContext};
use crate::tls::pinning::{self, Fingerprint, PinnedClient, Refusal};

/// One connection's authenticated client.
pub struct Session {
    tls: Arc<ArcSwap<TlsContext>>,
    fingerprint: Fingerprint,
    addr: SocketAddr,
    via: Option<SocketAddr>,
    born: Instant,
    max_lifetime: Duration,
    current: Mutex<Current>,
}

struct Current {
    generation: u64,
    pin: PinnedClient,
    peer: Arc<Peer>,
}

fn peer_of(pin: &PinnedClient, addr: SocketAddr, via: Option<SocketAddr>) -> Arc<Peer> {
    Arc::new(Peer {
        alias: pin.alias.clone(),
        role: pin.role,
        subject: pin.subject.clone(),
        serial: pin.serial.clone(),
        fingerprint: pinning::fingerprint_hex(&pin.fingerprint),
        fingerprint_sha256: pin.fingerprint,
        addr,
        via,
        addr_text: crate::text::ip_text(addr.ip()),
        via_text: via
            .map(|v| crate::text::ip_text(v.ip()))
            .unwrap_or_default(),
        audit_client: std::sync::OnceLock::new(),
    })
}

impl Session {
    /// The session of a connection whose handshake presented the certificate
    /// with fingerprint `fingerprint`, judged against `ctx` (the context the
    /// handshake ran under) at `now`. `addr` is the client's address, `via`
    /// the load balancer's when a PROXY header named the client.
    pub fn start(
        tls: Arc<ArcSwap<TlsContext>>,
        ctx: &TlsContext,
        fingerprint: Fingerprint,
        (addr, via): (SocketAddr, Option<SocketAddr>),
        max_lifetime: Duration,
        now: i64,
    ) -> Result<Self, Refusal> {
        let pin = ctx.pins.admit(&fingerprint, now)?.clone();
        let peer = peer_of(&pin, addr, via);
        Ok(Self {
            tls,
            fingerprint,
            addr,
            via,
            born: Instant::now(),
            max_lifetime,
            current: Mutex::new(Current {
                generation: ctx.generation,
                pin,
                peer,
            }),
        })
    }

    /// The client's role as of its handshake or last check.
    pub fn role(&self) -> crate::tls::Role {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pin
            .role
    }

    /// The client as of now: re-derived if the pins changed since last time,
    /// refused if its certificate is no longer pinned or no longer valid.
    pub fn check(&self, now: i64) -> Result<Arc<Peer>, (Refusal, Arc<Peer>)> {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let ctx = self.tls.load();
        if ctx.generation != cur.generation {
            match ctx.pins.admit(&self.fingerprint, now) {
                Ok(pin) => {
                    // The alias or role may have changed with the keystore.
                    if pin.alias != cur.pin.alias || pin.role != cur.pin.role {
                        cur.peer = peer_of(pin, self.addr, self.via);
                    }
                    cur.pin = pin.clone();
                    cur.generation = ctx.generation;
                }
                Err(why) => return Err((why, Arc::clone(&cur.peer))),
            }
        } else if let Err(why) = cur.pin.valid_at(now) {
            return Err((why, Arc::clone(&cur.peer)));
        }
        Ok(Arc::clone(&cur.peer))
    }

    /// Whether the connection has lived `kms.server.max-connection-lifetime`.
    pub fn outlived(&self) -> bool {
        self.born.elapsed() >= self.max_lifetime
    }
}

/// The message a client refused on an open connection reads.
pub fn refusal_message(why: Refusal) -> &'static str {
    match why {
        Refusal::Expired => {
            "this client certificate has expired; the connection is closed. Renew the certificate and have the operator import it into the keystore"
        }
        Refusal::NotYetValid => {
            "this client certificate is not valid yet; the connection is closed. Check the clocks of client and server"
        }
        Refusal::NotPinned | Refusal::Unparsable => {
            "this client certificate is no longer pinned (its keystore entry was removed at the last reload); the connection is closed"
        }
    }
}

/// 403 `forbidden` with `Connection: close` (hyper then closes the connection
/// once the response is written).
pub fn refusal_response(why: Refusal, request_id: super::RequestId) -> Response<ResponseBody> {
    let v = serde_json::json!({"error": "forbidden", "message": refusal_message(why)});
    let bytes = Zeroizing::new(serde_json::to_vec(&v).unwrap_or_default());
    let mut resp = Response::new(body(bytes));
    *resp.status_mut() = hyper::StatusCode::FORBIDDEN;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    h.insert(CONNECTION, HeaderValue::from_static("close"));
    request_id.into_header(&mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{PinnedClients, Role};

    fn pin(alias: &str, fp: u8, not_after: i64) -> PinnedClient {
        PinnedClient {
            alias: alias.into(),
            role: Role::Device,
            subject: format!("CN={alias}"),
            serial: "01".into(),
            fingerprint: [fp; 32],
            not_before: 0,
            not_after,
        }
    }

    /// A context with a throwaway server identity and `pins`.
    fn ctx(generation: u64, pins: Vec<PinnedClient>) -> Arc<TlsContext> {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .unwrap_or_else(|e| panic!("rcgen: {e}"));
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let pins = Arc::new(PinnedClients::new(pins));
        let config =
            crate::tls::server_config(vec![ck.cert.der().clone()], key, Arc::clone(&pins), None)
                .unwrap_or_else(|e| panic!("server config: {e}"));
        Arc::new(TlsContext {
            config,
            pins,
            generation,
        })
    }

    #[test]
    fn rederives_only_when_the_generation_changes_and_checks_validity_every_time() {
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let tls = Arc::new(ArcSwap::new(ctx(1, vec![pin("cmxDevice", 7, 1000)])));
        let first = tls.load_full();
        let s = Session::start(
            Arc::clone(&tls),
            &first,
            [7; 32],
            (addr, None),
            Duration::from_secs(3600),
            10,
        )
        .ok()
        .unwrap_or_else(|| panic!("admitted"));
        assert_eq!(
            s.check(20).ok().map(|p| p.alias.clone()).as_deref(),
            Some("cmxDevice")
        );
        assert_eq!(s.check(1001).err().map(|e| e.0), Some(Refusal::Expired));
        // A reload that keeps the certificate (under a new alias) keeps the session.
        tls.store(ctx(2, vec![pin("cmxDevice2027", 7, 1000)]));
        assert_eq!(
            s.check(30).ok().map(|p| p.alias.clone()).as_deref(),
            Some("cmxDevice2027")
        );
        // A reload without it refuses the next request.
        tls.store(ctx(3, vec![pin("cmxDevice2027", 8, 1000)]));
        assert_eq!(s.check(40).err().map(|e| e.0), Some(Refusal::NotPinned));
    }

    #[test]
    fn lifetime() {
        let addr: SocketAddr = ([127, 0, 0, 1], 1).into();
        let c = ctx(1, vec![pin("cmxDevice", 7, 1000)]);
        let tls = Arc::new(ArcSwap::new(Arc::clone(&c)));
        let s = Session::start(tls, &c, [7; 32], (addr, None), Duration::ZERO, 10)
            .ok()
            .unwrap_or_else(|| panic!("admitted"));
        assert!(s.outlived());
    }
}
