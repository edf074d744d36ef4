//! The whole life of a node under systemd, in one booted root: fresh install
//! (N-1) on an unconfigured node, configured and started (active only after
//! READY=1, sandbox in force, exposure ≤ 2.0), upgrade to N with an edited
//! configuration, reload with a newly imported client certificate, restart,
//! crash, bad configuration, a broken N+1 that rolls back by itself,
//! `--rollback`, uninstall.

use std::process::Command;

use crate::checks::{
    INSTALLER, Node, RPMS, UNIT, assert_exposure, assert_sandbox, assert_started_after_ready,
    denials, starts,
};
use crate::support::booted::{BootedRoot, test_port};
use crate::support::node::{configure_root, expect_code, set_property};
use crate::support::{artifacts, must, text};

const PROPS: &str = "/usr/share/kms/conf/kms.properties";

#[test]
fn the_node_lives_under_a_real_systemd() {
    let t0 = std::time::Instant::now();
    let step = |what: &str| eprintln!("[{:>5.1}s] {what}", t0.elapsed().as_secs_f64());
    let a = artifacts();
    step("packages built");
    let in_rpms =
        |p: &std::path::Path| format!("{RPMS}/{}", p.file_name().unwrap().to_string_lossy());
    let (prev, broken) = (in_rpms(&a.rpm_prev), in_rpms(&a.rpm_broken));
    let b = BootedRoot::boot(&[
        (a.tarball_dir.as_path(), INSTALLER),
        (a.rpm_prev.parent().unwrap(), RPMS),
    ]);
    let mut n = Node {
        b,
        port: test_port(),
        dev: None,
    };

    step("booted");

    // 1. Fresh install (N-1) on an unconfigured node: installed, enabled, not
    //    started, told what to set.
    let out = n.installer(&format!("--package {prev}"));
    expect_code(&out, 0, "fresh install");
    let t = text(&out);
    assert!(t.contains("(service manager: systemd)"), "{t}");
    assert!(
        t.contains("NOT started") && t.contains("kms.keystore.password"),
        "{t}"
    );
    assert_eq!(n.installed().as_deref(), Some("0.1.0-1"));
    assert_eq!(
        n.b.must(&format!("systemctl is-enabled {UNIT}")).trim(),
        "enabled"
    );
    assert_eq!(n.active(), "inactive/dead");

    step("fresh install");

    // 2. Configured: the next run starts it through systemd; active (running)
    //    only once the server said READY=1; requests served; the sandbox in
    //    force and its exposure at most 2.0 on the running service.
    let dev = tempfile::tempdir().unwrap();
    n.dev = Some(configure_root(&n.b.p("/"), dev.path(), n.port));
    // The soft backend's key file is never made by the service (nor could it
    // be: ProtectSystem=strict keeps /usr/share/kms/conf read-only for it).
    // check-config, run by the installer as the service user, names the line
    // and key, so the service is not started; made beforehand, it starts.
    let soft_key = n.b.p("/usr/share/kms/conf/soft-master.key");
    std::fs::remove_file(&soft_key).unwrap();
    let out = n.installer(&format!("--package {prev}"));
    expect_code(&out, 0, "install without the soft key file");
    let t = text(&out);
    assert!(
        t.contains("NOT started")
            && t.contains("kms.hsm.soft.key.file: the soft master key file /usr/share/kms/conf/soft-master.key does not exist"),
        "{t}"
    );
    assert_eq!(n.active(), "inactive/dead");
    // Nothing was tried that the sandbox would deny.
    let expected_denial = denials(&n);
    assert!(expected_denial.is_empty(), "{expected_denial:?}");
    let pw = secrecy::SecretString::from(n.dev.as_ref().unwrap().password.clone());
    cmx_kms::backend::soft::create_key_file(&soft_key, &pw).unwrap();
    let out = n.installer(&format!("--package {prev}"));
    expect_code(&out, 0, "start after configuring");
    assert!(text(&out).contains("running and ready"), "{}", text(&out));
    assert_eq!(n.active(), "active/running", "{}", n.status_and_journal());
    assert_started_after_ready(&n, 0);
    assert!(n.serving(), "{}", n.status_and_journal());
    n.key_chain();
    assert_sandbox(&n);
    let level = assert_exposure(&n);
    eprintln!("systemd-analyze security on the running service: {level}");

    step("configured and started");

    // 3. Upgrade N-1 → N with the edited configuration: kept, N's default
    //    beside it as .rpmnew, restarted by systemd.
    let props = n.b.p(PROPS);
    let edited = std::fs::read(&props).unwrap();
    let pid = n.main_pid();
    let out = n.installer("");
    expect_code(&out, 0, "upgrade to N");
    assert!(
        text(&out).contains("Upgrade cmx-kms-server 0.1.0-1 to cmx-kms-server 0.1.0-2"),
        "{}",
        text(&out)
    );
    assert_eq!(n.installed().as_deref(), Some("0.1.0-2"));
    assert_eq!(std::fs::read(&props).unwrap(), edited);
    assert!(n.b.p("/usr/share/kms/conf/kms.properties.rpmnew").is_file());
    assert_eq!(n.active(), "active/running");
    assert_ne!(n.main_pid(), pid, "restarted on the new version");
    assert!(n.serving());

    step("upgraded");

    // 3b. --rollback: back to N-1 with the configuration of before the
    //     upgrade, running; then N again.
    let out = n.installer("--rollback");
    expect_code(&out, 0, "rollback on demand");
    assert_eq!(n.installed().as_deref(), Some("0.1.0-1"));
    assert_eq!(n.active(), "active/running", "{}", n.status_and_journal());
    assert!(n.serving());
    expect_code(&n.installer(""), 0, "upgrade to N again");
    assert_eq!(n.installed().as_deref(), Some("0.1.0-2"));
    assert_eq!(n.active(), "active/running", "{}", n.status_and_journal());
    step("rollback");

    // 4. `systemctl reload` picks up a client certificate imported with
    //    keytool, while requests keep being answered.
    reload_with_a_new_certificate(&n);

    step("reloaded");

    // 5. `systemctl restart`: a new process, again started only after READY=1.
    let (pid, before) = (n.main_pid(), starts(&n));
    n.b.must(&format!("systemctl restart {UNIT}"));
    assert_eq!(n.active(), "active/running");
    assert_ne!(n.main_pid(), pid);
    assert_started_after_ready(&n, before);
    assert!(n.serving());

    step("restarted");

    // 6. A crash (kill -9 of the main process): systemd starts it again.
    let pid = n.main_pid();
    let restarts: u32 = n.b.show("NRestarts").parse().unwrap();
    n.b.must(&format!("kill -9 {pid}"));
    n.b.wait_for("systemd to restart the killed service", 90, || {
        n.b.show("NRestarts").parse::<u32>().unwrap() > restarts && n.active() == "active/running"
    });
    assert_ne!(n.main_pid(), pid);
    assert!(n.serving());

    step("crash restarted");

    // 7. A bad configuration: exit 78, no restart loop, and status and the
    //    journal name the file, line and key to fix.
    let good = std::fs::read_to_string(&props).unwrap();
    std::fs::write(&props, set_property(&good, "kms.server.port", "eighty")).unwrap();
    let out = n.b.sh(&format!("systemctl restart {UNIT}"));
    assert!(
        !out.status.success(),
        "started with a bad port: {}",
        text(&out)
    );
    // With Restart=on-failure alone the unit would now wait in
    // activating/auto-restart; RestartPreventExitStatus=78 makes it fail.
    assert_eq!(n.active(), "failed/failed", "{}", n.status_and_journal());
    assert_eq!(n.b.show("ExecMainStatus"), "78");
    assert_eq!(n.b.show("Result"), "exit-code");
    let status = text(&n.b.sh(&format!("systemctl status --no-pager -l {UNIT}")));
    assert!(
        status.contains("kms.server.port") && status.contains("kms.properties:"),
        "systemctl status does not say what to fix:\n{status}"
    );
    std::fs::write(&props, &good).unwrap();
    n.b.must(&format!("systemctl start {UNIT}"));
    assert_eq!(n.active(), "active/running");
    assert!(n.serving());

    step("bad configuration");

    // 8. A broken N+1: the installer rolls back to N by itself, N running.
    let out = n.installer(&format!("--package {broken}"));
    expect_code(&out, 2, "broken upgrade");
    let t = text(&out);
    assert!(
        t.contains("ROLLED BACK") && t.contains("cmx-kms-server 0.1.0-2"),
        "{t}"
    );
    assert_eq!(n.installed().as_deref(), Some("0.1.0-2"));
    assert_eq!(n.active(), "active/running", "{}", n.status_and_journal());
    assert!(n.serving(), "N serves again");
    n.key_chain();
    assert_eq!(std::fs::read_to_string(&props).unwrap(), good);

    step("broken upgrade rolled back");
    // Nothing else the service did was denied by its sandbox, in any step.
    assert_eq!(
        denials(&n),
        expected_denial,
        "the sandbox denied the service something"
    );

    // 9. Uninstall: stopped, unit gone, systemd reloaded, logs kept.
    let reloads = |n: &Node| {
        n.b.must("journalctl --no-pager _PID=1 -o cat")
            .lines()
            .filter(|l| l.starts_with("Reloading"))
            .count()
    };
    let before = reloads(&n);
    let out = n.b.sh(&format!(
        "cd {INSTALLER} && sh CMX-KMS-Uninstaller.sh --yes --rpm-nodeps"
    ));
    expect_code(&out, 0, "uninstall");
    step("uninstaller ran");
    assert!(text(&out).contains("Kept: /var/log/kms"), "{}", text(&out));
    assert_eq!(n.installed(), None);
    assert!(!n.b.p("/usr/lib/systemd/system/cmx-kms.service").exists());
    assert!(
        !n.b.p("/etc/systemd/system/multi-user.target.wants/cmx-kms.service")
            .exists(),
        "still enabled"
    );
    assert!(
        reloads(&n) > before,
        "no daemon-reload after the unit file went"
    );
    assert_eq!(n.b.show("LoadState"), "not-found");
    assert!(!n.b.p("/usr/share/kms").exists());
    assert!(n.b.p("/var/log/kms/install.log").is_file());
    assert!(!n.serving());
    assert!(
        !n.b.sh("pgrep -u kms").status.success(),
        "a kms process is left"
    );
    step("uninstalled");
    drop(n);
    step("container halted and removed");
}

