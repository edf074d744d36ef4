//! The file checks find what a start would refuse, and change nothing.

use std::path::Path;

use super::*;
use crate::config::parse_str;

fn config(dir: &Path, extra: &str) -> Config {
    let text = format!(
        "kms.keystore.file=ks.p12\nkms.keystore.password=p\nkms.hsm.protocol=soft\n{extra}"
    );
    parse_str(&text, &dir.join("kms.properties"), &[])
        .unwrap()
        .config
}

fn problems(dir: &Path, extra: &str) -> Vec<String> {
    check(&config(dir, extra), None)
        .problems
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    let mut n: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn the_audit_file_and_soft_key_are_checked_without_creating_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let p = problems(d, "kms.audit.file=nope/audit.log\n");
    let at = d.join("kms.properties").display().to_string();
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(
        p[0].starts_with(&format!("{at}:4: kms.audit.file: the folder ")),
        "{p:?}"
    );
    assert!(p[0].contains("install -d"), "{p:?}");
    // Not set: the default path, reported at the file.
    assert!(
        p[1].starts_with(&format!("{at}: kms.hsm.soft.key.file: ")),
        "{p:?}"
    );
    assert!(
        p[1].contains("does not exist") && p[1].contains("cmx-kms hsm init"),
        "{p:?}"
    );
    assert!(names(d).is_empty(), "{:?}", names(d));

    std::fs::create_dir(d.join("run")).unwrap();
    let p = problems(d, "kms.audit.file=run\nkms.hsm.soft.key.file=run\n");
    assert!(
        p[0].contains("run is a directory; set kms.audit.file to a file in it"),
        "{p:?}"
    );
    assert!(
        p[1].contains(":5: kms.hsm.soft.key.file: ") && p[1].contains("is a directory"),
        "{p:?}"
    );

    std::fs::write(d.join("notes.txt"), "not an audit trail\n").unwrap();
    let p = problems(d, "kms.audit.file=notes.txt\n");
    assert!(
        p[0].contains(":4: kms.audit.file: the audit file ") && p[0].contains("not an audit trail"),
        "{p:?}"
    );
    assert_eq!(
        std::fs::read(d.join("notes.txt")).unwrap(),
        b"not an audit trail\n"
    );

    // A new file in an existing folder, an empty file and a device are fine.
    for ok in ["kms.audit.file=new.log\n", "kms.audit.file=/dev/null\n"] {
        let p = problems(d, ok);
        assert_eq!(p.len(), 1, "{ok}: {p:?}");
        assert!(p[0].contains("kms.hsm.soft.key.file"), "{p:?}");
    }
    assert!(!d.join("new.log").exists());
}

#[test]
fn vault_needs_a_readable_ca_and_warns_about_a_missing_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let vault = "kms.hsm.protocol=vault\nkms.hsm.server.url=https://vault.example.com\n";
    let text = format!(
        "kms.keystore.file=ks.p12\nkms.keystore.password=p\n{vault}kms.hsm.vault.ca.file=nope.pem\nkms.hsm.vault.token.file=nope.token\nkms.audit.file=a.log\n"
    );
    let c = parse_str(&text, &d.join("kms.properties"), &[])
        .unwrap()
        .config;
    let f = check(&c, None);
    assert_eq!(f.problems.len(), 1, "{:?}", f.problems);
    let ca = f.problems[0].to_string();
    assert!(
        ca.contains(":5: kms.hsm.vault.ca.file: cannot read Vault's CA file"),
        "{ca}"
    );
    assert_eq!(f.later.len(), 1, "{:?}", f.later);
    let token = f.later[0].to_string();
    assert!(
        token.contains(":6: kms.hsm.vault.token.file: ") && token.contains("does not exist"),
        "{token}"
    );
    assert!(names(d).is_empty());
}
