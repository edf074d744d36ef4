//! Bad situations: each gives a clear message and changes nothing.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use crate::legacy::legacy_root;
use crate::support::node::{ScratchRoot, expect_code};
use crate::support::{
    artifacts, assert_same, free_port, run_script, run_with_stdin, snapshot, text,
};

fn rpm_qa(root: &ScratchRoot) -> String {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root.path())
        .arg("-qa")
        .output()
        .unwrap();
    text(&out)
}

/// Run `f` against `root` and check it exits 1, says `says`, and changes nothing.
fn refused(root: &ScratchRoot, says: &[&str], f: impl FnOnce() -> std::process::Output) {
    let before = snapshot(root.path(), &[]);
    let qa = rpm_qa(root);
    let out = f();
    expect_code(&out, 1, "refusal");
    let t = text(&out);
    for s in says {
        assert!(t.contains(s), "expected {s:?} in:\n{t}");
    }
    assert!(
        t.contains("othing was changed") || t.contains("must run as root"),
        "{t}"
    );
    assert_same(&before, &snapshot(root.path(), &[]), "a refused run");
    assert_eq!(rpm_qa(root), qa);
}

#[test]
fn not_root() {
    let a = artifacts();
    let root = ScratchRoot::new();
    let r = root.root_arg();
    refused(&root, &["must run as root", "sudo"], || {
        let mut c = Command::new(a.tarball_dir.join("ckms-install"));
        c.args(["--root", &r, "--yes"]).uid(65534).gid(65534);
        run_with_stdin(c, "")
    });
}

#[test]
fn rpm_missing() {
    let a = artifacts();
    let root = ScratchRoot::new();
    let r = root.root_arg();
    let empty = tempfile::tempdir().unwrap();
    refused(&root, &["`rpm` was not found"], || {
        let mut c = Command::new(a.tarball_dir.join("ckms-install"));
        c.args(["--root", &r, "--yes"]).env("PATH", empty.path());
        run_with_stdin(c, "")
    });
}

#[test]
fn port_taken_by_another_program() {
    let a = artifacts();
    let port = free_port();
    let root = legacy_root("attributes.xml", port);
    let squatter = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    refused(
        &root,
        &[
            &format!("port {port}"),
            "is taken by pid",
            &std::process::id().to_string(),
        ],
        || root.install(a, &[]),
    );
    drop(squatter);
}

#[test]
fn tarball_without_its_rpm() {
    let a = artifacts();
    let root = ScratchRoot::new();
    let partial = tempfile::tempdir().unwrap();
    for f in [
        "ckms-install",
        "ckms-uninstall",
        "CMX-KMS-Installer.sh",
        "CMX-KMS-Uninstaller.sh",
    ] {
        std::fs::copy(a.tarball_dir.join(f), partial.path().join(f)).unwrap();
    }
    let r = root.root_arg();
    refused(
        &root,
        &[
            "no cmx-kms-server-*.x86_64.rpm next to ckms-install",
            "Extract cmx-kms-server-rpm.tar.gz again",
        ],
        || {
            run_script(
                partial.path(),
                "CMX-KMS-Installer.sh",
                &["--root", &r, "--yes", "--rpm-nodeps"],
                "",
            )
        },
    );
}

#[test]
fn corrupt_server_xml() {
    let a = artifacts();
    let root = legacy_root("corrupt.xml", 8443);
    refused(
        &root,
        &["/usr/share/tomcat/conf/server.xml", "not well-formed XML"],
        || root.install(a, &[]),
    );
}

#[test]
fn answering_no() {
    let a = artifacts();
    let root = ScratchRoot::new();
    let r = root.root_arg();
    refused(
        &root,
        &[
            "Plan: New installation",
            "Enter Y to proceed",
            "nothing was changed",
        ],
        || {
            run_script(
                &a.tarball_dir,
                "CMX-KMS-Installer.sh",
                &["--root", &r, "--rpm-nodeps"],
                "n\n",
            )
        },
    );
}
