//! The plan rules, table by table, from made-up facts: no rpm, no root.

use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use super::*;
use crate::detect::{LegacyFacts, PortFacts, RollbackFacts, ServiceFacts};
use crate::legacy::LegacyNode;
use crate::legacy::server_xml::{Connector, ConnectorForm};
use crate::legacy::setenv::SetEnv;
use crate::paths::Root;
use crate::port::{Holder, Listeners};
use crate::service;

fn pkg(version: &str, release: &str) -> PackageInfo {
    PackageInfo {
        name: paths::PACKAGE.into(),
        epoch: 0,
        version: version.into(),
        release: release.into(),
        arch: "x86_64".into(),
    }
}

fn opts() -> Options {
    Options {
        root: Root::new(std::path::Path::new("/")).unwrap(),
        package: None,
        manager: service::Choice::Auto,
        ready_timeout: Duration::from_secs(60),
        rollback: false,
        rpm_nodeps: false,
        no_start: false,
    }
}

/// A systemd node with nothing installed, the package 0.2.0-1 at hand,
/// port 8443 free.
fn facts() -> NodeFacts {
    NodeFacts {
        system_root: true,
        service: ServiceFacts {
            manager: "systemd",
            manages_boot: true,
            active: false,
            enabled: false,
        },
        installed: None,
        installed_in_rpm: None,
        package: Some((PathBuf::from("/tmp/cmx-kms-server.rpm"), pkg("0.2.0", "1"))),
        kept_current: None,
        legacy: None,
        rollback: None,
        port: Some(PortFacts {
            port: 8443,
            listeners: Listeners::default(),
        }),
        needs_fixes: false,
        next_conf_backup: "/usr/share/kms/conf-orig".into(),
    }
}

fn installed(f: &mut NodeFacts, version: &str) {
    f.installed = Some(pkg(version, "1"));
    f.installed_in_rpm = f.installed.clone();
    f.kept_current = Some(PathBuf::from(format!(
        "/var/lib/cmx-kms-installer/packages/cmx-kms-server-{version}-1.x86_64.rpm"
    )));
}

fn held_by(f: &mut NodeFacts, comm: &str, cmdline: &str) {
    if let Some(p) = f.port.as_mut() {
        p.listeners = Listeners {
            in_use: true,
            holders: vec![Holder {
                pid: 42,
                comm: comm.into(),
                cmdline: cmdline.into(),
            }],
        };
    }
}

fn legacy_node() -> LegacyNode {
    LegacyNode {
        connector: Connector {
            port: 8443,
            address: None,
            keystore_file: Some("/usr/share/kms/conf/kmsKeystore.jks".into()),
            keystore_pass: Some(Zeroizing::new("changeit".into())),
            key_alias: Some("kmsServer".into()),
            key_pass: None,
            keystore_type: Some("JKS".into()),
            form: ConnectorForm::Attributes,
        },
        setenv: SetEnv::default(),
        initial_hosts: Vec::new(),
        has_jgroups: true,
        properties: vec![(
            "kms.keystore.password".into(),
            Zeroizing::new("changeit".into()),
        )],
        duplicates: Vec::new(),
        war_target: Some("/opt/kms/kms.war".into()),
    }
}

fn legacy(f: &mut NodeFacts, tomcat: &[(&str, &str)]) {
    f.legacy = Some(LegacyFacts {
        node: legacy_node(),
        backup: "/var/backups/cmx-kms/legacy-20261130".into(),
        resuming: false,
        tomcat_active: true,
        tomcat_enabled: true,
        war_present: true,
        tomcat_packages: tomcat
            .iter()
            .map(|(n, v)| PackageInfo {
                name: (*n).into(),
                epoch: 0,
                version: (*v).into(),
                release: "1.el7".into(),
                arch: "noarch".into(),
            })
            .collect(),
        tomcat_dir: true,
        conf_dir: true,
        migration_header: vec!["header".into()],
    });
}

/// A step's kind, for comparing plans without their data.
fn kinds(plan: &Plan) -> Vec<&'static str> {
    plan.steps
        .iter()
        .map(|s| match s {
            Step::BackupLegacy { .. } => "backup-legacy",
            Step::StopService { .. } => "stop",
            Step::DisableService { .. } => "disable",
            Step::UnlinkWar => "unlink-war",
            Step::EraseTomcat7 { .. } => "erase-tomcat7",
            Step::BackupConf { .. } => "backup-conf",
            Step::InstallPackage { kind, .. } => match kind {
                InstallKind::Install => "install",
                InstallKind::Upgrade => "upgrade",
                InstallKind::Downgrade => "downgrade",
            },
            Step::WriteMigratedConfig => "write-config",
            Step::RestoreFile { .. } => "restore-file",
            Step::RestoreConf { .. } => "restore-conf",
            Step::FinishMigration => "finish-migration",
            Step::FixPermissions => "fix-permissions",
            Step::ReloadUnits => "reload-units",
            Step::Enable => "enable",
            Step::CheckConfig { .. } => "check-config",
            Step::Start { restart: true, .. } => "restart",
            Step::Start { restart: false, .. } => "start",
        })
        .collect()
}

fn refusal(r: Result<Plan, InstallError>) -> String {
    match r {
        Ok(p) => panic!("a plan instead of a refusal: {}", p.summary),
        Err(e) => e.to_string(),
    }
}

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
            "resume an interrupted migration, our package already in rpm",
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
                    "upgrade",
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
