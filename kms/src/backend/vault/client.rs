//! Vault's HTTP API: base URL, `X-Vault-*` headers, JSON bodies, and bounded
//! retries with jittered exponential backoff.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request};
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};

use super::error::is_retryable_status;
use super::http::{BaseUrl, Http, HttpError, RawResponse};
use super::settings::RetryPolicy;

/// Paths Vault serves from the root namespace only: no `X-Vault-Namespace`.
const ROOT_ONLY_PATHS: &[&str] = &[
    "sys/health",
    "sys/seal-status",
    "sys/leader",
    "sys/init",
    "sys/ha-status",
];

/// A Vault endpoint: where it is, which namespace, how to retry.
#[derive(Clone)]
pub(crate) struct VaultHttp {
    http: Http,
    base: BaseUrl,
    namespace: Option<String>,
    retry: RetryPolicy,
}

/// Why a call got no final answer from Vault.
#[derive(Debug)]
pub(crate) struct CallFailure {
    pub error: HttpError,
    pub attempts: u32,
}

impl VaultHttp {
    pub fn new(http: Http, base: BaseUrl, namespace: Option<String>, retry: RetryPolicy) -> Self {
        Self {
            http,
            base,
            namespace,
            retry,
        }
    }

    pub fn base(&self) -> &str {
        &self.base.base
    }

    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// One API call, retried on connection errors and 429/502/503/504 within
    /// the retry policy (never after a timeout, nor a TLS certificate problem). A retryable status that outlives the policy is
    /// returned as the final response.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, CallFailure> {
        let started = Instant::now();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
            let req = self
                .request(method.clone(), path, token, body)
                .map_err(|e| CallFailure {
                    error: e,
                    attempts: attempt,
                })?;
            let outcome = self.http.send(req).await;
            let hint = match &outcome {
                Ok(resp) if is_retryable_status(resp.status) => Some(resp.retry_after),
                Ok(_) => None,
                Err(HttpError::TooLarge(_)) => None,
                // A Vault that accepts and never answers must cost one
                // request timeout, not two (as with KMIP).
                Err(HttpError::Timeout(_)) => None,
                // A certificate problem does not go away by itself.
                Err(e) if super::error::is_tls_config_problem(&e.to_string()) => None,
                Err(_) => Some(None),
            };
            let Some(retry_after) = hint else {
                return outcome.map_err(|e| CallFailure {
                    error: e,
                    attempts: attempt,
                });
            };
            let delay = self.backoff(attempt, retry_after);
            let out_of_budget = attempt >= self.retry.max_attempts.max(1)
                || started.elapsed().saturating_add(delay) > self.retry.max_total;
            if out_of_budget {
                return outcome.map_err(|e| CallFailure {
                    error: e,
                    attempts: attempt,
                });
            }
            tracing::debug!(path, attempt, ?delay, "Vault call failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Full jitter: a random delay up to `initial * 2^(attempt-1)`, capped;
    /// never shorter than the server's `Retry-After` (also capped).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = attempt.saturating_sub(1).min(16);
        let ceiling = self
            .retry
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.retry.max_backoff);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        let jittered = Duration::from_millis(rand::rng().random_range(0..=millis));
        match retry_after {
            Some(ra) => jittered.max(ra.min(self.retry.max_backoff)),
            None => jittered,
        }
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&serde_json::Value>,
    ) -> Result<Request<Full<Bytes>>, HttpError> {
        let url = format!("{}/v1/{}", self.base.base, path);
        let mut b = Request::builder()
            .method(method)
            .uri(url)
            .header("X-Vault-Request", "true");
        if let Some(t) = token {
            let mut v = HeaderValue::from_str(t.expose_secret()).map_err(|_| {
                HttpError::Other(
                    "the Vault token holds characters that cannot go into an HTTP header"
                        .to_owned(),
                )
            })?;
            v.set_sensitive(true);
            b = b.header("X-Vault-Token", v);
        }
        if let Some(ns) = self.namespace.as_deref()
            && !ROOT_ONLY_PATHS.contains(&path)
        {
            b = b.header("X-Vault-Namespace", ns);
        }
        let payload = match body {
            Some(v) => {
                b = b.header(CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).map_err(|e| HttpError::Other(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        b.body(Full::new(payload))
            .map_err(|e| HttpError::Other(format!("cannot build the request to {path}: {e}")))
    }
}

impl VaultHttp {
    /// The same endpoint with a single attempt per call (health checks).
    pub fn without_retries(&self) -> Self {
        let mut c = self.clone();
        c.retry.max_attempts = 1;
        c
    }
}
