//! Keystores made exactly as the install guide makes them (real openssl and
//! keytool) are read, and what we list agrees with `keytool -list -v`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/guide_pki.rs"]
mod guide_pki;

use std::path::Path;
use std::time::SystemTime;

use cmx_kms::keystore::certinfo::CertInfo;
use cmx_kms::keystore::{EntryKind, KeyStore, KeystoreFormat, list};
use guide_pki::{GuidePki, PkiOptions, StoreType, keytool_list_v, openssl};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::SecretString;

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

/// The lines both keytool and we print, per entry, keyed by lower-case alias.
/// "Creation date" is left out: keytool invents one for PKCS#12 certificates.
fn comparable(text: &str) -> Vec<(String, Vec<String>)> {
    const KEEP: [&str; 11] = [
        "Entry type:",
        "Certificate chain length:",
        "Owner:",
        "Issuer:",
        "Serial number:",
        "Valid from:",
        "SHA1:",
        "SHA256:",
        "Signature algorithm name:",
        "Subject Public Key Algorithm:",
        "Version:",
    ];
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(alias) = line.strip_prefix("Alias name: ") {
            out.push((alias.to_lowercase(), Vec::new()));
        } else if KEEP.iter().any(|k| line.starts_with(k)) {
            out.last_mut().expect("alias first").1.push(line.to_owned());
        }
    }
    out.sort();
    out
}

fn load(pki: &GuidePki, key_password: Option<&str>) -> KeyStore {
    let key_pw = key_password.map(pw);
    KeyStore::load(&pki.keystore, &pw(&pki.store_password), key_pw.as_ref()).unwrap()
}

/// PKCS#8 DER of a PEM key file, through openssl.
fn openssl_pkcs8(dir: &Path, key: &Path) -> Vec<u8> {
    let out = dir.join("key.der");
    let args = format!(
        "pkcs8 -topk8 -nocrypt -outform DER -in {} -out {}",
        key.display(),
        out.display()
    );
    openssl(dir, &args);
    std::fs::read(out).unwrap()
}

fn cert_der(dir: &Path, cert: &Path) -> Vec<u8> {
    let out = dir.join("cert.der");
    openssl(
        dir,
        &format!(
            "x509 -outform DER -in {} -out {}",
            cert.display(),
            out.display()
        ),
    );
    std::fs::read(out).unwrap()
}

/// Everything the guide put in, with the right kinds, keys and certificates.
fn check_guide_contents(pki: &GuidePki, ks: &KeyStore) {
    let mut kinds: Vec<(String, EntryKind)> =
        ks.entries().map(|(a, k)| (a.to_lowercase(), k)).collect();
    kinds.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        ("cmxbackend".to_owned(), EntryKind::Certificate),
        ("cmxdevice".to_owned(), EntryKind::Certificate),
        ("kmipsigningca".to_owned(), EntryKind::Certificate),
        ("kmsclient".to_owned(), EntryKind::PrivateKey),
        ("kmsserver".to_owned(), EntryKind::PrivateKey),
    ];
    for extra in &pki.extra_devices {
        want.push((extra.name.to_lowercase(), EntryKind::Certificate));
    }
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(kinds, want);

    let provider = rustls::crypto::ring::default_provider();
    for id in [&pki.kms_server, &pki.kms_client] {
        let entry = ks.private_key(&id.name).unwrap();
        let PrivateKeyDer::Pkcs8(key) = entry.key_der() else {
            panic!("not PKCS#8")
        };
        assert_eq!(
            key.secret_pkcs8_der(),
            &openssl_pkcs8(&pki.dir, &id.key)[..]
        );
        assert_eq!(entry.chain()[0].as_ref(), &cert_der(&pki.dir, &id.cert)[..]);
        // rustls accepts the pair as a TLS identity
        let ck = rustls::sign::CertifiedKey::from_der(
            entry.chain().to_vec(),
            entry.key_der(),
            &provider,
        );
        ck.unwrap();
    }
    for id in [&pki.cmx_backend, &pki.cmx_device]
        .into_iter()
        .chain(&pki.extra_devices)
    {
        let cert = ks.certificate(&id.name).unwrap().cert();
        assert_eq!(cert.as_ref(), &cert_der(&pki.dir, &id.cert)[..]);
    }
    let hsm_ca = ks.certificate("KMIPSIGNINGCA").unwrap().cert();
    assert_eq!(hsm_ca.as_ref(), &cert_der(&pki.dir, &pki.hsm_ca.cert)[..]);
    assert_eq!(ks.certificates().count(), 3 + pki.extra_devices.len());
}

fn agrees_with_keytool(file: &Path, password: &str, ks: &KeyStore) {
    let theirs = comparable(&keytool_list_v(file, password));
    let ours = comparable(&list::render(ks, true));
    assert!(!theirs.is_empty());
    assert_eq!(ours, theirs);
    // the short form carries the same fingerprints
    let short = list::render(ks, false);
    for (_, lines) in &theirs {
        let leaf = lines
            .iter()
            .find_map(|l| l.strip_prefix("SHA256: "))
            .unwrap();
        assert!(
            short.contains(&format!("Certificate fingerprint (SHA-256): {leaf}")),
            "{short}"
        );
    }
}

#[test]
fn explicit_jks_with_extra_device() {
    let tmp = tempfile::tempdir().unwrap();
    let options = PkiOptions {
        store_type: StoreType::Jks,
        extra_device_aliases: vec!["cmxDevice20190512".to_owned()],
        ..PkiOptions::default()
    };
    let pki = GuidePki::generate(tmp.path(), options);
    let ks = load(&pki, None);
    assert_eq!(ks.format(), KeystoreFormat::Jks);
    check_guide_contents(&pki, &ks);
    agrees_with_keytool(&pki.keystore, &pki.store_password, &ks);
    // JKS records creation dates; keytool's short list shows them too
    assert!(ks.created("kmsserver").unwrap() <= SystemTime::now());
}

