//! `keystore list` and `keystore convert-legacy` on stores made by real
//! keytool and openssl, as the install guide makes them.

use std::process::Command;

use super::support::guide_pki::{StoreType, keytool_list_v, openssl, parse_keytool_list_v};
use super::support::node::output_text;
use super::{cmx, password_file, pki};

#[test]
fn keystore_list_agrees_with_keytool_for_each_store_type() {
    let dir = tempfile::tempdir().unwrap();
    for (i, st) in [
        StoreType::Jks,
        StoreType::DefaultPkcs12,
        StoreType::LegacyPkcs12,
    ]
    .into_iter()
    .enumerate()
    {
        let pki = pki(&dir.path().join(format!("pki{i}")), st);
        let keytool_out = keytool_list_v(&pki.keystore, &pki.store_password);
        let want = parse_keytool_list_v(&keytool_out);
        let pwfile = dir.path().join(format!("pw{i}"));
        password_file(&pwfile, &pki.store_password);
        let o = cmx(
            &[
                "keystore",
                "list",
                "-v",
                pki.keystore.to_str().unwrap(),
                "--password-file",
                pwfile.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(o.status.code(), Some(0), "{st:?}: {}", output_text(&o));
        let ours = String::from_utf8_lossy(&o.stdout).to_string();
        for e in &want {
            assert!(
                ours.to_lowercase().contains(&e.alias.to_lowercase()),
                "{st:?}: alias {} missing:\n{ours}",
                e.alias
            );
            assert!(
                ours.contains(&e.entry_type),
                "{st:?}: type {} missing",
                e.entry_type
            );
            for fp in &e.sha256 {
                assert!(
                    ours.contains(fp),
                    "{st:?}: fingerprint {fp} of {} missing:\n{ours}",
                    e.alias
                );
            }
        }
        // The password may also come from the environment; never from argv.
        let o = cmx(
            &["keystore", "list", pki.keystore.to_str().unwrap()],
            &[("CMX_KMS_KEYSTORE_PASSWORD", &pki.store_password)],
        );
        assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    }
    let pwfile = dir.path().join("pw-open");
    let list_hostname = || {
        cmx(
            &[
                "keystore",
                "list",
                "/etc/hostname",
                "--password-file",
                pwfile.to_str().unwrap(),
            ],
            &[],
        )
    };
    std::fs::write(&pwfile, "x").unwrap();
    let o = list_hostname();
    assert_eq!(
        o.status.code(),
        Some(64),
        "a world-readable password file is refused: {}",
        output_text(&o)
    );
    password_file(&pwfile, "x");
    let o = list_hostname();
    assert_eq!(
        o.status.code(),
        Some(65),
        "not a keystore: {}",
        output_text(&o)
    );
}

#[test]
fn convert_legacy_output_is_read_by_openssl_without_legacy_and_by_keytool() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(&dir.path().join("pki"), StoreType::LegacyPkcs12);
    let pw = &pki.store_password;
    // The legacy store needs -legacy in OpenSSL 3: that is the problem solved here.
    let before = Command::new("openssl")
        .args(["pkcs12", "-info", "-noout", "-in"])
        .arg(&pki.keystore)
        .args(["-passin", &format!("pass:{pw}")])
        .output()
        .unwrap();
    assert!(
        !before.status.success(),
        "OpenSSL 3 should refuse the legacy store without -legacy"
    );
    let pwfile = dir.path().join("pw");
    password_file(&pwfile, pw);
    let out = dir.path().join("converted.p12");
    let convert = || {
        cmx(
            &[
                "keystore",
                "convert-legacy",
                pki.keystore.to_str().unwrap(),
                out.to_str().unwrap(),
                "--password-file",
                pwfile.to_str().unwrap(),
            ],
            &[],
        )
    };
    let o = convert();
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let info = openssl(
        dir.path(),
        &format!(
            "pkcs12 -info -noout -in {} -passin pass:{pw}",
            out.display()
        ),
    );
    assert!(info.status.success());
    let listed = keytool_list_v(&out, pw);
    let entries = parse_keytool_list_v(&listed);
    assert!(
        entries.iter().any(|e| e.entry_type == "PrivateKeyEntry"),
        "{listed}"
    );
    // Never overwrites.
    let o = convert();
    assert_ne!(o.status.code(), Some(0));
}
