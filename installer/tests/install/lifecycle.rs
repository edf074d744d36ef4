//! Fresh install, configure, no-op re-run, uninstall; upgrade N-1 → N with an
//! edited configuration, rollback on demand, and a broken N+1 that rolls back
//! by itself. The service runs under the direct-process manager (this
//! machine's PID 1 is not systemd), inside the root, as the root's kms user.

use std::process::Command;

use crate::support::node::{ScratchRoot, expect_code};
use crate::support::{artifacts, assert_same, free_port, snapshot, text, workspace};

/// `systemd-analyze verify` must print nothing (syntax errors are only
/// warnings there), and the offline security exposure must be at most 2.0.
fn check_unit(root: &ScratchRoot) {
    let unit = std::fs::read_to_string(root.p("/usr/lib/systemd/system/cmx-kms.service")).unwrap();
    // verify checks that ExecStart exists: point it at the root's copy.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("cmx-kms.service");
    std::fs::write(
        &copy,
        unit.replace(
            "/usr/share/kms/",
            &format!("{}/usr/share/kms/", root.root_arg()),
        ),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(
        out.status.success() && t.trim().is_empty(),
        "systemd-analyze verify:\n{t}"
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&copy)
        .output()
        .unwrap();
    let t = text(&out);
    let level: f64 = t
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for cmx-kms.service:"))
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{t}"));
    assert!(level <= 2.0, "exposure {level} > 2.0:\n{t}");
}

#[test]
fn fresh_install_configure_rerun_and_uninstall() {
    let a = artifacts();
    let root = ScratchRoot::new();
    assert!(root.user("kms").is_none());

    // 1. Fresh node, configuration incomplete: installed, not started, told what to set.
    let out = root.install(a, &[]);
    expect_code(&out, 0, "fresh install");
    let t = text(&out);
    assert!(
        t.contains("NOT started") && t.contains("kms.keystore.password"),
        "{t}"
    );
    assert_eq!(root.installed().as_deref(), Some("0.1.0-2"));
    let (uid, gid) = root
        .user("kms")
        .expect("the %pre scriptlet created user kms");
    assert!(uid > 0 && uid < 1000, "a system user: {uid}");
    let group = std::fs::read_to_string(root.p("/etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|l| l.starts_with(&format!("kms:x:{gid}:"))),
        "{group}"
    );
    assert_eq!(root.stat("/usr/share/kms/conf"), (0o750, 0, gid));
    assert_eq!(
        root.stat("/usr/share/kms/conf/kms.properties"),
        (0o640, 0, gid)
    );
    assert_eq!(
        root.stat("/usr/share/kms/conf/jgroups.xml"),
        (0o640, 0, gid)
    );
    assert_eq!(root.stat("/usr/share/kms/bin/cmx-kms"), (0o755, 0, 0));
    assert_eq!(root.stat("/var/log/kms"), (0o750, uid, gid));
    assert!(
        std::fs::read_to_string(root.p("/var/log/kms/install.log"))
            .unwrap()
            .contains("New installation")
    );
    assert!(root.service_pid().is_none());
    check_unit(&root);

    // 2. Configured: the next run starts it and waits for READY=1.
    let port = free_port();
    root.configure(port);
    let out = root.install(a, &[]);
    expect_code(&out, 0, "start after configuring");
    assert!(text(&out).contains("running and ready"), "{}", text(&out));
    let pid = root.service_pid().expect("running");
    assert!(root.listening(port));
    // Without systemd the installer makes the runtime directory the unit's
    // RuntimeDirectory= would: the control socket is there.
    assert_eq!(root.stat("/run/cmx-kms"), (0o750, uid, gid));
    assert!(
        std::fs::symlink_metadata(root.p("/run/cmx-kms/control.sock")).is_ok(),
        "{}",
        std::fs::read_to_string(root.p("/var/log/kms/cmx-kms.out")).unwrap_or_default()
    );
    // The server runs on the root's glibc (Debian 11: 2.31, older than the
    // build machine's and nearer RHEL 8's 2.28), not on the build machine's.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let libc: Vec<&str> = maps.lines().filter(|l| l.contains("libc")).collect();
    assert!(
        libc.iter().any(|l| l.ends_with("/libc-2.31.so")),
        "not on the root's glibc 2.31:\n{}",
        libc.join("\n")
    );
    assert_eq!(
        root.stat("/usr/share/kms/conf/kmsKeystore.jks"),
        (0o640, 0, gid)
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/status")).unwrap();
    let status = String::from_utf8_lossy(&cmdline);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains(&uid.to_string())),
        "runs as kms:\n{status}"
    );

    // 3. Again: nothing to do, nothing changes, same process.
    let before = snapshot(root.path(), &["var/log/kms"]);
    let out = root.install(a, &[]);
    expect_code(&out, 0, "re-run");
    assert!(text(&out).contains("nothing to do"), "{}", text(&out));
    assert_same(
        &before,
        &snapshot(root.path(), &["var/log/kms"]),
        "a second run",
    );
    assert_eq!(root.service_pid(), Some(pid));

    // 4. Uninstall: package and /usr/share/kms gone, logs kept.
    let out = root.uninstall(a);
    expect_code(&out, 0, "uninstall");
    assert!(text(&out).contains("Kept: /var/log/kms"), "{}", text(&out));
    assert_eq!(root.installed(), None);
    assert!(!root.p("/usr/share/kms").exists());
    assert!(root.p("/var/log/kms/install.log").is_file());
    assert!(
        root.p("/var/log/kms/audit.log").exists() || root.p("/var/log/kms/cmx-kms.out").is_file()
    );
    assert!(root.service_pid().is_none());
    assert!(!root.listening(port));
    let kept = std::fs::read_dir(root.p("/var/backups/cmx-kms"))
        .unwrap()
        .flatten()
        .next()
        .expect("conf copy");
    assert!(kept.path().join("conf/kmsKeystore.jks").is_file());
    assert!(
        root.user("kms").is_some(),
        "the user stays with the logs it owns"
    );
}

#[test]
fn upgrade_keeps_config_rolls_back_on_demand_and_after_a_broken_upgrade() {
    let a = artifacts();
    let root = ScratchRoot::new();
    let prev = a.rpm_prev.to_string_lossy().into_owned();
    let broken = a.rpm_broken.to_string_lossy().into_owned();

    // N-1, configured (kms.properties edited) and running.
    expect_code(&root.install(a, &["--package", &prev]), 0, "install N-1");
    let port = free_port();
    root.configure(port);
    expect_code(&root.install(a, &["--package", &prev]), 0, "start N-1");
    assert_eq!(root.installed().as_deref(), Some("0.1.0-1"));
    let pid1 = root.service_pid().expect("N-1 running");
    let props = root.p("/usr/share/kms/conf/kms.properties");
    let edited = std::fs::read(&props).unwrap();

    // N-1 → N: the edited file stays, N's new default lands as .rpmnew, conf-orig made, restarted.
    let out = root.install(a, &[]);
    expect_code(&out, 0, "upgrade to N");
    assert!(
        text(&out).contains("Upgrade cmx-kms-server 0.1.0-1 to cmx-kms-server 0.1.0-2"),
        "{}",
        text(&out)
    );
    assert_eq!(root.installed().as_deref(), Some("0.1.0-2"));
    assert_eq!(std::fs::read(&props).unwrap(), edited);
    let rpmnew =
        std::fs::read(root.p("/usr/share/kms/conf/kms.properties.rpmnew")).expect(".rpmnew");
    assert_eq!(
        rpmnew,
        std::fs::read(workspace().join("conf/kms.properties")).unwrap()
    );
    assert_eq!(
        std::fs::read(root.p("/usr/share/kms/conf-orig/kms.properties")).unwrap(),
        edited
    );
    let pid2 = root.service_pid().expect("N running");
    assert_ne!(pid1, pid2, "restarted on the new version");
    assert!(root.listening(port));

    // --rollback: back to N-1 with the configuration of before the upgrade.
    let out = root.install(a, &["--rollback"]);
    expect_code(&out, 0, "rollback on demand");
    assert_eq!(root.installed().as_deref(), Some("0.1.0-1"));
    assert!(
        root.p("/usr/share/kms/conf-orig.1/kms.properties")
            .is_file(),
        "current conf backed up first"
    );
    assert!(root.service_pid().is_some() && root.listening(port));

    // N again, then the broken N+1: rolls back to N by itself, running and ready.
    expect_code(&root.install(a, &[]), 0, "upgrade to N again");
    assert!(root.p("/usr/share/kms/conf-orig.2").is_dir());
    let out = root.install(a, &["--package", &broken]);
    expect_code(&out, 2, "broken upgrade");
    let t = text(&out);
    assert!(
        t.contains("ROLLED BACK") && t.contains("cmx-kms-server 0.1.0-2"),
        "{t}"
    );
    assert!(
        t.contains("broken build"),
        "the failure's output is shown:\n{t}"
    );
    assert_eq!(root.installed().as_deref(), Some("0.1.0-2"));
    assert!(root.service_pid().is_some(), "N runs again");
    assert!(root.listening(port), "N is ready again");
    assert_eq!(std::fs::read(&props).unwrap(), edited);
    for b in ["conf-orig", "conf-orig.1", "conf-orig.2", "conf-orig.3"] {
        assert!(root.p(&format!("/usr/share/kms/{b}")).is_dir(), "{b} kept");
    }
    let log = std::fs::read_to_string(root.p("/var/log/kms/install.log")).unwrap();
    assert!(
        log.contains("rolling back to cmx-kms-server 0.1.0-2"),
        "{log}"
    );
}
