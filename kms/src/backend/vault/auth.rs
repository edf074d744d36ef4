//! Vault tokens: obtaining one (static token, or a login: AppRole, TLS
//! certificate, Azure managed identity), renewing it before it expires, and
//! replacing it when it cannot be renewed (max TTL reached, revoked, 403).
//!
//! The background loop lives in [`super::renew`]; this file holds the state
//! and the single-flight operations on it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::Notify;

use super::azure::Imds;
use super::client::VaultHttp;
use super::error::{Ctx, DEFAULT_RETRY_AFTER, Op, classify, vault_message};
use super::login::{self, read_secret_file};
use super::settings::{TokenSource, VaultAuth};
use super::token::Token;
use crate::backend::BackendError;

#[derive(Deserialize)]
struct AuthReply {
    auth: Option<AuthData>,
}

#[derive(Deserialize)]
struct AuthData {
    client_token: Option<String>,
    lease_duration: Option<u64>,
    renewable: Option<bool>,
}

#[derive(Deserialize)]
struct LookupReply {
    data: Option<LookupData>,
}

#[derive(Deserialize)]
struct LookupData {
    ttl: Option<u64>,
    renewable: Option<bool>,
}

/// Token state and the ways to refresh it.
pub(crate) struct Auth {
    http: VaultHttp,
    method: VaultAuth,
    imds: Option<Imds>,
    pub renew_before: Duration,
    current: Mutex<Option<Arc<Token>>>,
    /// Serialises logins, reloads and renewals (single flight).
    refresh: tokio::sync::Mutex<()>,
    /// The last attempt to obtain a token that failed, and when it ended:
    /// callers that waited for it get its answer instead of trying again, so
    /// a Vault that does not answer costs each request one timeout, not one
    /// per caller ahead of it in line (the renewal loop is one of them).
    failed: Mutex<Option<(Instant, BackendError)>>,
    generation: AtomicU64,
    /// Woken when the token changed, so the renewal loop re-plans.
    pub changed: Notify,
}

