//! The tarball, the RPM's metadata, scriptlets and files, binaries that load
//! on RHEL 8's glibc
//! (rpmlint, signature, repository, changelog: `repo.rs`).

use std::process::Command;

use crate::support::{artifacts, must, workspace};

fn rpm_q(args: &[&str], file: &std::path::Path) -> String {
    let out = must(Command::new("rpm").args(args).arg(file));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tarball_holds_exactly_what_the_guide_expects() {
    let a = artifacts();
    assert!(
        a.tarball.ends_with("target/dist/cmx-kms-server-rpm.tar.gz"),
        "{}",
        a.tarball.display()
    );
    let out = must(Command::new("tar").arg("-tzf").arg(&a.tarball));
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "CMX-KMS-Installer.sh",
            "CMX-KMS-Uninstaller.sh",
            "ckms-install",
            "ckms-uninstall",
            "cmx-kms-server-0.1.0-2.x86_64.rpm"
        ]
    );
}

/// `scripts/check-glibc-abi 2.28 FILE...` (what `scripts/build-release` runs).
fn check_glibc_abi(files: &[std::path::PathBuf]) -> std::process::Output {
    Command::new(workspace().join("scripts/check-glibc-abi"))
        .arg("2.28")
        .args(files)
        .output()
        .expect("run scripts/check-glibc-abi")
}

#[test]
fn shipped_binaries_need_nothing_newer_than_rhel8s_glibc() {
    let a = artifacts();
    let x = tempfile::tempdir().unwrap();
    let cpio = must(Command::new("sh").arg("-c").arg(format!(
        "cd {} && rpm2cpio {} | cpio -idm --quiet",
        x.path().display(),
        a.rpm_n.display()
    )));
    drop(cpio);
    let files = [
        x.path().join("usr/share/kms/bin/cmx-kms"),
        x.path().join("usr/share/kms/bin/ckms-install"),
        x.path().join("usr/share/kms/bin/ckms-uninstall"),
        a.tarball_dir.join("ckms-install"),
        a.tarball_dir.join("ckms-uninstall"),
    ];
    let out = check_glibc_abi(&files);
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{report}");
    for f in &files {
        let line = format!("{}: glibc symbols up to GLIBC_2.", f.display());
        assert!(
            report.contains(&line),
            "no line for {}:\n{report}",
            f.display()
        );
    }

    // The check can refuse: this test binary, linked against this machine's
    // newer glibc (2.34 or later) and libgcc_s, is refused, naming both.
    let this = std::env::current_exe().unwrap();
    let out = check_glibc_abi(&[this]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the host build passed:\n{err}");
    assert!(err.contains("newer than 2.28"), "{err}");
    assert!(
        err.contains("libgcc_s.so.1, which is not part of glibc"),
        "{err}"
    );
}

#[test]
fn scriptlets_are_the_real_files() {
    let a = artifacts();
    let scripts = rpm_q(&["-qp", "--scripts"], &a.rpm_n);
    for (label, file) in [
        ("preinstall scriptlet", "pre-install.sh"),
        ("postinstall scriptlet", "post-install.sh"),
        ("preuninstall scriptlet", "pre-uninstall.sh"),
        ("postuninstall scriptlet", "post-uninstall.sh"),
    ] {
        let body = std::fs::read_to_string(workspace().join("packaging/rpm").join(file)).unwrap();
        let start = scripts
            .find(label)
            .unwrap_or_else(|| panic!("no {label} in:\n{scripts}"));
        let section = &scripts[start..];
        let section = section.split_once('\n').map(|(_, r)| r).unwrap_or("");
        assert!(
            section.starts_with(body.trim_end()),
            "{label} is not the text of packaging/rpm/{file} (a mistyped path becomes the script itself):\n{section}"
        );
        assert!(body.contains("\"$1\""), "{file} must branch on $1");
    }
}

#[test]
fn metadata_requires_and_files() {
    let a = artifacts();
    let qf = rpm_q(
        &[
            "-qp",
            "--qf",
            "%{NAME} %{EPOCH} %{VERSION} %{RELEASE} %{ARCH} %{LICENSE}\n",
        ],
        &a.rpm_n,
    );
    assert_eq!(qf.trim(), "cmx-kms-server 1 0.1.0 2 x86_64 Apache-2.0");
    let req = rpm_q(&["-qp", "--requires"], &a.rpm_n);
    for r in [
        "/bin/sh",
        "systemd",
        "shadow-utils",
        "glibc-common",
        "coreutils",
    ] {
        assert!(
            req.lines().any(|l| l.trim() == r),
            "missing Requires {r}:\n{req}"
        );
    }
    // rpm's find-requires lists what the binaries load: glibc 2.28 at most
    // (so dnf refuses an older system) and no library outside glibc.
    assert!(
        req.lines()
            .any(|l| l.trim() == "libc.so.6(GLIBC_2.28)(64bit)"),
        "no glibc 2.28 requirement:\n{req}"
    );
    for l in req.lines().map(str::trim).filter(|l| l.contains(".so")) {
        let lib = l.split('(').next().unwrap_or(l);
        assert!(
            [
                "libc.so.6",
                "libm.so.6",
                "libpthread.so.0",
                "libdl.so.2",
                "ld-linux-x86-64.so.2"
            ]
            .contains(&lib),
            "requirement outside glibc: {l}\n{req}"
        );
        if let Some(v) = l.split("(GLIBC_").nth(1) {
            let v = v.split(')').next().unwrap_or(v);
            let parts: Vec<u32> = v.split('.').map(|n| n.parse().unwrap()).collect();
            assert!(
                parts <= vec![2, 28],
                "requirement newer than RHEL 8's glibc: {l}"
            );
        }
    }

    let files = rpm_q(
        &[
            "-qp",
            "--qf",
            "[%{FILEFLAGS:fflags} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEMODES:perms} %{FILENAMES}\n]",
        ],
        &a.rpm_n,
    );
    let line = |path: &str| {
        files
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} is not in the package:\n{files}"))
            .to_owned()
    };
    for conf in [
        "/usr/share/kms/conf/kms.properties",
        "/usr/share/kms/conf/jgroups.xml",
    ] {
        let l = line(conf);
        let flags = l.split(' ').next().unwrap();
        assert!(
            flags.contains('c') && flags.contains('n'),
            "{conf} must be %config(noreplace): {l}"
        );
        assert!(l.contains("root:kms -rw-r-----"), "{conf}: {l}");
    }
    for bin in [
        "/usr/share/kms/bin/cmx-kms",
        "/usr/share/kms/bin/ckms-install",
        "/usr/share/kms/bin/ckms-uninstall",
    ] {
        assert!(line(bin).contains("root:root -rwxr-xr-x"), "{}", line(bin));
    }
    for p in [
        "/usr/sbin/cmx-kms",
        "/usr/sbin/ckms-install",
        "/usr/sbin/ckms-uninstall",
        "/usr/lib/systemd/system/cmx-kms.service",
        "/usr/share/man/man8/cmx-kms.8.gz",
        "/usr/share/man/man8/ckms-install.8.gz",
        "/usr/share/man/man8/ckms-uninstall.8.gz",
        "/usr/share/man/man5/kms.properties.5.gz",
    ] {
        line(p);
    }
}
