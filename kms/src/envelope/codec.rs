//! Byte-level encoding of envelopes. Decoding is bounds-checked and never panics.

use std::borrow::Cow;

use super::{EnvelopeError, FORMAT_VERSION, KeyId, KeyType, MAGIC};
use crate::backend::{BackendKind, MasterWrap, WrapAlgorithm};

/// The common header of every envelope.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub key_type: KeyType,
    pub key_id: KeyId,
}

/// Length of an encoded [`Header`].
const HEADER_LEN: usize = 22;

/// Length of a local wrap's associated data: the header and the parent's id.
const LOCAL_AAD_LEN: usize = HEADER_LEN + 16;

impl Header {
    /// Encoded header bytes: the associated data every wrap binds.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes().to_vec()
    }

    /// The same, on the stack.
    pub fn bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let (magic, rest) = out.split_at_mut(MAGIC.len());
        magic.copy_from_slice(MAGIC);
        rest[0] = FORMAT_VERSION;
        rest[1] = self.key_type as u8;
        rest[2..].copy_from_slice(self.key_id.as_bytes());
        out
    }
}

/// A customer key wrapped by the backend's master key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerEnvelope {
    pub header: Header,
    pub master: MasterWrap,
}

/// A user or workspace key wrapped locally under its parent. Decoded, it
/// borrows its ciphertext from the blob (no copy per request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalEnvelope<'a> {
    pub header: Header,
    pub parent: KeyId,
    pub nonce: [u8; 12],
    /// Ciphertext followed by the 16-byte GCM tag.
    pub sealed: Cow<'a, [u8]>,
}

/// A customer envelope as decoded, its fields borrowed from the blob: checked
/// in full without a copy; [`CustomerRef::to_envelope`] makes the
/// [`CustomerEnvelope`] a backend call needs (a cache hit needs none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CustomerRef<'a> {
    pub header: Header,
    backend: BackendKind,
    algorithm: WrapAlgorithm,
    key_version: u32,
    key_id: &'a str,
    iv: &'a [u8],
    tag: &'a [u8],
    ciphertext: &'a [u8],
}

impl CustomerRef<'_> {
    pub fn to_envelope(&self) -> CustomerEnvelope {
        CustomerEnvelope {
            header: self.header,
            master: MasterWrap {
                backend: self.backend,
                key_id: self.key_id.to_owned(),
                key_version: self.key_version,
                algorithm: self.algorithm,
                iv: self.iv.to_vec(),
                tag: self.tag.to_vec(),
                ciphertext: self.ciphertext.to_vec(),
            },
        }
    }
}

/// Any decoded envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Envelope<'a> {
    Customer(CustomerRef<'a>),
    Local(LocalEnvelope<'a>),
}

impl CustomerEnvelope {
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let m = &self.master;
        let mut out = self.header.to_bytes();
        out.push(m.backend as u8);
        out.push(m.algorithm as u8);
        out.extend_from_slice(&m.key_version.to_be_bytes());
        put_u8_len(&mut out, m.key_id.as_bytes(), "master key id")?;
        put_u8_len(&mut out, &m.iv, "iv")?;
        put_u8_len(&mut out, &m.tag, "tag")?;
        put_u16_len(&mut out, &m.ciphertext, "ciphertext")?;
        Ok(out)
    }
}

impl LocalEnvelope<'_> {
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut out = self.header.to_bytes();
        out.extend_from_slice(self.parent.as_bytes());
        out.extend_from_slice(&self.nonce);
        put_u16_len(&mut out, &self.sealed, "ciphertext")?;
        Ok(out)
    }

    /// Associated data of a local wrap: the header and the parent's id.
    pub fn aad(&self) -> [u8; LOCAL_AAD_LEN] {
        let mut aad = [0u8; LOCAL_AAD_LEN];
        let (header, parent) = aad.split_at_mut(HEADER_LEN);
        header.copy_from_slice(&self.header.bytes());
        parent.copy_from_slice(self.parent.as_bytes());
        aad
    }
}

