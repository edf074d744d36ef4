//! API v1: routes and handlers.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use zeroize::Zeroizing;

use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;

use super::Peer;
use super::body::{ResponseBody, read_limited};
use super::error::ApiError;
use super::lines::{LineBudget, client_line};
use super::request::{CustomerReq, DecryptReq, Empty, WorkspaceReq, parse};
use super::respond::{
    Outcome, error_response, json, ok, ready_outcome, ready_response, respond, workspace_key_body,
};
use super::served::Finished;
use crate::audit::AuditLog;
use crate::cache::Lookup;
use crate::hierarchy::{KeyError, KeyService, OpInfo};
use crate::limits::{ClientAddr, LimitKey, Rate, RateLimiter};
use crate::metrics::Metrics;
use crate::readiness::Readiness;
use crate::tls::Role;

/// The operations the API serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    CreateCustomerKey,
    CreateUserKey,
    CreateWorkspaceKey,
    DecryptWorkspaceKey,
    RewrapCustomerKey,
    Health,
    Ready,
}

impl Operation {
    pub fn label(self) -> &'static str {
        match self {
            Operation::CreateCustomerKey => "create-customer-key",
            Operation::CreateUserKey => "create-user-key",
            Operation::CreateWorkspaceKey => "create-workspace-key",
            Operation::DecryptWorkspaceKey => "decrypt-workspace-key",
            Operation::RewrapCustomerKey => "rewrap-customer-key",
            Operation::Health => "health",
            Operation::Ready => "ready",
        }
    }

    /// The operation in words, for messages: "may not create a customer key".
    pub fn phrase(self) -> &'static str {
        match self {
            Operation::CreateCustomerKey => "create a customer key",
            Operation::CreateUserKey => "create a user key",
            Operation::CreateWorkspaceKey => "create a workspace key",
            Operation::DecryptWorkspaceKey => "decrypt a workspace key",
            Operation::RewrapCustomerKey => "rewrap a customer key",
            Operation::Health => "ask for health",
            Operation::Ready => "ask for readiness",
        }
    }

    /// Whether `role` may call this operation. Devices may only decrypt.
    pub fn allowed(self, role: Role) -> bool {
        match self {
            Operation::DecryptWorkspaceKey | Operation::Health | Operation::Ready => true,
            Operation::CreateCustomerKey
            | Operation::CreateUserKey
            | Operation::CreateWorkspaceKey
            | Operation::RewrapCustomerKey => role == Role::Backend,
        }
    }
}

/// The route table: method, path, operation. The OpenAPI test checks that
/// `docs/openapi.json` describes exactly these.
pub const ROUTES: &[(&str, &str, Operation)] = &[
    ("POST", "/v1/customer-keys", Operation::CreateCustomerKey),
    ("POST", "/v1/user-keys", Operation::CreateUserKey),
    ("POST", "/v1/workspace-keys", Operation::CreateWorkspaceKey),
    (
        "POST",
        "/v1/workspace-keys/decrypt",
        Operation::DecryptWorkspaceKey,
    ),
    (
        "POST",
        "/v1/customer-keys/rewrap",
        Operation::RewrapCustomerKey,
    ),
    ("GET", "/v1/health", Operation::Health),
    ("GET", "/v1/ready", Operation::Ready),
];

/// The operation label of a request whose method and path name none.
const UNKNOWN_OPERATION: &str = "unknown";

fn route(method: &Method, path: &str) -> Result<Operation, ApiError> {
    let mut allow = None;
    for (m, p, op) in ROUTES {
        if *p == path {
            // HEAD is GET without the body (hyper leaves the body out).
            let get = *m == "GET";
            if method.as_str() == *m || (get && *method == Method::HEAD) {
                return Ok(*op);
            }
            allow = Some(if get { "GET, HEAD" } else { *m });
        }
    }
    Err(match allow {
        Some(allow) => ApiError::MethodNotAllowed { allow },
        None => ApiError::NotFound,
    })
}

/// Settings a reload may change.
#[derive(Clone, Copy, Debug)]
pub struct AppSettings {
    pub max_body: usize,
    /// How long a request body may take to arrive.
    pub body_timeout: std::time::Duration,
    pub backend_rate: Rate,
    pub device_rate: Rate,
}

/// Everything a request handler needs.
pub struct App {
    /// The key service; swapped on reload (the cache is shared across swaps).
    pub keys: ArcSwap<KeyService>,
    pub readiness: Arc<Readiness>,
    pub settings: ArcSwap<AppSettings>,
    pub metrics: Arc<Metrics>,
    pub audit: Option<Arc<AuditLog>>,
    pub limiter: RateLimiter,
    /// Bursts of refused wrapped keys per client identity.
    pub probes: super::probing::ProbeWatch,
    pub ids: super::RequestIds,
    /// The cap on log lines clients can cause (`http/lines.rs`).
    pub lines: super::lines::LineBudget,
    /// The warnings about PROXY headers from untrusted addresses, one per
    /// address per interval.
    pub proxy_warnings: super::proxy::untrusted::Warnings,
}

