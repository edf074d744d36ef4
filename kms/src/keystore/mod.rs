//! Keytool keystores (JKS and PKCS#12), detected by content.
//!
//! [`KeyStore::load`] reads what keytool and openssl really write: JKS
//! (`FEEDFEED`, our own small reader in `jks`), and PKCS#12 in all three
//! flavours seen in the field (Java 9+ keytool's default even for files named
//! `.jks`, OpenSSL 3 `pkcs12 -export`, legacy RC2-40/3DES), read through the
//! `p12-keystore` crate. JCEKS is recognised and refused with what to do.
//!
//! Aliases compare case-insensitively, as in Java; the original spelling is
//! kept for display. Private key bytes live in [`Zeroizing`] buffers and
//! never appear in `Debug` output or errors.
//!
//! Submodules: [`certinfo`] (what keytool shows about a certificate),
//! [`list`] (`keytool -list [-v]` output), [`convert`] (legacy PKCS#12 to
//! a file OpenSSL 3 reads without `-legacy`), [`password`] (how the CLI gets
//! the keystore password without putting it on the command line).

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::time::SystemTime;

use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

pub mod certinfo;
pub mod convert;
mod der;
mod ec_key;
mod error;
mod jks;
pub mod list;
pub mod password;
mod pkcs12;

pub use error::{KeystoreError, KeystoreFileError};
/// Re-exported: the password type of [`KeyStore::load`] and [`KeyStore::from_bytes`].
pub use secrecy::SecretString;

/// Larger files are refused before parsing (a real kmsKeystore.jks is a few KiB).
pub const MAX_KEYSTORE_BYTES: u64 = 16 * 1024 * 1024;

const JCEKS_MAGIC: [u8; 4] = [0xce, 0xce, 0xce, 0xce];

/// The on-disk format, found from the content (never from the file name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeystoreFormat {
    /// Sun JKS (`FEEDFEED`).
    Jks,
    /// PKCS#12 (DER), whatever the file is called.
    Pkcs12,
}

impl fmt::Display for KeystoreFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Jks => "JKS",
            Self::Pkcs12 => "PKCS12",
        })
    }
}

/// Kind of a keystore entry, displayed as keytool does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A private key with its certificate chain.
    PrivateKey,
    /// A trusted certificate.
    Certificate,
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PrivateKey => "PrivateKeyEntry",
            Self::Certificate => "trustedCertEntry",
        })
    }
}

/// A private key entry: PKCS#8 key and certificate chain, leaf first.
pub struct PrivateKeyEntry {
    alias: String,
    key: Zeroizing<Vec<u8>>,
    chain: Vec<CertificateDer<'static>>,
}

impl PrivateKeyEntry {
    /// Java's EC keys lack the public key that ring needs; it is added
    /// from the leaf certificate (see `ec_key`).
    fn new(alias: String, key: Zeroizing<Vec<u8>>, chain: Vec<CertificateDer<'static>>) -> Self {
        let key = ec_key::complete_ec_key(&key, chain.first()).unwrap_or(key);
        Self { alias, key, chain }
    }

    /// The alias as stored in the file.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// A fresh copy of the private key (PKCS#8 DER), e.g. for rustls.
    pub fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.to_vec()))
    }

    /// The certificate chain, leaf first (may be empty if the file has none).
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
}

impl fmt::Debug for PrivateKeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKeyEntry")
            .field("alias", &self.alias)
            .field("key", &"[redacted]")
            .field("chain_len", &self.chain.len())
            .finish()
    }
}

/// A trusted certificate entry.
#[derive(Debug, Clone)]
pub struct CertificateEntry {
    alias: String,
    cert: CertificateDer<'static>,
}

impl CertificateEntry {
    /// The alias as stored in the file.
    pub fn alias(&self) -> &str {
        &self.alias
    }

    /// The certificate (DER).
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.cert
    }
}

/// What one alias holds.
#[derive(Debug)]
enum Item {
    Key(PrivateKeyEntry),
    /// A private key whose password we do not have; its chain is still known.
    LockedKey {
        chain: Vec<CertificateDer<'static>>,
    },
    Cert(CertificateEntry),
}

