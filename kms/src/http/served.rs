//! What a served request leaves behind besides its answer: an audit record
//! for a key operation (or, for one refused by role or rate limit, an
//! aggregated notice), and one log line. Neither holds key material.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hyper::StatusCode;
use tracing::debug;

use super::Peer;
use super::api::App;
use super::lines::{LineBudget, client_line};
use super::respond::Outcome;
use crate::audit::{Company, Event as AuditEvent};
use crate::envelope::KeyHex;

/// A request that has been served, as the audit trail and the log see it.
pub(super) struct Finished<'a> {
    pub request_id: &'a str,
    pub peer: &'a Peer,
    pub op_label: &'static str,
    /// The backend's label.
    pub backend: &'static str,
    /// The customer key's id, when the request named one.
    pub customer_key: Option<KeyHex>,
    /// `hit` or `miss`, when the customer key was looked up.
    pub cache: Option<&'static str>,
    pub elapsed: Duration,
}

impl Finished<'_> {
    /// The customer key's id, hex; empty if none.
    fn customer_key(&self) -> &str {
        self.customer_key.as_ref().map_or("", KeyHex::as_str)
    }

    fn latency_us(&self) -> u64 {
        u64::try_from(self.elapsed.as_micros()).unwrap_or(u64::MAX)
    }

    /// The request's log line: at `info` when it says something the audit
    /// trail does not (a bad request, an unknown key, a failure), at `debug`
    /// when the trail already holds it (a key operation served) or counts it
    /// in an aggregated notice (refused for the role, throttled). At the
    /// default `info` a busy node then writes no line per request, so
    /// journald's rate limit never hides its warnings and lifecycle lines
    /// (`draining`, reloads) behind a flood of successes or of one client's
    /// 429s. Lines at `info` are capped too ([`LineBudget`]): a client
    /// sending bad requests in a loop cannot flood the journal either.
    /// `CMX_KMS_LOG=info,cmx_kms::http::served=debug` shows every request.
    pub fn log(&self, outcome: &Outcome, budget: &LineBudget) {
        let peer = self.peer;
        // One list of fields for both levels: `line!(mac!(args,))` calls
        // `mac!(args, <the fields>)`.
        macro_rules! line {
            ($mac:ident!($($pre:tt)*)) => {
                $mac!(
                    $($pre)*
                    request_id = self.request_id,
                    client = %peer.alias,
                    role = peer.role.label(),
                    source = %peer.addr.ip(),
                    via = %Via(peer.via),
                    op = self.op_label,
                    status = outcome.status.as_u16(),
                    outcome = outcome.label,
                    customer_key = %self.customer_key(),
                    cache = self.cache.unwrap_or("-"),
                    latency_us = self.latency_us(),
                    "request"
                )
            };
        }
        if in_the_trail(outcome.status) {
            // Not capped: at debug, where every line goes when it is.
            line!(debug!());
        } else {
            line!(client_line!(budget, INFO,));
        }
    }
}

/// Whether a request with this status leaves its own record or a counted
/// notice in the audit trail, so its log line can be quiet.
fn in_the_trail(status: StatusCode) -> bool {
    status.is_success()
        || matches!(
            status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::FORBIDDEN
        )
}

impl App {
    /// Audits a key operation. One throttled or not allowed for the role is
    /// counted, in one aggregated record per identity and interval (such a
    /// request serves nothing, so it does not wait for its record, and a
    /// client repeating it cannot flood the trail); any other waits for its
    /// own record. False when that record could not be written: the
    /// operation is then refused.
    pub(super) async fn audit_request(&self, done: &Finished<'_>, outcome: &Outcome) -> bool {
        let Some(audit) = &self.audit else {
            return true;
        };
        let peer = done.peer;
        if matches!(
            outcome.status,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::FORBIDDEN
        ) {
            audit.notice(&crate::audit::Notice {
                operation: done.op_label,
                outcome: outcome.label,
                fingerprint: &peer.fingerprint,
                subject: &peer.subject,
                alias: &peer.alias,
                role: peer.role.label(),
            });
            return true;
        }
        let event = AuditEvent {
            request_id: done.request_id,
            client: peer.audit_client(),
            operation: done.op_label,
            key_id: done.customer_key(),
            backend: done.backend,
            cache: done.cache.unwrap_or_default(),
            outcome: outcome.label.into(),
            status: outcome.status.as_u16(),
            latency_us: done.latency_us(),
        };
        if let Err(e) = audit.record(&event, Company::now()).await {
            self.metrics.audit_failures.fetch_add(1, Ordering::Relaxed);
            client_line!(self.lines, ERROR, error = %e, request_id = done.request_id, "audit record not written: refusing the operation");
            return false;
        }
        true
    }

    /// Counts a refused wrapped key and warns once per window on a burst.
    pub(super) fn note_refused_blob(&self, peer: &Peer) {
        self.metrics.invalid_wrapped_key(&peer.alias);
        if let Some(count) = self.probes.record(&peer.alias, Instant::now()) {
            tracing::warn!(
                client = %peer.alias,
                role = peer.role.label(),
                source = %peer.addr.ip(),
                count,
                window_s = super::probing::WINDOW.as_secs(),
                "a burst of refused wrapped keys from one client identity: it may be probing the \
                 key server with forged blobs, or hold corrupted ones; its requests are in the \
                 audit trail (outcome invalid-wrapped-key)"
            );
        }
    }
}

/// A load balancer's address for the log, `-` for a direct connection.
struct Via(Option<std::net::SocketAddr>);

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{}", a.ip()),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_the_audit_trail_lacks_is_logged_at_info() {
        for quiet in [
            StatusCode::OK,
            StatusCode::CREATED,
            StatusCode::FORBIDDEN,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            assert!(in_the_trail(quiet), "{quiet}");
        }
        for loud in [
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
            StatusCode::PAYLOAD_TOO_LARGE,
            StatusCode::UNPROCESSABLE_ENTITY,
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::SERVICE_UNAVAILABLE,
        ] {
            assert!(!in_the_trail(loud), "{loud}");
        }
    }
}
