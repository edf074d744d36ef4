//! PKCS#12 through `p12-keystore`'s bag-level [`Pkcs12Archive`], with the
//! entry model of Java's `PKCS12KeyStore`, so that we see what keytool sees:
//!
//! - a private key bag is a `PrivateKeyEntry`; its leaf is the certificate bag
//!   with the same localKeyID (else the same friendlyName); the chain follows
//!   issuer names over *all* certificate bags, first match wins, and stops at
//!   a self-signed certificate or a loop (so a trusted CA in the same store
//!   joins the chain, as `keytool -list` shows);
//! - a certificate bag with Oracle's trusted-key-usage attribute
//!   (2.16.840.1.113894.746875.1.1) is a `trustedCertEntry`; other
//!   certificate bags are only chain material (keytool does not list them);
//! - the alias is the friendlyName; entries without one get a number, as in Java;
//! - keytool's localKeyID `Time <ms>` gives the creation date.
//!
//! Entry order: private keys in bag order, then trusted certificates in bag order.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use p12_keystore::Pkcs12Archive;
use p12_keystore::error::Error as P12Error;
use rustls_pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::der::{self, DerError, TAG_INTEGER, TAG_SEQUENCE};
use super::{Item, KeystoreError, KeystoreFormat, PrivateKeyEntry, StoredEntry, checked_cert};

const MAX_CHAIN: usize = 64;

/// Checks the outer `PFX` shape before handing the bytes to `p12-keystore`,
/// so that truncation and non-PKCS#12 DER get their own errors.
/// Returns whether the file has a MAC.
fn prescan(bytes: &[u8]) -> Result<bool, KeystoreError> {
    let not_p12 = |why: &str| KeystoreError::NotAKeystore {
        reason: format!("DER data but not a PKCS#12 keystore ({why})"),
    };
    let (pfx, rest) = match der::expect_tlv(bytes, TAG_SEQUENCE) {
        Ok(v) => v,
        Err(DerError::Truncated) => return Err(KeystoreError::truncated("PKCS#12 structure")),
        Err(DerError::Malformed) => return Err(not_p12("unreadable DER")),
    };
    if !rest.is_empty() {
        return Err(not_p12("bytes after the end"));
    }
    let (version, rest) = der::expect_tlv(pfx, TAG_INTEGER).map_err(|_| not_p12("no version"))?;
    if version != [3] {
        return Err(not_p12("version is not 3; a DER certificate or key?"));
    }
    let (_, rest) = der::expect_tlv(rest, TAG_SEQUENCE).map_err(|_| not_p12("no content"))?;
    if rest.is_empty() {
        return Ok(false);
    }
    let (_, rest) = der::expect_tlv(rest, TAG_SEQUENCE).map_err(|_| not_p12("bad MAC data"))?;
    if !rest.is_empty() {
        return Err(not_p12("unexpected fields"));
    }
    Ok(true)
}

fn map_error(e: P12Error, has_mac: bool) -> KeystoreError {
    let unsupported = |what: String| KeystoreError::Unsupported {
        what,
        todo: "re-export the key and certificates with openssl pkcs12 -export (OpenSSL 3 \
               defaults), or convert with keytool -importkeystore -deststoretype PKCS12"
            .to_owned(),
    };
    match e {
        P12Error::MacError(_) => KeystoreError::WrongStorePassword {
            format: KeystoreFormat::Pkcs12,
        },
        // Without a MAC, a wrong password shows up as a failed decryption.
        P12Error::UnpadError | P12Error::Pkcs5Error(_) if !has_mac => {
            KeystoreError::WrongStorePassword {
                format: KeystoreFormat::Pkcs12,
            }
        }
        P12Error::UnsupportedEncryptionScheme
        | P12Error::UnsupportedMacAlgorithm
        | P12Error::UnsupportedContentType
        | P12Error::UnsupportedCertificateType => unsupported(format!("PKCS#12: {e}")),
        P12Error::InvalidParameters => unsupported(
            "PKCS#12 with parameters out of range (more than 1,000,000 iterations?)".to_owned(),
        ),
        other => KeystoreError::corrupt(None, format!("PKCS#12: {other}")),
    }
}

/// `Time 1795896654970` (keytool's localKeyID) as a time.
fn keytool_time(local_key_id: &[u8]) -> Option<SystemTime> {
    let digits = std::str::from_utf8(local_key_id.strip_prefix(b"Time ")?).ok()?;
    let millis: u64 = digits.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

/// A certificate bag with the names needed for chain building.
struct Cert<'a> {
    der: &'a [u8],
    subject: Vec<u8>,
    issuer: Vec<u8>,
    friendly_name: Option<&'a str>,
    local_key_id: Option<&'a [u8]>,
    trusted: bool,
}

