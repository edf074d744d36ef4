//! [`KmipBackend`]: wrap and unwrap under a master key held by a KMIP 1.x HSM.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use async_trait::async_trait;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use zeroize::Zeroizing;

use super::failure::protocol;
use super::messages::{self, CipherRequest, CryptoParams, ProtocolVersion};
use super::pool::{CallOptions, Client};
use super::response;
use super::settings::KmipSettings;
use super::tags::operation as op;
use super::tls;
use super::versions::Versions;
use super::wrapauth::{self, AuthKey};
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

/// Whether an unwrap may open an unauthenticated AES-CBC blob of release 1.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LegacyCbc {
    /// Client paths (decrypt, create user or workspace key): never.
    Refuse,
    /// A rewrap by the backend role: once, to move the blob to an authenticated wrap.
    Rewrap,
}

/// A refusal of client material. The detail goes to the server log only:
/// the API answers every refusal with the same status, label and message.
pub(super) fn refused(detail: String) -> BackendError {
    BackendError::InvalidCiphertext(detail)
}

/// The KMIP 1.x master-key backend.
pub struct KmipBackend {
    pub(super) client: Arc<Client>,
    /// The current master key version and when it was looked up (`key_lookup`).
    pub(super) current: Mutex<Option<(String, Instant)>>,
    /// One lookup of the current version at a time.
    pub(super) lookup: tokio::sync::Mutex<()>,
    /// The versions blobs may name, and their CBC tag keys.
    pub(super) versions: Versions,
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
            versions: Versions::default(),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &KmipSettings {
        self.client.settings()
    }

    /// The CBC tag key of master key version `uid`, derived by the HSM on first use.
    async fn auth_key(&self, uid: &str) -> Result<Arc<AuthKey>, BackendError> {
        if let Some(k) = self.versions.auth_key(uid) {
            return Ok(k);
        }
        let _one = self.versions.derive.lock().await;
        if let Some(k) = self.versions.auth_key(uid) {
            return Ok(k);
        }
        let request = CipherRequest {
            uid,
            params: CryptoParams::AES_CBC_PKCS5,
            data: wrapauth::DERIVATION_LABEL,
            iv: Some(&wrapauth::DERIVATION_IV),
            aad: None,
            tag: None,
        };
        let answer = match self
            .client
            .call(op::ENCRYPT, CallOptions::DEFAULT, |_| {
                messages::cipher(&request)
            })
            .await
        {
            Ok(answer) => answer,
            Err(e) => return Err(self.classify_async(e, uid).await),
        };
        let out = response::encrypt(answer.payload.as_ref()).map_err(protocol)?;
        if out
            .iv
            .as_deref()
            .is_some_and(|iv| iv != wrapauth::DERIVATION_IV)
        {
            return Err(BackendError::Misconfigured(
                "the HSM replaced the IV cmx-kms gave for AES-CBC: cmx-kms needs an HSM that \
                 accepts the caller's IV for AES-CBC (KMIP 1.2/1.3), or KMIP 1.4 for AES-GCM"
                    .into(),
            ));
        }
        let key = AuthKey::from_derivation(&out.data).ok_or_else(|| {
            BackendError::Protocol(format!(
                "the HSM's AES-CBC Encrypt of a 32-byte value returned {} bytes instead of {}",
                out.data.len(),
                wrapauth::DERIVATION_OUTPUT_LEN
            ))
        })?;
        Ok(self.versions.insert_auth_key(uid, key))
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
            // Encrypt-then-MAC: see `wrapauth` for why every CBC wrap carries a tag.
            let iv = out.iv.unwrap_or_else(|| iv.to_vec());
            let tag = self.auth_key(uid).await?.tag(aad, uid, &iv, &out.data);
            (WrapAlgorithm::AesCbcPkcs5HmacSha256, iv, tag)
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

    /// Unwraps a blob a client sent: only under a version of the configured
    /// master key, and a CBC blob only after its tag checked out, so the HSM
    /// never decrypts unauthenticated client material.
    async fn unwrap_checked(
        &self,
        wrapped: &MasterWrap,
        aad: &[u8],
        legacy: LegacyCbc,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        if wrapped.backend != BackendKind::Kmip {
            return Err(refused(format!(
                "this blob was wrapped by the {} backend, not by the KMIP HSM",
                wrapped.backend.label()
            )));
        }
        let uid = wrapped.key_id.as_str();
        match (wrapped.algorithm, legacy) {
            (WrapAlgorithm::AesGcm | WrapAlgorithm::AesCbcPkcs5HmacSha256, _)
            | (WrapAlgorithm::AesCbcPkcs5, LegacyCbc::Rewrap) => {}
            (WrapAlgorithm::AesCbcPkcs5, LegacyCbc::Refuse) => {
                return Err(refused(
                    "an unauthenticated AES-CBC blob (made before cmx-kms authenticated CBC \
                     wraps) is opened only by a rewrap from the backend role"
                        .into(),
                ));
            }
            (WrapAlgorithm::VaultTransit, _) => {
                return Err(refused(
                    "a Vault Transit ciphertext cannot be unwrapped by the KMIP HSM".into(),
                ));
            }
        }
        self.admit_uid(uid).await?;
        let (params, version, aad, tag) = match wrapped.algorithm {
            WrapAlgorithm::AesGcm => (
                CryptoParams::AES_GCM,
                Some(ProtocolVersion::V1_4),
                Some(aad),
                Some(wrapped.tag.as_slice()),
            ),
            WrapAlgorithm::AesCbcPkcs5HmacSha256 => {
                let key = self.auth_key(uid).await?;
                if !key.verify(aad, uid, &wrapped.iv, &wrapped.ciphertext, &wrapped.tag) {
                    return Err(refused(
                        "the AES-CBC blob's HMAC tag does not match (tampered, or not made by \
                         this master key)"
                            .into(),
                    ));
                }
                (CryptoParams::AES_CBC_PKCS5, None, None, None)
            }
            _ => (CryptoParams::AES_CBC_PKCS5, None, None, None),
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
        self.unwrap_checked(wrapped, aad, LegacyCbc::Refuse).await
    }

    /// Only the backend role rewraps; it alone may still open a legacy CBC
    /// blob, to move it to an authenticated wrap.
    async fn rewrap(&self, wrapped: &MasterWrap, aad: &[u8]) -> Result<MasterWrap, BackendError> {
        let plain = self.unwrap_checked(wrapped, aad, LegacyCbc::Rewrap).await?;
        if plain.len() != crate::backend::KEY_LEN {
            return Err(refused(format!(
                "the blob decrypts to {} bytes, not to a {}-byte key",
                plain.len(),
                crate::backend::KEY_LEN
            )));
        }
        self.wrap(&plain, aad).await
    }

    fn endpoint_states(&self) -> Vec<crate::backend::EndpointState> {
        self.client.endpoint_states()
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
