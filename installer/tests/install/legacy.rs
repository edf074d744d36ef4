//! Taking over a Tomcat-based Connected-KMS node: both server.xml connector
//! forms, the guide's setenv.sh line, a four-node jgroups.xml and a
//! kms.properties with the guide's Vault keys. The service is not started
//! (`--no-start`): its Vault is not on this machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::node::{ScratchRoot, expect_code};
use crate::support::{artifacts, must, text};

/// The keystore password the fixtures use.
pub const FIXTURE_PASSWORD: &str = "Kms#Store!2024";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A scratch root laid out as a Tomcat-based node, with `server_xml` (a file
/// of fixtures/server-xml/, its port changed to `port`) and a keystore made by
/// `cmx-kms dev`'s code whose password keytool changes to the fixtures' one.
pub fn legacy_root(server_xml: &str, port: u16) -> ScratchRoot {
    let root = ScratchRoot::new();
    must(
        Command::new("cp")
            .arg("-a")
            .arg(fixtures().join("legacy-node/."))
            .arg(root.path()),
    );
    // Git keeps no empty directories: make the ones the fixture tree needs.
    for dir in ["/usr/share/tomcat/conf", "/usr/share/tomcat/webapps"] {
        std::fs::create_dir_all(root.p(dir)).unwrap();
    }
    let xml = std::fs::read_to_string(fixtures().join("server-xml").join(server_xml)).unwrap();
    std::fs::write(
        root.p("/usr/share/tomcat/conf/server.xml"),
        xml.replace("port=\"8443\"", &format!("port=\"{port}\"")),
    )
    .unwrap();
    let dev = tempfile::tempdir().unwrap();
    let folder = cmx_kms::dev::DevFolder::prepare(dev.path(), 18443).unwrap();
    let ks = root.p("/usr/share/kms/conf/kmsKeystore.jks");
    std::fs::copy(folder.path("kmsKeystore.jks"), &ks).unwrap();
    must(
        Command::new("keytool")
            .args(["-storepasswd", "-keystore"])
            .arg(&ks)
            .args(["-storepass", &folder.password, "-new", FIXTURE_PASSWORD]),
    );
    // The node trusts its https Vault through the keystore (kms.hsm.ca.alias):
    // without a CA, check-config refuses the configuration as a start would.
    must(
        Command::new("keytool")
            .args([
                "-importcert",
                "-noprompt",
                "-alias",
                "kmipSigningCA",
                "-file",
            ])
            .arg(folder.path("ca.crt"))
            .arg("-keystore")
            .arg(&ks)
            .args(["-storepass", FIXTURE_PASSWORD]),
    );
    // setenv.sh names this node kms1.AcmeXYZ.com (the guide's example), which
    // becomes kms.cluster.address: a start (and so check-config) needs it to
    // resolve on the node, as the node's DNS or /etc/hosts would make it.
    let hosts = root.p("/etc/hosts");
    let mut names = std::fs::read_to_string(&hosts).unwrap_or_default();
    names.push_str("127.0.0.1 kms1.AcmeXYZ.com\n");
    std::fs::write(&hosts, names).unwrap();
    std::fs::write(
        root.p("/usr/share/kms/kms.war"),
        b"PK\x03\x04 (the Java web application)",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        "/usr/share/kms/kms.war",
        root.p("/usr/share/tomcat/webapps/kms.war"),
    )
    .unwrap();
    root
}

fn props(path: &Path) -> BTreeMap<String, String> {
    let d = cmx_kms::config::properties::decode(&std::fs::read(path).unwrap());
    let lexed = cmx_kms::config::properties::lex(&d.text);
    assert!(lexed.errors.is_empty(), "{:?}", lexed.errors);
    let mut m = BTreeMap::new();
    for e in lexed.entries {
        assert!(
            m.insert(e.key.clone(), e.value.to_string()).is_none(),
            "duplicate {}",
            e.key
        );
    }
    m
}

fn migrate(server_xml: &str, key_alias: &str) {
    let a = artifacts();
    let root = legacy_root(server_xml, 8443);
    let originals: Vec<(&str, Vec<u8>)> = [
        "/usr/share/tomcat/conf/server.xml",
        "/usr/share/tomcat/bin/setenv.sh",
        "/usr/share/kms/conf/jgroups.xml",
        "/usr/share/kms/conf/kms.properties",
    ]
    .into_iter()
    .map(|p| (p, std::fs::read(root.p(p)).unwrap()))
    .collect();
    let old = props(&root.p("/usr/share/kms/conf/kms.properties"));

    let out = root.install(a, &["--no-start"]);
    expect_code(&out, 0, "legacy migration");
    let t = text(&out);
    assert!(
        t.contains("Take over this Tomcat-based Connected-KMS node"),
        "{t}"
    );
    assert!(
        !t.contains("NOT started"),
        "check-config refused the migrated configuration:\n{t}"
    );
    assert!(
        !t.contains(FIXTURE_PASSWORD),
        "the password leaked into the output:\n{t}"
    );
    assert_eq!(root.installed().as_deref(), Some("0.1.0-2"));

    // Every value kept, Tomcat's connector settings carried over.
    let newp = root.p("/usr/share/kms/conf/kms.properties");
    let new = props(&newp);
    for (k, v) in &old {
        assert_eq!(new.get(k), Some(v), "{k} not kept");
    }
    assert_eq!(
        new.get("kms.keystore.password").map(String::as_str),
        Some(FIXTURE_PASSWORD)
    );
    assert_eq!(
        new.get("kms.server.key.alias").map(String::as_str),
        Some(key_alias)
    );
    assert_eq!(new.get("kms.server.port").map(String::as_str), Some("8443"));
    assert_eq!(
        new.get("kms.cluster.address").map(String::as_str),
        Some("kms1.AcmeXYZ.com"),
        "setenv.sh's -Djgroups.tcp.address"
    );
    assert_eq!(new.get("kms.cluster.port"), None, "7800 by default");
    assert_eq!(
        new.get("kms.hsm.protocol").map(String::as_str),
        Some("VAULT")
    );
    let raw = std::fs::read_to_string(&newp).unwrap();
    for note in [
        "jgroups.tcp.address=kms1.AcmeXYZ.com",
        "jgroups.tcp.port=(not set: 7800)",
        "initial_hosts=kms2.myCorp.com[7800],kms3.myCorp.com[7800],kms4.myCorp.com[7800]",
        "JAVA_HOME=/usr/lib/jvm/jre",
    ] {
        assert!(raw.contains(note), "{note} not recorded:\n{raw}");
    }

    // check-config accepts it, run as the service user inside the root.
    let (uid, gid) = root.user("kms").unwrap();
    let out = Command::new("/usr/sbin/chroot")
        .arg(format!("--userspec={uid}:{gid}"))
        .arg(root.path())
        .args([
            "/usr/share/kms/bin/cmx-kms",
            "check-config",
            "-c",
            "/usr/share/kms/conf/kms.properties",
        ])
        .env_clear()
        .output()
        .unwrap();
    assert!(out.status.success(), "check-config:\n{}", text(&out));
    assert_eq!(
        root.stat("/usr/share/kms/conf/kms.properties"),
        (0o640, 0, gid)
    );
    assert_eq!(
        root.stat("/usr/share/kms/conf/kmsKeystore.jks"),
        (0o640, 0, gid)
    );

    // Originals: untouched in place (Tomcat's), and backed up untouched.
    let backups: Vec<PathBuf> = std::fs::read_dir(root.p("/var/backups/cmx-kms"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        root.stat(&format!(
            "/var/backups/cmx-kms/{}",
            backups[0].file_name().unwrap().to_string_lossy()
        ))
        .0,
        0o700
    );
    for (p, bytes) in &originals {
        let b = backups[0].join(p.trim_start_matches('/'));
        assert_eq!(
            &std::fs::read(&b).unwrap_or_else(|e| panic!("{}: {e}", b.display())),
            bytes,
            "backup of {p}"
        );
        if p.starts_with("/usr/share/tomcat") || p.ends_with("jgroups.xml") {
            assert_eq!(&std::fs::read(root.p(p)).unwrap(), bytes, "{p} changed");
        }
    }
    assert_eq!(
        std::fs::read(root.p("/usr/share/kms/conf-orig/kms.properties")).unwrap(),
        originals[3].1,
        "conf-orig holds the old kms.properties"
    );
    assert!(
        std::fs::symlink_metadata(root.p("/usr/share/tomcat/webapps/kms.war")).is_err(),
        "kms.war unlinked"
    );
    assert!(std::fs::symlink_metadata(backups[0].join("usr/share/tomcat/webapps/kms.war")).is_ok());
    assert!(
        !std::fs::read_to_string(root.p("/var/lib/cmx-kms-installer/state"))
            .unwrap()
            .contains("migration=")
    );

    // rpm set the package's default jgroups.xml aside: the final notes say so.
    if root.p("/usr/share/kms/conf/jgroups.xml.rpmnew").exists() {
        assert!(
            t.contains(
                "Note: /usr/share/kms/conf/jgroups.xml.rpmnew is the package's default jgroups.xml"
            ),
            "{t}"
        );
    }

    // A second run with --no-start on the stopped node: it says so (not
    // "running: nothing to do") and checks the configuration.
    let out = root.install(a, &["--no-start"]);
    expect_code(&out, 0, "second run");
    let t = text(&out);
    assert!(!t.contains("running: nothing to do"), "{t}");
    assert!(
        t.contains("is installed and not running; --no-start"),
        "{t}"
    );
    assert!(
        t.contains("check the configuration") && t.contains("Done."),
        "{t}"
    );
}

#[test]
fn migrates_connector_attribute_form() {
    migrate("attributes.xml", "kmsserver");
}

#[test]
fn migrates_sslhostconfig_certificate_form() {
    migrate("sslhostconfig.xml", "kmsServer");
}

/// The stand-in tomcat and tomcat-lib packages of `version`, built with rpmbuild.
fn tomcat_rpms(version: &str) -> (tempfile::TempDir, Vec<PathBuf>) {
    let top = tempfile::tempdir().unwrap();
    must(
        Command::new("rpmbuild")
            .arg("--define")
            .arg(format!("_topdir {}", top.path().display()))
            .arg("--define")
            .arg(format!("tcver {version}"))
            .arg("--quiet")
            .arg("-bb")
            .arg(fixtures().join("tomcat.spec")),
    );
    let dir = top.path().join("RPMS/noarch");
    let rpms = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    (top, rpms)
}

fn rpm_q(root: &ScratchRoot, name: &str) -> bool {
    Command::new("rpm")
        .arg("--root")
        .arg(root.path())
        .args(["-q", name])
        .output()
        .unwrap()
        .status
        .success()
}

fn with_tomcat(version: &str) -> (ScratchRoot, String) {
    let a = artifacts();
    let root = legacy_root("attributes.xml", 8443);
    let (_top, rpms) = tomcat_rpms(version);
    must(
        Command::new("rpm")
            .arg("--root")
            .arg(root.path())
            .args(["-i", "--nodeps"])
            .args(&rpms),
    );
    assert!(rpm_q(&root, "tomcat") && rpm_q(&root, "tomcat-lib"));
    let out = root.install(a, &["--no-start"]);
    expect_code(&out, 0, "legacy migration with tomcat");
    (root, text(&out))
}

#[test]
fn tomcat_7_is_removed() {
    let (root, t) = with_tomcat("7.0.76");
    assert!(
        t.contains("remove Tomcat 7: rpm -e tomcat tomcat-lib")
            || t.contains("remove Tomcat 7: rpm -e tomcat-lib tomcat"),
        "{t}"
    );
    assert!(
        !rpm_q(&root, "tomcat") && !rpm_q(&root, "tomcat-lib"),
        "Tomcat 7 still installed"
    );
    assert!(
        root.p("/usr/share/tomcat/conf/server.xml").is_file(),
        "Tomcat's configuration stays"
    );
    assert_eq!(root.installed().as_deref(), Some("0.1.0-2"));
}

#[test]
fn tomcat_9_stays_and_the_admin_is_told() {
    let (root, t) = with_tomcat("9.0.87");
    assert!(!t.contains("remove Tomcat"), "{t}");
    assert!(
        t.contains("Tomcat stays installed, but it no longer serves the KMS"),
        "{t}"
    );
    assert!(rpm_q(&root, "tomcat") && rpm_q(&root, "tomcat-lib"));
}

#[test]
fn an_interrupted_migration_goes_on_from_its_backup() {
    let a = artifacts();
    let root = legacy_root("attributes.xml", 8443);
    let old = props(&root.p("/usr/share/kms/conf/kms.properties"));
    // The package's %pre cannot create the service user: rpm fails mid-run,
    // after the backup was made and kms.war unlinked.
    std::fs::rename(root.p("/usr/sbin/useradd"), root.p("/usr/sbin/useradd.off")).unwrap();
    let out = root.install(a, &["--no-start"]);
    expect_code(&out, 3, "migration with a failing package install");
    assert!(text(&out).contains("Stopped at step"), "{}", text(&out));
    assert!(std::fs::symlink_metadata(root.p("/usr/share/tomcat/webapps/kms.war")).is_err());
    assert!(
        std::fs::read_to_string(root.p("/var/lib/cmx-kms-installer/state"))
            .unwrap()
            .contains("migration=")
    );

    std::fs::rename(root.p("/usr/sbin/useradd.off"), root.p("/usr/sbin/useradd")).unwrap();
    let out = root.install(a, &["--no-start"]);
    expect_code(&out, 0, "re-run");
    let t = text(&out);
    assert!(t.contains("An earlier run was interrupted"), "{t}");
    assert!(!t.contains("NOT started"), "{t}");
    let new = props(&root.p("/usr/share/kms/conf/kms.properties"));
    for (k, v) in &old {
        assert_eq!(new.get(k), Some(v), "{k} not kept");
    }
    assert_eq!(
        new.get("kms.server.key.alias").map(String::as_str),
        Some("kmsserver")
    );
    assert!(
        root.p("/usr/share/kms/conf-orig").is_dir()
            && !root.p("/usr/share/kms/conf-orig.1").exists()
    );
}

/// `PATH` with a directory first whose `rpm` runs the real one and then,
/// after an upgrade (`-U`), kills the program that ran it: an installer
/// interrupted right after `rpm -U` succeeded.
fn rpm_then_killed() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let rpm = dir.path().join("rpm");
    std::fs::write(
        &rpm,
        "#!/bin/sh\n/usr/bin/rpm \"$@\"; rc=$?\n\
         case \" $* \" in *\" -U\"*) [ $rc = 0 ] && kill -9 $PPID ;; esac\nexit $rc\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &rpm,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    dir
}

#[test]
fn a_migration_interrupted_after_rpm_goes_on() {
    let a = artifacts();
    let root = legacy_root("attributes.xml", 8443);
    let old = props(&root.p("/usr/share/kms/conf/kms.properties"));
    let wrapper = rpm_then_killed();
    let mut c = Command::new("sh");
    c.arg(a.tarball_dir.join("CMX-KMS-Installer.sh"))
        .args([
            "--root",
            &root.root_arg(),
            "--yes",
            "--rpm-nodeps",
            "--no-start",
        ])
        .env(
            "PATH",
            format!(
                "{}:{}",
                wrapper.path().display(),
                std::env::var("PATH").unwrap()
            ),
        );
    let out = crate::support::run_with_stdin(c, "");
    assert_ne!(out.status.code(), Some(0), "killed:\n{}", text(&out));
    assert_eq!(
        root.installed().as_deref(),
        Some("0.1.0-2"),
        "{}",
        text(&out)
    );
    assert!(
        std::fs::read_to_string(root.p("/var/lib/cmx-kms-installer/state"))
            .unwrap()
            .contains("migration=")
    );

    // The next run recognises the package as installed and goes on.
    let out = root.install(a, &["--no-start"]);
    expect_code(&out, 0, "re-run after rpm -U");
    let t = text(&out);
    assert!(t.contains("An earlier run was interrupted"), "{t}");
    assert!(
        t.contains("cmx-kms-server 0.1.0-2 is already installed (an earlier run got that far)"),
        "{t}"
    );
    assert!(!t.contains("FAILED"), "{t}");
    let new = props(&root.p("/usr/share/kms/conf/kms.properties"));
    for (k, v) in &old {
        assert_eq!(new.get(k), Some(v), "{k} not kept");
    }
    assert_eq!(
        new.get("kms.server.key.alias").map(String::as_str),
        Some("kmsserver"),
        "server.xml's settings migrated"
    );
    let state = std::fs::read_to_string(root.p("/var/lib/cmx-kms-installer/state")).unwrap();
    assert!(!state.contains("migration="), "{state}");
    assert!(
        state.contains("current=cmx-kms-server-0.1.0-2"),
        "the package is kept for a later rollback:\n{state}"
    );
}

#[test]
fn a_keystore_cmx_kms_cannot_read_stops_the_migration_before_any_change() {
    let a = artifacts();
    let root = legacy_root("attributes.xml", 8443);
    // JCEKS: the Java node read it, cmx-kms does not.
    let ks = root.p("/usr/share/kms/conf/kmsKeystore.jks");
    let jceks = root.p("/usr/share/kms/conf/ks.jceks");
    must(
        Command::new("keytool")
            .args(["-importkeystore", "-noprompt", "-srckeystore"])
            .arg(&ks)
            .args(["-srcstorepass", FIXTURE_PASSWORD, "-destkeystore"])
            .arg(&jceks)
            .args([
                "-deststoretype",
                "JCEKS",
                "-deststorepass",
                FIXTURE_PASSWORD,
                "-destkeypass",
                FIXTURE_PASSWORD,
            ]),
    );
    std::fs::rename(&jceks, &ks).unwrap();
    let before = crate::support::snapshot(root.path(), &[]);
    let out = root.install(a, &[]);
    expect_code(&out, 1, "migration with a JCEKS keystore");
    let t = text(&out);
    assert!(
        t.contains("cmx-kms could not use its keystore") && t.contains("JCEKS"),
        "{t}"
    );
    assert!(
        t.contains("Nothing was changed: Tomcat still serves the KMS"),
        "{t}"
    );
    assert!(!t.contains(FIXTURE_PASSWORD), "{t}");
    crate::support::assert_same(
        &before,
        &crate::support::snapshot(root.path(), &[]),
        "a refused migration",
    );
    assert_eq!(root.installed(), None);
    assert!(std::fs::symlink_metadata(root.p("/usr/share/tomcat/webapps/kms.war")).is_ok());
}
