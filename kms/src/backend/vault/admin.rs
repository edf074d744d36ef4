//! `cmx-kms hsm init|check|rotate` for the Vault backend: its own reports,
//! and [`MasterKeyAdmin`] over them.

use std::fmt;

use hyper::Method;
use serde::Deserialize;

use async_trait::async_trait;

use super::VaultBackend;
use super::transit::KeyInfo;
use crate::backend::{AdminError, AdminReport, Backend, BackendError, MasterKeyAdmin};

/// The only key type the backend creates, and the one it expects.
pub const KEY_TYPE: &str = "aes256-gcm96";

/// What `hsm init` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InitOutcome {
    /// The key did not exist and was created.
    Created(KeyInfo),
    /// The key existed already and was left as it was.
    AlreadyExists(KeyInfo),
}

impl fmt::Display for InitOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Created(k) => write!(f, "created Transit key '{}' ({})", k.name, k.key_type),
            Self::AlreadyExists(k) => write!(
                f,
                "Transit key '{}' already exists ({}, latest version {}): left unchanged",
                k.name, k.key_type, k.latest_version
            ),
        }
    }
}

/// How one step of `hsm check` went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// Passed.
    Ok,
    /// Works, but the operator should look at it.
    Warning,
    /// Failed: the detail says why and what to look at.
    Failed,
    /// Not tried because an earlier step failed.
    Skipped,
}

/// One line of `hsm check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckStep {
    /// What the step checked.
    pub name: &'static str,
    /// How it went.
    pub outcome: StepOutcome,
    /// What was found, or what is wrong.
    pub detail: String,
}

/// The result of `hsm check`: one line per step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// The steps, in order.
    pub steps: Vec<CheckStep>,
    /// Whether the failed step failed for a configuration reason (the
    /// operator must change something) rather than Vault being unreachable.
    pub config_problem: bool,
}

impl CheckReport {
    /// No step failed (warnings allowed).
    pub fn passed(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.outcome, StepOutcome::Ok | StepOutcome::Warning))
    }

    fn push(&mut self, name: &'static str, outcome: StepOutcome, detail: impl Into<String>) {
        self.steps.push(CheckStep {
            name,
            outcome,
            detail: detail.into(),
        });
    }
}

impl fmt::Display for CheckStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.outcome {
            StepOutcome::Ok => "ok",
            StepOutcome::Warning => "WARN",
            StepOutcome::Failed => "FAIL",
            StepOutcome::Skipped => "skip",
        };
        write!(f, "[{tag:>4}] {}: {}", self.name, self.detail)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(f, "{s}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Health {
    initialized: Option<bool>,
    sealed: Option<bool>,
    standby: Option<bool>,
    version: Option<String>,
}

impl VaultBackend {
    /// `hsm init`: create the master key (type aes256-gcm96) unless it exists.
    pub async fn init(&self) -> Result<InitOutcome, BackendError> {
        match self.read_key().await {
            Ok(k) => {
                usable(&k)?;
                Ok(InitOutcome::AlreadyExists(k))
            }
            Err(BackendError::KeyNotFound(_)) => {
                self.transit.create_key(&self.key_name).await?;
                let k = self.read_key().await?;
                tracing::info!(key = %self.key_name, "created the Vault Transit master key");
                Ok(InitOutcome::Created(k))
            }
            Err(e) => Err(e),
        }
    }

    /// `hsm rotate`: a new version of the Transit key. New wraps use it at
    /// once; older versions still decrypt down to `min_decryption_version`.
    /// Returns the key before and after.
    pub async fn rotate(&self) -> Result<(KeyInfo, KeyInfo), BackendError> {
        let before = self.read_key().await?;
        usable(&before)?;
        self.transit.rotate_key(&self.key_name).await?;
        let after = self.read_key().await?;
        tracing::info!(key = %self.key_name, version = after.latest_version, "rotated the Vault Transit master key");
        Ok((before, after))
    }

