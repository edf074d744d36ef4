//! The plan rules, table by table, from made-up facts: no rpm, no root.

use std::path::PathBuf;

use super::test_facts::{facts, held_by, installed, kinds, legacy, opts, pkg, refusal};
use super::*;
use crate::detect::RollbackFacts;

#[test]
fn each_kind_of_node_gets_its_steps() {
    const TAIL: [&str; 5] = [
        "fix-permissions",
        "reload-units",
        "enable",
        "check-config",
        "start",
    ];
    type Setup = fn(&mut NodeFacts);
    let cases: Vec<(&str, Setup, Vec<&str>)> = vec![
        ("fresh", |_| {}, [&["install"][..], &TAIL].concat()),
        (
            "fresh without systemd",
            |f| {
                f.service.manager = "direct";
                f.service.manages_boot = false;
            },
            vec!["install", "fix-permissions", "check-config", "start"],
        ),
        (
            "same version, running, nothing wrong",
            |f| {
                installed(f, "0.2.0");
                f.service.active = true;
                f.service.enabled = true;
            },
            vec![],
        ),
        (
            "same version, stopped, not enabled, modes wrong",
            |f| {
                installed(f, "0.2.0");
                f.needs_fixes = true;
            },
            vec![
                "fix-permissions",
                "reload-units",
                "enable",
                "check-config",
                "start",
            ],
        ),
        (
            "upgrade of a running node",
            |f| {
                installed(f, "0.1.0");
                f.service.active = true;
            },
            vec![
                "backup-conf",
                "upgrade",
                "fix-permissions",
                "reload-units",
                "enable",
                "check-config",
                "restart",
            ],
        ),
        (
            "take over a Tomcat 7 node",
            |f| {
                legacy(
                    f,
                    &[
                        ("tomcat", "7.0.76"),
                        ("tomcat-lib", "7.0.76"),
                        ("tomcatjss", "7.2"),
                    ],
                )
            },
            [
                &[
                    "backup-legacy",
                    "stop",
                    "disable",
                    "unlink-war",
                    "erase-tomcat7",
                    "backup-conf",
                    "install",
                    "write-config",
                    "restore-file",
                    "finish-migration",
                ][..],
                &TAIL,
            ]
            .concat(),
        ),
        (
            "take over a node whose Tomcat is not version 7 (kept)",
            |f| legacy(f, &[("tomcat", "9.0.1")]),
            [
                &[
                    "backup-legacy",
                    "stop",
                    "disable",
                    "unlink-war",
                    "backup-conf",
                    "install",
                    "write-config",
                    "restore-file",
                    "finish-migration",
                ][..],
                &TAIL,
            ]
            .concat(),
        ),
        (
            "resume an interrupted migration, the Java package still in rpm",
            |f| {
                legacy(f, &[]);
                // The Java package (Epoch 0) below ours (Epoch 1, as shipped).
                f.installed_in_rpm = Some(pkg("24.2.2", "17"));
                if let Some((_, info)) = f.package.as_mut() {
                    info.epoch = 1;
                }
                if let Some(l) = f.legacy.as_mut() {
                    l.resuming = true;
                    l.tomcat_active = false;
                    l.tomcat_enabled = false;
                    l.war_present = false;
                }
            },
            [
                &[
                    "upgrade",
                    "write-config",
                    "restore-file",
                    "finish-migration",
                ][..],
                &TAIL,
            ]
            .concat(),
        ),
        (
            "resume a migration interrupted after rpm -U: our package already in rpm",
            |f| {
                legacy(f, &[]);
                f.installed_in_rpm = Some(pkg("0.2.0", "1"));
                if let Some(l) = f.legacy.as_mut() {
                    l.resuming = true;
                    l.tomcat_active = false;
                    l.tomcat_enabled = false;
                    l.war_present = false;
                }
            },
            [
                &[
                    "keep-package",
                    "write-config",
                    "restore-file",
                    "finish-migration",
                ][..],
                &TAIL,
            ]
            .concat(),
        ),
    ];
    for (name, setup, want) in cases {
        let mut f = facts();
        setup(&mut f);
        let plan = build(&f, &opts()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(kinds(&plan), want, "{name}: {}", plan.summary);
    }
}

#[test]
fn an_upgrade_can_roll_back_and_says_so() {
    let mut f = facts();
    installed(&mut f, "0.1.0");
    let plan = build(&f, &opts()).unwrap();
    let target = plan.rollback.expect("an upgrade knows its way back");
    assert_eq!(target.info, pkg("0.1.0", "1"));
    assert_eq!(target.conf_backup, f.next_conf_backup);
    assert!(
        plan.steps.iter().all(|s| !matches!(
            s,
            Step::CheckConfig { on_failure } | Step::Start { on_failure, .. }
                if *on_failure != OnFailure::Rollback
        )),
        "a failed check or start rolls back"
    );
    assert!(
        plan.notes.iter().any(|n| n.contains("60 s")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn refusals_name_the_reason_and_change_nothing() {
    type Setup = fn(&mut NodeFacts, &mut Options);
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "a newer version installed",
            |f, _| installed(f, "0.3.0"),
            "newer than the package here",
        ),
        (
            "an upgrade without a kept copy of the current package",
            |f, _| {
                installed(f, "0.1.0");
                f.kept_current = None;
            },
            "kept no copy of its package",
        ),
        (
            "another package file",
            |f, _| {
                if let Some((_, info)) = f.package.as_mut() {
                    info.name = "nginx".into();
                }
            },
            "holds the package nginx",
        ),
        (
            "the port held by another program",
            |f, _| held_by(f, "nginx", "nginx: master process"),
            "port 8443, where cmx-kms must listen, is taken by pid 42 (nginx: master process)",
        ),
        (
            "the port held by an unknown process",
            |f, _| {
                if let Some(p) = f.port.as_mut() {
                    p.listeners.in_use = true;
                }
            },
            "a process the installer cannot identify",
        ),
        (
            "a fresh node's port held by Tomcat",
            |f, _| held_by(f, "java", "java org.apache.catalina.startup.Bootstrap"),
            "org.apache.catalina",
        ),
        (
            "rollback with nothing installed",
            |f, o| {
                o.rollback = true;
                f.package = None;
            },
            "nothing to roll back",
        ),
        (
            "rollback without an earlier package",
            |f, o| {
                o.rollback = true;
                installed(f, "0.2.0");
                f.package = None;
                f.rollback = Some(RollbackFacts {
                    previous: None,
                    conf_backup: Some("/usr/share/kms/conf-orig".into()),
                });
            },
            "kept no earlier version",
        ),
        (
            "rollback without the configuration backup",
            |f, o| {
                o.rollback = true;
                installed(f, "0.2.0");
                f.package = None;
                f.rollback = Some(RollbackFacts {
                    previous: Some((PathBuf::from("/p/old.rpm"), pkg("0.1.0", "1"))),
                    conf_backup: None,
                });
            },
            "configuration backup of the last upgrade is gone",
        ),
    ];
    for (name, setup, want) in cases {
        let (mut f, mut o) = (facts(), opts());
        setup(&mut f, &mut o);
        let e = refusal(build(&f, &o));
        assert!(e.contains(want), "{name}: {e}");
        assert!(e.contains("othing was changed"), "{name}: {e}");
    }
}

#[test]
fn ports_held_by_cmx_kms_or_by_the_tomcat_being_replaced_are_fine() {
    let mut f = facts();
    held_by(&mut f, "cmx-kms", "/usr/share/kms/bin/cmx-kms serve");
    assert!(build(&f, &opts()).is_ok());
    let mut f = facts();
    legacy(&mut f, &[]);
    held_by(&mut f, "java", "java org.apache.catalina.startup.Bootstrap");
    assert!(build(&f, &opts()).is_ok());
}

#[test]
fn rollback_goes_back_to_the_kept_package_and_configuration() {
    let mut f = facts();
    installed(&mut f, "0.2.0");
    f.service.active = true;
    f.package = None;
    f.rollback = Some(RollbackFacts {
        previous: Some((PathBuf::from("/p/old.rpm"), pkg("0.1.0", "1"))),
        conf_backup: Some("/usr/share/kms/conf-orig.1".into()),
    });
    let mut o = opts();
    o.rollback = true;
    let plan = build(&f, &o).unwrap();
    assert_eq!(
        kinds(&plan),
        [
            "backup-conf",
            "stop",
            "downgrade",
            "restore-conf",
            "fix-permissions",
            "reload-units",
            "check-config",
            "start",
        ]
    );
    assert!(plan.summary.contains("conf-orig.1"), "{}", plan.summary);
}

#[test]
fn no_start_leaves_the_service_stopped_and_says_how_to_start_it() {
    let mut f = facts();
    f.port = None;
    let mut o = opts();
    o.no_start = true;
    let plan = build(&f, &o).unwrap();
    assert!(!kinds(&plan).contains(&"start"), "{:?}", kinds(&plan));
    assert!(
        plan.notes.iter().any(|n| n.contains("--no-start")),
        "{:?}",
        plan.notes
    );
}

#[test]
fn no_start_on_a_stopped_node_checks_and_does_not_claim_it_runs() {
    let mut f = facts();
    installed(&mut f, "0.2.0");
    f.service.enabled = true;
    f.port = None;
    let mut o = opts();
    o.no_start = true;
    let plan = build(&f, &o).unwrap();
    assert_eq!(kinds(&plan), ["check-config"]);
    assert!(
        !plan.summary.contains("configured and running") && plan.summary.contains("not running"),
        "{}",
        plan.summary
    );
}

#[test]
fn a_fresh_install_points_at_the_copy_an_uninstall_kept() {
    let mut f = facts();
    f.kept_uninstall = Some("/var/backups/cmx-kms/uninstall-20261205T165731Z".into());
    let plan = build(&f, &opts()).unwrap();
    assert_eq!(kinds(&plan)[0], "install", "nothing restored by itself");
    for text in [&plan.notes, &plan.closing] {
        assert!(
            text.iter().any(|n| n.contains(
                "sudo cp -a /var/backups/cmx-kms/uninstall-20261205T165731Z/conf/. /usr/share/kms/conf/"
            )),
            "{text:?}"
        );
    }
}
