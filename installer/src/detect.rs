//! The plans for each kind of node: fresh, legacy Tomcat, our own at the same,
//! an older version (upgrade), and a rollback on demand.

use std::path::PathBuf;

use crate::InstallError;
use crate::fsops;
use crate::legacy;
use crate::paths::{self, Root};
use crate::plan::{
    self, InstallKind, OnFailure, Options, Plan, RollbackTarget, Step, check_port, configured_port,
};
use crate::rpm::{PackageInfo, Rpm};
use crate::service::ServiceManager;
use crate::state::{self, State};

const DEFAULT_PORT: u16 = 8443;

/// The port a migrated node will listen on: Tomcat's connector port, unless
/// the old kms.properties already names one.
fn configured_port_legacy(node: &legacy::LegacyNode) -> u16 {
    node.properties
        .iter()
        .find(|(k, _)| k == "kms.server.port")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(node.connector.port)
}

fn tail_steps(
    steps: &mut Vec<Step>,
    svc: &dyn ServiceManager,
    on_failure: OnFailure,
    restart: bool,
) {
    steps.push(Step::FixPermissions);
    if svc.manages_boot() {
        steps.extend([Step::ReloadUnits, Step::Enable]);
    }
    steps.extend([
        Step::CheckConfig { on_failure },
        Step::Start {
            restart,
            on_failure,
        },
    ]);
}

/// A note for plans made without systemd.
fn no_boot_note(svc: &dyn ServiceManager, notes: &mut Vec<String>) {
    if !svc.manages_boot() {
        notes.push(format!(
            "No systemd here: {} runs as a plain process (pid file /run/{}.pid) and nothing starts it at boot.",
            paths::SERVICE,
            paths::SERVICE
        ));
    }
}

/// A node without cmx-kms or the Tomcat-based server.
pub fn fresh_plan(
    opts: &Options,
    svc: &dyn ServiceManager,
    file: PathBuf,
    info: PackageInfo,
) -> Result<Plan, InstallError> {
    check_port(opts, configured_port(&opts.root, DEFAULT_PORT), false)?;
    let mut steps = vec![Step::InstallPackage {
        file,
        info: info.clone(),
        kind: InstallKind::Install,
    }];
    tail_steps(&mut steps, svc, OnFailure::Guide, false);
    let mut notes = vec![format!(
        "The service starts only if {} is complete (keystore, password, HSM); otherwise the installer says what to set.",
        paths::PROPERTIES
    )];
    no_boot_note(svc, &mut notes);
    Ok(Plan {
        summary: format!(
            "New installation of {info} (service manager: {})",
            svc.name()
        ),
        steps,
        notes,
        migration: None,
        rollback: None,
    })
}

/// A Tomcat-based Connected-KMS node (or a migration of one that was interrupted).
pub fn legacy_plan(
    opts: &Options,
    rpm: &Rpm,
    svc: &dyn ServiceManager,
    file: PathBuf,
    info: PackageInfo,
    installed: Option<PackageInfo>,
    resuming: Option<String>,
) -> Result<Plan, InstallError> {
    let root = &opts.root;
    let (base, backup) = match &resuming {
        Some(b) => (Root::new(&root.path(b))?, b.clone()),
        None => (root.clone(), plan::legacy_backup_dir()),
    };
    let node = legacy::read(&base)?;
    let migration =
        legacy::migrate::migrate(&node, plan::TEMPLATE, &plan::migration_header(&backup))
            .map_err(InstallError::Legacy)?;
    check_port(opts, configured_port_legacy(&node), true)?;

    let mut steps = Vec::new();
    let mut notes = vec![format!(
        "Settings are taken over from {} (connector on port {}), {}, {} and {}.",
        paths::SERVER_XML,
        node.connector.port,
        paths::SETENV_SH,
        paths::JGROUPS,
        paths::PROPERTIES
    )];
    notes.extend(migration.notes.iter().cloned());
    if resuming.is_none() {
        steps.push(Step::BackupLegacy {
            dest: backup.clone(),
        });
    } else {
        notes.push(format!(
            "An earlier run was interrupted: the migration goes on from the backup in {backup}."
        ));
    }
    if svc.is_active(paths::TOMCAT_SERVICE)? {
        steps.push(Step::StopService {
            unit: paths::TOMCAT_SERVICE.into(),
        });
    }
    if root.is_system() && svc.name() == "systemd" && svc.is_enabled(paths::TOMCAT_SERVICE)? {
        steps.push(Step::DisableService {
            unit: paths::TOMCAT_SERVICE.into(),
        });
    }
    if std::fs::symlink_metadata(root.path(paths::KMS_WAR)).is_ok() {
        steps.push(Step::UnlinkWar);
    }
    // Tomcat 7's packages: tomcat, tomcat-lib, tomcat-el-2.2-api, ... (not
    // look-alikes such as tomcatjss), all of version 7.x.
    let tomcat7: Vec<PackageInfo> = rpm
        .installed_matching("tomcat*")?
        .into_iter()
        .filter(|p| {
            (p.name == "tomcat" || p.name.starts_with("tomcat-")) && p.version.starts_with("7.")
        })
        .collect();
    if tomcat7.iter().any(|p| p.name == "tomcat") {
        steps.push(Step::EraseTomcat7 {
            packages: tomcat7.iter().map(|p| p.name.clone()).collect(),
        });
    } else if root.path(paths::TOMCAT_DIR).exists() {
        notes.push("Tomcat stays installed, but it no longer serves the KMS: kms.war is unlinked and the tomcat \
                    service stopped and disabled (if it ran); cmx-kms answers on the KMS port."
            .into());
    }
    if resuming.is_none() && root.path(paths::CONF_DIR).exists() {
        steps.push(Step::BackupConf {
            dest: fsops::next_conf_backup(root),
        });
    }
    let kind = if installed.is_some() {
        InstallKind::Upgrade
    } else {
        InstallKind::Install
    };
    steps.push(Step::InstallPackage {
        file,
        info: info.clone(),
        kind,
    });
    steps.push(Step::WriteMigratedConfig);
    if node.has_jgroups {
        steps.push(Step::RestoreFile {
            from: root.path(&format!("{backup}{}", paths::JGROUPS)),
            to: paths::JGROUPS.into(),
        });
    }
    steps.push(Step::FinishMigration);
    tail_steps(&mut steps, svc, OnFailure::Guide, false);
    no_boot_note(svc, &mut notes);
    Ok(Plan {
        summary: format!(
            "Take over this Tomcat-based Connected-KMS node with {info} (service manager: {})",
            svc.name()
        ),
        steps,
        notes,
        migration: Some(migration),
        rollback: None,
    })
}