/// One entry with the metadata `list` shows.
#[derive(Debug)]
struct StoredEntry {
    alias: String,
    created: Option<SystemTime>,
    item: Item,
}

impl StoredEntry {
    fn cert(alias: String, created: Option<SystemTime>, cert: CertificateDer<'static>) -> Self {
        let item = Item::Cert(CertificateEntry {
            alias: alias.clone(),
            cert,
        });
        Self {
            alias,
            created,
            item,
        }
    }

    fn kind(&self) -> EntryKind {
        match self.item {
            Item::Key(_) | Item::LockedKey { .. } => EntryKind::PrivateKey,
            Item::Cert(_) => EntryKind::Certificate,
        }
    }

    /// The entry's certificates: the chain of a key, or the one trusted cert.
    fn certs(&self) -> &[CertificateDer<'static>] {
        match &self.item {
            Item::Key(k) => &k.chain,
            Item::LockedKey { chain } => chain,
            Item::Cert(c) => std::slice::from_ref(&c.cert),
        }
    }
}

/// Checks that `der` is an X.509 certificate and takes a copy.
fn checked_cert(alias: &str, der: &[u8]) -> Result<CertificateDer<'static>, KeystoreError> {
    match x509_parser::parse_x509_certificate(der) {
        Ok(([], _)) => Ok(CertificateDer::from(der.to_vec())),
        Ok(_) => Err(KeystoreError::corrupt(
            Some(alias),
            "bytes after a certificate",
        )),
        Err(e) => Err(KeystoreError::corrupt(
            Some(alias),
            format!("bad certificate: {e}"),
        )),
    }
}

/// A keystore read into memory. Immutable; reload to see changes.
pub struct KeyStore {
    format: KeystoreFormat,
    entries: Vec<StoredEntry>,
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let aliases: Vec<(&str, EntryKind)> = self.entries().collect();
        f.debug_struct("KeyStore")
            .field("format", &self.format)
            .field("entries", &aliases)
            .finish()
    }
}

/// Finds the format from the first bytes.
fn detect(bytes: &[u8]) -> Result<KeystoreFormat, KeystoreError> {
    let head = bytes.get(..4).unwrap_or(bytes);
    if bytes.is_empty() {
        return Err(KeystoreError::NotAKeystore {
            reason: "the file is empty".to_owned(),
        });
    }
    if jks::MAGIC.starts_with(head) || JCEKS_MAGIC.starts_with(head) {
        if head.len() < 4 {
            return Err(KeystoreError::truncated("magic"));
        }
        if head == JCEKS_MAGIC {
            return Err(KeystoreError::Unsupported {
                what: "JCEKS keystore (magic CECECECE)".to_owned(),
                todo: "convert it with keytool -importkeystore -srckeystore FILE -srcstoretype \
                       JCEKS -destkeystore NEW.p12 -deststoretype PKCS12"
                    .to_owned(),
            });
        }
        return Ok(KeystoreFormat::Jks);
    }
    if bytes.first() == Some(&der::TAG_SEQUENCE) {
        return Ok(KeystoreFormat::Pkcs12);
    }
    if bytes.starts_with(b"-----BEGIN") {
        return Err(KeystoreError::NotAKeystore {
            reason: "this is a PEM file; build a keystore from it with openssl pkcs12 -export \
                     and keytool -importkeystore"
                .to_owned(),
        });
    }
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02X}")).collect();
    Err(KeystoreError::NotAKeystore {
        reason: format!(
            "unknown format (starts with {}); expected JKS (FEEDFEED) or PKCS#12 (DER)",
            hex.join(" ")
        ),
    })
}

fn lower(alias: &str) -> String {
    alias.to_lowercase()
}

impl KeyStore {
    /// Reads a keystore file. See [`KeyStore::from_bytes`].
    pub fn load(
        path: &Path,
        store_password: &SecretString,
        key_password: Option<&SecretString>,
    ) -> Result<KeyStore, KeystoreError> {
        let unreadable = |source| KeystoreError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(unreadable)?;
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_KEYSTORE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        Self::from_bytes(&bytes, store_password, key_password)
    }

