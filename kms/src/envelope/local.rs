//! Key ids, secret keys and the local AES-256-GCM wrap of user and workspace keys.

use std::fmt;

use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
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
    /// The same digits on the stack (the audit record of every request
    /// carries one).
    pub fn hex(&self) -> KeyHex {
        let mut out = [0u8; 32];
        crate::hex::lower_into(&mut out, &self.0);
        KeyHex(out)
    }
}

/// A key id as 32 lower-case hex digits.
#[derive(Clone, Copy)]
pub struct KeyHex([u8; 32]);

impl KeyHex {
    pub fn as_str(&self) -> &str {
        // Only hex digits are ever written, so this is always UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
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
) -> Result<LocalEnvelope<'static>, CryptoError> {
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| CryptoError::Rng)?;
    let mut env = LocalEnvelope {
        header: Header {
            key_type,
            key_id: child_id,
        },
        parent: parent_id,
        nonce,
        sealed: Default::default(),
    };
    let aad = env.aad();
    let cipher = Aes256Gcm::new(parent.expose().into());
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: child.expose(),
                aad: &aad,
            },
        )
        .map_err(|_| CryptoError::Encrypt)?;
    env.sealed = sealed.into();
    Ok(env)
}

/// Unwrap a local envelope under its parent key.
pub fn open_local(
    parent: &SecretKey,
    parent_id: KeyId,
    env: &LocalEnvelope<'_>,
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
    // Every local wrap seals exactly one key: its ciphertext, then the tag.
    // Any other length cannot be one of ours, and fails as a forgery does.
    let (ciphertext, tag) = env
        .sealed
        .split_at_checked(KEY_LEN)
        .ok_or(EnvelopeError::Authentication(what))?;
    let tag = Tag::try_from(tag).map_err(|_| EnvelopeError::Authentication(what))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(ciphertext);
    // In place, into the zeroizing array: no heap copy of the key.
    Aes256Gcm::new(parent.expose().into())
        .decrypt_inout_detached(
            &Nonce::from(env.nonce),
            &env.aad(),
            key.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| EnvelopeError::Authentication(what))?;
    Ok(SecretKey(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_key_opens_and_nothing_else_does() {
        let (parent, parent_id) = (SecretKey::random().unwrap(), KeyId::random().unwrap());
        let (child, child_id) = (SecretKey::random().unwrap(), KeyId::random().unwrap());
        let env = seal_local(&parent, parent_id, KeyType::User, child_id, &child).unwrap();
        assert_eq!(env.sealed.len(), KEY_LEN + 16);
        let opened = open_local(&parent, parent_id, &env).unwrap();
        assert_eq!(opened.expose(), child.expose());

        let fails = |env: &LocalEnvelope<'_>| {
            matches!(
                open_local(&parent, parent_id, env),
                Err(EnvelopeError::Authentication(_))
            )
        };
        for i in 0..env.sealed.len() {
            let mut bad = env.clone();
            bad.sealed.to_mut()[i] ^= 1;
            assert!(fails(&bad), "byte {i} flipped");
        }
        for len in [0, KEY_LEN, KEY_LEN + 15, KEY_LEN + 17] {
            let mut bad = env.clone();
            bad.sealed.to_mut().resize(len, 0);
            assert!(fails(&bad), "sealed of {len} bytes");
        }
        let mut other_id = env.clone();
        other_id.header.key_id = KeyId::random().unwrap();
        assert!(fails(&other_id), "the header is bound");
        let other = SecretKey::random().unwrap();
        assert!(matches!(
            open_local(&other, parent_id, &env),
            Err(EnvelopeError::Authentication(_))
        ));
    }

    #[test]
    fn hex_on_the_stack_is_to_hex() {
        for _ in 0..8 {
            let id = KeyId::random().unwrap();
            assert_eq!(id.hex().as_str(), id.to_hex());
        }
        assert_eq!(
            KeyId([0x01, 0xab, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10])
                .hex()
                .as_str(),
            "01abff00000000000000000000000010"
        );
    }
}
