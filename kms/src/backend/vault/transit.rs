//! Transit operations on one mount: encrypt, decrypt, rewrap, key read and
//! key create, with the token taken from [`Auth`] and one recovery on 403.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hyper::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;
use zeroize::{Zeroize, Zeroizing};

use super::auth::{Auth, unavailable};
use super::client::VaultHttp;
use super::error::{Ctx, Op, classify, vault_message};
use super::http::RawResponse;
use crate::backend::BackendError;

/// The facts `hsm check` reports about the master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub name: String,
    pub key_type: String,
    pub latest_version: u32,
    pub min_decryption_version: u32,
    pub min_encryption_version: u32,
    pub supports_encryption: bool,
    pub supports_decryption: bool,
    pub deletion_allowed: bool,
    pub exportable: bool,
    /// Key derivation: every call needs a `context`, which cmx-kms never sends.
    pub derived: bool,
    /// Convergent encryption (implies derivation).
    pub convergent_encryption: bool,
}

#[derive(Deserialize)]
struct Reply<T> {
    data: Option<T>,
}

#[derive(Deserialize)]
struct CiphertextData {
    ciphertext: Option<String>,
}

#[derive(Deserialize)]
struct PlaintextData {
    plaintext: Option<String>,
}

#[derive(Deserialize)]
struct KeyData {
    #[serde(rename = "type")]
    key_type: Option<String>,
    latest_version: Option<u32>,
    min_decryption_version: Option<u32>,
    min_encryption_version: Option<u32>,
    supports_encryption: Option<bool>,
    supports_decryption: Option<bool>,
    deletion_allowed: Option<bool>,
    exportable: Option<bool>,
    derived: Option<bool>,
    convergent_encryption: Option<bool>,
}

/// Transit on one mount.
pub(crate) struct Transit {
    http: VaultHttp,
    auth: Arc<Auth>,
    mount: String,
}

impl Transit {
    pub fn new(http: VaultHttp, auth: Arc<Auth>, mount: String) -> Self {
        Self { http, auth, mount }
    }

    /// `transit/encrypt/KEY`: the `vault:vN:...` ciphertext.
    pub async fn encrypt(&self, key: &str, plaintext: &[u8]) -> Result<String, BackendError> {
        let b64 = Zeroizing::new(B64.encode(plaintext));
        let body = json!({ "plaintext": b64.as_str() });
        self.ciphertext_of(Op::Encrypt, "encrypt", key, &body).await
    }

    /// `transit/decrypt/KEY`.
    pub async fn decrypt(
        &self,
        key: &str,
        ciphertext: &str,
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let body = json!({ "ciphertext": ciphertext });
        let path = format!("{}/decrypt/{key}", self.mount);
        let resp = self
            .call(Op::Decrypt, key, Method::POST, &path, Some(&body))
            .await?;
        let reply: Result<Reply<PlaintextData>, BackendError> = parse(&resp, &path);
        // Best effort: wipe our copy of the response (it holds the plaintext).
        if let Ok(mut buf) = resp.body.try_into_mut() {
            buf.zeroize();
        }
        let mut b64 = reply?.data.and_then(|d| d.plaintext).ok_or_else(|| {
            BackendError::Protocol(format!("Vault's answer from {path} has no plaintext"))
        })?;
        let decoded = B64.decode(b64.as_bytes()).map(Zeroizing::new);
        b64.zeroize();
        decoded.map_err(|_| {
            BackendError::Protocol(format!("Vault's plaintext from {path} is not base64"))
        })
    }

    /// `transit/rewrap/KEY`: the same secret under the key's latest version,
    /// without the plaintext leaving Vault.
    pub async fn rewrap(&self, key: &str, ciphertext: &str) -> Result<String, BackendError> {
        let body = json!({ "ciphertext": ciphertext });
        self.ciphertext_of(Op::Rewrap, "rewrap", key, &body).await
    }

    /// `transit/VERB/KEY` (`encrypt`, `rewrap`): the ciphertext it answers.
    async fn ciphertext_of(
        &self,
        op: Op,
        verb: &str,
        key: &str,
        body: &serde_json::Value,
    ) -> Result<String, BackendError> {
        let path = format!("{}/{verb}/{key}", self.mount);
        let resp = self.call(op, key, Method::POST, &path, Some(body)).await?;
        let reply: Reply<CiphertextData> = parse(&resp, &path)?;
        reply.data.and_then(|d| d.ciphertext).ok_or_else(|| {
            BackendError::Protocol(format!("Vault's answer from {path} has no ciphertext"))
        })
    }

