//! The Vault (or OpenBao) Transit backend: the master key is a Transit key
//! that never leaves Vault; wraps are `transit/encrypt`, unwraps
//! `transit/decrypt`, rewraps `transit/rewrap`.
//!
//! - [`settings`]: what `kms.hsm.vault.*` becomes.
//! - `http`, `client`, `error`: HTTP(S) with rustls, retries, error classes.
//! - `auth`, `renew`, `azure`: tokens, renewal and re-login, Azure metadata.
//! - `transit`: the Transit calls. [`admin`]: `hsm init` and `hsm check`.
//!
//! Associated data is *not* sent to Transit (see `docs/design/vault.md`): the
//! envelope layer binds key type and parent itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backend::log_gate::LogGate;
use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{
    Backend, BackendError, BackendKind, EndpointState, MasterWrap, ProbeReport, WrapAlgorithm,
};

pub mod admin;
mod auth;
mod azure;
mod client;
mod error;
mod http;
mod login;
mod renew;
pub mod settings;
mod token;
mod transit;

pub use admin::{CheckReport, CheckStep, InitOutcome, StepOutcome};
pub use settings::{AzureAuth, ClientIdentity, RetryPolicy, TokenSource, VaultAuth, VaultSettings};
pub use transit::KeyInfo;

use auth::Auth;
use client::VaultHttp;
use settings::{is_safe_path, is_safe_segment, normalise_api_path};
use transit::{Transit, ciphertext_version};

/// The fixed value the probe wraps and unwraps.
const PROBE_VALUE: &[u8] = b"cmx-kms vault probe";

/// The Vault Transit backend. Cheap to share behind an `Arc`.
pub struct VaultBackend {
    key_name: String,
    base: String,
    namespace: Option<String>,
    http: VaultHttp,
    auth: Arc<Auth>,
    transit: Transit,
    maintenance: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Cleared when the policy refuses `transit/rewrap` (the guide's policy
    /// does not grant it): then rewrap is decrypt + encrypt.
    native_rewrap: AtomicBool,
    /// Spaces the WARN lines about blobs Vault cannot decrypt.
    undecryptable: LogGate,
}

impl std::fmt::Debug for VaultBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultBackend")
            .field("address", &self.base)
            .field("namespace", &self.namespace)
            .field("key", &self.key_name)
            .field("auth", &self.auth.method().method_name())
            .finish()
    }
}

impl VaultBackend {
    /// Check the settings and build the backend. No network I/O: a Vault
    /// that is down does not block start-up. The returned warning (plain
    /// `http://` to a loopback Vault) must be logged at every start.
    pub fn new(settings: VaultSettings) -> Result<(Self, Option<String>), BackendError> {
        let bad = BackendError::Misconfigured;
        if !is_safe_segment(&settings.key_name) {
            return Err(bad(format!(
                "kms.hsm.key.name '{}' is not a valid Transit key name (letters, digits, '-', \
                 '_', '.')",
                settings.key_name
            )));
        }
        let mount = settings.mount.trim_matches('/').to_owned();
        if !is_safe_path(&mount) {
            return Err(bad(format!(
                "Transit mount '{}' is not a valid mount path",
                settings.mount
            )));
        }
        let namespace = match settings.namespace.as_deref().map(|n| n.trim_matches('/')) {
            None | Some("") => None,
            Some(ns) if is_safe_path(ns) => Some(ns.to_owned()),
            Some(ns) => return Err(bad(format!("kms.hsm.vault.namespace '{ns}' is not valid"))),
        };
        check_login_path(&settings.auth)?;
        let (base, warning) =
            http::BaseUrl::parse(&settings.address, "Vault address").map_err(bad)?;
        let tls = http::tls_config(&settings, base.https).map_err(bad)?;
        let raw = http::Http::new(
            tls,
            settings.connect_timeout,
            settings.request_timeout,
            settings.max_response_bytes,
        );
        let vault = VaultHttp::new(
            raw.clone(),
            base.clone(),
            namespace.clone(),
            settings.retry.clone(),
        );
        let imds = match &settings.auth {
            VaultAuth::Azure(az) => Some(azure::Imds::new(raw, &az.imds_base_url).map_err(bad)?),
            _ => None,
        };
        if let VaultAuth::Cert { .. } = settings.auth
            && settings.client_identity.is_none()
        {
            return Err(bad(
                "certificate authentication needs a client certificate (kms.keystore.alias)"
                    .to_owned(),
            ));
        }
        let auth = Arc::new(Auth::new(
            vault.clone(),
            settings.auth.clone(),
            imds,
            settings.renew_before_expiry,
        ));
        let transit = Transit::new(vault.clone(), auth.clone(), mount);
        Ok((
            Self {
                key_name: settings.key_name,
                base: base.base,
                namespace,
                http: vault,
                auth,
                transit,
                maintenance: Mutex::new(None),
                native_rewrap: AtomicBool::new(true),
                undecryptable: LogGate::new(),
            },
            warning,
        ))
    }