/// Decrements the in-flight gauge when a request ends, however it ends.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl App {
    /// Handle one request from an authenticated peer: route, rate limit,
    /// serve, audit, count.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
        id: super::RequestId,
    ) -> Response<ResponseBody> {
        let request_id = id.as_str();
        let start = Instant::now();
        self.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(&self.metrics);
        let op = route(req.method(), req.uri().path());
        let op_label = op.as_ref().map(|o| o.label()).unwrap_or(UNKNOWN_OPERATION);
        let keys = self.keys.load_full();
        let is_key_op = op
            .as_ref()
            .is_ok_and(|o| !matches!(o, Operation::Health | Operation::Ready));
        let (mut resp, mut outcome) = match op {
            Ok(op) => match self.admit(op, peer) {
                Ok(()) => self.dispatch(op, req, &keys, peer.role, request_id).await,
                Err(e) => self.refuse_unread(req, &e).await,
            },
            Err(e) => self.refuse_unread(req, &e).await,
        };
        let elapsed = start.elapsed();
        if outcome.label == "invalid-wrapped-key" {
            self.note_refused_blob(peer);
        }
        let (customer_key, cache) = match &outcome.info {
            Some(i) => (
                Some(i.customer_key.hex()),
                i.cache
                    .map(|c| if c == Lookup::Hit { "hit" } else { "miss" }),
            ),
            None => (None, None),
        };
        let done = Finished {
            request_id,
            peer,
            op_label,
            backend: keys.backend_kind().label(),
            customer_key,
            cache,
            elapsed,
        };
        if is_key_op && !self.audit_request(&done, &outcome).await {
            (resp, outcome) = error_response(&ApiError::AuditUnavailable);
        }
        self.metrics
            .request(op_label, peer.role.label(), outcome.label, elapsed);
        done.log(&outcome, &self.lines);
        id.into_header(&mut resp);
        resp
    }

    /// Authorization by role, then the role's rate limit for this identity.
    fn admit(&self, op: Operation, peer: &Peer) -> Result<(), ApiError> {
        if !op.allowed(peer.role) {
            return Err(ApiError::Forbidden(format!(
                "a {} client may not {}; devices may only decrypt workspace keys",
                peer.role.label(),
                op.phrase()
            )));
        }
        if matches!(op, Operation::Health | Operation::Ready) {
            return Ok(());
        }
        let settings = self.settings.load();
        // Backends by certificate; devices by source address, since every
        // agent presents the same device certificate (see `limits`).
        let (key, rate) = match peer.role {
            Role::Backend => (
                LimitKey::Certificate(peer.fingerprint_sha256),
                settings.backend_rate,
            ),
            Role::Device => (
                LimitKey::Address(ClientAddr::from_peer(peer.addr)),
                settings.device_rate,
            ),
        };
        self.limiter.check(&key, rate).map_err(|wait| {
            self.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
            ApiError::TooManyRequests { retry_after: wait }
        })
    }

    async fn dispatch(
        &self,
        op: Operation,
        req: Request<Incoming>,
        keys: &KeyService,
        role: Role,
        request_id: &str,
    ) -> (Response<ResponseBody>, Outcome) {
        match op {
            Operation::Health => ok(StatusCode::OK, &serde_json::json!({"status": "ok"}), None),
            Operation::Ready => {
                let draining = self.readiness.is_draining();
                let (status, v) =
                    ready_response(&self.readiness.current(), draining, role == Role::Backend);
                let (resp, mut outcome) = ok(status, &v, None);
                // A 503 says why in the request log and metrics, not `ok`.
                outcome.label = ready_outcome(status, draining);
                (resp, outcome)
            }
            _ => match self.key_op(op, req, keys, request_id).await {
                Ok((status, body, info)) => (
                    respond(status, body, None),
                    Outcome {
                        status,
                        label: "ok",
                        info: Some(info),
                    },
                ),
                Err((e, info)) => {
                    let (resp, mut outcome) = error_response(&e);
                    outcome.info = info;
                    (resp, outcome)
                }
            },
        }
    }

    /// The body of a key operation: JSON (or no type), at most `max_body`
    /// bytes, within `body_timeout`.
    async fn read_body(&self, req: Request<Incoming>) -> Result<bytes::Bytes, ApiError> {
        let ct_ok = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !ct_ok {
            // Read (and dropped) so that the connection stays usable; one
            // that cannot be read is closed by hyper after the answer.
            self.discard_body(req).await;
            return Err(ApiError::UnsupportedMediaType);
        }
        self.read_whole(req).await
    }

    /// `req`'s whole body, at most `max_body` bytes, within `body_timeout`.
    async fn read_whole(&self, req: Request<Incoming>) -> Result<bytes::Bytes, ApiError> {
        let settings = **self.settings.load();
        let declared = declared_length(&req);
        read_limited(
            req.into_body(),
            declared,
            settings.max_body,
            settings.body_timeout,
        )
        .await
    }

    /// The answer to `req`, refused with `e` before its body was read: the
    /// body is read and dropped first, so that the client's next request can
    /// use the connection; if it cannot be, the answer closes it.
    async fn refuse_unread(
        &self,
        req: Request<Incoming>,
        e: &ApiError,
    ) -> (Response<ResponseBody>, Outcome) {
        let (mut resp, outcome) = error_response(e);
        if !self.discard_body(req).await {
            resp.headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        (resp, outcome)
    }

    /// Read and drop `req`'s body within the body limit and timeout, so that
    /// the connection stays usable (hyper closes a connection whose body was
    /// left unread unless all of it had already arrived); `false` if it
    /// could not be read.
    async fn discard_body(&self, req: Request<Incoming>) -> bool {
        use hyper::body::Body;
        req.body().is_end_stream() || self.read_whole(req).await.is_ok()
    }

    async fn key_op(
        &self,
        op: Operation,
        req: Request<Incoming>,
        keys: &KeyService,
        request_id: &str,
    ) -> Result<(StatusCode, Zeroizing<Vec<u8>>, OpInfo), (ApiError, Option<OpInfo>)> {
        let plain = |e: ApiError| (e, None);
        let bytes = self.read_body(req).await.map_err(plain)?;
        let key_err = |e: KeyError| (key_error(request_id, &e, &self.lines), None);
        match op {
            Operation::CreateCustomerKey => {
                let _: Empty =
                    parse(if bytes.is_empty() { b"{}" } else { &bytes }).map_err(plain)?;
                let (w, info) = keys.create_customer_key().await.map_err(key_err)?;
                let v = serde_json::json!({"wrapped_customer_key": B64.encode(&w.blob), "key_id": w.key_id.to_hex()});
                Ok((StatusCode::CREATED, json(&v), info))
            }
            Operation::CreateUserKey => {
                let c = parse::<CustomerReq>(&bytes)
                    .and_then(|r| r.decode())
                    .map_err(plain)?;
                let (w, info) = keys.create_user_key(&c).await.map_err(key_err)?;
                let v = serde_json::json!({"wrapped_user_key": B64.encode(&w.blob), "key_id": w.key_id.to_hex()});
                Ok((StatusCode::CREATED, json(&v), info))
            }
            Operation::CreateWorkspaceKey => {
                let (c, u) = parse::<WorkspaceReq>(&bytes)
                    .and_then(|r| r.decode())
                    .map_err(plain)?;
                let (w, info) = keys.create_workspace_key(&c, &u).await.map_err(key_err)?;
                let v = serde_json::json!({"wrapped_workspace_key": B64.encode(&w.blob), "key_id": w.key_id.to_hex()});
                Ok((StatusCode::CREATED, json(&v), info))
            }
            Operation::DecryptWorkspaceKey => {
                let [c, u, w] = parse::<DecryptReq>(&bytes)
                    .and_then(|r| r.decode())
                    .map_err(plain)?;
                let (key, info) = keys
                    .decrypt_workspace_key(&c, &u, &w)
                    .await
                    .map_err(key_err)?;
                Ok((StatusCode::OK, workspace_key_body(key.expose()), info))
            }
            Operation::RewrapCustomerKey => {
                let c = parse::<CustomerReq>(&bytes)
                    .and_then(|r| r.decode())
                    .map_err(plain)?;
                let (w, info) = keys.rewrap_customer_key(&c).await.map_err(key_err)?;
                let v = serde_json::json!({"wrapped_customer_key": B64.encode(&w.blob), "key_id": w.key_id.to_hex()});
                Ok((StatusCode::OK, json(&v), info))
            }
            Operation::Health | Operation::Ready => Err(plain(ApiError::Internal)),
        }
    }
}

/// The API error for a failed key operation, logged under the request id:
/// the client hears one answer for every refused blob; the cause is for the
/// operator.
fn key_error(request_id: &str, e: &KeyError, lines: &LineBudget) -> ApiError {
    let api = ApiError::from(e);
    if api == ApiError::InvalidWrappedKey {
        client_line!(lines, INFO, request_id, cause = %e, "wrapped key refused");
    } else {
        client_line!(lines, WARN, request_id, error = %e, "key operation failed");
    }
    api
}

/// The body length a request declares (`Content-Length`), if it does.
fn declared_length(req: &Request<Incoming>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

#[cfg(test)]
mod tests;
