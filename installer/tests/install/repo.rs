//! The package as a site takes it: signed by scripts/build-rpm with a GnuPG
//! key (a throwaway one made here, with a passphrase from a file), in a
//! repository (createrepo_c) that the real `dnf` lists, with the Packager,
//! Group, URL and build host tags and a %changelog made from CHANGELOG.md,
//! and rpmlint's default configuration reporting only the errors that
//! packaging/rpm/rpmlintrc excuses, each with its reason.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::support::{artifacts, must, text, workspace};

/// A signed build 0.1.0-7 with an extra CHANGELOG section, its repository,
/// and a HOME whose ~/.rpmmacros points rpm at a scratch database holding
/// the throwaway public key (as a site's trusted keys).
struct Signed {
    rpm: PathBuf,
    repo: PathBuf,
    home: PathBuf,
    db: PathBuf,
    build_log: String,
}

const MARKER: &str = "throwaway entry 5b1e of the packaging test";
const PACKAGER: &str = "cmx-kms release test <release@cmx-kms.invalid>";

fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home).args(["--batch", "--no-tty"]);
    c
}

fn signed() -> &'static Signed {
    static S: OnceLock<Signed> = OnceLock::new();
    S.get_or_init(|| {
        // The static binaries and the lock order of scripts/build-rpm.
        let _ = artifacts();
        let ws = workspace();
        // Under target/ (replaced by each run): the OnceLock is never dropped.
        let dir = ws.join("target/test-signed");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();

        // The throwaway key, protected by a passphrase in a file.
        // A short path (the agent's socket lives there), gone after this block.
        let gnupg_dir = tempfile::tempdir().unwrap();
        let gnupg = gnupg_dir.path();
        let pass = dir.join("passphrase");
        std::fs::write(&pass, "throwaway test passphrase\n").unwrap();
        let loopback = ["--pinentry-mode", "loopback", "--passphrase-file"];
        must(
            gpg(gnupg)
                .args(loopback)
                .arg(&pass)
                .args(["--quick-gen-key", "cmx-kms throwaway test key", "rsa2048", "sign", "1d"]),
        );
        let secret = dir.join("secret.asc");
        let out = must(
            gpg(gnupg)
                .args(loopback)
                .arg(&pass)
                .args(["--armor", "--export-secret-keys", "cmx-kms throwaway test key"]),
        );
        std::fs::write(&secret, &out.stdout).unwrap();
        let public = dir.join("public.asc");
        let out = must(gpg(gnupg).args(["--armor", "--export", "cmx-kms throwaway test key"]));
        std::fs::write(&public, &out.stdout).unwrap();
        // No agent may outlive the test; scripts/build-rpm imports the key file.
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", gnupg)
            .args(["--kill", "gpg-agent"])
            .output();
        drop(gnupg_dir);

        // A CHANGELOG.md with a new section at the top ("%" is spec syntax).
        let log = std::fs::read_to_string(ws.join("CHANGELOG.md")).unwrap();
        let (title, rest) = log.split_once("\n\n").unwrap();
        let changelog = dir.join("CHANGELOG.md");
        std::fs::write(
            &changelog,
            format!("{title}\n\n## 9.9.9 (2026-11-02)\n\n### Added\n- A {MARKER}, 100% made up.\n\n{rest}"),
        )
        .unwrap();

        let repo = dir.join("repo");
        let out = must(
            Command::new(ws.join("scripts/build-rpm"))
                .args(["--no-compile", "--build", "7", "--out"])
                .arg(&repo)
                .arg("--changelog")
                .arg(&changelog)
                .env_remove("GNUPGHOME")
                .env("CMX_KMS_RPM_SIGNING_KEY", "cmx-kms throwaway test key")
                .env("CMX_KMS_RPM_SIGNING_KEY_FILE", &secret)
                .env("CMX_KMS_RPM_SIGNING_PASSPHRASE_FILE", &pass)
                .env("CMX_KMS_RPM_PACKAGER", PACKAGER),
        );
        let rpm = workspace().join(String::from_utf8_lossy(&out.stdout).lines().last().unwrap().trim());

        let home = dir.join("home");
        let db = dir.join("rpmdb");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::create_dir_all(&db).unwrap();
        must(Command::new("rpm").arg("--dbpath").arg(&db).arg("--import").arg(&public));
        std::fs::write(home.join(".rpmmacros"), format!("%_dbpath {}\n", db.display())).unwrap();
        Signed {
            rpm,
            repo,
            home,
            db,
            build_log: text(&out),
        }
    })
}