    /// `GET transit/keys/KEY`.
    pub async fn read_key(&self, key: &str) -> Result<KeyInfo, BackendError> {
        let path = format!("{}/keys/{key}", self.mount);
        let resp = self
            .call(Op::ReadKey, key, Method::GET, &path, None)
            .await?;
        let reply: Reply<KeyData> = parse(&resp, &path)?;
        let d = reply.data.ok_or_else(|| {
            BackendError::Protocol(format!("Vault's answer from {path} has no data"))
        })?;
        Ok(KeyInfo {
            name: key.to_owned(),
            key_type: d.key_type.unwrap_or_default(),
            latest_version: d.latest_version.unwrap_or(0),
            min_decryption_version: d.min_decryption_version.unwrap_or(0),
            min_encryption_version: d.min_encryption_version.unwrap_or(0),
            supports_encryption: d.supports_encryption.unwrap_or(false),
            supports_decryption: d.supports_decryption.unwrap_or(false),
            deletion_allowed: d.deletion_allowed.unwrap_or(false),
            exportable: d.exportable.unwrap_or(false),
            derived: d.derived.unwrap_or(false),
            convergent_encryption: d.convergent_encryption.unwrap_or(false),
        })
    }

    /// `POST transit/keys/KEY` with type `aes256-gcm96`.
    pub async fn create_key(&self, key: &str) -> Result<(), BackendError> {
        let path = format!("{}/keys/{key}", self.mount);
        let body = json!({ "type": "aes256-gcm96" });
        self.call(Op::CreateKey, key, Method::POST, &path, Some(&body))
            .await
            .map(|_| ())
    }

    /// `POST transit/keys/KEY/rotate`: a new key version for new encryptions
    /// (the guide's policy grants it through `transit/keys/*` update).
    pub async fn rotate_key(&self, key: &str) -> Result<(), BackendError> {
        let path = format!("{}/keys/{key}/rotate", self.mount);
        self.call(Op::RotateKey, key, Method::POST, &path, None)
            .await
            .map(|_| ())
    }

    /// One authenticated call. On 403 with a dead token: one new token, one
    /// retry. A final error is classified for the operator.
    async fn call(
        &self,
        op: Op,
        key: &str,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, BackendError> {
        let token = self.auth.token().await?;
        let mut resp = self.send(method.clone(), path, &token, body).await?;
        if resp.status == StatusCode::FORBIDDEN
            && let Some(fresh) = self.auth.recover_from_forbidden(&token).await?
        {
            resp = self.send(method, path, &fresh, body).await?;
        }
        if resp.status.is_success() {
            return Ok(resp);
        }
        let msg = vault_message(&resp.body);
        let ctx = Ctx {
            op,
            path,
            key,
            mount: &self.mount,
            namespace: self.http.namespace(),
        };
        let err = classify(resp.status, &msg, resp.retry_after, &ctx);
        // With the guide's policy, encrypting with a missing key is a 403
        // (Transit would create the key, which needs `create`): say what is
        // really wrong when the key is absent.
        if matches!(err, BackendError::PermissionDenied(_))
            && matches!(op, Op::Encrypt | Op::Rewrap)
            && Box::pin(self.read_key(key))
                .await
                .is_err_and(|e| matches!(e, BackendError::KeyNotFound(_)))
        {
            return Err(classify(StatusCode::NOT_FOUND, "", None, &ctx));
        }
        Err(err)
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        token: &super::token::Token,
        body: Option<&serde_json::Value>,
    ) -> Result<RawResponse, BackendError> {
        self.http
            .call(method, path, Some(&token.secret), body)
            .await
            .map_err(|f| {
                let why = if f.attempts > 1 {
                    format!("{} (after {} attempts)", f.error, f.attempts)
                } else {
                    f.error.to_string()
                };
                unavailable(&self.http, path, &why)
            })
    }
}

fn parse<T: for<'de> Deserialize<'de>>(resp: &RawResponse, path: &str) -> Result<T, BackendError> {
    serde_json::from_slice(&resp.body).map_err(|e| {
        BackendError::Protocol(format!("Vault's answer from {path} is not understood: {e}"))
    })
}

/// The key version in a `vault:vN:...` ciphertext.
pub(crate) fn ciphertext_version(ct: &str) -> Option<u32> {
    let rest = ct.strip_prefix("vault:v")?;
    let (num, tail) = rest.split_once(':')?;
    if tail.is_empty() || num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse().ok().filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::ciphertext_version;

    #[test]
    fn versions() {
        assert_eq!(ciphertext_version("vault:v1:abc"), Some(1));
        assert_eq!(ciphertext_version("vault:v23:abc"), Some(23));
        assert_eq!(ciphertext_version("vault:v0:abc"), None);
        assert_eq!(ciphertext_version("vault:v1:"), None);
        assert_eq!(ciphertext_version("vault:vx:abc"), None);
        assert_eq!(ciphertext_version("v1:abc"), None);
    }
}
