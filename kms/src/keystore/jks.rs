//! Reader for Sun's JKS keystore (`FEEDFEED`), as keytool writes it.
//!
//! Layout (all integers big-endian):
//! `magic u32 | version u32 (1 or 2) | count u32 | entries | SHA-1 digest (20)`.
//! Each entry is `tag u32 (1 = private key, 2 = trusted cert) | alias (u16
//! length + modified UTF-8) | creation time u64 (ms since 1970)`, then for a key
//! `len u32 | EncryptedPrivateKeyInfo | chain count u32 | certs`, for a trusted
//! cert one cert; a cert is `[type string "X.509", version 2 only] | len u32 | DER`.
//! The digest is SHA-1 over the store password as UTF-16BE, the bytes
//! `"Mighty Aphrodite"`, and everything before the digest.
//!
//! Private keys are protected with Sun's KeyProtector (OID
//! 1.3.6.1.4.1.42.2.17.1.1): `salt (20) | key XOR keystream | check (20)`,
//! keystream blocks `d_i = SHA-1(password || d_{i-1})` with `d_0 = salt`, and
//! `check = SHA-1(password || plain key)`. The plain key is PKCS#8 DER.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::der::{self, TAG_NULL, TAG_OCTET_STRING, TAG_OID, TAG_SEQUENCE};
use super::{Item, KeystoreError, KeystoreFormat, PrivateKeyEntry, StoredEntry, checked_cert};

pub(super) const MAGIC: [u8; 4] = [0xfe, 0xed, 0xfe, 0xed];
const WHITENER: &[u8] = b"Mighty Aphrodite";
const SUN_KEY_PROTECTOR_OID: &str = "1.3.6.1.4.1.42.2.17.1.1";
const DIGEST_LEN: usize = 20;
/// Caps that keep hostile files from making us allocate or loop much.
const MAX_ENTRIES: u32 = 10_000;
const MAX_CHAIN: u32 = 64;

/// Bounds-checked big-endian reader over the keystore bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], KeystoreError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or_else(|| KeystoreError::truncated(what))?;
        let bytes = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| KeystoreError::truncated(what))?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], KeystoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u16(&mut self, what: &str) -> Result<u16, KeystoreError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, KeystoreError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, KeystoreError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }

    /// `DataInput.readUTF`: u16 length, then modified UTF-8.
    fn utf(&mut self, what: &str) -> Result<String, KeystoreError> {
        let len = self.u16(what)?;
        let bytes = self.take(usize::from(len), what)?;
        decode_modified_utf8(bytes)
            .ok_or_else(|| KeystoreError::corrupt(None, format!("{what} is not valid text")))
    }

    /// A length-prefixed blob (`u32` length).
    fn blob(&mut self, what: &str) -> Result<&'a [u8], KeystoreError> {
        let len = self.u32(what)?;
        let len = usize::try_from(len).map_err(|_| KeystoreError::truncated(what))?;
        self.take(len, what)
    }
}

/// Java's modified UTF-8 (as in `DataInput.readUTF`) to a `String`.
fn decode_modified_utf8(bytes: &[u8]) -> Option<String> {
    let mut units = Vec::with_capacity(bytes.len());
    let mut it = bytes.iter().copied();
    let cont = |b: Option<u8>| b.filter(|b| b & 0xc0 == 0x80).map(|b| u16::from(b & 0x3f));
    while let Some(b) = it.next() {
        let unit = match b {
            0x00..=0x7f => u16::from(b),
            0xc0..=0xdf => (u16::from(b & 0x1f) << 6) | cont(it.next())?,
            0xe0..=0xef => {
                let hi = (u16::from(b & 0x0f) << 12) | (cont(it.next())? << 6);
                hi | cont(it.next())?
            }
            _ => return None,
        };
        units.push(unit);
    }
    String::from_utf16(&units).ok()
}

/// A password as Java's `char[]` turned into bytes: UTF-16BE.
fn utf16be(password: &SecretString) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(password.expose_secret().len() * 2));
    for unit in password.expose_secret().encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out
}

/// Compares two byte strings without an early exit.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A key entry as read, before its key is decrypted.
struct RawKey<'a> {
    alias: String,
    created: Option<SystemTime>,
    protected: &'a [u8],
    chain: Vec<&'a [u8]>,
}

enum RawEntry<'a> {
    Key(RawKey<'a>),
    Cert {
        alias: String,
        created: Option<SystemTime>,
        der: &'a [u8],
    },
}

