//! API v1: routes and handlers.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use zeroize::Zeroizing;

use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;

use super::Peer;
use super::body::{ResponseBody, body, read_limited};
use super::error::ApiError;
use super::lines::{LineBudget, client_line};
use super::request::{CustomerReq, DecryptReq, Empty, WorkspaceReq, parse};
use super::served::Finished;
use crate::audit::AuditLog;
use crate::cache::Lookup;
use crate::hierarchy::{KeyError, KeyService, OpInfo};
use crate::limits::{ClientAddr, LimitKey, Rate, RateLimiter};
use crate::metrics::Metrics;
use crate::readiness::{Readiness, Report, State};
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
    let mut path_known = false;
    for (m, p, op) in ROUTES {
        if *p == path {
            path_known = true;
            if method.as_str() == *m {
                return Ok(*op);
            }
        }
    }
    Err(if path_known {
        ApiError::MethodNotAllowed
    } else {
        ApiError::NotFound
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
}

/// The outcome of one request, for logs, metrics and audit.
pub(super) struct Outcome {
    pub status: StatusCode,
    pub label: &'static str,
    pub info: Option<OpInfo>,
}

/// Decrements the in-flight gauge when a request ends, however it ends.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn json(value: &serde_json::Value) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(value).unwrap_or_default())
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
                Err(e) => error_response(&e),
            },
            Err(e) => error_response(&e),
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
                op.label().replace('-', " ")
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
                let (status, v) = ready_response(
                    &self.readiness.current(),
                    self.readiness.is_draining(),
                    role == Role::Backend,
                );
                ok(status, &v, None)
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
            return Err(ApiError::UnsupportedMediaType);
        }
        let settings = **self.settings.load();
        let declared = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        read_limited(
            req.into_body(),
            declared,
            settings.max_body,
            settings.body_timeout,
        )
        .await
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

/// The `/v1/ready` answer. With `detailed` (the backend role, and the
/// loopback metrics listener) the whole canary report: backend, endpoints,
/// reasons. Otherwise (devices) only `ready`, `unavailable` or `draining`: a
/// device needs to know whether to try, not how the operator's HSM or Vault
/// is doing, and the device certificate is on every agent. `degraded` still
/// serves, so a device sees it as `ready`.
///
/// A draining node (stopping, or `cmx-kms drain`) answers 503 `draining`
/// whatever its canary says, on every listener, so whatever checks it takes
/// it out; the detailed report keeps the canary's own state in `canary`.
pub fn ready_response(
    report: &Report,
    draining: bool,
    detailed: bool,
) -> (StatusCode, serde_json::Value) {
    let status = if draining || report.state == State::Unavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let device_state = match report.state {
        State::Unavailable => "unavailable",
        State::Ready | State::Degraded => "ready",
    };
    let v = match (detailed, draining) {
        (true, false) => serde_json::to_value(report).unwrap_or_default(),
        (true, true) => {
            let mut v = serde_json::to_value(report).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                let canary = m.insert("state".into(), "draining".into());
                m.insert("canary".into(), canary.unwrap_or_default());
            }
            v
        }
        (false, true) => serde_json::json!({ "state": "draining" }),
        (false, false) => serde_json::json!({ "state": device_state }),
    };
    (status, v)
}

/// `{"workspace_key":"<base64>"}` in one zeroizing buffer sized up front (no
/// reallocation leaves a copy of the key behind), the base64 written straight
/// into it: no intermediate string.
fn workspace_key_body(key: &[u8]) -> Zeroizing<Vec<u8>> {
    const PREFIX: &[u8] = b"{\"workspace_key\":\"";
    const SUFFIX: &[u8] = b"\"}";
    let enc_len = key.len().div_ceil(3) * 4;
    let mut out = Zeroizing::new(vec![0u8; PREFIX.len() + enc_len + SUFFIX.len()]);
    let (head, rest) = out.split_at_mut(PREFIX.len());
    head.copy_from_slice(PREFIX);
    let (enc, tail) = rest.split_at_mut(enc_len);
    // `enc` is exactly the padded length, so encoding cannot run short.
    let written = B64.encode_slice(key, enc).unwrap_or(0);
    tail.copy_from_slice(SUFFIX);
    if written != enc_len {
        // Unreachable by the sizes above; an empty body is refused by every client.
        out.clear();
    }
    out
}

fn ok(
    status: StatusCode,
    v: &serde_json::Value,
    info: Option<OpInfo>,
) -> (Response<ResponseBody>, Outcome) {
    (
        respond(status, json(v), None),
        Outcome {
            status,
            label: "ok",
            info,
        },
    )
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

/// Build the JSON error response for `e`.
fn error_response(e: &ApiError) -> (Response<ResponseBody>, Outcome) {
    let (status, label) = e.status_and_label();
    let v = serde_json::json!({"error": label, "message": e.message()});
    (
        respond(status, json(&v), e.retry_after()),
        Outcome {
            status,
            label,
            info: None,
        },
    )
}

fn respond(
    status: StatusCode,
    data: Zeroizing<Vec<u8>>,
    retry_after: Option<std::time::Duration>,
) -> Response<ResponseBody> {
    let mut resp = Response::new(body(data));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert("cache-control", HeaderValue::from_static("no-store"));
    if let Some(ra) = retry_after {
        let secs = ra.as_secs().max(1);
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            h.insert(RETRY_AFTER, v);
        }
    }
    resp
}