    /// `hsm check`: reach Vault, authenticate, read the key, wrap and unwrap
    /// once ([`STEPS`]). Each step says in plain words what failed and what
    /// to look at; a failed step skips the rest.
    pub async fn check(&self) -> CheckReport {
        let mut r = CheckReport::default();
        if self.check_reach(&mut r).await
            && self.check_login(&mut r).await
            && self.check_key(&mut r).await
        {
            self.check_wrap(&mut r).await;
        }
        r
    }

    /// Vault answers `sys/health`, initialized and unsealed.
    async fn check_reach(&self, r: &mut CheckReport) -> bool {
        match self.health().await {
            Ok(detail) => r.push(STEPS[0], StepOutcome::Ok, detail),
            Err(e) => return failed(r, 0, &e, hint(&e, &self.base)),
        }
        true
    }

    /// The configured login gives a token; how long it lives.
    async fn check_login(&self, r: &mut CheckReport) -> bool {
        let t = match self.auth.token().await {
            Ok(t) => t,
            Err(e) => return failed(r, 1, &e, hint(&e, &self.base)),
        };
        let ttl = match t.expires_at {
            Some(e) => format!(
                "ttl {} s{}",
                e.saturating_duration_since(std::time::Instant::now())
                    .as_secs(),
                if t.renewable {
                    ", renewable"
                } else {
                    ", not renewable"
                }
            ),
            None => "no expiry".to_owned(),
        };
        r.push(
            STEPS[1],
            StepOutcome::Ok,
            format!(
                "{} authentication: token accepted, {ttl}",
                self.auth.method().method_name()
            ),
        );
        true
    }

    /// The master key exists and can encrypt and decrypt; what about it
    /// deserves a warning (type, deletion allowed, exportable).
    async fn check_key(&self, r: &mut CheckReport) -> bool {
        let k = match self.read_key().await {
            Ok(k) => k,
            Err(e) => return failed(r, 2, &e, hint(&e, &self.base)),
        };
        let facts = format!(
            "'{}' is {}, latest version {}, min_decryption_version {}",
            k.name, k.key_type, k.latest_version, k.min_decryption_version
        );
        match key_warnings(&k) {
            Err(e) => {
                let detail = format!("{facts}: {e}");
                return failed(r, 2, &e, detail);
            }
            Ok(w) if w.is_empty() => r.push(STEPS[2], StepOutcome::Ok, facts),
            Ok(w) => r.push(
                STEPS[2],
                StepOutcome::Warning,
                format!("{facts}; {}", w.join("; ")),
            ),
        }
        true
    }

    /// One wrap and unwrap through Transit.
    async fn check_wrap(&self, r: &mut CheckReport) {
        match self.probe().await {
            Ok(p) => {
                let detail = p
                    .endpoints
                    .first()
                    .map(|e| e.detail.clone())
                    .unwrap_or_default();
                r.push(STEPS[3], StepOutcome::Ok, detail);
            }
            Err(e) => {
                r.config_problem |= e.is_config_class();
                r.push(STEPS[3], StepOutcome::Failed, hint(&e, &self.base));
            }
        }
    }

    /// `sys/health` (root namespace, no token, no retries).
    async fn health(&self) -> Result<String, BackendError> {
        let once = self.http.without_retries();
        let resp = once
            .call(Method::GET, "sys/health", None, None)
            .await
            .map_err(|f| {
                super::auth::unavailable(&self.http, "sys/health", &f.error.to_string())
            })?;
        let h: Health = serde_json::from_slice(&resp.body).map_err(|_| {
            BackendError::Protocol(format!(
                "{} answered sys/health with {} and no health document: is this Vault?",
                self.base, resp.status
            ))
        })?;
        let version = h.version.unwrap_or_else(|| "unknown version".to_owned());
        if h.initialized == Some(false) {
            return Err(BackendError::Unavailable {
                reason: format!("Vault {version} at {} is not initialized", self.base),
                retry_after: super::error::DEFAULT_RETRY_AFTER,
            });
        }
        if h.sealed == Some(true) {
            return Err(BackendError::Unavailable {
                reason: format!("Vault {version} at {} is sealed: unseal it", self.base),
                retry_after: super::error::DEFAULT_RETRY_AFTER,
            });
        }
        let role = if h.standby == Some(true) {
            "standby"
        } else {
            "active"
        };
        let ns = self
            .namespace
            .as_deref()
            .map(|n| format!(", namespace '{n}'"))
            .unwrap_or_default();
        Ok(format!(
            "{} answers: version {version}, unsealed, {role}{ns}",
            self.base
        ))
    }
}