#[test]
fn jks_with_a_different_key_password() {
    let tmp = tempfile::tempdir().unwrap();
    let options = PkiOptions {
        store_type: StoreType::Jks,
        key_password: Some("kmsClientKeyPwd".to_owned()),
        ..PkiOptions::default()
    };
    let pki = GuidePki::generate(tmp.path(), options);
    let ks = load(&pki, Some("kmsClientKeyPwd"));
    check_guide_contents(&pki, &ks);
    agrees_with_keytool(&pki.keystore, &pki.store_password, &ks);

    // without the key password: the store opens, the keys name themselves as locked
    let ks = load(&pki, None);
    let err = ks.private_key("kmsServer").unwrap_err().to_string();
    assert!(
        err.contains("key password of alias 'kmsServer' is wrong"),
        "{err}"
    );
    agrees_with_keytool(&pki.keystore, &pki.store_password, &ks);
}

#[test]
fn default_store_type_is_pkcs12() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = GuidePki::generate(tmp.path(), PkiOptions::default());
    let ks = load(&pki, None);
    assert_eq!(ks.format(), KeystoreFormat::Pkcs12);
    check_guide_contents(&pki, &ks);
    agrees_with_keytool(&pki.keystore, &pki.store_password, &ks);
    // keytool's PKCS#12 chain for kmsClient includes the trusted HSM CA
    assert_eq!(ks.private_key("kmsclient").unwrap().chain().len(), 2);
}

#[test]
fn legacy_pkcs12_from_keytool() {
    let tmp = tempfile::tempdir().unwrap();
    let options = PkiOptions {
        store_type: StoreType::LegacyPkcs12,
        ..PkiOptions::default()
    };
    let pki = GuidePki::generate(tmp.path(), options);
    let ks = load(&pki, None);
    assert_eq!(ks.format(), KeystoreFormat::Pkcs12);
    check_guide_contents(&pki, &ks);
    agrees_with_keytool(&pki.keystore, &pki.store_password, &ks);
}

#[test]
fn openssl_p12_files_and_certinfo() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = GuidePki::generate(tmp.path(), PkiOptions::default());
    let id = &pki.cmx_backend;
    let p12 = id.p12.as_deref().unwrap();
    let ks = KeyStore::load(p12, &pw(&id.p12_password), None).unwrap();
    let entry = ks.private_key("cmxbackend").unwrap();
    assert_eq!(entry.alias(), "cmxBackend");
    let leaf = CertificateDer::from(cert_der(&pki.dir, &id.cert));
    assert_eq!(entry.chain(), std::slice::from_ref(&leaf));
    agrees_with_keytool(p12, &id.p12_password, &ks);

    let info = CertInfo::from_der(&leaf).unwrap();
    assert_eq!(
        info.subject,
        "CN=cmxBackend, OU=MyOU, O=MyCorp, ST=MyState, C=US"
    );
    assert_eq!(info.issuer, "CN=cmxTestCA, O=MyCorp, C=US");
    assert!(info.is_valid_at(SystemTime::now()));
    let fp = openssl(
        &pki.dir,
        "x509 -noout -fingerprint -sha256 -in cmxBackend.crt",
    );
    let fp = String::from_utf8(fp.stdout).unwrap();
    assert_eq!(
        fp.trim(),
        format!("sha256 Fingerprint={}", info.sha256_fingerprint)
    );

    let expired = pki.make_client("oldClient", guide_pki::ClientKind::Expired);
    let info =
        CertInfo::from_der(&CertificateDer::from(cert_der(&pki.dir, &expired.cert))).unwrap();
    assert!(!info.is_valid_at(SystemTime::now()));
    assert_eq!(
        info.validity_display(),
        "Valid from: Wed Jan 01 00:00:00 UTC 2020 until: Sat Feb 01 00:00:00 UTC 2020"
    );
}

#[test]
fn keytool_genkeypair_ec_and_rsa() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let genkey = "-genkeypair -dname CN=kmsGen,O=MyCorp -validity 30 -storepass genPwd0";
    guide_pki::keytool(
        dir,
        &format!("{genkey} -alias ecKey -keyalg EC -groupname secp256r1 -keystore ec.p12"),
    );
    guide_pki::keytool(
        dir,
        &format!(
            "{genkey} -alias rsaKey -keyalg RSA -keysize 3072 -storetype JKS -keystore rsa.jks"
        ),
    );
    let provider = rustls::crypto::ring::default_provider();
    for (file, alias, algo) in [
        (
            "ec.p12",
            "ecKey",
            "Subject Public Key Algorithm: 256-bit EC (secp256r1) key",
        ),
        (
            "rsa.jks",
            "rsaKey",
            "Subject Public Key Algorithm: 3072-bit RSA key",
        ),
    ] {
        let path = dir.join(file);
        let ks = KeyStore::load(&path, &pw("genPwd0"), None).unwrap();
        agrees_with_keytool(&path, "genPwd0", &ks);
        assert!(list::render(&ks, true).contains(algo));
        let entry = ks.private_key(alias).unwrap();
        let ck = rustls::sign::CertifiedKey::from_der(
            entry.chain().to_vec(),
            entry.key_der(),
            &provider,
        );
        ck.unwrap();
    }
}
