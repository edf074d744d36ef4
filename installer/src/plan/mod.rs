//! What a run will do: the steps that take the node where it must be,
//! decided from the [`NodeFacts`] that [`crate::detect`] gathered. Nothing
//! here reads or changes the node: [`build`] is a pure function, and the
//! plan rules are unit-tested without rpm (`tests.rs`, on the made-up
//! facts of `test_facts.rs`).

mod kinds;
mod takeover;
#[cfg(test)]
mod test_facts;
#[cfg(test)]
mod tests;

use std::path::PathBuf;

use crate::InstallError;
use crate::detect::NodeFacts;
use crate::legacy::migrate::Migration;
pub use crate::options::Options;
use crate::paths;
use crate::rpm::PackageInfo;

/// The shipped configuration, the template of a migrated one.
pub const TEMPLATE: &str = include_str!("../../../conf/kms.properties");

/// What happens if a check or start fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnFailure {
    /// Configuration incomplete on a new install: say what to configure, exit 0.
    Guide,
    /// Upgrade: reinstall the previous package and configuration.
    Rollback,
    /// Report and exit non-zero.
    Report,
}

/// How a package goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallKind {
    Install,
    Upgrade,
    Downgrade,
}

/// One step of a plan.
#[derive(Clone, Debug)]
pub enum Step {
    /// Copy Tomcat's `conf` and `bin` and the old `/usr/share/kms/conf` to `dest` (node path).
    BackupLegacy {
        dest: String,
    },
    StopService {
        unit: String,
    },
    DisableService {
        unit: String,
    },
    UnlinkWar,
    /// `rpm -e` Tomcat 7's packages.
    EraseTomcat7 {
        packages: Vec<String>,
    },
    /// Copy `/usr/share/kms/conf` to `dest` (node path).
    BackupConf {
        dest: String,
    },
    /// Keep a copy of the package for rollback, then rpm -U.
    InstallPackage {
        file: PathBuf,
        info: PackageInfo,
        kind: InstallKind,
    },
    /// The package is already at this version (an interrupted run installed
    /// it): keep a copy of it for rollback and record it, without rpm.
    KeepPackage {
        file: PathBuf,
        info: PackageInfo,
    },
    WriteMigratedConfig,
    /// Copy a backed-up file (host path) to a node path.
    RestoreFile {
        from: PathBuf,
        to: String,
    },
    /// Replace `/usr/share/kms/conf` by the backup at `from` (node path).
    RestoreConf {
        from: String,
    },
    FinishMigration,
    FixPermissions,
    ReloadUnits,
    Enable,
    CheckConfig {
        on_failure: OnFailure,
    },
    Start {
        restart: bool,
        on_failure: OnFailure,
    },
}

impl Step {
    /// The plan's wording for this step.
    pub fn describe(&self) -> String {
        match self {
            Step::BackupLegacy { dest } => format!(
                "back up Tomcat's conf and bin and {} to {dest} (kept on uninstall)",
                paths::CONF_DIR
            ),
            Step::StopService { unit } => format!("stop the {unit} service"),
            Step::DisableService { unit } => format!("disable the {unit} service at boot"),
            Step::UnlinkWar => format!(
                "unlink {} (Tomcat no longer serves the KMS)",
                paths::KMS_WAR
            ),
            Step::EraseTomcat7 { packages } => {
                format!("remove Tomcat 7: rpm -e {}", packages.join(" "))
            }
            Step::BackupConf { dest } => format!("back up {} to {dest}", paths::CONF_DIR),
            Step::InstallPackage { file, info, kind } => format!(
                "{} {} ({})",
                match kind {
                    InstallKind::Install => "install",
                    InstallKind::Upgrade => "upgrade to",
                    InstallKind::Downgrade => "go back to",
                },
                info,
                file.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            ),
            Step::KeepPackage { info, .. } => format!(
                "{info} is already installed (an earlier run got that far): keep a copy of its package for rollback"
            ),
            Step::WriteMigratedConfig => format!(
                "write {} from the Tomcat node's settings",
                paths::PROPERTIES
            ),
            Step::RestoreFile { to, .. } => format!("put the node's own {to} back"),
            Step::RestoreConf { from } => format!("restore {} from {from}", paths::CONF_DIR),
            Step::FinishMigration => "record that the migration is complete".into(),
            Step::FixPermissions => format!(
                "set owners and modes: {} root:{u} 0750, its files root:{u} 0640, {} {u}:{u} 0750",
                paths::CONF_DIR,
                paths::LOG_DIR,
                u = paths::SERVICE_USER
            ),
            Step::ReloadUnits => "reload the service manager's units".into(),
            Step::Enable => format!("enable the {} service at boot", paths::SERVICE),
            Step::CheckConfig { .. } => format!(
                "check the configuration: cmx-kms check-config -c {}",
                paths::PROPERTIES
            ),
            Step::Start { restart, .. } => format!(
                "{} {} and wait until it is ready",
                if *restart { "restart" } else { "start" },
                paths::SERVICE
            ),
        }
    }
}

/// The previous version an upgrade goes back to if it fails.
#[derive(Clone, Debug)]
pub struct RollbackTarget {
    /// Host path of the kept package file.
    pub file: PathBuf,
    pub info: PackageInfo,
    /// Node path of the configuration backup to restore.
    pub conf_backup: String,
}

/// The plan of one run.
pub struct Plan {
    /// One line: what kind of run this is.
    pub summary: String,
    pub steps: Vec<Step>,
    /// Things the operator should know (printed with the plan).
    pub notes: Vec<String>,
    pub migration: Option<Migration>,
    pub rollback: Option<RollbackTarget>,
    /// Said again at the end of a run that did not fail (after the guidance, if any).
    pub closing: Vec<String>,
    /// Said after a failure, when going back needs more than a re-run.
    pub failure_hint: Option<String>,
}

/// Decide the plan for a node from its facts.
pub fn build(facts: &NodeFacts, opts: &Options) -> Result<Plan, InstallError> {
    let Some((file, info)) = &facts.package else {
        return kinds::rollback(facts, opts);
    };
    if info.name != paths::PACKAGE {
        return Err(InstallError::Package(format!(
            "{} holds the package {}, not {}; nothing was changed",
            file.display(),
            info.name,
            paths::PACKAGE
        )));
    }
    let mut plan = if let Some(legacy) = &facts.legacy {
        takeover::legacy(facts, legacy, opts)?
    } else {
        match &facts.installed {
            None => kinds::fresh(facts, opts)?,
            Some(cur) => match cur.cmp_evr(info) {
                std::cmp::Ordering::Equal => kinds::same_version(facts, opts, cur)?,
                std::cmp::Ordering::Less => kinds::upgrade(facts, opts, cur)?,
                std::cmp::Ordering::Greater => {
                    return Err(InstallError::Refused(format!(
                        "{cur} is installed, newer than the package here ({info}). To go back to the version before it, run \
                         `ckms-install --rollback`. Nothing was changed."
                    )));
                }
            },
        }
    };
    if opts.no_start && plan.steps.iter().any(|s| matches!(s, Step::Start { .. })) {
        plan.steps.retain(|s| !matches!(s, Step::Start { .. }));
        plan.notes.push(format!(
            "--no-start: the service is left stopped; start it with `systemctl start {}` or by running ckms-install again.",
            paths::SERVICE
        ));
    }
    Ok(plan)
}
