//! The load balancers' readiness check (`kms.health.address`/`kms.health.port`).
//!
//! A load balancer in front of the nodes must check *readiness* (the deep
//! canary through the HSM or Vault), not only that the port accepts. The API
//! listener needs a client certificate the balancer should not hold, and the
//! metrics listener's `/v1/ready` tells details (endpoints, errors) that stay
//! on loopback. So this listener is plain HTTP on the node's address and says
//! one word and nothing else:
//!
//! - `GET /v1/ready`: 200 `ready` (canary `ready` or `degraded`: the node
//!   serves), 503 `unavailable`, or 503 `draining` once the node is stopping;
//! - anything else: 404, empty.
//!
//! Every answer closes its connection. Connections are bounded in total
//! ([`MAX_CONNECTIONS`]) and per source address ([`MAX_PER_SOURCE`], so that
//! one host holding idle connections cannot fill every slot and take the
//! node out of the balancer), and must send their request within
//! [`HEADER_TIMEOUT`]. A connection over a bound is accepted and closed at
//! once (a checker sees a failure, not a timeout). Whoever reaches this port
//! from many addresses can still fill it: docs/haproxy.md says to firewall
//! it to the balancers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::backend::log_gate::LogGate;
use crate::cluster::slots::Slots;
use crate::readiness::{Readiness, State};

/// Most check connections open at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Most check connections from one address (a balancer has one check in
/// flight per server).
pub const MAX_PER_SOURCE: usize = 8;
/// Time a checker has to send its request (a balancer sends it with the
/// connection).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

/// The answer to a request: status and one-word body (HEAD gets the same
/// head, without the body).
pub fn answer(method: &Method, path: &str, readiness: &Readiness) -> (StatusCode, &'static str) {
    if !(method == Method::GET || method == Method::HEAD) || path != "/v1/ready" {
        return (StatusCode::NOT_FOUND, "");
    }
    if readiness.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match readiness.current().state {
        State::Ready | State::Degraded => (StatusCode::OK, "ready"),
        State::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    }
}

/// Serve the check forever.
pub async fn serve(listener: TcpListener, readiness: Arc<Readiness>) {
    let slots = Slots::new(MAX_CONNECTIONS, MAX_PER_SOURCE);
    let warnings = LogGate::every(Duration::from_secs(10));
    loop {
        let Ok((tcp, from)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let permit = match slots.enter(from.ip()) {
            Ok(p) => p,
            Err(full) => {
                drop(tcp);
                if let Some(held_back) = warnings.open() {
                    tracing::warn!(
                        source = %from, reason = full.label(), held_back,
                        "readiness check port: too many open connections (at most {MAX_PER_SOURCE} per address, \
                         {MAX_CONNECTIONS} in all); closed. Only the load balancers should reach this port \
                         (more in the next 10 s are not logged)"
                    );
                }
                continue;
            }
        };
        let readiness = Arc::clone(&readiness);
        tokio::spawn(async move {
            let _permit = permit;
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let (status, word) = answer(req.method(), req.uri().path(), &readiness);
                let mut r = Response::new(Full::new(Bytes::from_static(word.as_bytes())));
                *r.status_mut() = status;
                let h = r.headers_mut();
                h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false)
                .max_buf_size(8192)
                .serve_connection(TokioIo::new(tcp), svc);
            // A checker that never reads its answer is cut off too.
            let _ = tokio::time::timeout(HEADER_TIMEOUT * 2, conn).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_word_and_nothing_else() {
        let r = Readiness::new("soft");
        let get = Method::GET;
        assert_eq!(
            answer(&get, "/v1/ready", &r),
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        );
        assert_eq!(answer(&get, "/v1/health", &r).0, StatusCode::NOT_FOUND);
        assert_eq!(answer(&get, "/metrics", &r).0, StatusCode::NOT_FOUND);
        assert_eq!(
            answer(&Method::POST, "/v1/ready", &r).0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            answer(&Method::HEAD, "/v1/ready", &r).0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        r.set_draining();
        assert_eq!(
            answer(&get, "/v1/ready", &r),
            (StatusCode::SERVICE_UNAVAILABLE, "draining")
        );
        // A requested drain ends; a stop's does not.
        assert!(r.resume());
        assert!(!r.is_draining());
        r.set_stopping();
        assert!(!r.resume());
        assert_eq!(
            answer(&get, "/v1/ready", &r),
            (StatusCode::SERVICE_UNAVAILABLE, "draining")
        );
    }
}
