//! The plan of each kind of node: fresh, our own at the same version, at an
//! older one (upgrade), and a rollback on demand (a Tomcat-based node to take
//! over: `takeover`). Pure: everything comes from the facts.

use crate::InstallError;
use crate::detect::NodeFacts;
use crate::paths;
use crate::rpm::PackageInfo;

use super::{InstallKind, OnFailure, Options, Plan, RollbackTarget, Step};

/// Refuse if the service's port is held by something other than cmx-kms
/// (or, when migrating, the Tomcat about to be stopped). No port facts
/// (`--no-start`): nothing to check.
pub(super) fn check_port(facts: &NodeFacts, tomcat_ok: bool) -> Result<(), InstallError> {
    let Some(p) = &facts.port else {
        return Ok(());
    };
    if !p.listeners.in_use {
        return Ok(());
    }
    let foreign: Vec<_> = p
        .listeners
        .holders
        .iter()
        .filter(|h| !(h.is_cmx_kms() || (tomcat_ok && h.is_tomcat())))
        .collect();
    if !p.listeners.holders.is_empty() && foreign.is_empty() {
        return Ok(());
    }
    let who = if foreign.is_empty() {
        "a process the installer cannot identify".to_owned()
    } else {
        foreign
            .iter()
            .map(|h| {
                let what = if h.cmdline.is_empty() {
                    &h.comm
                } else {
                    &h.cmdline
                };
                format!("pid {} ({what})", h.pid)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    Err(InstallError::PortTaken(format!(
        "port {}, where cmx-kms must listen, is taken by {who}. Stop that program (or set kms.server.port \
         in {} to another port) and run the installer again. Nothing was changed.",
        p.port,
        paths::PROPERTIES
    )))
}

pub(super) fn tail_steps(
    steps: &mut Vec<Step>,
    facts: &NodeFacts,
    on_failure: OnFailure,
    restart: bool,
) {
    steps.push(Step::FixPermissions);
    if facts.service.manages_boot {
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
pub(super) fn no_boot_note(facts: &NodeFacts, notes: &mut Vec<String>) {
    if !facts.service.manages_boot {
        notes.push(format!(
            "No systemd here: {} runs as a plain process (pid file /run/{}.pid) and nothing starts it at boot.",
            paths::SERVICE,
            paths::SERVICE
        ));
    }
}

/// The package to install; the caller has checked there is one.
pub(super) fn package(
    facts: &NodeFacts,
) -> Result<(std::path::PathBuf, PackageInfo), InstallError> {
    facts
        .package
        .clone()
        .ok_or_else(|| InstallError::Package("no package to install".into()))
}

/// A node without cmx-kms or the Tomcat-based server.
pub(super) fn fresh(facts: &NodeFacts, _opts: &Options) -> Result<Plan, InstallError> {
    check_port(facts, false)?;
    let (file, info) = package(facts)?;
    let mut steps = vec![Step::InstallPackage {
        file,
        info: info.clone(),
        kind: InstallKind::Install,
    }];
    tail_steps(&mut steps, facts, OnFailure::Guide, false);
    let mut notes = vec![format!(
        "The service starts only if {} is complete (keystore, password, HSM); otherwise the installer says what to set.",
        paths::PROPERTIES
    )];
    no_boot_note(facts, &mut notes);
    let closing: Vec<String> = facts
        .kept_uninstall
        .iter()
        .map(|k| restore_hint(k))
        .collect();
    notes.extend(closing.iter().cloned());
    Ok(Plan {
        summary: format!(
            "New installation of {info} (service manager: {})",
            facts.service.manager
        ),
        steps,
        notes,
        migration: None,
        rollback: None,
        closing,
        failure_hint: None,
    })
}

/// Where an earlier uninstall's copy is and how to use it (never restored by itself).
fn restore_hint(kept: &str) -> String {
    format!(
        "ckms-uninstall kept the configuration of an earlier installation in {kept}/conf (and, in {kept}/files, \
         if it exists, the files it named outside that folder, under their own paths). This installation does not \
         use it. To use it: sudo cp -a {kept}/conf/. {}/ (and copy the files of {kept}/files back to their paths, \
         owner {}), then run the installer again: it sets owners and modes, checks and starts the service.",
        paths::CONF_DIR,
        paths::SERVICE_USER
    )
}

/// Our package, same version as the one here: repair what is not as it must be.
pub(super) fn same_version(
    facts: &NodeFacts,
    opts: &Options,
    cur: &PackageInfo,
) -> Result<Plan, InstallError> {
    let mut steps = Vec::new();
    if facts.needs_fixes {
        steps.push(Step::FixPermissions);
    }
    if facts.service.manages_boot && !facts.service.enabled {
        steps.extend([Step::ReloadUnits, Step::Enable]);
    }
    if !facts.service.active {
        if !opts.no_start {
            check_port(facts, false)?;
        }
        steps.push(Step::CheckConfig {
            on_failure: OnFailure::Guide,
        });
        if !opts.no_start {
            steps.push(Step::Start {
                restart: false,
                on_failure: OnFailure::Report,
            });
        }
    }
    let summary = if steps.is_empty() {
        format!("{cur} is installed, configured and running: nothing to do")
    } else if !facts.service.active && opts.no_start {
        format!(
            "{cur} is installed and not running; --no-start: check its configuration, leave it stopped"
        )
    } else {
        format!("{cur} is installed: finish setting it up")
    };
    Ok(Plan {
        summary,
        steps,
        notes: Vec::new(),
        migration: None,
        rollback: None,
        closing: Vec::new(),
        failure_hint: None,
    })
}

/// Our package at an older version.
pub(super) fn upgrade(
    facts: &NodeFacts,
    opts: &Options,
    cur: &PackageInfo,
) -> Result<Plan, InstallError> {
    let prev_file = facts.kept_current.clone().ok_or_else(|| {
        InstallError::Refused(format!(
            "{cur} is installed, but ckms-install kept no copy of its package, so a failed upgrade could not be rolled back. \
             Put its RPM file (cmx-kms-server-{}.x86_64.rpm) in {} and run the installer again. Nothing was changed.",
            cur.vr(),
            paths::PACKAGES_DIR
        ))
    })?;
    check_port(facts, false)?;
    let (file, info) = package(facts)?;
    let backup = facts.next_conf_backup.clone();
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
    tail_steps(&mut steps, facts, OnFailure::Rollback, facts.service.active);
    Ok(Plan {
        summary: format!(
            "Upgrade {cur} to {info} (service manager: {})",
            facts.service.manager
        ),
        steps,
        notes: vec![format!(
            "If the new version fails its configuration check or is not ready within {} s, the installer goes back to {cur} \
             and the configuration in {backup} by itself.",
            opts.ready_timeout.as_secs()
        )],
        migration: None,
        rollback: Some(RollbackTarget {
            file: prev_file,
            info: cur.clone(),
            conf_backup: backup,
        }),
        closing: Vec::new(),
        failure_hint: None,
    })
}

/// `--rollback`: back to the package installed before the current one.
pub(super) fn rollback(facts: &NodeFacts, _opts: &Options) -> Result<Plan, InstallError> {
    let cur = facts.installed.clone().ok_or_else(|| {
        InstallError::Refused(
            "cmx-kms is not installed: there is nothing to roll back. Nothing was changed.".into(),
        )
    })?;
    let r = facts
        .rollback
        .clone()
        .unwrap_or(crate::detect::RollbackFacts {
            previous: None,
            conf_backup: None,
        });
    let (prev, info) = r.previous.ok_or_else(|| InstallError::Refused(format!(
        "ckms-install kept no earlier version than {cur} (in {}): there is nothing to roll back to. Nothing was changed.",
        paths::PACKAGES_DIR
    )))?;
    let conf = r.conf_backup.ok_or_else(|| InstallError::Refused(format!(
        "the configuration backup of the last upgrade is gone (see {}): restore it by hand. Nothing was changed.",
        paths::CONF_ORIG
    )))?;
    let mut steps = vec![Step::BackupConf {
        dest: facts.next_conf_backup.clone(),
    }];
    if facts.service.active {
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
            facts.service.manager
        ),
        steps,
        notes: vec!["The current configuration is backed up first, so nothing is lost.".into()],
        migration: None,
        rollback: None,
        closing: Vec::new(),
        failure_hint: None,
    })
}
