//! What a run will do: the node's state, and the steps that take it where it
//! must be. Nothing here changes the node.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::InstallError;
use crate::fsops;
use crate::legacy::{self, migrate::Migration};
use crate::log;
use crate::paths::{self, Root};
use crate::port;
use crate::rpm::{PackageInfo, Rpm};
use crate::service::{self, ServiceManager};
use crate::state::{self, State};

/// The shipped configuration, the template of a migrated one.
pub const TEMPLATE: &str = include_str!("../../conf/kms.properties");

/// The command line of `ckms-install`, as the plan needs it.
#[derive(Clone, Debug)]
pub struct Options {
    pub root: Root,
    /// The package to install; by default the `cmx-kms-server-*.rpm` next to the program.
    pub package: Option<PathBuf>,
    pub manager: service::Choice,
    pub ready_timeout: Duration,
    /// Go back to the previous version instead of installing.
    pub rollback: bool,
    /// Pass `--nodeps` to rpm (scratch roots only).
    pub rpm_nodeps: bool,
    /// Install and configure, but leave the service stopped (no port check either).
    pub no_start: bool,
}

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
}

/// The package file: `--package`, or the single `cmx-kms-server-*.rpm` next to the program.
pub fn find_package(given: Option<&Path>) -> Result<PathBuf, InstallError> {
    if let Some(p) = given {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(InstallError::Package(format!(
                "--package {}: no such file; nothing was changed",
                p.display()
            )))
        };
    }
    let exe = std::env::current_exe()
        .map_err(|e| InstallError::Package(format!("cannot locate ckms-install itself: {e}")))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(InstallError::io("read", dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cmx-kms-server-") && n.ends_with(".rpm"))
        })
        .collect();
    found.sort();
    match found.len() {
        1 => Ok(found.swap_remove(0)),
        0 => Err(InstallError::Package(format!(
            "no cmx-kms-server-*.x86_64.rpm next to ckms-install in {}: the package is incomplete. \
             Extract cmx-kms-server-rpm.tar.gz again (it holds the RPM, ckms-install, ckms-uninstall, \
             CMX-KMS-Installer.sh and CMX-KMS-Uninstaller.sh) and run CMX-KMS-Installer.sh from there. Nothing was changed.",
            dir.display()
        ))),
        _ => Err(InstallError::Package(format!(
            "several cmx-kms-server packages in {}: keep one, or name it with --package. Nothing was changed.",
            dir.display()
        ))),
    }
}

/// The port the service will listen on: `kms.server.port` of the node's
/// configuration, else `fallback` (the legacy connector's port, or 8443).
pub fn configured_port(root: &Root, fallback: u16) -> u16 {
    std::fs::read(root.path(paths::PROPERTIES))
        .ok()
        .and_then(|b| {
            let d = cmx_kms::config::properties::decode(&b);
            cmx_kms::config::properties::lex(&d.text)
                .entries
                .into_iter()
                .rev()
                .find(|e| e.key == "kms.server.port")
                .and_then(|e| e.value.trim().parse().ok())
        })
        .unwrap_or(fallback)
}