fn rpm_k(db: &Path, file: &Path) -> (bool, String) {
    let out = Command::new("rpm")
        .arg("--dbpath")
        .arg(db)
        .arg("-K")
        .arg(file)
        .output()
        .unwrap();
    (out.status.success(), text(&out))
}

#[test]
fn signed_package_verifies_and_a_tampered_copy_does_not() {
    let s = signed();
    assert!(s.build_log.contains("signed with"), "{}", s.build_log);
    let (ok, out) = rpm_k(&s.db, &s.rpm);
    assert!(ok && out.contains("digests signatures OK"), "{out}");

    // Without the public key the signature cannot be trusted.
    let empty = tempfile::tempdir().unwrap();
    let (ok, out) = rpm_k(empty.path(), &s.rpm);
    assert!(!ok && out.contains("SIGNATURES NOT OK"), "{out}");

    // One byte changed in the payload.
    let tampered = empty.path().join("tampered.rpm");
    let mut bytes = std::fs::read(&s.rpm).unwrap();
    let at = bytes.len() - 4096;
    bytes[at] ^= 0x55;
    std::fs::write(&tampered, bytes).unwrap();
    let (ok, out) = rpm_k(&s.db, &tampered);
    assert!(!ok && out.contains("NOT OK"), "{out}");

    // A build without a key says so and is not signed.
    let sig = must(
        Command::new("rpm")
            .args(["-qp", "--qf", "%{RSAHEADER:pgpsig}\n"])
            .arg(&artifacts().rpm_n),
    );
    assert_eq!(String::from_utf8_lossy(&sig.stdout).trim(), "(none)");
}

#[test]
fn signing_with_a_key_not_in_the_keyring_fails_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("unsigned.rpm");
    std::fs::copy(&artifacts().rpm_n, &file).unwrap();
    let gnupg = dir.path().join("gnupg");
    std::fs::create_dir(&gnupg).unwrap();
    let out = Command::new(workspace().join("scripts/rpm-sign"))
        .arg(&file)
        .env("GNUPGHOME", &gnupg)
        .env("CMX_KMS_RPM_SIGNING_KEY", "no such key")
        .env_remove("CMX_KMS_RPM_SIGNING_KEY_FILE")
        .output()
        .unwrap();
    // Listing secret keys may have started an agent for that keyring.
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", &gnupg)
        .args(["--kill", "gpg-agent"])
        .output();
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(65), "{msg}");
    assert!(
        msg.contains("no secret key \"no such key\"") && msg.contains("CMX_KMS_RPM_SIGNING_KEY"),
        "{msg}"
    );
    let sig = must(
        Command::new("rpm")
            .args(["-qp", "--qf", "%{RSAHEADER:pgpsig}"])
            .arg(&file),
    );
    assert_eq!(String::from_utf8_lossy(&sig.stdout), "(none)");
}

#[test]
fn repository_beside_the_package_is_listed_by_dnf() {
    let s = signed();
    assert_eq!(s.rpm.parent().unwrap(), s.repo);
    assert!(s.repo.join("repodata/repomd.xml").is_file());
    let scratch = tempfile::tempdir().unwrap();
    let p = scratch.path();
    let out = must(
        Command::new("dnf")
            .arg("-q")
            .arg("repoquery")
            .arg(format!("--repofrompath=cmx,{}", s.repo.display()))
            .args([
                "--repo=cmx",
                "--releasever=9",
                "--setopt=reposdir=/dev/null",
            ])
            .arg(format!("--setopt=cachedir={}", p.join("cache").display()))
            .arg(format!(
                "--setopt=persistdir={}",
                p.join("persist").display()
            ))
            .arg(format!("--setopt=logdir={}", p.display()))
            .arg(format!("--installroot={}", p.join("root").display()))
            .args(["--qf", "%{name} %{epoch}:%{version}-%{release} %{arch}"]),
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        listed.trim(),
        "cmx-kms-server 1:0.1.0-7 x86_64",
        "{}",
        text(&out)
    );
}