    /// Reads a keystore from memory; the format comes from the content.
    ///
    /// `key_password` is tried first for JKS private keys (keytool lets them
    /// differ from the store password), then the store password. A JKS key
    /// that neither opens does not fail the load: [`KeyStore::private_key`]
    /// reports it. PKCS#12 uses one password for everything (keytool forces
    /// it), so `key_password` is ignored there.
    pub fn from_bytes(
        bytes: &[u8],
        store_password: &SecretString,
        key_password: Option<&SecretString>,
    ) -> Result<KeyStore, KeystoreError> {
        if u64::try_from(bytes.len()).map_or(true, |n| n > MAX_KEYSTORE_BYTES) {
            return Err(KeystoreError::NotAKeystore {
                reason: format!("larger than {MAX_KEYSTORE_BYTES} bytes"),
            });
        }
        let format = detect(bytes)?;
        let entries = match format {
            KeystoreFormat::Jks => jks::parse(bytes, store_password, key_password)?,
            KeystoreFormat::Pkcs12 => pkcs12::parse(bytes, store_password)?,
        };
        let mut seen = std::collections::HashSet::new();
        for e in &entries {
            if !seen.insert(lower(&e.alias)) {
                let reason = "two entries have this alias (aliases ignore case)";
                return Err(KeystoreError::corrupt(Some(&e.alias), reason));
            }
        }
        Ok(KeyStore { format, entries })
    }

    /// The format found in the file.
    pub fn format(&self) -> KeystoreFormat {
        self.format
    }

    /// Aliases (original spelling) and kinds, in file order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, EntryKind)> {
        self.entries.iter().map(|e| (e.alias.as_str(), e.kind()))
    }

    fn find(&self, alias: &str) -> Result<&StoredEntry, KeystoreError> {
        let wanted = lower(alias);
        self.entries
            .iter()
            .find(|e| lower(&e.alias) == wanted)
            .ok_or_else(|| {
                let present: Vec<&str> = self.entries.iter().map(|e| e.alias.as_str()).collect();
                KeystoreError::AliasMissing {
                    alias: alias.to_owned(),
                    present: if present.is_empty() {
                        "no entries".to_owned()
                    } else {
                        present.join(", ")
                    },
                }
            })
    }

    /// The private key entry `alias` (case-insensitive). Errors name the
    /// alias as asked for.
    pub fn private_key(&self, alias: &str) -> Result<&PrivateKeyEntry, KeystoreError> {
        let entry = self.find(alias)?;
        match &entry.item {
            Item::Key(k) => Ok(k),
            Item::LockedKey { .. } => Err(KeystoreError::WrongKeyPassword {
                alias: alias.to_owned(),
            }),
            Item::Cert(_) => Err(KeystoreError::WrongEntryType {
                alias: alias.to_owned(),
                actual: EntryKind::Certificate,
                wanted: EntryKind::PrivateKey,
            }),
        }
    }

    /// The trusted certificate entry `alias` (case-insensitive).
    pub fn certificate(&self, alias: &str) -> Result<&CertificateEntry, KeystoreError> {
        let entry = self.find(alias)?;
        match &entry.item {
            Item::Cert(c) => Ok(c),
            Item::Key(_) | Item::LockedKey { .. } => Err(KeystoreError::WrongEntryType {
                alias: alias.to_owned(),
                actual: EntryKind::PrivateKey,
                wanted: EntryKind::Certificate,
            }),
        }
    }

    /// All trusted certificate entries, in file order.
    pub fn certificates(&self) -> impl Iterator<Item = &CertificateEntry> {
        self.entries.iter().filter_map(|e| match &e.item {
            Item::Cert(c) => Some(c),
            Item::Key(_) | Item::LockedKey { .. } => None,
        })
    }

    /// When the entry was created, if the file records it (JKS always,
    /// keytool's PKCS#12 through its `Time ...` local key id).
    pub fn created(&self, alias: &str) -> Option<SystemTime> {
        self.find(alias).ok().and_then(|e| e.created)
    }
}

#[cfg(test)]
mod tests;