/// Refuse if `port` is held by something other than cmx-kms (or, when
/// migrating, the Tomcat about to be stopped). Skipped with `--no-start`.
pub fn check_port(opts: &Options, port: u16, tomcat_ok: bool) -> Result<(), InstallError> {
    if opts.no_start {
        return Ok(());
    }
    let l = port::listeners(port);
    if !l.in_use {
        return Ok(());
    }
    let foreign: Vec<_> = l
        .holders
        .iter()
        .filter(|h| !(h.is_cmx_kms() || (tomcat_ok && h.is_tomcat())))
        .collect();
    if l.holders.is_empty() || !foreign.is_empty() {
        let who = if foreign.is_empty() {
            "a process the installer cannot identify".to_owned()
        } else {
            foreign
                .iter()
                .map(|h| {
                    format!(
                        "pid {} ({})",
                        h.pid,
                        if h.cmdline.is_empty() {
                            &h.comm
                        } else {
                            &h.cmdline
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(InstallError::PortTaken(format!(
            "port {port}, where cmx-kms must listen, is taken by {who}. Stop that program (or set kms.server.port \
             in {} to another port) and run the installer again. Nothing was changed.",
            paths::PROPERTIES
        )));
    }
    Ok(())
}

fn kept_package(root: &Root, state: &State, key: &str) -> Option<PathBuf> {
    let name = state.get(key)?;
    let p = root.path(&format!("{}/{name}", paths::PACKAGES_DIR));
    p.is_file().then_some(p)
}

/// Work out the plan for this node.
pub fn build(opts: &Options, rpm: &Rpm, svc: &dyn ServiceManager) -> Result<Plan, InstallError> {
    let root = &opts.root;
    let st = State::load(root)?;
    let installed = rpm.installed(paths::PACKAGE)?;
    let ours_installed = installed.is_some() && root.path(paths::CMX_KMS).exists();
    if opts.rollback {
        return crate::detect::rollback_plan(
            opts,
            rpm,
            svc,
            &st,
            installed.filter(|_| ours_installed),
        );
    }
    let file = find_package(opts.package.as_deref())?;
    let info = rpm.file_info(&file)?;
    if info.name != paths::PACKAGE {
        return Err(InstallError::Package(format!(
            "{} holds the package {}, not {}; nothing was changed",
            file.display(),
            info.name,
            paths::PACKAGE
        )));
    }
    let migrating = st.get(state::key::MIGRATION).map(str::to_owned);
    let mut plan = if migrating.is_some() || (!ours_installed && legacy::detect(root)) {
        crate::detect::legacy_plan(opts, rpm, svc, file, info, installed, migrating)?
    } else {
        by_version(
            opts,
            svc,
            &st,
            file,
            info,
            installed.filter(|_| ours_installed),
        )?
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

fn by_version(
    opts: &Options,

    svc: &dyn ServiceManager,
    st: &State,
    file: PathBuf,
    info: PackageInfo,
    installed: Option<PackageInfo>,
) -> Result<Plan, InstallError> {
    let root = &opts.root;
    match installed {
        None => crate::detect::fresh_plan(opts, svc, file, info),
        Some(cur) => match cur.cmp_evr(&info) {
            std::cmp::Ordering::Equal => crate::detect::same_version_plan(opts, svc, cur),
            std::cmp::Ordering::Less => {
                let prev = kept_package(root, st, state::key::CURRENT).ok_or_else(|| {
                    InstallError::Refused(format!(
                        "{cur} is installed, but ckms-install kept no copy of its package, so a failed upgrade could not be rolled back. \
                         Put its RPM file (cmx-kms-server-{}.x86_64.rpm) in {} and run the installer again. Nothing was changed.",
                        cur.vr(),
                        paths::PACKAGES_DIR
                    ))
                })?;
                crate::detect::upgrade_plan(opts, svc, file, info, cur, prev)
            }
            std::cmp::Ordering::Greater => Err(InstallError::Refused(format!(
                "{cur} is installed, newer than the package here ({info}). To go back to the version before it, run \
                 `ckms-install --rollback`. Nothing was changed."
            ))),
        },
    }
}

/// Header lines of a migrated configuration.
pub fn migration_header(backup: &str) -> Vec<String> {
    vec![
        format!(
            "Written by ckms-install on {} from the Tomcat-based Connected-KMS of this node.",
            log::timestamp(SystemTime::now())
        ),
        format!(
            "The original files are kept, untouched, in {backup} and {}.",
            paths::CONF_ORIG
        ),
    ]
}

/// Node path of a new legacy backup.
pub fn legacy_backup_dir() -> String {
    format!(
        "{}/legacy-{}",
        paths::BACKUP_DIR,
        log::stamp(SystemTime::now())
    )
}

/// Does the root need any owner or mode change?
pub fn needs_fixes(root: &Root) -> bool {
    match service::service_ids(root) {
        Ok(ids) => !fsops::permission_fixes(root, ids).is_empty(),
        Err(_) => true,
    }
}
