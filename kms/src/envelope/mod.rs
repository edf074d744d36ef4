//! Wrapped-key envelopes: versioned, self-describing blobs.
//!
//! Every wrapped key the API hands out is one of these, base64-encoded. Layout
//! (all integers big-endian):
//!
//! ```text
//! header   magic "CMXK" | format version (1) | key type (1) | key id (16)
//! customer backend (1) | algorithm (1) | master key version (4)
//!          | master key id length (1) + id | iv length (1) + iv
//!          | tag length (1) + tag | ciphertext length (2) + ciphertext
//! user,    parent key id (16) | nonce (12)
//! workspace| ciphertext length (2) + ciphertext (with the 16-byte GCM tag)
//! ```
//!
//! A customer key is wrapped by the backend's master key, with the header as
//! associated data where the backend's cipher binds it (GCM). User and
//! workspace keys are wrapped locally with AES-256-GCM under their parent key,
//! with the header and the parent's id as associated data: a workspace key
//! cannot pass for a user key, a child cannot be moved under another parent,
//! and any flipped bit fails authentication.

mod codec;
mod local;

pub use codec::{CustomerEnvelope, CustomerRef, Envelope, Header, LocalEnvelope};
pub use local::{CryptoError, KEY_LEN, KeyHex, KeyId, SecretKey, open_local, seal_local};

/// The current (and only) format version.
pub const FORMAT_VERSION: u8 = 1;
/// First bytes of every envelope.
pub const MAGIC: &[u8; 4] = b"CMXK";

/// What a wrapped key is. Stored in envelopes: never renumber.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum KeyType {
    Customer = 1,
    User = 2,
    Workspace = 3,
}

impl KeyType {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Customer),
            2 => Some(Self::User),
            3 => Some(Self::Workspace),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Customer => "customer key",
            Self::User => "user key",
            Self::Workspace => "workspace key",
        }
    }
}

/// Why a blob is not a usable envelope. Messages are safe to show a client:
/// they describe the blob's structure, never key material.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the blob is truncated ({0})")]
    Truncated(&'static str),
    #[error("the blob is not a cmx-kms wrapped key (bad magic)")]
    BadMagic,
    #[error(
        "unsupported wrapped-key format version {0} (this server reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion(u8),
    #[error("unknown key type {0}")]
    UnknownKeyType(u8),
    #[error("expected a {expected} but got a {found}")]
    WrongKeyType {
        expected: &'static str,
        found: &'static str,
    },
    #[error("unknown backend {0}")]
    UnknownBackend(u8),
    #[error("unknown wrap algorithm {0}")]
    UnknownAlgorithm(u8),
    #[error("{0} bytes after the end of the wrapped key")]
    TrailingBytes(usize),
    #[error("field too long to encode: {0}")]
    FieldTooLong(&'static str),
    #[error("the {child} does not belong to this {parent}")]
    WrongParent {
        child: &'static str,
        parent: &'static str,
    },
    #[error("the {0} failed authentication (tampered, or wrapped under another key)")]
    Authentication(&'static str),
}
