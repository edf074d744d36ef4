//! The plan of a Tomcat-based Connected-KMS node to take over (or a
//! migration of one that was interrupted): back up, retire Tomcat, put the
//! package on, write the migrated configuration. Pure: everything comes from
//! the facts.

use crate::InstallError;
use crate::detect::{LegacyFacts, NodeFacts};
use crate::legacy;
use crate::paths;
use crate::rpm::PackageInfo;

use super::kinds::{check_port, no_boot_note, package, tail_steps};
use super::{InstallKind, OnFailure, Options, Plan, Step, TEMPLATE};

/// What a failed migration says: the node no longer runs Tomcat's KMS.
fn legacy_failure_hint(backup: &str) -> String {
    format!(
        "Tomcat no longer serves the KMS on this node. Fix the problem and run the installer again, or go back \
         to the Tomcat node by hand: \"Going back to the Tomcat node\" in /usr/share/doc/{}/operations.md \
         (Tomcat's files and kms.war are in {backup}); ckms-install --rollback cannot do it.",
        paths::PACKAGE
    )
}

/// A Tomcat-based Connected-KMS node (or a migration of one that was interrupted).
pub(super) fn legacy(
    facts: &NodeFacts,
    l: &LegacyFacts,
    opts: &Options,
) -> Result<Plan, InstallError> {
    let migration = legacy::migrate::migrate(&l.node, TEMPLATE, &l.migration_header)
        .map_err(InstallError::Legacy)?;
    check_port(facts, true)?;
    let (file, info) = package(facts)?;
    let backup = &l.backup;
    let mut steps = Vec::new();
    let mut notes = vec![format!(
        "Settings are taken over from {} (connector on port {}), {}, {} and {}.",
        paths::SERVER_XML,
        l.node.connector.port,
        paths::SETENV_SH,
        paths::JGROUPS,
        paths::PROPERTIES
    )];
    notes.extend(migration.notes.iter().cloned());
    if l.resuming {
        notes.push(format!(
            "An earlier run was interrupted: the migration goes on from the backup in {backup}."
        ));
    } else {
        steps.push(Step::BackupLegacy {
            dest: backup.clone(),
        });
    }
    retire_tomcat(l, &mut steps, &mut notes);
    if !l.resuming && l.conf_dir {
        steps.push(Step::BackupConf {
            dest: facts.next_conf_backup.clone(),
        });
    }
    steps.push(legacy_package_step(facts, file, &info)?);
    steps.push(Step::WriteMigratedConfig);
    if l.node.has_jgroups {
        steps.push(Step::RestoreFile {
            from: opts.root.path(&format!("{backup}{}", paths::JGROUPS)),
            to: paths::JGROUPS.into(),
        });
    }
    steps.push(Step::FinishMigration);
    // Tomcat is retired by now: a configuration check that fails is a
    // failure, not a new node to finish setting up.
    tail_steps(&mut steps, facts, OnFailure::Report, false);
    no_boot_note(facts, &mut notes);
    Ok(Plan {
        summary: format!(
            "Take over this Tomcat-based Connected-KMS node with {info} (service manager: {})",
            facts.service.manager
        ),
        steps,
        notes,
        migration: Some(migration),
        rollback: None,
        closing: Vec::new(),
        failure_hint: Some(legacy_failure_hint(backup)),
    })
}

/// How a migration puts the package on: installed, upgraded over the Java
/// package, or, when an interrupted run already installed this very
/// version, only kept for rollback (rpm would refuse "already installed").
fn legacy_package_step(
    facts: &NodeFacts,
    file: std::path::PathBuf,
    info: &PackageInfo,
) -> Result<Step, InstallError> {
    let Some(cur) = &facts.installed_in_rpm else {
        return Ok(Step::InstallPackage {
            file,
            info: info.clone(),
            kind: InstallKind::Install,
        });
    };
    match cur.cmp_evr(info) {
        std::cmp::Ordering::Equal => Ok(Step::KeepPackage {
            file,
            info: info.clone(),
        }),
        std::cmp::Ordering::Less => Ok(Step::InstallPackage {
            file,
            info: info.clone(),
            kind: InstallKind::Upgrade,
        }),
        std::cmp::Ordering::Greater => Err(InstallError::Refused(format!(
            "{cur} is installed, newer than the package here ({info}), while a migration from Tomcat is not finished. \
             Run the installer that came with {cur} to finish the migration. Nothing was changed."
        ))),
    }
}

/// Take Tomcat out of serving the KMS: stop and disable its service, unlink
/// `kms.war`, and remove Tomcat 7's packages (another Tomcat stays).
fn retire_tomcat(l: &LegacyFacts, steps: &mut Vec<Step>, notes: &mut Vec<String>) {
    if l.tomcat_active {
        steps.push(Step::StopService {
            unit: paths::TOMCAT_SERVICE.into(),
        });
    }
    if l.tomcat_enabled {
        steps.push(Step::DisableService {
            unit: paths::TOMCAT_SERVICE.into(),
        });
    }
    if l.war_present {
        steps.push(Step::UnlinkWar);
    }
    // Tomcat 7's packages: tomcat, tomcat-lib, tomcat-el-2.2-api, ... (not
    // look-alikes such as tomcatjss), all of version 7.x.
    let tomcat7: Vec<&PackageInfo> = l
        .tomcat_packages
        .iter()
        .filter(|p| {
            (p.name == "tomcat" || p.name.starts_with("tomcat-")) && p.version.starts_with("7.")
        })
        .collect();
    if tomcat7.iter().any(|p| p.name == "tomcat") {
        steps.push(Step::EraseTomcat7 {
            packages: tomcat7.iter().map(|p| p.name.clone()).collect(),
        });
    } else if l.tomcat_dir {
        notes.push("Tomcat stays installed, but it no longer serves the KMS: kms.war is unlinked and the tomcat \
                    service stopped and disabled (if it ran); cmx-kms answers on the KMS port."
            .into());
    }
}
