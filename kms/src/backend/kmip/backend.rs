//! [`KmipBackend`]: wrap and unwrap under a master key held by a KMIP 1.x HSM.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use super::keys::{self, KeyInfo};
use super::messages::{self, CipherRequest, CryptoParams, ProtocolVersion};
use super::pool::{CallError, CallOptions, Client};
use super::response::{self, Failure};
use super::settings::KmipSettings;
use super::tags::{self, operation as op, reason};
use super::tls;
use crate::backend::{Backend, BackendError, BackendKind, MasterWrap, ProbeReport, WrapAlgorithm};

/// AES-GCM IV length we generate.
const GCM_IV_LEN: usize = 12;
/// AES-GCM tag length we ask for.
const GCM_TAG_LEN: usize = 16;
/// AES-CBC IV length.
const CBC_IV_LEN: usize = 16;
/// What `probe` wraps and unwraps.
const CANARY: &[u8] = b"cmx-kms readiness canary 0123456";
const CANARY_AAD: &[u8] = b"cmx-kms probe";

/// The KMIP 1.x master-key backend.
pub struct KmipBackend {
    pub(super) client: Arc<Client>,
    current: Mutex<Option<(String, Instant)>>,
    lookup: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KmipBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmipBackend")
            .field("settings", self.client.settings())
            .finish_non_exhaustive()
    }
}

