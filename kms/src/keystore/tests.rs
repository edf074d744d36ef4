//! Unit tests on keystores built in memory: a JKS written by the test writer
//! below (same layout keytool writes) and PKCS#12 written by `p12-keystore`,
//! with rcgen keys. Real keytool/openssl files are tested in
//! `kms/tests/keystore_*.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use p12_keystore::{EncryptionAlgorithm, KeyStoreEntry, MacAlgorithm};
use secrecy::SecretString;
use sha1::{Digest, Sha1};

use super::*;

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

fn utf16be(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

/// KeyProtector (`jks::tests`'s writer), with the key password as JKS
/// takes it and a fixed salt (reproducible).
fn protect(plain: &[u8], password: &str) -> Vec<u8> {
    super::jks::tests::protect(plain, &utf16be(password), [0x5a; 20])
}

struct Ident {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn ident(name: &str) -> Ident {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
    Ident {
        cert: ck.cert.der().to_vec(),
        key: ck.signing_key.serialize_der(),
    }
}

fn utf(out: &mut Vec<u8>, s: &str) {
    out.extend(u16::try_from(s.len()).unwrap().to_be_bytes());
    out.extend(s.as_bytes());
}

/// A JKS v2 with key entry `kmsServer` (key password `key_pw`) and trusted `cmxBackend`.
fn jks(store_pw: &str, key_pw: &str, server: &Ident, backend: &Ident) -> Vec<u8> {
    let mut out = vec![0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2, 0, 0, 0, 2];
    out.extend(1u32.to_be_bytes());
    utf(&mut out, "kmsServer");
    out.extend(1_700_000_000_000u64.to_be_bytes());
    let protected = protect(&server.key, key_pw);
    out.extend(u32::try_from(protected.len()).unwrap().to_be_bytes());
    out.extend(protected);
    out.extend(1u32.to_be_bytes());
    utf(&mut out, "X.509");
    out.extend(u32::try_from(server.cert.len()).unwrap().to_be_bytes());
    out.extend(&server.cert);
    out.extend(2u32.to_be_bytes());
    utf(&mut out, "cmxBackend");
    out.extend(1_700_000_000_000u64.to_be_bytes());
    utf(&mut out, "X.509");
    out.extend(u32::try_from(backend.cert.len()).unwrap().to_be_bytes());
    out.extend(&backend.cert);
    let digest = Sha1::new()
        .chain_update(utf16be(store_pw))
        .chain_update(b"Mighty Aphrodite")
        .chain_update(&out)
        .finalize();
    out.extend(digest);
    out
}

/// PKCS#12 with key `kmsServer` and trusted `cmxBackend`, few iterations (fast tests).
fn p12(store_pw: &str, alg: EncryptionAlgorithm, server: &Ident, backend: &Ident) -> Vec<u8> {
    let mut ks = p12_keystore::KeyStore::new();
    let key = p12_keystore::PrivateKey::from_der(&server.key).unwrap();
    let cert = p12_keystore::Certificate::from_der(&server.cert).unwrap();
    let chain = p12_keystore::PrivateKeyChain::new("Time 1700000000000", key, [cert]);
    ks.add_entry("kmsServer", KeyStoreEntry::PrivateKeyChain(chain));
    let trusted = p12_keystore::Certificate::from_der(&backend.cert).unwrap();
    ks.add_entry("cmxBackend", KeyStoreEntry::Certificate(trusted));
    ks.writer(store_pw)
        .encryption_algorithm(alg)
        .encryption_iterations(50)
        .mac_algorithm(MacAlgorithm::HmacSha1)
        .mac_iterations(50)
        .write()
        .unwrap()
}

fn check_contents(ks: &KeyStore, server: &Ident, backend: &Ident) {
    let entries: Vec<_> = ks.entries().collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let key = ks.private_key("KMSSERVER").unwrap();
    assert_eq!(key.alias(), "kmsServer");
    assert_eq!(key.key_der().secret_der(), &server.key[..]);
    assert_eq!(key.chain().len(), 1);
    assert_eq!(key.chain()[0].as_ref(), &server.cert[..]);
    let cert = ks.certificate("cmxbackend").unwrap();
    assert_eq!(
        (cert.alias(), cert.cert().as_ref()),
        ("cmxBackend", &backend.cert[..])
    );
    assert_eq!(ks.certificates().count(), 1);
    let created = ks.created("kmsserver").unwrap();
    let want = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_000);
    assert_eq!(created, want);
}

#[test]
fn jks_reads_and_looks_up() {
    let (server, backend) = (ident("kmsServer"), ident("cmxBackend"));
    let bytes = jks("storepw", "storepw", &server, &backend);
    let ks = KeyStore::from_bytes(&bytes, &pw("storepw"), None).unwrap();
    assert_eq!(ks.format(), KeystoreFormat::Jks);
    assert_eq!(ks.format().to_string(), "JKS");
    check_contents(&ks, &server, &backend);

    let err = ks.private_key("cmxBackend").unwrap_err();
    assert!(matches!(err, KeystoreError::WrongEntryType { .. }));
    assert_eq!(
        err.to_string(),
        "alias 'cmxBackend' is a trustedCertEntry but a PrivateKeyEntry is needed"
    );
    let err = ks.certificate("kmsserver").unwrap_err().to_string();
    assert!(
        err.contains("is a PrivateKeyEntry but a trustedCertEntry"),
        "{err}"
    );
    let err = ks.private_key("kmsClient").unwrap_err();
    assert!(matches!(err, KeystoreError::AliasMissing { .. }));
    assert!(err.to_string().contains("kmsServer, cmxBackend"), "{err}");

    let debug = format!("{ks:?} {:?}", ks.private_key("kmsServer").unwrap());
    assert!(
        debug.contains("redacted") && !debug.contains("secret"),
        "{debug}"
    );
}

#[test]
fn jks_passwords() {
    let (server, backend) = (ident("kmsServer"), ident("cmxBackend"));
    let bytes = jks("storepw", "keypw", &server, &backend);
    let err = KeyStore::from_bytes(&bytes, &pw("wrong"), None).unwrap_err();
    assert!(
        matches!(err, KeystoreError::WrongStorePassword { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("the keystore password is wrong"));

    // store password right, key password not given: loads, but the key stays locked
    let ks = KeyStore::from_bytes(&bytes, &pw("storepw"), None).unwrap();
    let err = ks.private_key("kmsserver").unwrap_err();
    assert!(
        matches!(err, KeystoreError::WrongKeyPassword { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("'kmsserver'"), "{err}");
    assert_eq!(
        ks.entries().next(),
        Some(("kmsServer", EntryKind::PrivateKey))
    );
    assert!(list::render(&ks, true).contains("Certificate chain length: 1"));

    let ks = KeyStore::from_bytes(&bytes, &pw("storepw"), Some(&pw("keypw"))).unwrap();
    check_contents(&ks, &server, &backend);
    // a key password that does not fit falls back to the store password
    let same = jks("storepw", "storepw", &server, &backend);
    let ks = KeyStore::from_bytes(&same, &pw("storepw"), Some(&pw("other"))).unwrap();
    check_contents(&ks, &server, &backend);
}

#[test]
fn pkcs12_modern_and_legacy_read() {
    let (server, backend) = (ident("kmsServer"), ident("cmxBackend"));
    for alg in [
        EncryptionAlgorithm::PbeWithHmacSha256AndAes256,
        EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc,
        EncryptionAlgorithm::PbeWithShaAnd40BitRc4Cbc,
    ] {
        let bytes = p12("storepw", alg, &server, &backend);
        let ks = KeyStore::from_bytes(&bytes, &pw("storepw"), Some(&pw("ignored"))).unwrap();
        assert_eq!(ks.format().to_string(), "PKCS12");
        check_contents(&ks, &server, &backend);
        let err = KeyStore::from_bytes(&bytes, &pw("nope"), None).unwrap_err();
        assert!(
            matches!(err, KeystoreError::WrongStorePassword { .. }),
            "{alg:?}: {err}"
        );
    }
}

#[test]
fn detection_by_content() {
    let p = pw("x");
    let err = |b: &[u8]| KeyStore::from_bytes(b, &p, None).unwrap_err();
    assert!(matches!(err(b""), KeystoreError::NotAKeystore { .. }));
    assert!(err(&[0xfe, 0xed]).to_string().contains("truncated"));
    let jceks = err(&[0xce, 0xce, 0xce, 0xce, 0, 0, 0, 2]);
    assert!(matches!(jceks, KeystoreError::Unsupported { .. }));
    assert!(
        jceks.to_string().contains("keytool -importkeystore"),
        "{jceks}"
    );
    assert!(
        err(b"-----BEGIN CERTIFICATE-----\n")
            .to_string()
            .contains("PEM")
    );
    assert!(err(b"PK\x03\x04 zip").to_string().contains("50 4B 03 04"));
    let unknown_version = err(&[0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 9, 0, 0, 0, 0]);
    assert!(matches!(unknown_version, KeystoreError::Unsupported { .. }));
}

#[test]
fn every_truncation_is_not_a_keystore() {
    let (server, backend) = (ident("kmsServer"), ident("cmxBackend"));
    let alg = EncryptionAlgorithm::PbeWithHmacSha256AndAes256;
    for bytes in [
        jks("pw", "pw", &server, &backend),
        p12("pw", alg, &server, &backend),
    ] {
        for cut in 0..bytes.len() {
            match KeyStore::from_bytes(&bytes[..cut], &pw("pw"), None) {
                Err(KeystoreError::NotAKeystore { .. }) => {}
                other => panic!("prefix of {cut} bytes gave {other:?}"),
            }
        }
    }
}

/// Deterministic xorshift, so a failure can be replayed.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn byte_flips_never_panic_or_fool_the_checks() {
    let (server, backend) = (ident("kmsServer"), ident("cmxBackend"));
    let modern = EncryptionAlgorithm::PbeWithHmacSha256AndAes256;
    let legacy = EncryptionAlgorithm::PbeWithShaAnd3KeyTripleDesCbc;
    let originals = [
        jks("pw", "pw", &server, &backend),
        p12("pw", modern, &server, &backend),
        p12("pw", legacy, &server, &backend),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15;
    for original in &originals {
        for _ in 0..150 {
            let mut bytes = original.clone();
            let n = usize::try_from(xorshift(&mut state) % 3 + 1).unwrap();
            for _ in 0..n {
                let len = u64::try_from(bytes.len()).unwrap();
                let at = usize::try_from(xorshift(&mut state) % len).unwrap();
                bytes[at] ^= u8::try_from(xorshift(&mut state) % 255 + 1).unwrap();
            }
            if let Ok(ks) = KeyStore::from_bytes(&bytes, &pw("pw"), None) {
                // only unauthenticated framing may change without notice:
                // whatever opens must still hold the original key
                if let Ok(k) = ks.private_key("kmsServer") {
                    assert_eq!(k.key_der().secret_der(), &server.key[..]);
                }
            }
        }
    }
}