fn read_cert<'a>(r: &mut Reader<'a>, version: u32) -> Result<&'a [u8], KeystoreError> {
    if version == 2 {
        let cert_type = r.utf("certificate type")?;
        if cert_type != "X.509" {
            return Err(KeystoreError::Unsupported {
                what: format!("a JKS certificate of type '{cert_type}'"),
                todo: "only X.509 certificates can be used".to_owned(),
            });
        }
    }
    r.blob("certificate")
}

/// Parses the structure and checks the store integrity digest; decrypts nothing.
fn read_entries<'a>(
    bytes: &'a [u8],
    store_password: &SecretString,
) -> Result<Vec<RawEntry<'a>>, KeystoreError> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let (version, count) = read_header(&mut r)?;
    let mut entries = Vec::new();
    for _ in 0..count {
        entries.push(read_entry(&mut r, version)?);
    }
    let body_end = r.pos;
    let stored = r.take(DIGEST_LEN, "integrity digest")?;
    let signed = bytes
        .get(..body_end)
        .ok_or_else(|| KeystoreError::truncated("body"))?;
    check_digest(signed, stored, store_password)?;
    Ok(entries)
}

/// The magic, the version (1 or 2) and the entry count.
fn read_header(r: &mut Reader<'_>) -> Result<(u32, u32), KeystoreError> {
    if r.array::<4>("magic")? != MAGIC {
        return Err(KeystoreError::NotAKeystore {
            reason: "no JKS magic FEEDFEED".to_owned(),
        });
    }
    let version = r.u32("version")?;
    if version != 1 && version != 2 {
        return Err(KeystoreError::Unsupported {
            what: format!("JKS version {version}"),
            todo: "only versions 1 and 2 exist; convert the file with keytool -importkeystore \
                   -deststoretype PKCS12"
                .to_owned(),
        });
    }
    let count = r.u32("entry count")?;
    if count > MAX_ENTRIES {
        return Err(KeystoreError::corrupt(
            None,
            format!("{count} entries is implausible"),
        ));
    }
    Ok((version, count))
}

/// One entry: a private key with its chain, or a trusted certificate.
fn read_entry<'a>(r: &mut Reader<'a>, version: u32) -> Result<RawEntry<'a>, KeystoreError> {
    let tag = r.u32("entry tag")?;
    let alias = r.utf("alias")?;
    let millis = r.u64("creation date")?;
    let created = UNIX_EPOCH.checked_add(Duration::from_millis(millis));
    match tag {
        1 => {
            let protected = r.blob("private key")?;
            let n = r.u32("chain length")?;
            if n > MAX_CHAIN {
                let reason = format!("a certificate chain of {n} is implausible");
                return Err(KeystoreError::corrupt(Some(&alias), reason));
            }
            let chain = (0..n)
                .map(|_| read_cert(r, version))
                .collect::<Result<_, _>>()?;
            Ok(RawEntry::Key(RawKey {
                alias,
                created,
                protected,
                chain,
            }))
        }
        2 => {
            let der = read_cert(r, version)?;
            Ok(RawEntry::Cert {
                alias,
                created,
                der,
            })
        }
        3 => Err(KeystoreError::Unsupported {
            what: format!("secret key entry '{alias}' (only JCEKS has those)"),
            todo: "keep only private keys and certificates in the keystore".to_owned(),
        }),
        other => {
            let reason = format!("unknown entry tag {other}");
            Err(KeystoreError::corrupt(Some(&alias), reason))
        }
    }
}

/// The store's integrity digest: SHA-1 over the password (UTF-16BE), Sun's
/// whitener and the body. A mismatch means a wrong store password.
fn check_digest(
    signed: &[u8],
    stored: &[u8],
    store_password: &SecretString,
) -> Result<(), KeystoreError> {
    let password = utf16be(store_password);
    let digest = Sha1::new()
        .chain_update(&*password)
        .chain_update(WHITENER)
        .chain_update(signed);
    if !same_bytes(&digest.finalize(), stored) {
        return Err(KeystoreError::WrongStorePassword {
            format: KeystoreFormat::Jks,
        });
    }
    Ok(())
}

/// Why a protected key could not be recovered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum KeyFailure {
    WrongPassword,
    Unsupported(String),
    Malformed(&'static str),
}