impl KmipBackend {
    /// Builds the backend: validates the settings and the TLS material, makes
    /// no connection (connections are opened on first use, so a down HSM
    /// never blocks start-up).
    ///
    /// `identity` and `key` are the keystore's `kmsClient` entry (certificate
    /// chain, leaf first, and its PKCS#8 key); `trust` holds the
    /// `kmipSigningCA` certificate(s), the only trust anchors for the HSM.
    pub fn new(
        settings: KmipSettings,
        identity: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        trust: Vec<CertificateDer<'static>>,
    ) -> Result<Self, BackendError> {
        settings.validate().map_err(BackendError::Misconfigured)?;
        let config = tls::client_config(identity, key, trust)?;
        Ok(Self {
            client: Arc::new(Client::new(settings, config)),
            current: Mutex::new(None),
            lookup: tokio::sync::Mutex::new(()),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &KmipSettings {
        self.client.settings()
    }

    /// Forgets the cached current master key, so the next wrap looks it up.
    pub fn forget_current_key(&self) {
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// The unique identifier of the master key version new wraps use.
    pub async fn current_key(&self) -> Result<String, BackendError> {
        if let Some(uid) = self.cached_key() {
            return Ok(uid);
        }
        // One lookup at a time: concurrent callers wait for its result.
        let _guard = self.lookup.lock().await;
        if let Some(uid) = self.cached_key() {
            return Ok(uid);
        }
        let found = keys::find(&self.client, &self.settings().key_name).await?;
        let uid = keys::choose_current(&self.settings().key_name, &found)?
            .uid
            .clone();
        *self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((uid.clone(), Instant::now()));
        Ok(uid)
    }

    fn cached_key(&self) -> Option<String> {
        let guard = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (uid, at) = guard.as_ref()?;
        (at.elapsed() < self.settings().current_key_ttl).then(|| uid.clone())
    }

    /// Every key version under the configured name, with its state.
    pub async fn key_versions(&self) -> Result<Vec<KeyInfo>, BackendError> {
        keys::find(&self.client, &self.settings().key_name).await
    }

    async fn encrypt_with(
        &self,
        uid: &str,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<MasterWrap, BackendError> {
        let mut iv = [0u8; CBC_IV_LEN];
        rand::fill(&mut iv);
        let gcm_iv = iv.get(..GCM_IV_LEN).unwrap_or(&iv);
        let result = self
            .client
            .call(op::ENCRYPT, CallOptions::DEFAULT, |version| {
                messages::cipher(&if version.has_aead_fields() {
                    CipherRequest {
                        uid,
                        params: CryptoParams::AES_GCM,
                        data: plaintext,
                        iv: Some(gcm_iv),
                        aad: Some(aad),
                        tag: None,
                    }
                } else {
                    CipherRequest {
                        uid,
                        params: CryptoParams::AES_CBC_PKCS5,
                        data: plaintext,
                        iv: Some(&iv),
                        aad: None,
                        tag: None,
                    }
                })
            })
            .await;
        let answer = match result {
            Ok(answer) => answer,
            Err(e) => return Err(self.classify_async(e, uid).await),
        };
        let out = response::encrypt(answer.payload.as_ref()).map_err(protocol)?;
        let (algorithm, iv, tag) = if answer.version.has_aead_fields() {
            let tag = out.tag.filter(|t| t.len() == GCM_TAG_LEN).ok_or_else(|| {
                BackendError::Protocol("the HSM's AES-GCM Encrypt answer has no 16-byte tag".into())
            })?;
            (
                WrapAlgorithm::AesGcm,
                out.iv.unwrap_or_else(|| gcm_iv.to_vec()),
                tag,
            )
        } else {
            (
                WrapAlgorithm::AesCbcPkcs5,
                out.iv.unwrap_or_else(|| iv.to_vec()),
                Vec::new(),
            )
        };
        Ok(MasterWrap {
            backend: BackendKind::Kmip,
            key_id: uid.to_owned(),
            key_version: 1,
            algorithm,
            iv,
            tag,
            ciphertext: out.data,
        })
    }

    /// Maps a failed call on key `uid` to what the caller can do about it.
    async fn classify_async(&self, error: CallError, uid: &str) -> BackendError {
        match error {
            CallError::Kmip(f)
                if f.reason == Some(reason::PERMISSION_DENIED)
                    && matches!(f.operation, op::ENCRYPT | op::DECRYPT) =>
            {
                // PyKMIP (and others) answer Permission Denied for a key that
                // is not active: look at the state before blaming the identity.
                match keys::attributes(&self.client, uid).await {
                    Ok(a) if a.state.is_some_and(|s| s != tags::state::ACTIVE) => {
                        BackendError::KeyNotUsable(format!(
                            "master key {uid} is {} at the HSM: wraps need an active key \
                             (activate it, or run `cmx-kms hsm rotate` for a new one)",
                            tags::state::name(a.state.unwrap_or_default())
                        ))
                    }
                    _ => self.classify(CallError::Kmip(f), uid),
                }
            }
            other => self.classify(other, uid),
        }
    }

    fn classify(&self, error: CallError, uid: &str) -> BackendError {
        match error {
            CallError::Backend(e) => e,
            CallError::Kmip(f) => map_failure(&f, uid),
        }
    }
}

fn protocol(e: messages::MessageError) -> BackendError {
    BackendError::Protocol(e.0)
}

/// Maps a KMIP failure on key `uid` to a backend error class.
pub(super) fn map_failure(f: &Failure, uid: &str) -> BackendError {
    match f.reason {
        Some(reason::ITEM_NOT_FOUND) => BackendError::KeyNotFound(format!(
            "the HSM has no master key with identifier {uid} ({f})"
        )),
        Some(reason::PERMISSION_DENIED | reason::AUTHENTICATION_NOT_SUCCESSFUL) => {
            BackendError::PermissionDenied(format!(
                "the HSM refused {} on master key {uid} for the kmsClient identity ({f}): the key \
                 must belong to this identity or carry an operation policy that allows it",
                op::name(f.operation)
            ))
        }
        Some(reason::CRYPTOGRAPHIC_FAILURE | reason::GENERAL_FAILURE)
            if f.operation == op::DECRYPT =>
        {
            BackendError::InvalidCiphertext(format!(
                "the HSM cannot decrypt this blob under master key {uid} ({f})"
            ))
        }
        Some(reason::OPERATION_NOT_SUPPORTED | reason::FEATURE_NOT_SUPPORTED) => {
            BackendError::Misconfigured(format!(
                "the HSM does not support what cmx-kms needs ({f}): check the KMIP version"
            ))
        }
        _ => BackendError::Protocol(f.to_string()),
    }
}

#[async_trait]
impl Backend for KmipBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Kmip
    }

    async fn wrap(&self, plaintext: &[u8], aad: &[u8]) -> Result<MasterWrap, BackendError> {
        let uid = self.current_key().await?;
        match self.encrypt_with(&uid, plaintext, aad).await {
            Err(BackendError::KeyNotFound(_) | BackendError::KeyNotUsable(_)) => {
                // The cached key may have been retired since: look again, once.
                self.forget_current_key();
                let uid = self.current_key().await?;
                self.encrypt_with(&uid, plaintext, aad).await
            }
            other => other,
        }
    }

    async fn unwrap(
        &self,
        wrapped: &MasterWrap,
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        if wrapped.backend != BackendKind::Kmip {
            return Err(BackendError::InvalidCiphertext(format!(
                "this blob was wrapped by the {} backend, not by the KMIP HSM",
                wrapped.backend.label()
            )));
        }
        let uid = wrapped.key_id.as_str();
        let (params, version, aad, tag) = match wrapped.algorithm {
            WrapAlgorithm::AesGcm => (
                CryptoParams::AES_GCM,
                Some(ProtocolVersion::V1_4),
                Some(aad),
                Some(wrapped.tag.as_slice()),
            ),
            WrapAlgorithm::AesCbcPkcs5 => (CryptoParams::AES_CBC_PKCS5, None, None, None),
            WrapAlgorithm::VaultTransit => {
                return Err(BackendError::InvalidCiphertext(
                    "a Vault Transit ciphertext cannot be unwrapped by the KMIP HSM".into(),
                ));
            }
        };
        let request = CipherRequest {
            uid,
            params,
            data: &wrapped.ciphertext,
            iv: Some(&wrapped.iv),
            aad,
            tag,
        };
        let options = CallOptions {
            version,
            idempotent: true,
        };
        let result = self
            .client
            .call(op::DECRYPT, options, |_| messages::cipher(&request))
            .await;
        match result {
            Ok(answer) => response::decrypt(answer.payload.as_ref()).map_err(protocol),
            Err(e) => Err(self.classify_async(e, uid).await),
        }
    }

    async fn probe(&self) -> Result<ProbeReport, BackendError> {
        let wrapped = self.wrap(CANARY, CANARY_AAD).await?;
        let plain = self.unwrap(&wrapped, CANARY_AAD).await?;
        if plain.as_slice() != CANARY {
            return Err(BackendError::Protocol(
                "the HSM's Decrypt returned something else than what was encrypted".into(),
            ));
        }
        Ok(ProbeReport {
            endpoints: self.client.endpoint_states(),
        })
    }
}