impl Auth {
    pub fn new(
        http: VaultHttp,
        method: VaultAuth,
        imds: Option<Imds>,
        renew_before: Duration,
    ) -> Self {
        Self {
            http,
            method,
            imds,
            renew_before,
            current: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            failed: Mutex::new(None),
            generation: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    pub fn method(&self) -> &VaultAuth {
        &self.method
    }

    /// Whether a new token can be obtained without the operator.
    pub fn can_login(&self) -> bool {
        !matches!(self.method, VaultAuth::Token(_))
    }

    /// The token held now, if any (no network).
    pub fn peek(&self) -> Option<Arc<Token>> {
        crate::sync::lock(&self.current).clone()
    }

    fn store(&self, token: Option<Arc<Token>>) {
        *crate::sync::lock(&self.current) = token;
        self.changed.notify_one();
    }

    /// Time until the held token expires; `None` when no token is held or it
    /// never expires.
    pub fn ttl_remaining(&self) -> Option<Duration> {
        self.peek()
            .and_then(|t| t.expires_at)
            .map(|e| e.saturating_duration_since(Instant::now()))
    }

    /// A usable token: the held one, or a new one (login or static load).
    pub async fn token(&self) -> Result<Arc<Token>, BackendError> {
        if let Some(t) = self.peek().filter(|t| !t.is_expired()) {
            return Ok(t);
        }
        let asked = Instant::now();
        let _g = self.refresh.lock().await;
        if let Some(t) = self.peek().filter(|t| !t.is_expired()) {
            return Ok(t);
        }
        if let Some((ended, e)) = crate::sync::lock(&self.failed).as_ref()
            && *ended >= asked
        {
            return Err(e.clone());
        }
        let held = self.peek();
        self.obtain(held.as_deref()).await
    }

    /// A call with `seen` got 403. Returns a token to retry with when `seen`
    /// was dead and has been replaced; `Ok(None)` when `seen` is valid (the
    /// policy really denies the call).
    pub async fn recover_from_forbidden(
        &self,
        seen: &Token,
    ) -> Result<Option<Arc<Token>>, BackendError> {
        let _g = self.refresh.lock().await;
        if let Some(t) = self.peek()
            && t.generation != seen.generation
        {
            return Ok(Some(t));
        }
        match self.lookup(&seen.secret).await {
            Ok(_) => return Ok(None),
            Err(BackendError::PermissionDenied(_)) => {}
            Err(e) => return Err(e),
        }
        tracing::warn!(
            method = self.method.method_name(),
            "Vault no longer accepts the token (revoked or expired); obtaining a new one"
        );
        self.obtain(Some(seen)).await.map(Some)
    }

    /// Replace the held token `old` (renewal impossible). Single flight.
    pub async fn replace(&self, old: &Token) -> Result<Arc<Token>, BackendError> {
        let _g = self.refresh.lock().await;
        if let Some(t) = self.peek()
            && t.generation != old.generation
        {
            return Ok(t);
        }
        self.obtain(Some(old)).await
    }

    /// Renew `old` with `auth/token/renew-self`. Returns the renewed token.
    pub async fn renew(&self, old: &Token) -> Result<Arc<Token>, BackendError> {
        let _g = self.refresh.lock().await;
        if let Some(t) = self.peek()
            && t.generation != old.generation
        {
            return Ok(t);
        }
        let reply = self
            .post_auth(
                "auth/token/renew-self",
                Some(&old.secret),
                &json!({}),
                Op::Renew,
            )
            .await?;
        let lease = Duration::from_secs(reply.lease_duration.unwrap_or(0));
        // Vault caps a renewal at the token's max TTL; a lease clearly shorter
        // than the usual one means the end is near (1 s tolerance: TTLs are
        // whole seconds).
        let capped = lease.saturating_add(Duration::from_secs(1)) < old.full_ttl;
        let token = Arc::new(Token {
            secret: old.secret.clone(),
            generation: old.generation,
            obtained_at: old.obtained_at,
            expires_at: Some(Instant::now() + lease),
            full_ttl: old.full_ttl.max(lease),
            renewable: reply.renewable.unwrap_or(false),
            capped,
        });
        tracing::debug!(ttl = ?lease, capped, "Vault token renewed");
        self.store(Some(token.clone()));
        Ok(token)
    }

    /// Obtain a new token; `old` is the one being replaced, if any. Caller
    /// holds `refresh`.
    async fn obtain(&self, old: Option<&Token>) -> Result<Arc<Token>, BackendError> {
        let generation = self
            .generation
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1);
        let got = match &self.method {
            VaultAuth::Token(src) => self.load_static(src, old, generation).await,
            _ => self.login(generation).await,
        };
        let token = match got {
            Ok(token) => Arc::new(token),
            Err(e) => {
                *crate::sync::lock(&self.failed) = Some((Instant::now(), e.clone()));
                return Err(e);
            }
        };
        self.store(Some(token.clone()));
        Ok(token)
    }

    async fn load_static(
        &self,
        src: &TokenSource,
        old: Option<&Token>,
        generation: u64,
    ) -> Result<Token, BackendError> {
        let (secret, origin) = match src {
            TokenSource::File(p) => (
                read_secret_file(p, "Vault token")?,
                format!("the token file {}", p.display()),
            ),
            TokenSource::Env(s) => (s.clone(), "VAULT_TOKEN".to_owned()),
        };
        if let Some(old) = old
            && old.secret.expose_secret() == secret.expose_secret()
        {
            let how = match src {
                TokenSource::File(p) => format!(
                    "write a new token to {} (it is read again automatically)",
                    p.display()
                ),
                TokenSource::Env(_) => "restart cmx-kms with a new VAULT_TOKEN".to_owned(),
            };
            return Err(BackendError::PermissionDenied(format!(
                "the Vault token from {origin} expired or was revoked, and a token given as \
                     `token` cannot be obtained again: {how}, or use a login method \
                     (kms.hsm.vault.auth)"
            )));
        }
        let (ttl, renewable) = self.lookup(&secret).await.map_err(|e| match e {
            BackendError::PermissionDenied(_) => BackendError::PermissionDenied(format!(
                "Vault does not accept the token from {origin} (expired, revoked or wrong)"
            )),
            other => other,
        })?;
        Ok(Token::fresh(secret, generation, ttl, renewable))
    }

    /// `auth/token/lookup-self`: the token's remaining TTL and renewability.
    async fn lookup(&self, secret: &SecretString) -> Result<(Duration, bool), BackendError> {
        let path = "auth/token/lookup-self";
        let resp = self
            .http
            .call(Method::GET, path, Some(secret), None)
            .await
            .map_err(|f| unavailable(&self.http, path, &f.error.to_string()))?;
        if !resp.status.is_success() {
            return Err(classify(
                resp.status,
                &vault_message(&resp.body),
                resp.retry_after,
                &self.ctx(Op::Lookup, path),
            ));
        }
        let reply: LookupReply = serde_json::from_slice(&resp.body).map_err(|e| {
            BackendError::Protocol(format!(
                "Vault's token lookup answer is not understood: {e}"
            ))
        })?;
        let data = reply
            .data
            .ok_or_else(|| BackendError::Protocol("Vault's token lookup has no data".to_owned()))?;
        Ok((
            Duration::from_secs(data.ttl.unwrap_or(0)),
            data.renewable.unwrap_or(false),
        ))
    }

    async fn login(&self, generation: u64) -> Result<Token, BackendError> {
        let (path, body) = login::request(&self.method, self.imds.as_ref()).await?;
        let reply = self.post_auth(&path, None, &body, Op::Login).await?;
        let secret = reply
            .client_token
            .filter(|t| !t.is_empty())
            .map(SecretString::from)
            .ok_or_else(|| {
                BackendError::Protocol(format!(
                    "Vault's answer to the login at {path} has no token"
                ))
            })?;
        let ttl = Duration::from_secs(reply.lease_duration.unwrap_or(0));
        tracing::info!(
            method = self.method.method_name(),
            ttl = ?ttl,
            "logged in to Vault"
        );
        let renewable = reply.renewable.unwrap_or(false);
        Ok(Token::fresh(secret, generation, ttl, renewable))
    }

    /// POST a login or renewal and read its `auth` section.
    async fn post_auth(
        &self,
        path: &str,
        token: Option<&SecretString>,
        body: &serde_json::Value,
        op: Op,
    ) -> Result<AuthData, BackendError> {
        let resp = self
            .http
            .call(Method::POST, path, token, Some(body))
            .await
            .map_err(|f| unavailable(&self.http, path, &f.error.to_string()))?;
        if !resp.status.is_success() {
            let msg = vault_message(&resp.body);
            return Err(match (op, resp.status.as_u16()) {
                (Op::Login, 400 | 401 | 403) => BackendError::PermissionDenied(format!(
                    "Vault refused the {} login at {path}: {msg}; check the role and the \
                     credentials configured for kms.hsm.vault.auth",
                    self.method.method_name()
                )),
                _ => classify(resp.status, &msg, resp.retry_after, &self.ctx(op, path)),
            });
        }
        let reply: AuthReply = serde_json::from_slice(&resp.body).map_err(|e| {
            BackendError::Protocol(format!("Vault's answer from {path} is not understood: {e}"))
        })?;
        reply.auth.ok_or_else(|| {
            BackendError::Protocol(format!("Vault's answer from {path} has no auth"))
        })
    }

    fn ctx<'a>(&'a self, op: Op, path: &'a str) -> Ctx<'a> {
        Ctx {
            op,
            path,
            key: "",
            mount: "transit",
            namespace: self.http.namespace(),
        }
    }
}

/// A call that got no answer from Vault: `Unavailable` (503, retry later),
/// except a TLS certificate problem, which persists until an operator fixes
/// the CA, the certificate or the address: `Misconfigured` (502), as KMIP.
pub(crate) fn unavailable(http: &VaultHttp, path: &str, why: &str) -> BackendError {
    if super::error::is_tls_config_problem(why) {
        return BackendError::Misconfigured(format!(
            "Vault at {} did not answer {path}: {why}: the TLS handshake failed on a \
             certificate: check that kms.hsm.vault.ca.file holds the CA that signed Vault's \
             certificate, that the certificate names the host of kms.hsm.server.url, and, \
             for a listener that wants a client certificate, the keystore's kmsClient entry",
            http.base()
        ));
    }
    BackendError::Unavailable {
        reason: format!("Vault at {} did not answer {path}: {why}", http.base()),
        retry_after: DEFAULT_RETRY_AFTER,
    }
}
