//! Building the API's answers: the JSON bodies (the workspace key's written
//! straight into a zeroizing buffer), the response and its headers, the
//! `/v1/ready` answer, and the outcome each request is logged, counted and
//! audited by.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use zeroize::Zeroizing;

use super::body::{ResponseBody, body};
use super::error::ApiError;
use crate::hierarchy::OpInfo;
use crate::readiness::{Report, State};

/// The outcome of one request, for logs, metrics and audit.
pub(super) struct Outcome {
    pub status: StatusCode,
    pub label: &'static str,
    pub info: Option<OpInfo>,
}

/// A JSON value's bytes, in a buffer zeroized when dropped (an answer may
/// carry key material).
pub(super) fn json(value: &serde_json::Value) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(value).unwrap_or_default())
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

/// The outcome label of a readiness answer for the request log and metrics:
/// `ok`, or why it is a 503.
pub(super) fn ready_outcome(status: StatusCode, draining: bool) -> &'static str {
    match (status == StatusCode::OK, draining) {
        (true, _) => "ok",
        (false, true) => "draining",
        (false, false) => "unavailable",
    }
}

/// `{"workspace_key":"<base64>"}` in one zeroizing buffer sized up front (no
/// reallocation leaves a copy of the key behind), the base64 written straight
/// into it: no intermediate string.
pub(super) fn workspace_key_body(key: &[u8]) -> Zeroizing<Vec<u8>> {
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

pub(super) fn ok(
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

/// Build the JSON error response for `e`.
pub(super) fn error_response(e: &ApiError) -> (Response<ResponseBody>, Outcome) {
    let (status, label) = e.status_and_label();
    let v = serde_json::json!({"error": label, "message": e.message()});
    (
        with_allow(respond(status, json(&v), e.retry_after()), e),
        Outcome {
            status,
            label,
            info: None,
        },
    )
}

/// A 405 names the methods its path takes.
fn with_allow(mut resp: Response<ResponseBody>, e: &ApiError) -> Response<ResponseBody> {
    if let ApiError::MethodNotAllowed { allow } = e {
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    resp
}

pub(super) fn respond(
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

#[cfg(test)]
mod tests {
    use super::*;

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
            let outcome = if status == 200 { "ok" } else { "unavailable" };
            assert_eq!(ready_outcome(s, false), outcome);
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
            assert_eq!(ready_outcome(s, true), "draining");
            assert_eq!(v, serde_json::json!({ "state": "draining" }), "{state:?}");
            let (s, v) = ready_response(&report, true, true);
            assert_eq!(s.as_u16(), 503);
            assert_eq!(v["state"], "draining");
            assert_eq!(v["canary"], serde_json::to_value(state).unwrap());
            assert_eq!(v["backend"], "kmip1");
        }
    }
}
