//! Root in directories other users can write, and backups that hold
//! secrets: links planted in the service user's `/var/log/kms` and in a
//! legacy configuration directory owned by `tomcat` are never followed; every
//! backup is `root:root`, directories `0700`, files `0600`, and the oldest
//! `conf-orig*` beyond the documented number are pruned.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use crate::legacy::legacy_root;
use crate::support::node::{ScratchRoot, expect_code};
use crate::support::{artifacts, free_port, text};

/// The uid a legacy node's Tomcat runs as (no such user in the root: numbers only).
const TOMCAT: u32 = 91;
/// What `cmx_kms_installer::backup::KEEP_CONF_BACKUPS` documents.
const KEEP: usize = 5;

/// A file an attacker wants root to write or copy: (path, bytes, mode, uid, gid, mtime).
struct Target {
    path: std::path::PathBuf,
    state: (Vec<u8>, u32, u32, u32, i64),
}

impl Target {
    fn new(root: &ScratchRoot, node: &str) -> Self {
        let path = root.p(node);
        std::fs::write(&path, "root:$6$NOT-FOR-KMS$hash:19000:0:99999:7:::\n").unwrap();
        std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let state = Self::read(&path);
        Self { path, state }
    }

    fn read(p: &Path) -> (Vec<u8>, u32, u32, u32, i64) {
        let m = std::fs::metadata(p).unwrap();
        (
            std::fs::read(p).unwrap(),
            m.mode() & 0o7777,
            m.uid(),
            m.gid(),
            m.mtime(),
        )
    }

    /// None if untouched, else what changed.
    fn changed(&self) -> Option<String> {
        let now = Self::read(&self.path);
        (now != self.state).then(|| {
            format!(
                "{} changed: {:?} -> {:?}",
                self.path.display(),
                (self.state.1, self.state.2, self.state.3, self.state.0.len()),
                (now.1, now.2, now.3, now.0.len())
            )
        })
    }
}

/// Every entry below `dir`: (relative path, mode, uid, gid, is link, is dir).
fn walk(dir: &Path) -> Vec<(String, u32, u32, u32, bool, bool)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().display().to_string();
            out.push((
                rel,
                m.mode() & 0o7777,
                m.uid(),
                m.gid(),
                m.file_type().is_symlink(),
                m.is_dir(),
            ));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// `dir` is a private backup: itself and every directory `root:root 0700`,
/// every file `root:root 0600`; links stay links. Returns the problems.
fn private_problems(dir: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let m = std::fs::symlink_metadata(dir).unwrap();
    if (m.mode() & 0o7777, m.uid(), m.gid()) != (0o700, 0, 0) {
        bad.push(format!(
            "{}: {:o} {}:{}",
            dir.display(),
            m.mode() & 0o7777,
            m.uid(),
            m.gid()
        ));
    }
    for (rel, mode, uid, gid, link, is_dir) in walk(dir) {
        if link {
            continue;
        }
        let want = if is_dir { 0o700 } else { 0o600 };
        if (mode, uid, gid) != (want, 0, 0) {
            bad.push(format!(
                "{}/{rel}: {mode:o} {uid}:{gid} (want {want:o} 0:0)",
                dir.display()
            ));
        }
    }
    bad
}

