//! Each way a real keystore can fail to serve gives its own error, with a
//! message the operator can act on; nothing panics.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/guide_pki.rs"]
mod guide_pki;
#[path = "support/scratch.rs"]
mod scratch;

use std::sync::OnceLock;

use cmx_kms::keystore::{KeyStore, KeystoreError, KeystoreFormat};
use guide_pki::{GuidePki, PkiOptions, StoreType, keytool};
use secrecy::SecretString;

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

/// A JKS, a default (PKCS#12) and a legacy PKCS#12 guide keystore, shared by
/// the tests here (removed when the process ends: statics are never dropped).
fn stores() -> &'static [GuidePki] {
    static STORES: OnceLock<Vec<GuidePki>> = OnceLock::new();
    STORES.get_or_init(|| {
        [
            StoreType::Jks,
            StoreType::DefaultPkcs12,
            StoreType::LegacyPkcs12,
        ]
        .into_iter()
        .map(|store_type| {
            let options = PkiOptions {
                store_type,
                ..PkiOptions::default()
            };
            GuidePki::generate(&scratch::for_process(), options)
        })
        .collect()
    })
}

#[test]
fn wrong_store_password_is_not_a_parse_error() {
    for pki in stores() {
        let err = KeyStore::load(&pki.keystore, &pw("kmsKeystorePwd!"), None).unwrap_err();
        let want = if pki.options.store_type == StoreType::Jks {
            KeystoreFormat::Jks
        } else {
            KeystoreFormat::Pkcs12
        };
        match &err {
            KeystoreError::WrongStorePassword { format } => assert_eq!(*format, want),
            other => panic!("{:?}: {other:?}", pki.options.store_type),
        }
        assert!(
            err.to_string()
                .starts_with("the keystore password is wrong"),
            "{err}"
        );
    }
}

#[test]
fn truncated_and_foreign_files_are_not_keystores() {
    for pki in stores() {
        let bytes = std::fs::read(&pki.keystore).unwrap();
        for cut in [0, 1, 3, 4, 20, bytes.len() / 2, bytes.len() - 1] {
            let err = KeyStore::from_bytes(&bytes[..cut], &pw(&pki.store_password), None);
            let err = err.unwrap_err();
            assert!(
                matches!(err, KeystoreError::NotAKeystore { .. }),
                "cut {cut}: {err:?}"
            );
            if cut > 0 {
                assert!(err.to_string().contains("truncated"), "cut {cut}: {err}");
            }
        }
    }
    let pki = &stores()[0];
    for foreign in [
        &pki.kms_server.cert,
        &pki.kms_server.key,
        &pki.dir.join("kmsServer.csr"),
    ] {
        let err = KeyStore::load(foreign, &pw("x"), None).unwrap_err();
        assert!(err.to_string().contains("PEM file"), "{err}");
    }
    // a DER certificate is DER, but not PKCS#12
    let der = pki.dir.join("kmsServer.der");
    guide_pki::openssl(
        &pki.dir,
        "x509 -in kmsServer.crt -outform DER -out kmsServer.der",
    );
    let err = KeyStore::load(&der, &pw("x"), None).unwrap_err();
    assert!(matches!(err, KeystoreError::NotAKeystore { .. }), "{err:?}");
    assert!(err.to_string().contains("not a PKCS#12"), "{err}");
    let ext = pki.dir.join("kmsServer.ext");
    let err = KeyStore::load(&ext, &pw("x"), None).unwrap_err();
    assert!(err.to_string().contains("unknown format"), "{err}");
}

#[test]
fn unreadable_files_name_the_path() {
    let pki = &stores()[0];
    let missing = pki.dir.join("no-such-keystore.jks");
    let err = KeyStore::load(&missing, &pw("x"), None).unwrap_err();
    assert!(matches!(err, KeystoreError::Unreadable { .. }));
    assert!(err.to_string().contains("no-such-keystore.jks"), "{err}");
    let err = KeyStore::load(&pki.dir, &pw("x"), None).unwrap_err();
    assert!(matches!(err, KeystoreError::Unreadable { .. }), "{err:?}");
}

#[test]
fn missing_alias_lists_the_aliases_present() {
    for pki in stores() {
        let ks = KeyStore::load(&pki.keystore, &pw(&pki.store_password), None).unwrap();
        let err = ks.private_key("kmsserverX").unwrap_err();
        assert!(matches!(err, KeystoreError::AliasMissing { .. }));
        let msg = err.to_string().to_lowercase();
        assert!(
            msg.starts_with("alias 'kmsserverx' is not in the keystore"),
            "{msg}"
        );
        for alias in [
            "kmsserver",
            "kmsclient",
            "kmipsigningca",
            "cmxbackend",
            "cmxdevice",
        ] {
            assert!(msg.contains(alias), "{alias} missing from: {msg}");
        }
    }
}

#[test]
fn wrong_entry_type_says_what_is_needed() {
    for pki in stores() {
        let ks = KeyStore::load(&pki.keystore, &pw(&pki.store_password), None).unwrap();
        let err = ks.private_key("cmxBackend").unwrap_err();
        assert!(matches!(err, KeystoreError::WrongEntryType { .. }));
        assert_eq!(
            err.to_string(),
            "alias 'cmxBackend' is a trustedCertEntry but a PrivateKeyEntry is needed"
        );
        let err = ks.certificate("kmsClient").unwrap_err().to_string();
        assert_eq!(
            err,
            "alias 'kmsClient' is a PrivateKeyEntry but a trustedCertEntry is needed"
        );
    }
}

#[test]
fn jceks_is_refused_with_the_conversion_command() {
    let pki = &stores()[0];
    keytool(
        &pki.dir,
        "-import -noprompt -storetype JCEKS -alias cmxBackend -file cmxBackend.crt \
         -keystore old.jceks -storepass kmsKeystorePwd",
    );
    let err = KeyStore::load(&pki.dir.join("old.jceks"), &pw("kmsKeystorePwd"), None);
    let err = err.unwrap_err();
    assert!(matches!(err, KeystoreError::Unsupported { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("JCEKS") && msg.contains("keytool -importkeystore"),
        "{msg}"
    );
}
