//! Key ids, secret keys and the local AES-256-GCM wrap of user and workspace keys.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use super::codec::{Header, LocalEnvelope};
use super::{EnvelopeError, KeyType};

/// A failure of the local cryptography (never caused by client input).
#[derive(Clone, Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the operating system's random generator failed")]
    Rng,
    #[error("local encryption failed")]
    Encrypt,
}

/// Length of every key in the hierarchy (AES-256).
pub const KEY_LEN: usize = crate::backend::KEY_LEN;

/// A random 128-bit identifier of a key in the hierarchy. Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 16]);

impl KeyId {
    pub fn random() -> Result<Self, CryptoError> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|_| CryptoError::Rng)?;
        Ok(Self(b))
    }
    pub fn from_slice(b: &[u8]) -> Result<Self, EnvelopeError> {
        let a: [u8; 16] = b
            .try_into()
            .map_err(|_| EnvelopeError::Truncated("key id"))?;
        Ok(Self(a))
    }
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.to_hex())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A 256-bit key, wiped from memory when dropped. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey(Zeroizing<[u8; KEY_LEN]>);

impl SecretKey {
    pub fn random() -> Result<Self, CryptoError> {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(k.as_mut()).map_err(|_| CryptoError::Rng)?;
        Ok(Self(k))
    }
    /// Take a key from bytes of exactly [`KEY_LEN`]; `None` otherwise.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        if b.len() != KEY_LEN {
            return None;
        }
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        k.copy_from_slice(b);
        Some(Self(k))
    }
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// Wrap `child` under `parent` as a new local envelope of type `key_type`.
pub fn seal_local(
    parent: &SecretKey,
    parent_id: KeyId,
    key_type: KeyType,
    child_id: KeyId,
    child: &SecretKey,
) -> Result<LocalEnvelope, CryptoError> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| CryptoError::Rng)?;
    let mut env = LocalEnvelope {
        header: Header {
            key_type,
            key_id: child_id,
        },
        parent: parent_id,
        nonce,
        sealed: Vec::new(),
    };
    let aad = env.aad();
    let cipher = Aes256Gcm::new(parent.expose().into());
    env.sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: child.expose(),
                aad: &aad,
            },
        )
        .map_err(|_| CryptoError::Encrypt)?;
    Ok(env)
}

/// Unwrap a local envelope under its parent key.
pub fn open_local(
    parent: &SecretKey,
    parent_id: KeyId,
    env: &LocalEnvelope,
) -> Result<SecretKey, EnvelopeError> {
    let what = env.header.key_type.label();
    if env.parent != parent_id {
        let parent_label = match env.header.key_type {
            KeyType::Workspace => KeyType::User.label(),
            _ => KeyType::Customer.label(),
        };
        return Err(EnvelopeError::WrongParent {
            child: what,
            parent: parent_label,
        });
    }
    let cipher = Aes256Gcm::new(parent.expose().into());
    let aad = env.aad();
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                &Nonce::from(env.nonce),
                Payload {
                    msg: &env.sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| EnvelopeError::Authentication(what))?,
    );
    SecretKey::from_slice(&plain).ok_or(EnvelopeError::Authentication(what))
}