/// Our package, same version as the one here: repair what is not as it must be.
pub fn same_version_plan(
    opts: &Options,
    svc: &dyn ServiceManager,
    cur: PackageInfo,
) -> Result<Plan, InstallError> {
    let root = &opts.root;
    let mut steps = Vec::new();
    if plan::needs_fixes(root) {
        steps.push(Step::FixPermissions);
    }
    if svc.manages_boot() && !svc.is_enabled(paths::SERVICE)? {
        steps.extend([Step::ReloadUnits, Step::Enable]);
    }
    if !svc.is_active(paths::SERVICE)? && !opts.no_start {
        check_port(opts, configured_port(root, DEFAULT_PORT), false)?;
        steps.push(Step::CheckConfig {
            on_failure: OnFailure::Guide,
        });
        steps.push(Step::Start {
            restart: false,
            on_failure: OnFailure::Report,
        });
    }
    Ok(Plan {
        summary: if steps.is_empty() {
            format!("{cur} is installed, configured and running: nothing to do")
        } else {
            format!("{cur} is installed: finish setting it up")
        },
        steps,
        notes: Vec::new(),
        migration: None,
        rollback: None,
    })
}

/// Our package at an older version.
pub fn upgrade_plan(
    opts: &Options,
    svc: &dyn ServiceManager,
    file: PathBuf,
    info: PackageInfo,
    cur: PackageInfo,
    prev_file: PathBuf,
) -> Result<Plan, InstallError> {
    let root = &opts.root;
    check_port(opts, configured_port(root, DEFAULT_PORT), false)?;
    let backup = fsops::next_conf_backup(root);
    let active = svc.is_active(paths::SERVICE)?;
    let mut steps = vec![
        Step::BackupConf {
            dest: backup.clone(),
        },
        Step::InstallPackage {
            file,
            info: info.clone(),
            kind: InstallKind::Upgrade,
        },
    ];
    tail_steps(&mut steps, svc, OnFailure::Rollback, active);
    Ok(Plan {
        summary: format!("Upgrade {cur} to {info} (service manager: {})", svc.name()),
        steps,
        notes: vec![format!(
            "If the new version fails its configuration check or is not ready within {} s, the installer goes back to {cur} \
             and the configuration in {backup} by itself.",
            opts.ready_timeout.as_secs()
        )],
        migration: None,
        rollback: Some(RollbackTarget {
            file: prev_file,
            info: cur,
            conf_backup: backup,
        }),
    })
}

/// `--rollback`: back to the package installed before the current one.
pub fn rollback_plan(
    opts: &Options,
    rpm: &Rpm,
    svc: &dyn ServiceManager,
    st: &State,
    installed: Option<PackageInfo>,
) -> Result<Plan, InstallError> {
    let root = &opts.root;
    let cur = installed.ok_or_else(|| {
        InstallError::Refused(
            "cmx-kms is not installed: there is nothing to roll back. Nothing was changed.".into(),
        )
    })?;
    let prev = st
        .get(state::key::PREVIOUS)
        .map(|n| root.path(&format!("{}/{n}", paths::PACKAGES_DIR)))
        .filter(|p| p.is_file())
        .ok_or_else(|| InstallError::Refused(format!(
            "ckms-install kept no earlier version than {cur} (in {}): there is nothing to roll back to. Nothing was changed.",
            paths::PACKAGES_DIR
        )))?;
    let conf = st
        .get(state::key::BACKUP)
        .filter(|b| root.path(b).is_dir())
        .map(str::to_owned)
        .ok_or_else(|| InstallError::Refused(format!(
            "the configuration backup of the last upgrade is gone (see {}): restore it by hand. Nothing was changed.",
            paths::CONF_ORIG
        )))?;
    let info = rpm.file_info(&prev)?;
    let mut steps = vec![Step::BackupConf {
        dest: fsops::next_conf_backup(root),
    }];
    if svc.is_active(paths::SERVICE)? {
        steps.push(Step::StopService {
            unit: paths::SERVICE.into(),
        });
    }
    steps.extend([
        Step::InstallPackage {
            file: prev,
            info: info.clone(),
            kind: InstallKind::Downgrade,
        },
        Step::RestoreConf { from: conf.clone() },
        Step::FixPermissions,
        Step::ReloadUnits,
        Step::CheckConfig {
            on_failure: OnFailure::Report,
        },
        Step::Start {
            restart: false,
            on_failure: OnFailure::Report,
        },
    ]);
    Ok(Plan {
        summary: format!(
            "Roll back {cur} to {info} with the configuration in {conf} (service manager: {})",
            svc.name()
        ),
        steps,
        notes: vec!["The current configuration is backed up first, so nothing is lost.".into()],
        migration: None,
        rollback: None,
    })
}