#[test]
fn changelog_and_release_tags() {
    let s = signed();
    let q = |file: &Path, args: &[&str]| {
        String::from_utf8_lossy(&must(Command::new("rpm").arg("-qp").args(args).arg(file)).stdout)
            .into_owned()
    };
    // The new section is the first entry, with its date, packager and version.
    let log = q(&s.rpm, &["--changelog"]);
    let first = log.lines().next().unwrap();
    assert_eq!(first, format!("* Mon Nov 02 2026 {PACKAGER} - 9.9.9"));
    assert!(
        log.contains(&format!("- [Added] A {MARKER}, 100% made up.")),
        "{log}"
    );
    assert_eq!(q(&s.rpm, &["--qf", "%{PACKAGER}"]), PACKAGER);

    // The tarball's package: one entry per CHANGELOG.md section, in order,
    // the one of its version with its release.
    let rpm_n = &artifacts().rpm_n;
    let log = q(rpm_n, &["--changelog"]);
    let entries: Vec<&str> = log.lines().filter(|l| l.starts_with("* ")).collect();
    let md = std::fs::read_to_string(workspace().join("CHANGELOG.md")).unwrap();
    let sections: Vec<&str> = md.lines().filter(|l| l.starts_with("## ")).collect();
    assert_eq!(entries.len(), sections.len(), "{log}");
    assert!(entries.iter().any(|e| e.ends_with(" - 0.1.0-2")), "{log}");
    let tags = q(
        rpm_n,
        &["--qf", "%{PACKAGER}|%{GROUP}|%{URL}|%{BUILDHOST}|%{VENDOR}"],
    );
    let tags: Vec<&str> = tags.split('|').collect();
    assert_eq!(
        tags[..3],
        [
            "cmx-kms developers",
            "System Environment/Daemons",
            "https://cmx-kms.invalid/"
        ]
    );
    assert!(!tags[3].is_empty() && tags[3] != "(none)", "{tags:?}");
}

/// The check names of the errors rpmlint reports, with `rc` or its defaults.
fn rpmlint_errors(s: &Signed, rc: Option<&Path>) -> (BTreeSet<String>, String) {
    let mut c = Command::new("rpmlint");
    // rpmlint asks rpm about the signature: HOME's ~/.rpmmacros points rpm
    // at the database that trusts the throwaway key, as a site's would.
    c.env("HOME", &s.home);
    if let Some(rc) = rc {
        c.arg("-r").arg(rc);
    }
    let out = c.arg(&s.rpm).output().unwrap_or_else(|e| {
        panic!("cannot run rpmlint ({e}): run scripts/testbed/install-rpm-tools.sh")
    });
    let all = text(&out);
    let names = all
        .lines()
        .filter_map(|l| l.split_once(" E: "))
        .map(|(_, r)| r.split_whitespace().next().unwrap_or("").to_owned())
        .collect();
    (names, all)
}

#[test]
fn rpmlint_defaults_report_only_the_errors_the_rpmlintrc_excuses() {
    let s = signed();
    let rc_path = workspace().join("packaging/rpm/rpmlintrc");
    let rc = std::fs::read_to_string(&rc_path).unwrap();

    // Each filter: the check it excuses, and a "Reason:" in the comment above it.
    let mut excused = BTreeSet::new();
    let mut comment = String::new();
    for line in rc.lines() {
        if let Some(c) = line.strip_prefix('#') {
            comment.push_str(c);
        } else if let Some(f) = line.strip_prefix("addFilter(\"") {
            let check = f
                .strip_prefix("E: ")
                .unwrap_or_else(|| panic!("filters only errors: {line}"));
            assert!(comment.contains("Reason:"), "no reason above {line}");
            excused.insert(check.split_whitespace().next().unwrap().to_owned());
        } else if line.trim().is_empty() {
            comment.clear();
        } else {
            panic!("unexpected rpmlintrc line {line}");
        }
    }

    let (defaults, all) = rpmlint_errors(s, None);
    assert_eq!(
        defaults, excused,
        "default rpmlint errors vs the rpmlintrc's filters:\n{all}"
    );
    let (left, all) = rpmlint_errors(s, Some(&rc_path));
    assert!(left.is_empty(), "rpmlint with the rpmlintrc:\n{all}");
}
