//! `convert_legacy`: legacy PKCS#12 (RC2-40 certificates, 3DES keys, SHA-1
//! MAC) in, a file out that OpenSSL 3 reads *without* `-legacy` and that
//! keytool lists with the same entries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/guide_pki.rs"]
mod guide_pki;

use std::path::Path;
use std::process::Command;

use cmx_kms::keystore::convert::convert_legacy;
use cmx_kms::keystore::{EntryKind, KeyStore, KeystoreError};
use guide_pki::{GuidePki, PkiOptions, StoreType, keytool_list_v, openssl, parse_keytool_list_v};
use secrecy::SecretString;

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

/// `openssl pkcs12 -info -noout` without `-legacy`: (success, stderr+stdout).
fn openssl_info(file: &Path, password: &str) -> (bool, String) {
    let out = Command::new("openssl")
        .args(["pkcs12", "-info", "-noout", "-passin"])
        .arg(format!("pass:{password}"))
        .arg("-in")
        .arg(file)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Aliases (lower case), entry types and fingerprints as keytool lists them.
fn keytool_view(file: &Path, password: &str) -> Vec<(String, String, Vec<String>)> {
    let mut v: Vec<_> = parse_keytool_list_v(&keytool_list_v(file, password))
        .into_iter()
        .map(|e| (e.alias.to_lowercase(), e.entry_type, e.sha256))
        .collect();
    v.sort();
    v
}

fn convert_file(input: &Path, in_pw: &str, output: &Path, out_pw: &str) {
    let bytes = std::fs::read(input).unwrap();
    let converted = convert_legacy(&bytes, &pw(in_pw), &pw(out_pw)).unwrap();
    std::fs::write(output, converted).unwrap();
}

fn check_modern(output: &Path, out_pw: &str) {
    let (ok, info) = openssl_info(output, out_pw);
    assert!(ok, "openssl could not read the converted file:\n{info}");
    assert!(info.contains("MAC: sha256"), "{info}");
    assert!(info.contains("PBES2, PBKDF2, AES-256-CBC"), "{info}");
    assert!(!info.contains("RC2") && !info.contains("3DES") && !info.contains("TripleDES"));
}

#[test]
fn legacy_openssl_p12_becomes_openssl3_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = GuidePki::generate(tmp.path(), PkiOptions::default());
    // the guide's step 7, as an old OpenSSL wrote it, with the CA in the chain
    openssl(
        &pki.dir,
        "pkcs12 -export -legacy -inkey kmsServer.key -in kmsServer.crt -certfile ca.crt \
         -name kmsServer -out legacy.p12 -passout pass:oldPwd",
    );
    let legacy = pki.dir.join("legacy.p12");
    let (ok, info) = openssl_info(&legacy, "oldPwd");
    assert!(!ok, "the input should need -legacy:\n{info}");

    let out = pki.dir.join("modern.p12");
    convert_file(&legacy, "oldPwd", &out, "newPwd");
    check_modern(&out, "newPwd");
    assert_eq!(
        keytool_view(&out, "newPwd"),
        keytool_view(&legacy, "oldPwd")
    );

    let ks = KeyStore::load(&out, &pw("newPwd"), None).unwrap();
    let entry = ks.private_key("kmsServer").unwrap();
    assert_eq!(entry.alias(), "kmsServer");
    assert_eq!(entry.chain().len(), 2, "leaf and CA are kept");
    let before = KeyStore::load(&legacy, &pw("oldPwd"), None).unwrap();
    let key_before = before.private_key("kmsserver").unwrap().key_der();
    assert_eq!(entry.key_der().secret_der(), key_before.secret_der());
}

#[test]
fn legacy_keytool_store_becomes_openssl3_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let options = PkiOptions {
        store_type: StoreType::LegacyPkcs12,
        ..PkiOptions::default()
    };
    let pki = GuidePki::generate(tmp.path(), options);
    let (ok, _) = openssl_info(&pki.keystore, &pki.store_password);
    assert!(!ok, "keytool's legacy store should need -legacy");

    let out = pki.dir.join("kmsKeystore-modern.p12");
    convert_file(&pki.keystore, &pki.store_password, &out, "newStorePwd");
    check_modern(&out, "newStorePwd");
    let want = keytool_view(&pki.keystore, &pki.store_password);
    assert_eq!(keytool_view(&out, "newStorePwd"), want);
    assert_eq!(want.len(), 5);
    assert!(
        want.iter()
            .any(|(a, t, _)| a == "kmipsigningca" && t == "trustedCertEntry")
    );

    let ks = KeyStore::load(&out, &pw("newStorePwd"), None).unwrap();
    let kinds: Vec<EntryKind> = ks.entries().map(|(_, k)| k).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == EntryKind::PrivateKey)
            .count(),
        2
    );
}

#[test]
fn conversion_reports_a_wrong_input_password() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = GuidePki::generate(tmp.path(), PkiOptions::default());
    let bytes = std::fs::read(pki.kms_client.p12.as_ref().unwrap()).unwrap();
    let err = convert_legacy(&bytes, &pw("wrong"), &pw("new")).unwrap_err();
    assert!(
        matches!(err, KeystoreError::WrongStorePassword { .. }),
        "{err:?}"
    );
    let err = convert_legacy(&bytes, &pw(&pki.kms_client.p12_password), &pw("")).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}