impl<'a> Envelope<'a> {
    /// Decode any envelope.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        let mut r = Reader(bytes);
        if r.take(4, "magic")? != MAGIC {
            return Err(EnvelopeError::BadMagic);
        }
        let version = r.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(version));
        }
        let t = r.u8("key type")?;
        let key_type = KeyType::from_u8(t).ok_or(EnvelopeError::UnknownKeyType(t))?;
        let key_id = KeyId::from_slice(r.take(16, "key id")?)?;
        let header = Header { key_type, key_id };
        let env = match key_type {
            KeyType::Customer => {
                let b = r.u8("backend")?;
                let backend = BackendKind::from_u8(b).ok_or(EnvelopeError::UnknownBackend(b))?;
                let a = r.u8("algorithm")?;
                let algorithm =
                    WrapAlgorithm::from_u8(a).ok_or(EnvelopeError::UnknownAlgorithm(a))?;
                let key_version = r.u32("master key version")?;
                let id = r.u8_len("master key id")?;
                let key_id = std::str::from_utf8(id)
                    .map_err(|_| EnvelopeError::Truncated("master key id is not UTF-8"))?;
                Envelope::Customer(CustomerRef {
                    header,
                    backend,
                    algorithm,
                    key_version,
                    key_id,
                    iv: r.u8_len("iv")?,
                    tag: r.u8_len("tag")?,
                    ciphertext: r.u16_len("ciphertext")?,
                })
            }
            KeyType::User | KeyType::Workspace => {
                let parent = KeyId::from_slice(r.take(16, "parent key id")?)?;
                let mut nonce = [0u8; 12];
                nonce.copy_from_slice(r.take(12, "nonce")?);
                let sealed = Cow::Borrowed(r.u16_len("ciphertext")?);
                Envelope::Local(LocalEnvelope {
                    header,
                    parent,
                    nonce,
                    sealed,
                })
            }
        };
        if !r.0.is_empty() {
            return Err(EnvelopeError::TrailingBytes(r.0.len()));
        }
        Ok(env)
    }

    pub fn header(&self) -> &Header {
        match self {
            Envelope::Customer(c) => &c.header,
            Envelope::Local(l) => &l.header,
        }
    }

    /// Decode and require a customer key.
    pub fn decode_customer(bytes: &[u8]) -> Result<CustomerEnvelope, EnvelopeError> {
        Envelope::decode_customer_ref(bytes).map(|c| c.to_envelope())
    }

    /// The same, borrowing from `bytes`.
    pub fn decode_customer_ref(bytes: &'a [u8]) -> Result<CustomerRef<'a>, EnvelopeError> {
        match Envelope::decode(bytes)? {
            Envelope::Customer(c) => Ok(c),
            Envelope::Local(l) => Err(EnvelopeError::WrongKeyType {
                expected: KeyType::Customer.label(),
                found: l.header.key_type.label(),
            }),
        }
    }

    /// Decode and require a local envelope of the given type.
    pub fn decode_local(
        bytes: &'a [u8],
        expected: KeyType,
    ) -> Result<LocalEnvelope<'a>, EnvelopeError> {
        let env = Self::decode(bytes)?;
        let found = env.header().key_type;
        match env {
            Envelope::Local(l) if found == expected => Ok(l),
            _ => Err(EnvelopeError::WrongKeyType {
                expected: expected.label(),
                found: found.label(),
            }),
        }
    }
}

fn put_u8_len(out: &mut Vec<u8>, v: &[u8], what: &'static str) -> Result<(), EnvelopeError> {
    let len = u8::try_from(v.len()).map_err(|_| EnvelopeError::FieldTooLong(what))?;
    out.push(len);
    out.extend_from_slice(v);
    Ok(())
}

fn put_u16_len(out: &mut Vec<u8>, v: &[u8], what: &'static str) -> Result<(), EnvelopeError> {
    let len = u16::try_from(v.len()).map_err(|_| EnvelopeError::FieldTooLong(what))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(v);
    Ok(())
}

/// A bounds-checked cursor.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
        if self.0.len() < n {
            return Err(EnvelopeError::Truncated(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8, EnvelopeError> {
        Ok(self.take(1, what)?.first().copied().unwrap_or_default())
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, EnvelopeError> {
        let b = self.take(4, what)?;
        let mut a = [0u8; 4];
        a.copy_from_slice(b);
        Ok(u32::from_be_bytes(a))
    }
    fn u8_len(&mut self, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let n = self.u8(what)?;
        self.take(usize::from(n), what)
    }
    fn u16_len(&mut self, what: &'static str) -> Result<&'a [u8], EnvelopeError> {
        let b = self.take(2, what)?;
        let n = u16::from_be_bytes([
            b.first().copied().unwrap_or(0),
            b.get(1).copied().unwrap_or(0),
        ]);
        self.take(usize::from(n), what)
    }
}
