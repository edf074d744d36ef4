//! Made-up node facts for the plan rules' tests (`tests.rs`): a systemd
//! node, a package at hand, a legacy Tomcat node, and ways to compare plans.

use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

use super::*;
use crate::detect::{LegacyFacts, PortFacts, ServiceFacts};
use crate::legacy::LegacyNode;
use crate::legacy::server_xml::{Connector, ConnectorForm};
use crate::legacy::setenv::SetEnv;
use crate::paths::Root;
use crate::port::{Holder, Listeners};
use crate::service;

pub(super) fn pkg(version: &str, release: &str) -> PackageInfo {
    PackageInfo {
        name: paths::PACKAGE.into(),
        epoch: 0,
        version: version.into(),
        release: release.into(),
        arch: "x86_64".into(),
    }
}

pub(super) fn opts() -> Options {
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
pub(super) fn facts() -> NodeFacts {
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
        kept_uninstall: None,
    }
}

pub(super) fn installed(f: &mut NodeFacts, version: &str) {
    f.installed = Some(pkg(version, "1"));
    f.installed_in_rpm = f.installed.clone();
    f.kept_current = Some(PathBuf::from(format!(
        "/var/lib/cmx-kms-installer/packages/cmx-kms-server-{version}-1.x86_64.rpm"
    )));
}

pub(super) fn held_by(f: &mut NodeFacts, comm: &str, cmdline: &str) {
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

pub(super) fn legacy_node() -> LegacyNode {
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

pub(super) fn legacy(f: &mut NodeFacts, tomcat: &[(&str, &str)]) {
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
pub(super) fn kinds(plan: &Plan) -> Vec<&'static str> {
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
            Step::KeepPackage { .. } => "keep-package",
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

pub(super) fn refusal(r: Result<Plan, InstallError>) -> String {
    match r {
        Ok(p) => panic!("a plan instead of a refusal: {}", p.summary),
        Err(e) => e.to_string(),
    }
}
