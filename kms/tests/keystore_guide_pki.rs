//! The shared guide PKI helper itself: the keystores it makes hold what the
//! install guide says they hold, as `keytool -list -v` sees them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/guide_pki.rs"]
mod guide_pki;

use guide_pki::{ClientKind, GuidePki, PkiOptions, StoreType, openssl, parse_keytool_list_v};

fn listed(pki: &GuidePki) -> Vec<(String, String, usize)> {
    let text = guide_pki::keytool_list_v(&pki.keystore, &pki.store_password);
    let mut v: Vec<_> = parse_keytool_list_v(&text)
        .into_iter()
        .map(|e| (e.alias, e.entry_type, e.sha256.len()))
        .collect();
    v.sort();
    v
}

#[test]
fn jks_with_extra_device_and_key_password() {
    let tmp = tempfile::tempdir().unwrap();
    let options = PkiOptions {
        store_type: StoreType::Jks,
        extra_device_aliases: vec!["cmxDevice20190512".into()],
        key_password: Some("kmsKeyPwd".into()),
        ..PkiOptions::default()
    };
    let pki = GuidePki::generate(tmp.path(), options);
    let head = std::fs::read(&pki.keystore).unwrap();
    assert_eq!(head[..4], [0xfe, 0xed, 0xfe, 0xed]);
    let got = listed(&pki);
    let names: Vec<&str> = got.iter().map(|(a, _, _)| a.as_str()).collect();
    let want = [
        "cmxbackend",
        "cmxdevice",
        "cmxdevice20190512",
        "kmipsigningca",
        "kmsclient",
        "kmsserver",
    ];
    assert_eq!(names, want);
    assert_eq!(got[4].1, "PrivateKeyEntry");
    assert_eq!(got[0].1, "trustedCertEntry");
}

#[test]
fn default_pkcs12_and_extra_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = GuidePki::generate(tmp.path(), PkiOptions::default());
    assert_eq!(std::fs::read(&pki.keystore).unwrap()[0], 0x30);
    assert_eq!(listed(&pki).len(), 5);

    // server cert by the client CA; kmsClient and the HSM server cert by the HSM CA
    openssl(&pki.dir, "verify -CAfile ca.crt kmsServer.crt");
    openssl(&pki.dir, "verify -CAfile kmipSigningCA.crt kmsClient.crt");
    openssl(&pki.dir, "verify -CAfile kmipSigningCA.crt hsmServer.crt");

    let expired = pki.make_client("oldClient", ClientKind::Expired);
    let out = openssl(&pki.dir, "x509 -noout -enddate -in oldClient.crt");
    assert!(String::from_utf8_lossy(&out.stdout).contains("2020"));
    assert!(expired.p12.is_some());
    pki.make_client("selfClient", ClientKind::SelfSigned);
    pki.make_client("hsmClient", ClientKind::SignedByHsmCa);
    pki.make_client("strayClient", ClientKind::SignedByClientCa);
    openssl(&pki.dir, "verify -CAfile kmipSigningCA.crt hsmClient.crt");
}