/// An address as its `Display` text, IPv4 without `core::fmt` (every key
/// operation's audit record carries one).
pub(super) fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                crate::text::push_decimal(&mut out, u64::from(octet));
            }
            out
        }
        std::net::IpAddr::V6(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::error::LABELS;
    use std::collections::BTreeSet;

    #[test]
    fn every_operation_and_role_is_counted_without_a_lock() {
        use crate::metrics::{OPERATIONS, ROLES};
        for (_, _, op) in ROUTES {
            assert!(OPERATIONS.contains(&op.label()), "{}", op.label());
        }
        assert!(OPERATIONS.contains(&UNKNOWN_OPERATION));
        for role in [Role::Backend, Role::Device] {
            assert!(ROLES.contains(&role.label()), "{}", role.label());
        }
    }

    #[test]
    fn workspace_key_body_is_the_json_of_the_key() {
        for len in [0usize, 1, 2, 3, 32, 33] {
            let key: Vec<u8> = (0..len).map(|i| (i * 37 + 5) as u8).collect();
            let body = workspace_key_body(&key);
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                v,
                serde_json::json!({"workspace_key": B64.encode(&key)}),
                "{len}"
            );
        }
    }

    #[test]
    fn ip_text_is_the_display_text() {
        for a in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "::ffff:10.0.0.1",
            "2001:db8::42",
        ] {
            let ip: std::net::IpAddr = a.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string(), "{a}");
        }
    }

    fn doc() -> serde_json::Value {
        serde_json::from_str(include_str!("../../../docs/openapi.json")).unwrap()
    }

    #[test]
    fn openapi_paths_match_the_route_table() {
        let doc = doc();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<_> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(documented, served);
    }

    #[test]
    fn openapi_roles_match_authorization() {
        let doc = doc();
        for (m, p, op) in ROUTES {
            let roles: BTreeSet<String> = doc["paths"][p][m.to_lowercase()]["x-roles"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            let allowed: BTreeSet<String> = [Role::Backend, Role::Device]
                .into_iter()
                .filter(|r| op.allowed(*r))
                .map(|r| r.label().to_string())
                .collect();
            assert_eq!(roles, allowed, "{m} {p}");
        }
    }

    #[test]
    fn devices_see_only_ready_or_unavailable() {
        use crate::readiness::Endpoint;
        for (state, device_state, status) in [
            (State::Ready, "ready", 200),
            (State::Degraded, "ready", 200),
            (State::Unavailable, "unavailable", 503),
        ] {
            let report = Report {
                state,
                backend: "kmip1",
                latency_ms: Some(3),
                detail: "connection refused by hsm-a.internal:5696".into(),
                endpoints: vec![Endpoint {
                    endpoint: "hsm-a.internal:5696".into(),
                    up: false,
                    detail: "connection refused".into(),
                }],
            };
            let (s, v) = ready_response(&report, false, false);
            assert_eq!(s.as_u16(), status);
            assert_eq!(v, serde_json::json!({ "state": device_state }), "{state:?}");
            let (s, v) = ready_response(&report, false, true);
            assert_eq!(s.as_u16(), status);
            assert_eq!(v["backend"], "kmip1");
            assert_eq!(v["endpoints"][0]["endpoint"], "hsm-a.internal:5696");
            assert_eq!(v["state"], serde_json::to_value(state).unwrap());

            // Draining: 503 `draining` for everyone, whatever the canary says;
            // the detailed report keeps the canary's state.
            let (s, v) = ready_response(&report, true, false);
            assert_eq!(s.as_u16(), 503);
            assert_eq!(v, serde_json::json!({ "state": "draining" }), "{state:?}");
            let (s, v) = ready_response(&report, true, true);
            assert_eq!(s.as_u16(), 503);
            assert_eq!(v["state"], "draining");
            assert_eq!(v["canary"], serde_json::to_value(state).unwrap());
            assert_eq!(v["backend"], "kmip1");
        }
    }

    #[test]
    fn openapi_error_labels_match() {
        let doc = doc();
        let documented: BTreeSet<&str> =
            doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
        assert_eq!(documented, LABELS.iter().copied().collect::<BTreeSet<_>>());
        // And every error's label is in LABELS, with the status the document gives it.
        let samples = [
            ApiError::BadRequest(String::new()),
            ApiError::InvalidWrappedKey,
            ApiError::Forbidden(String::new()),
            ApiError::NotFound,
            ApiError::MethodNotAllowed,
            ApiError::UnsupportedMediaType,
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::RequestTimeout,
            ApiError::TooManyRequests {
                retry_after: std::time::Duration::from_secs(1),
            },
            ApiError::BackendUnavailable {
                retry_after: std::time::Duration::from_secs(1),
            },
            ApiError::BackendFailure,
            ApiError::AuditUnavailable,
            ApiError::Internal,
        ];
        let text = include_str!("../../../docs/openapi.json");
        for e in samples {
            let (status, label) = e.status_and_label();
            assert!(LABELS.contains(&label), "{label}");
            if !matches!(e, ApiError::NotFound | ApiError::MethodNotAllowed) {
                let decrypt = &doc["paths"]["/v1/workspace-keys/decrypt"]["post"]["responses"]
                    [status.as_str()];
                assert!(
                    decrypt["description"].as_str().unwrap().contains(label),
                    "{label} under {status} in the document"
                );
            }
            assert!(text.contains(label));
        }
    }
}