/// Java's chain building: from the leaf, follow issuer names over all certs.
fn build_chain(certs: &[Cert<'_>], leaf: usize) -> Vec<usize> {
    let mut chain = vec![leaf];
    let mut current = leaf;
    while let Some(cert) = certs.get(current) {
        if cert.subject == cert.issuer || chain.len() >= MAX_CHAIN {
            break;
        }
        let Some(next) = certs.iter().position(|c| c.subject == cert.issuer) else {
            break;
        };
        let der = certs.get(next).map(|c| c.der);
        if chain.iter().any(|&i| certs.get(i).map(|c| c.der) == der) {
            break;
        }
        chain.push(next);
        current = next;
    }
    chain
}

fn to_der_chain(
    certs: &[Cert<'_>],
    idx: &[usize],
    alias: &str,
) -> Result<Vec<CertificateDer<'static>>, KeystoreError> {
    idx.iter()
        .filter_map(|&i| certs.get(i))
        .map(|c| checked_cert(alias, c.der))
        .collect()
}

/// Reads a PKCS#12 keystore with one password for MAC, keys and certificates.
pub(super) fn parse(
    bytes: &[u8],
    password: &SecretString,
) -> Result<Vec<StoredEntry>, KeystoreError> {
    let has_mac = prescan(bytes)?;
    let archive = Pkcs12Archive::from_pkcs12(bytes, password.expose_secret())
        .map_err(|e| map_error(e, has_mac))?;

    let mut certs = Vec::with_capacity(archive.certs.len());
    for bag in &archive.certs {
        let der = bag.cert.as_der();
        let name = bag.friendly_name.as_deref();
        let (_, parsed) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| KeystoreError::corrupt(name, format!("bad certificate: {e}")))?;
        certs.push(Cert {
            der,
            subject: parsed.subject().as_raw().to_vec(),
            issuer: parsed.issuer().as_raw().to_vec(),
            friendly_name: name,
            local_key_id: bag.local_key_id.as_deref(),
            trusted: bag.trusted,
        });
    }

    let mut unnamed = 0u32;
    let mut next_name = || {
        unnamed += 1;
        unnamed.to_string()
    };
    let mut out = Vec::new();
    for key in &archive.keys {
        let key_id = key.local_key_id.as_ref().map(|id| id.as_ref());
        let by_id = key_id.and_then(|id| certs.iter().position(|c| c.local_key_id == Some(id)));
        let leaf = by_id.or_else(|| {
            let name = key.friendly_name.as_deref()?;
            certs.iter().position(|c| {
                !c.trusted
                    && c.friendly_name
                        .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
        });
        let alias = key
            .friendly_name
            .clone()
            .or_else(|| {
                leaf.and_then(|i| certs.get(i))
                    .and_then(|c| c.friendly_name.map(str::to_owned))
            })
            .unwrap_or_else(&mut next_name);
        let chain = match leaf {
            Some(i) => to_der_chain(&certs, &build_chain(&certs, i), &alias)?,
            None => Vec::new(),
        };
        let pkcs8 = Zeroizing::new(key.key.as_der().to_vec());
        if !der::is_single_sequence(&pkcs8) {
            return Err(KeystoreError::corrupt(
                Some(&alias),
                "the private key is not PKCS#8",
            ));
        }
        let created = key_id.and_then(keytool_time);
        let item = Item::Key(PrivateKeyEntry::new(alias.clone(), pkcs8, chain));
        out.push(StoredEntry {
            alias,
            created,
            item,
        });
    }
    for cert in certs.iter().filter(|c| c.trusted) {
        let alias = cert
            .friendly_name
            .map(str::to_owned)
            .unwrap_or_else(&mut next_name);
        let der = checked_cert(&alias, cert.der)?;
        let created = cert.local_key_id.and_then(keytool_time);
        out.push(StoredEntry::cert(alias, created, der));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keytool_local_key_id_is_a_time() {
        let t = keytool_time(b"Time 1795896654970").unwrap();
        let ms = t.duration_since(UNIX_EPOCH).unwrap().as_millis();
        assert_eq!(ms, 1_795_896_654_970);
        assert!(keytool_time(&[0xab; 20]).is_none());
        assert!(keytool_time(b"Time x").is_none());
    }

    #[test]
    fn prescan_tells_truncation_from_other_der() {
        // SEQUENCE { INTEGER 3, SEQUENCE {}, SEQUENCE {} }
        let good = [0x30, 0x07, 0x02, 0x01, 0x03, 0x30, 0x00, 0x30, 0x00];
        assert!(prescan(&good).unwrap());
        assert!(!prescan(&[0x30, 0x05, 0x02, 0x01, 0x03, 0x30, 0x00]).unwrap());
        for cut in 1..good.len() {
            let err = prescan(&good[..cut]).unwrap_err().to_string();
            assert!(err.contains("truncated"), "{err}");
        }
        // a certificate-like SEQUENCE { SEQUENCE {} }
        let err = prescan(&[0x30, 0x02, 0x30, 0x00]).unwrap_err().to_string();
        assert!(err.contains("not a PKCS#12"), "{err}");
    }
}