/// Step 4: a new device certificate, imported with keytool into the node's
/// keystore, is refused before and accepted after `systemctl reload`, with
/// the same process and not one failed request meanwhile.
fn reload_with_a_new_certificate(n: &Node) {
    let d = n.dev.as_ref().unwrap();
    must(Command::new("openssl").current_dir(&d.dir).args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-days",
        "30",
        "-keyout",
        "cmxDevice2.key",
        "-out",
        "cmxDevice2.crt",
        "-subj",
        "/CN=cmxDevice2",
        "-addext",
        "extendedKeyUsage=clientAuth",
    ]));
    assert_ne!(
        n.health("cmxDevice2"),
        200,
        "accepted before it was imported"
    );
    let load = n.load();
    n.b.wait_for("requests under load", 60, || load.ok() >= 3);
    let keystore = n.b.p("/usr/share/kms/conf/kmsKeystore.jks");
    must(
        Command::new("keytool")
            .args(["-importcert", "-noprompt", "-alias", "cmxDevice2", "-file"])
            .arg(d.path("cmxDevice2.crt"))
            .arg("-keystore")
            .arg(&keystore)
            .args(["-storepass", &d.password]),
    );
    let pid = n.main_pid();
    n.b.must(&format!("systemctl reload {UNIT}"));
    n.b.wait_for("the new certificate to be accepted", 60, || {
        n.health("cmxDevice2") == 200
    });
    let seen = load.ok();
    n.b.wait_for("more requests after the reload", 60, || {
        load.ok() > seen + 2
    });
    let (ok, failed) = load.finish();
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during the reload",
        ok + failed
    );
    assert_eq!(n.main_pid(), pid, "reloaded, not restarted");
    assert_eq!(n.active(), "active/running");
    assert!(
        n.journal().contains("configuration reloaded"),
        "{}",
        n.journal()
    );
}