    /// Start the background token maintenance (first login, renewal,
    /// re-login). Idempotent; also done by the first call through the
    /// backend. Needs a Tokio runtime.
    pub fn start(&self) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut slot = match self.maintenance.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if slot.as_ref().is_none_or(|h| h.is_finished()) {
            *slot = Some(handle.spawn(renew::maintain(self.auth.clone())));
        }
    }

    /// Seconds left on the token held now (for the token-TTL metric);
    /// `None` when no token is held yet or it never expires.
    pub fn token_ttl_remaining(&self) -> Option<Duration> {
        self.auth.ttl_remaining()
    }

    /// The Transit key used for new wraps.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// Read the master key's facts.
    pub async fn read_key(&self) -> Result<KeyInfo, BackendError> {
        self.start();
        self.transit.read_key(&self.key_name).await
    }

    fn master_wrap(&self, key: &str, ciphertext: String) -> Result<MasterWrap, BackendError> {
        let version = ciphertext_version(&ciphertext).ok_or_else(|| {
            BackendError::Protocol(
                "Vault returned a ciphertext without a vault:vN: prefix".to_owned(),
            )
        })?;
        Ok(MasterWrap {
            backend: BackendKind::Vault,
            key_id: key.to_owned(),
            key_version: version,
            algorithm: WrapAlgorithm::VaultTransit,
            iv: Vec::new(),
            tag: Vec::new(),
            ciphertext: ciphertext.into_bytes(),
        })
    }
}

/// The ciphertext string of a wrap made by this backend, after checks.
fn wrapped_ciphertext(w: &MasterWrap) -> Result<&str, BackendError> {
    let bad = |m: &str| Err(BackendError::InvalidCiphertext(m.to_owned()));
    if w.backend != BackendKind::Vault || w.algorithm != WrapAlgorithm::VaultTransit {
        return bad("the blob was not made by the Vault backend");
    }
    if !is_safe_segment(&w.key_id) {
        return bad("the blob names an invalid Vault key");
    }
    let Ok(ct) = std::str::from_utf8(&w.ciphertext) else {
        return bad("the Vault ciphertext in the blob is not text");
    };
    if ciphertext_version(ct) != Some(w.key_version) {
        return bad("the Vault ciphertext does not match the key version recorded in the blob");
    }
    Ok(ct)
}

fn check_login_path(auth: &VaultAuth) -> Result<(), BackendError> {
    let path = match auth {
        VaultAuth::Token(_) => return Ok(()),
        VaultAuth::AppRole { path, .. } | VaultAuth::Cert { path, .. } => path,
        VaultAuth::Azure(az) => &az.path,
    };
    if is_safe_path(normalise_api_path(path)) {
        Ok(())
    } else {
        Err(BackendError::Misconfigured(format!(
            "login path '{path}' is not a valid Vault API path"
        )))
    }
}