fn usable(k: &KeyInfo) -> Result<(), BackendError> {
    if !k.supports_encryption || !k.supports_decryption {
        return Err(BackendError::KeyNotUsable(format!(
            "Transit key '{}' is of type {} and cannot encrypt and decrypt: use a key of type \
             {KEY_TYPE}",
            k.name, k.key_type
        )));
    }
    if k.derived || k.convergent_encryption {
        let what = if k.convergent_encryption {
            "a convergent, derived key"
        } else {
            "a derived key"
        };
        return Err(BackendError::KeyNotUsable(format!(
            "Transit key '{}' is {what}: every encrypt and decrypt with it needs a `context`, \
             which cmx-kms does not send, so it can never wrap; derivation cannot be turned off \
             on an existing key: create a key of type {KEY_TYPE} without `derived` and set \
             kms.hsm.key.name to it (or let `cmx-kms hsm init` create one under a new name)",
            k.name
        )));
    }
    Ok(())
}

fn key_warnings(k: &KeyInfo) -> Result<Vec<String>, BackendError> {
    usable(k)?;
    let mut w = Vec::new();
    if k.key_type != KEY_TYPE {
        w.push(format!(
            "type {} is not the expected {KEY_TYPE}",
            k.key_type
        ));
    }
    if k.deletion_allowed {
        w.push("deletion_allowed is true: the master key can be deleted, and every wrapped key with it".to_owned());
    }
    if k.exportable {
        w.push("exportable is true: the master key can leave Vault".to_owned());
    }
    Ok(w)
}

/// The steps of `hsm check`, in order.
const STEPS: [&str; 4] = [
    "reach Vault",
    "authenticate",
    "read master key",
    "wrap and unwrap",
];

/// Step `step` failed: say why, and skip the steps after it. Always false
/// (the check goes no further).
fn failed(r: &mut CheckReport, step: usize, e: &BackendError, detail: String) -> bool {
    r.config_problem |= e.is_config_class();
    r.push(STEPS[step], StepOutcome::Failed, detail);
    for n in STEPS.iter().skip(step + 1) {
        r.push(n, StepOutcome::Skipped, "an earlier step failed");
    }
    false
}

/// The error, plus what to look at for the common causes.
fn hint(e: &BackendError, base: &str) -> String {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    let extra = if lower.contains("kms.hsm.vault.ca.file") {
        // The error gives the TLS advice already.
        ""
    } else if lower.contains("certificate") || lower.contains("unknownissuer") {
        " (TLS: does kms.hsm.vault.ca.file hold the CA that signed Vault's certificate, and does \
         the certificate name the host in the Vault address?)"
    } else if lower.contains("connection refused") || lower.contains("cannot connect") {
        " (is Vault running, and is the address and port in the Vault address right?)"
    } else if lower.contains("no answer within") {
        " (Vault did not answer in time: check the network path and firewall)"
    } else {
        ""
    };
    let _ = base;
    format!("{text}{extra}")
}

#[async_trait]
impl MasterKeyAdmin for VaultBackend {
    async fn init(&self) -> Result<AdminReport, AdminError> {
        Ok(AdminReport::done(VaultBackend::init(self).await?))
    }

    async fn check(&self) -> Result<AdminReport, AdminError> {
        let r = VaultBackend::check(self).await;
        Ok(AdminReport {
            passed: r.passed(),
            text: r.to_string(),
            config_problem: r.config_problem,
        })
    }

    async fn rotate(&self) -> Result<AdminReport, AdminError> {
        let (before, after) = VaultBackend::rotate(self).await?;
        Ok(AdminReport::done(format!(
            "rotated Transit key '{}': version {} -> {}; new wraps use it now, older blobs still unwrap, and /v1/customer-keys/rewrap moves them to it",
            after.name, before.latest_version, after.latest_version
        )))
    }
}