/// Undoes Sun's KeyProtector; returns the PKCS#8 DER.
pub(super) fn recover_key(
    protected: &[u8],
    password: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyFailure> {
    let bad = KeyFailure::Malformed;
    let (epki, rest) = der::expect_tlv(protected, TAG_SEQUENCE).map_err(|_| bad("not DER"))?;
    if !rest.is_empty() {
        return Err(bad("bytes after the key"));
    }
    let (alg, rest) = der::expect_tlv(epki, TAG_SEQUENCE).map_err(|_| bad("no algorithm"))?;
    let (oid, params) = der::expect_tlv(alg, TAG_OID).map_err(|_| bad("no algorithm OID"))?;
    let oid = der::oid_to_string(oid).ok_or(bad("bad algorithm OID"))?;
    if oid != SUN_KEY_PROTECTOR_OID {
        return Err(KeyFailure::Unsupported(oid));
    }
    if !params.is_empty() && der::expect_tlv(params, TAG_NULL).is_err() {
        return Err(bad("unexpected algorithm parameters"));
    }
    let (data, rest) = der::expect_tlv(rest, TAG_OCTET_STRING).map_err(|_| bad("no key data"))?;
    if !rest.is_empty() {
        return Err(bad("bytes after the key data"));
    }
    let enc_len = data
        .len()
        .checked_sub(2 * DIGEST_LEN)
        .ok_or(bad("key data too short"))?;
    let (salt, rest) = data.split_at(DIGEST_LEN);
    let (encrypted, check) = rest.split_at(enc_len);

    let mut plain = Zeroizing::new(Vec::with_capacity(enc_len));
    let mut block = Zeroizing::new(salt.to_vec());
    for chunk in encrypted.chunks(DIGEST_LEN) {
        let next = Sha1::new()
            .chain_update(password)
            .chain_update(&*block)
            .finalize();
        block.copy_from_slice(&next);
        plain.extend(chunk.iter().zip(block.iter()).map(|(c, k)| c ^ k));
    }
    let digest = Sha1::new()
        .chain_update(password)
        .chain_update(&*plain)
        .finalize();
    if !same_bytes(&digest, check) {
        return Err(KeyFailure::WrongPassword);
    }
    if !der::is_single_sequence(&plain) {
        return Err(bad("the recovered key is not PKCS#8"));
    }
    Ok(plain)
}

/// Reads a JKS keystore. Private keys are decrypted with `key_password`
/// if given and works, else with the store password; a key neither opens is
/// kept locked (listing works, `private_key` reports the wrong key password).
pub(super) fn parse(
    bytes: &[u8],
    store_password: &SecretString,
    key_password: Option<&SecretString>,
) -> Result<Vec<StoredEntry>, KeystoreError> {
    let raw = read_entries(bytes, store_password)?;
    let store_pw = utf16be(store_password);
    let key_pw = key_password.map(utf16be);
    let mut out = Vec::with_capacity(raw.len());
    for entry in raw {
        match entry {
            RawEntry::Cert {
                alias,
                created,
                der,
            } => {
                let cert = checked_cert(&alias, der)?;
                out.push(StoredEntry::cert(alias, created, cert));
            }
            RawEntry::Key(k) => {
                let chain: Vec<CertificateDer<'static>> = k
                    .chain
                    .iter()
                    .map(|c| checked_cert(&k.alias, c))
                    .collect::<Result<_, _>>()?;
                let mut result = Err(KeyFailure::WrongPassword);
                for pw in key_pw.iter().chain(std::iter::once(&store_pw)) {
                    result = recover_key(k.protected, pw);
                    if result != Err(KeyFailure::WrongPassword) {
                        break;
                    }
                }
                let item = match result {
                    Ok(key) => Item::Key(PrivateKeyEntry::new(k.alias.clone(), key, chain)),
                    Err(KeyFailure::WrongPassword) => Item::LockedKey { chain },
                    Err(KeyFailure::Unsupported(oid)) => {
                        return Err(KeystoreError::Unsupported {
                            what: format!("key '{}' is protected with algorithm {oid}", k.alias),
                            todo: "convert with keytool -importkeystore -deststoretype PKCS12"
                                .to_owned(),
                        });
                    }
                    Err(KeyFailure::Malformed(why)) => {
                        return Err(KeystoreError::corrupt(Some(&k.alias), why));
                    }
                };
                out.push(StoredEntry {
                    alias: k.alias,
                    created: k.created,
                    item,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(super) mod tests;