#[test]
fn planted_links_in_the_log_directory_are_not_followed() {
    let a = artifacts();
    let root = ScratchRoot::new();
    let mut problems = Vec::new();
    // Before the package: /var/log/kms as the service user would leave it,
    // with install.log a link to a root-only file.
    let shadow = Target::new(&root, "/etc/ckms-test-shadow");
    std::fs::create_dir_all(root.p("/var/log/kms")).unwrap();
    std::os::unix::fs::symlink(&shadow.path, root.p("/var/log/kms/install.log")).unwrap();

    let out = root.install(a, &[]);
    expect_code(&out, 0, "fresh install");
    problems.extend(shadow.changed());
    let log = std::fs::symlink_metadata(root.p("/var/log/kms/install.log")).unwrap();
    if !(log.is_file() && log.uid() == 0) {
        problems.push("install.log is not a new regular file of root".into());
    }
    if !text(&out).contains("was not written through") {
        problems.push(format!("the operator was not warned:\n{}", text(&out)));
    }

    // Configured, and cmx-kms.out (the service's output) a link to another file.
    let port = free_port();
    root.configure(port);
    let gshadow = Target::new(&root, "/etc/ckms-test-gshadow");
    std::os::unix::fs::symlink(&gshadow.path, root.p("/var/log/kms/cmx-kms.out")).unwrap();
    let out = root.install(a, &[]);
    expect_code(&out, 0, "start");
    assert!(text(&out).contains("running and ready"), "{}", text(&out));
    problems.extend(gshadow.changed());
    problems.extend(shadow.changed());
    let o = std::fs::symlink_metadata(root.p("/var/log/kms/cmx-kms.out")).unwrap();
    if !o.is_file() {
        problems.push("cmx-kms.out is not a new regular file".into());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A legacy node whose KMS configuration belongs to tomcat with the legacy
/// modes (kms.properties and the keystore 0644), with a subdirectory and a
/// link to a root-only file planted in it.
fn tomcat_owned_legacy() -> (ScratchRoot, Target) {
    let root = legacy_root("attributes.xml", 8443);
    let secret = Target::new(&root, "/etc/ckms-test-shadow");
    let conf = root.p("/usr/share/kms/conf");
    std::fs::create_dir(conf.join("certs")).unwrap();
    std::fs::write(conf.join("certs/ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::os::unix::fs::symlink(&secret.path, conf.join("notes.txt")).unwrap();
    for (rel, mode) in [
        ("", 0o755),
        ("kms.properties", 0o644),
        ("kmsKeystore.jks", 0o644),
        ("jgroups.xml", 0o644),
        ("certs", 0o755),
        ("certs/ca.pem", 0o644),
    ] {
        let p = conf.join(rel);
        std::os::unix::fs::chown(&p, Some(TOMCAT), Some(TOMCAT)).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    (root, secret)
}

#[test]
fn legacy_backups_are_private_and_planted_links_are_not_followed() {
    let a = artifacts();
    let (root, secret) = tomcat_owned_legacy();

    let out = root.install(a, &["--no-start"]);
    expect_code(&out, 0, "legacy migration");
    let mut problems: Vec<String> = secret.changed().into_iter().collect();

    // Backups: conf-orig and the legacy backup, root's alone; the link copied as a link.
    let legacy = std::fs::read_dir(root.p("/var/backups/cmx-kms"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    for b in [root.p("/usr/share/kms/conf-orig"), legacy.clone()] {
        problems.extend(private_problems(&b));
    }
    for link in [
        root.p("/usr/share/kms/conf-orig/notes.txt"),
        legacy.join("usr/share/kms/conf/notes.txt"),
    ] {
        if !std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
        {
            problems.push(format!("{} is not a link: it was followed", link.display()));
        }
    }
    assert_eq!(
        std::fs::read(root.p("/usr/share/kms/conf-orig/certs/ca.pem")).unwrap(),
        b"-----BEGIN CERTIFICATE-----\n",
        "nothing lost"
    );

    // The live files: the modes the RPM gives its configuration, at every depth.
    let (_, kgid) = root.user("kms").unwrap();
    for (node, want) in [
        ("/usr/share/kms/conf", (0o750, 0, kgid)),
        ("/usr/share/kms/conf/kms.properties", (0o640, 0, kgid)),
        ("/usr/share/kms/conf/kmsKeystore.jks", (0o640, 0, kgid)),
        ("/usr/share/kms/conf/jgroups.xml", (0o640, 0, kgid)),
        ("/usr/share/kms/conf/certs", (0o750, 0, kgid)),
        ("/usr/share/kms/conf/certs/ca.pem", (0o640, 0, kgid)),
    ] {
        let got = root.stat(node);
        if got != want {
            problems.push(format!(
                "{node}: {:o} {}:{} want {:o} {}:{}",
                got.0, got.1, got.2, want.0, want.1, want.2
            ));
        }
    }
    problems.extend(secret.changed());
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_linked_legacy_kms_properties_is_refused() {
    let a = artifacts();
    let root = legacy_root("attributes.xml", 8443);
    let secret = Target::new(&root, "/etc/ckms-test-shadow");
    let props = root.p("/usr/share/kms/conf/kms.properties");
    std::fs::remove_file(&props).unwrap();
    std::os::unix::fs::symlink(&secret.path, &props).unwrap();

    let out = root.install(a, &["--no-start"]);
    let leaked = walk(&root.p("/usr/share/kms"))
        .into_iter()
        .filter(|e| !e.4 && !e.5)
        .map(|e| root.p("/usr/share/kms").join(e.0))
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("NOT-FOR-KMS")
        })
        .collect::<Vec<_>>();
    assert!(leaked.is_empty(), "the linked file was copied: {leaked:?}");
    expect_code(&out, 1, "a linked kms.properties");
    assert!(text(&out).contains("symbolic link"), "{}", text(&out));
    assert!(secret.changed().is_none());
}

#[test]
fn upgrade_prunes_old_backups_and_makes_the_kept_ones_private() {
    let a = artifacts();
    let root = ScratchRoot::new();
    let prev = a.rpm_prev.to_string_lossy().into_owned();
    expect_code(&root.install(a, &["--package", &prev]), 0, "install N-1");
    let port = free_port();
    root.configure(port);
    // The operator's edited configuration (configure() set its values).
    let props = root.p("/usr/share/kms/conf/kms.properties");
    let edited = std::fs::read_to_string(&props).unwrap();
    expect_code(&root.install(a, &["--package", &prev]), 0, "start N-1");

    // Six backups made by an earlier installer, with the legacy modes.
    let names: Vec<String> = std::iter::once("conf-orig".to_owned())
        .chain((1..=5).map(|n| format!("conf-orig.{n}")))
        .collect();
    for (i, n) in names.iter().enumerate() {
        let d = root.p(&format!("/usr/share/kms/{n}"));
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("kms.properties"), format!("# backup {i}\n")).unwrap();
        std::fs::set_permissions(
            d.join("kms.properties"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .unwrap();
        std::os::unix::fs::chown(&d, Some(TOMCAT), Some(TOMCAT)).unwrap();
    }

    let out = root.install(a, &[]);
    expect_code(&out, 0, "upgrade to N");
    assert_eq!(root.installed().as_deref(), Some("0.1.0-2"));
    assert!(root.listening(port));

    let mut kept: Vec<String> = std::fs::read_dir(root.p("/usr/share/kms"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("conf-orig"))
        .collect();
    kept.sort();
    let want: Vec<String> = (2..=6).map(|n| format!("conf-orig.{n}")).collect();
    assert_eq!(kept.len(), KEEP);
    assert_eq!(kept, want, "the {KEEP} newest kept:\n{}", text(&out));
    let mut problems = Vec::new();
    for n in &kept {
        problems.extend(private_problems(&root.p(&format!("/usr/share/kms/{n}"))));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Nothing lost: the earlier backups' contents and the edited live file.
    assert_eq!(
        std::fs::read_to_string(root.p("/usr/share/kms/conf-orig.5/kms.properties")).unwrap(),
        "# backup 5\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.p("/usr/share/kms/conf-orig.6/kms.properties")).unwrap(),
        edited
    );
    assert_eq!(std::fs::read_to_string(&props).unwrap(), edited);
    let (_, kgid) = root.user("kms").unwrap();
    assert_eq!(
        root.stat("/usr/share/kms/conf/kms.properties"),
        (0o640, 0, kgid)
    );
    assert!(
        std::fs::read_to_string(root.p("/var/lib/cmx-kms-installer/state"))
            .unwrap()
            .contains("conf_backup=/usr/share/kms/conf-orig.6")
    );
}