impl Drop for VaultBackend {
    fn drop(&mut self) {
        let slot = match self.maintenance.get_mut() {
            Ok(s) => s,
            Err(p) => p.into_inner(),
        };
        if let Some(h) = slot.take() {
            h.abort();
        }
    }
}

#[async_trait]
impl Backend for VaultBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Vault
    }

    fn credential_ttl(&self) -> Option<Duration> {
        self.token_ttl_remaining()
    }

    /// `aad` is not sent to Vault (see the module docs).
    async fn wrap(&self, plaintext: &[u8], _aad: &[u8]) -> Result<MasterWrap, BackendError> {
        self.start();
        let ct = self.transit.encrypt(&self.key_name, plaintext).await?;
        self.master_wrap(&self.key_name, ct)
    }

    async fn unwrap(
        &self,
        wrapped: &MasterWrap,
        _aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        self.start();
        let ct = wrapped_ciphertext(wrapped)?;
        // Client paths open only blobs under the configured key: the server
        // is no decryption service for other Transit keys the token may use.
        // (A rewrap from the backend role may still move a blob from another
        // key name; see `rewrap`.)
        if wrapped.key_id != self.key_name {
            return Err(BackendError::InvalidCiphertext(format!(
                "the blob names Vault key {:?}, not the configured key {:?}",
                wrapped.key_id, self.key_name
            )));
        }
        let result = self.transit.decrypt(&wrapped.key_id, ct).await;
        if let Err(BackendError::InvalidCiphertext(why)) = &result
            && let Some(held_back) = self.undecryptable.open()
        {
            tracing::warn!(
                key = %self.key_name,
                cause = %why,
                similar_refusals_not_logged = held_back,
                "Vault cannot decrypt a wrapped key under the configured Transit key; the \
                 client got 422 invalid-wrapped-key. If this repeats, the likely cause is an \
                 operator's: the Transit key was deleted and created again (or another Vault \
                 or namespace holds a key of that name), so blobs wrapped before cannot be \
                 opened: restore the old key from a Vault backup; a single refusal may be a \
                 damaged blob (at most one such line a minute)"
            );
        }
        result
    }

    /// Native `transit/rewrap` when the blob is under the configured key and
    /// the policy allows it; otherwise decrypt and encrypt under the
    /// configured key.
    async fn rewrap(&self, wrapped: &MasterWrap, aad: &[u8]) -> Result<MasterWrap, BackendError> {
        self.start();
        let ct = wrapped_ciphertext(wrapped)?;
        if wrapped.key_id == self.key_name && self.native_rewrap.load(Ordering::Relaxed) {
            match self.transit.rewrap(&self.key_name, ct).await {
                Ok(new_ct) => return self.master_wrap(&self.key_name, new_ct),
                Err(BackendError::PermissionDenied(why)) => {
                    self.native_rewrap.store(false, Ordering::Relaxed);
                    tracing::warn!(
                        reason = %why,
                        "the Vault policy does not allow transit/rewrap; rewrapping by decrypt \
                         and encrypt from now on (grant update on <mount>/rewrap/<key> to keep \
                         plaintext inside Vault)"
                    );
                }
                Err(e) => return Err(e),
            }
        }
        let plain = self.transit.decrypt(&wrapped.key_id, ct).await?;
        self.wrap(&plain, aad).await
    }

    async fn probe(&self) -> Result<ProbeReport, BackendError> {
        self.start();
        let w = self.wrap(PROBE_VALUE, b"").await?;
        let back = self.unwrap(&w, b"").await?;
        if back.as_slice() != PROBE_VALUE {
            return Err(BackendError::Protocol(
                "Vault decrypted the probe to a different value".to_owned(),
            ));
        }
        let ttl = match self.token_ttl_remaining() {
            Some(t) => format!("token ttl {} s", t.as_secs()),
            None => "token without expiry".to_owned(),
        };
        Ok(ProbeReport {
            endpoints: vec![EndpointState {
                endpoint: self.base.clone(),
                up: true,
                detail: format!("key {} v{}, {ttl}", self.key_name, w.key_version),
            }],
        })
    }
}
