//! The install guide's "convert a legacy .p12 for OpenSSL 3" in one step:
//! read a PKCS#12 with RC2-40 certificates and 3DES keys (or any keystore this
//! module reads) and write it again as OpenSSL 3 and Java 17 write PKCS#12 by
//! default: PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC for keys and
//! certificates, and an HMAC-SHA256 MAC, 10 000 iterations each. The result
//! opens with `openssl pkcs12` without `-legacy` and with `keytool`.
//!
//! Aliases, chains and trusted-certificate entries (with Oracle's trust
//! attribute) are kept. Certificate bags that are neither in a chain nor
//! trusted are dropped, as keytool ignores them too.

use std::time::{SystemTime, UNIX_EPOCH};

use p12_keystore::{
    Certificate, EncryptionAlgorithm, KeyStoreEntry, MacAlgorithm, PrivateKey, PrivateKeyChain,
};
use secrecy::{ExposeSecret, SecretString};

use super::{Item, KeyStore, KeystoreError};

/// Iterations for PBKDF2 and the MAC: the Java 17 and OpenSSL 3 default.
const ITERATIONS: u32 = 10_000;

/// Converts `input` (legacy or any readable keystore, opened with
/// `in_password`) into a modern PKCS#12 protected by `out_password`.
pub fn convert_legacy(
    input: &[u8],
    in_password: &SecretString,
    out_password: &SecretString,
) -> Result<Vec<u8>, KeystoreError> {
    let ks = KeyStore::from_bytes(input, in_password, None)?;
    to_modern_pkcs12(&ks, out_password)
}

fn write_err(what: &str, e: impl std::fmt::Display) -> KeystoreError {
    KeystoreError::Write {
        reason: format!("{what}: {e}"),
    }
}

/// Writes an already loaded keystore as modern PKCS#12.
pub fn to_modern_pkcs12(
    ks: &KeyStore,
    out_password: &SecretString,
) -> Result<Vec<u8>, KeystoreError> {
    if out_password.expose_secret().is_empty() {
        return Err(KeystoreError::Write {
            reason: "the new password is empty".to_owned(),
        });
    }
    let mut p12 = p12_keystore::KeyStore::new();
    for entry in &ks.entries {
        let alias = entry.alias.as_str();
        let certs = entry
            .certs()
            .iter()
            .map(|c| Certificate::from_der(c).map_err(|e| write_err(alias, e)))
            .collect::<Result<Vec<_>, _>>()?;
        let value = match &entry.item {
            Item::Key(key) => {
                let pkcs8 = PrivateKey::from_der(&key.key).map_err(|e| write_err(alias, e))?;
                // keytool's localKeyID form, so the creation date survives.
                let created = entry.created.unwrap_or_else(SystemTime::now);
                let millis = created
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                let key_id = format!("Time {millis}");
                KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(key_id, pkcs8, certs))
            }
            Item::LockedKey { .. } => {
                return Err(KeystoreError::WrongKeyPassword {
                    alias: alias.to_owned(),
                });
            }
            Item::Cert(_) => match certs.into_iter().next() {
                Some(cert) => KeyStoreEntry::Certificate(cert),
                None => return Err(write_err(alias, "no certificate")),
            },
        };
        p12.add_entry(alias, value);
    }
    let bytes = p12
        .writer(out_password.expose_secret())
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(ITERATIONS)
        .write()
        .map_err(|e| write_err("encoding", e))?;

    // Read it back: the same aliases and kinds must come out.
    let check = KeyStore::from_bytes(&bytes, out_password, None)?;
    let mut before: Vec<_> = ks.entries().map(|(a, k)| (a.to_lowercase(), k)).collect();
    let mut after: Vec<_> = check
        .entries()
        .map(|(a, k)| (a.to_lowercase(), k))
        .collect();
    before.sort_by(|a, b| a.0.cmp(&b.0));
    after.sort_by(|a, b| a.0.cmp(&b.0));
    if before != after {
        return Err(KeystoreError::Write {
            reason: "the written keystore does not read back with the same entries".to_owned(),
        });
    }
    Ok(bytes)
}
