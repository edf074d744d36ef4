//! What an uninstall keeps, and what a later install says about it; and
//! `--no-start` on a node that is installed but not set up.

use std::os::unix::fs::MetadataExt as _;
use std::process::Command;

use crate::support::node::{ScratchRoot, expect_code, set_property};
use crate::support::{artifacts, must, text};

/// Files kms.properties names under /usr/share/kms but outside conf/.
const OUTSIDE: &[(&str, &[u8])] = &[
    (
        "/usr/share/kms/keystore/kmsKeystore.jks",
        b"\xfe\xed\xfe\xed keystore",
    ),
    ("/usr/share/kms/audit/audit.log", b"{\"seq\":3}\n"),
    (
        "/usr/share/kms/audit/audit.log.1",
        b"{\"seq\":1}\n{\"seq\":2}\n",
    ),
    ("/usr/share/kms/keys/soft-master.key", b"sealed master key"),
];

#[test]
fn uninstall_keeps_the_files_kms_properties_names_and_says_where() {
    let a = artifacts();
    let root = ScratchRoot::new();
    expect_code(&root.install(a, &["--no-start"]), 0, "install");
    for (node, bytes) in OUTSIDE {
        std::fs::create_dir_all(root.p(node).parent().unwrap()).unwrap();
        std::fs::write(root.p(node), bytes).unwrap();
    }
    // Elsewhere than /usr/share/kms: the removal does not touch it.
    std::fs::create_dir_all(root.p("/etc/vault")).unwrap();
    std::fs::write(root.p("/etc/vault/token"), b"s.token").unwrap();
    let props = root.p("/usr/share/kms/conf/kms.properties");
    let mut t = std::fs::read_to_string(&props).unwrap();
    for (k, v) in [
        (
            "kms.keystore.file",
            "/usr/share/kms/keystore/kmsKeystore.jks",
        ),
        // A continuation line, read the Java way.
        ("kms.audit.file", "/usr/share/kms/\\\n    audit/audit.log"),
        // Relative: against the file's folder.
        ("kms.hsm.soft.key.file", "../keys/soft-master.key"),
        ("kms.hsm.vault.token.file", "/etc/vault/token"),
    ] {
        t = set_property(&t, k, v);
    }
    std::fs::write(&props, t).unwrap();

    // A file that cannot be copied (a FIFO beside the audit file) stops
    // the uninstall before anything is removed, naming it.
    must(Command::new("mkfifo").arg(root.p("/usr/share/kms/audit/audit.log.2")));
    let out = root.uninstall(a);
    expect_code(&out, 3, "uninstall with a FIFO");
    let t = text(&out);
    assert!(
        t.contains("cannot keep a copy of /usr/share/kms/audit/audit.log.2"),
        "{t}"
    );
    assert!(t.contains("Nothing was removed"), "{t}");
    assert_eq!(root.installed().as_deref(), Some("0.1.0-2"));
    for (node, bytes) in OUTSIDE {
        assert_eq!(&std::fs::read(root.p(node)).unwrap(), bytes, "{node}");
    }
    assert!(
        std::fs::read_dir(root.p("/var/backups/cmx-kms"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "the refused run's incomplete copy is removed"
    );
    std::fs::remove_file(root.p("/usr/share/kms/audit/audit.log.2")).unwrap();

    let out = root.uninstall(a);
    expect_code(&out, 0, "uninstall");
    let t = text(&out);
    for why in [
        "/usr/share/kms/keystore/kmsKeystore.jks (kms.keystore.file)",
        "/usr/share/kms/audit/audit.log (kms.audit.file)",
        "/usr/share/kms/audit/audit.log.1 (rotated beside kms.audit.file)",
        "/usr/share/kms/keys/soft-master.key (kms.hsm.soft.key.file)",
    ] {
        assert!(t.contains(why), "{why} not in the plan:\n{t}");
    }
    assert!(!t.contains("(keystore, kms.properties)"), "{t}");
    assert!(!t.contains("/etc/vault/token"), "{t}");
    assert!(!root.p("/usr/share/kms").exists());
    let done = t
        .lines()
        .find(|l| l.starts_with("Done."))
        .expect("Done line");
    // The copy this run kept (the refused run above left its own).
    let at = done
        .find("/var/backups/cmx-kms/uninstall-")
        .expect("names the copy");
    let kept_node: String = done[at..].split("/conf").next().unwrap().to_owned();
    let kept = root.p(&kept_node);
    assert!(done.contains(&format!("{kept_node}/conf")), "{done}");
    assert!(done.contains(&format!("{kept_node}/files")), "{done}");
    for (node, bytes) in OUTSIDE {
        let copy = kept.join("files").join(node.trim_start_matches('/'));
        assert_eq!(&std::fs::read(&copy).unwrap(), bytes, "{node}");
        let m = std::fs::metadata(&copy).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid()), (0o600, 0), "{node}");
    }
    assert_eq!(root.stat(&format!("{kept_node}/files")).0, 0o700);
    assert!(kept.join("conf/kms.properties").is_file());
    assert_eq!(
        std::fs::read(root.p("/etc/vault/token")).unwrap(),
        b"s.token"
    );

    // A new install finds the copy: says where it is and how to use it,
    // and does not restore it by itself.
    let out = root.install(a, &["--no-start"]);
    expect_code(&out, 0, "reinstall");
    let t = text(&out);
    assert!(
        t.contains(&format!(
            "ckms-uninstall kept the configuration of an earlier installation in {kept_node}/conf"
        )),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "sudo cp -a {kept_node}/conf/. /usr/share/kms/conf/"
        )),
        "{t}"
    );
    let now = std::fs::read_to_string(root.p("/usr/share/kms/conf/kms.properties")).unwrap();
    assert!(
        !now.contains("/usr/share/kms/keystore/"),
        "restored by itself"
    );
}

#[test]
fn no_start_on_an_unconfigured_stopped_node_checks_and_says_so() {
    let a = artifacts();
    let root = ScratchRoot::new();
    expect_code(&root.install(a, &["--no-start"]), 0, "install");
    let out = root.install(a, &["--no-start"]);
    expect_code(&out, 0, "again with --no-start");
    let t = text(&out);
    assert!(!t.contains("configured and running"), "{t}");
    assert!(t.contains("is installed and not running"), "{t}");
    assert!(
        t.contains("NOT started") && t.contains("kms.keystore.password"),
        "the configuration check ran:\n{t}"
    );
    assert!(root.service_pid().is_none());
}
