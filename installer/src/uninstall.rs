//! `ckms-uninstall`: stop and disable the service, erase the package, remove
//! `/usr/share/kms`; keep `/var/log/kms`, a copy of the configuration and a
//! copy of every file `kms.properties` names under `/usr/share/kms` outside
//! `conf/` (a keystore, the audit trail, key files: see [`keep`]).

mod keep;

use std::fs;
use std::time::SystemTime;

use crate::InstallError;
use crate::apply::Ctx;
use crate::apply::open_log;
use crate::fsops;
use crate::paths::{self, Root};
use crate::rpm::Rpm;
use crate::service::ServiceManager;

pub use keep::{FILE_KEYS, Named};

/// One step of an uninstall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Copy `/usr/share/kms/conf` (whose entries are `entries`) to this node path first.
    KeepConf {
        dest: String,
        entries: Vec<String>,
    },
    /// Copy these files (outside `conf/`) to this node path, each under its own path.
    KeepFiles {
        dest: String,
        files: Vec<Named>,
    },
    Stop,
    Disable,
    Erase,
    RemoveAppDir,
    RemoveState,
}

impl Step {
    /// Plan wording: exactly what is kept, and where.
    pub fn describe(&self) -> String {
        match self {
            Step::KeepConf { dest, entries } => format!(
                "keep a copy of {} ({}) in {dest}, readable by root only",
                paths::CONF_DIR,
                if entries.is_empty() {
                    "empty".to_owned()
                } else {
                    entries.join(", ")
                }
            ),
            Step::KeepFiles { dest, files } => format!(
                "keep a copy of the files kms.properties names outside {} (removing {} would delete them): {} \
                 in {dest}, each under its own path, readable by root only",
                paths::CONF_DIR,
                paths::APP_DIR,
                files
                    .iter()
                    .map(|f| format!("{} ({})", f.node, f.why))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Step::Stop => format!("stop the {} service", paths::SERVICE),
            Step::Disable => format!("disable the {} service at boot", paths::SERVICE),
            Step::Erase => format!("remove the package: rpm -e {}", paths::PACKAGE),
            Step::RemoveAppDir => format!(
                "remove {} (with conf and every conf-orig backup)",
                paths::APP_DIR
            ),
            Step::RemoveState => format!(
                "remove {} (the installer's kept packages)",
                paths::STATE_DIR
            ),
        }
    }
}

/// The names in the configuration directory, directories with a `/`.
fn conf_entries(root: &Root) -> Vec<String> {
    let Ok(rd) = fs::read_dir(root.path(paths::CONF_DIR)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            match e.file_type() {
                Ok(t) if t.is_dir() => format!("{n}/"),
                _ => n,
            }
        })
        .collect();
    names.sort();
    names
}

/// The copies an uninstall keeps, in `/var/backups/cmx-kms/uninstall-<time>`.
fn keep_steps(root: &Root) -> Result<Vec<Step>, InstallError> {
    // A new folder: never one an earlier (refused) run of the same second made.
    let base = format!(
        "{}/uninstall-{}",
        paths::BACKUP_DIR,
        crate::clock::stamp(SystemTime::now())
    );
    let dir = (0..)
        .map(|n| match n {
            0 => base.clone(),
            n => format!("{base}.{n}"),
        })
        .find(|d| fs::symlink_metadata(root.path(d)).is_err())
        .unwrap_or(base);
    let mut steps = Vec::new();
    if root.path(paths::CONF_DIR).is_dir() {
        steps.push(Step::KeepConf {
            dest: format!("{dir}/conf"),
            entries: conf_entries(root),
        });
    }
    if root.path(paths::APP_DIR).is_dir() {
        let files = keep::files_to_keep(root)?;
        if !files.is_empty() {
            steps.push(Step::KeepFiles {
                dest: format!("{dir}/files"),
                files,
            });
        }
    }
    Ok(steps)
}

/// The uninstall plan; empty when there is nothing to remove.
pub fn plan(root: &Root, rpm: &Rpm, svc: &dyn ServiceManager) -> Result<Vec<Step>, InstallError> {
    let installed = rpm.installed(paths::PACKAGE)?;
    let mut steps = keep_steps(root)?;
    if svc.is_active(paths::SERVICE)? {
        steps.push(Step::Stop);
    }
    if installed.is_some() {
        if svc.is_enabled(paths::SERVICE)? && svc.name() == "systemd" {
            steps.push(Step::Disable);
        }
        steps.push(Step::Erase);
    }
    if root.path(paths::APP_DIR).exists() {
        steps.push(Step::RemoveAppDir);
    }
    if root.path(paths::STATE_DIR).exists() {
        steps.push(Step::RemoveState);
    }
    Ok(steps)
}

/// The folder of the copies the plan keeps (`.../uninstall-<time>`), if any.
fn kept_dir(steps: &[Step]) -> Option<&str> {
    steps.iter().find_map(|s| match s {
        Step::KeepConf { dest, .. } | Step::KeepFiles { dest, .. } => {
            dest.rsplit_once('/').map(|(d, _)| d)
        }
        _ => None,
    })
}

/// What the plan leaves in place, for the operator: names the copy it keeps.
pub fn kept_note(steps: &[Step]) -> String {
    let files = steps.iter().any(|s| matches!(s, Step::KeepFiles { .. }));
    let copy = kept_dir(steps)
        .map(|dir| {
            let mut s = format!(" A copy of the configuration is kept in {dir}/conf");
            if files {
                s.push_str(&format!(
                    ", and of the files kms.properties names outside it in {dir}/files (under their own paths)"
                ));
            }
            s.push_str(&format!(
                ". To use it again after a new install: sudo cp -a {dir}/conf/. {}/",
                paths::CONF_DIR
            ));
            if files {
                s.push_str(&format!(
                    ", copy each file of {dir}/files back to its path (owner {}, mode 0640)",
                    paths::SERVICE_USER
                ));
            }
            s.push_str(", then run the installer again.");
            s
        })
        .unwrap_or_default();
    format!(
        "Kept: {} (logs, the audit trail and install.log) and the '{}' user and group that own them.{copy} \
         Delete what you no longer need by hand: rm -r {}; userdel {}",
        paths::LOG_DIR,
        paths::SERVICE_USER,
        paths::LOG_DIR,
        paths::SERVICE_USER
    )
}

/// Do one step.
fn run_step(ctx: &mut Ctx<'_>, step: &Step) -> Result<(), InstallError> {
    match step {
        Step::KeepConf { dest, .. } => {
            let host = ctx.root.path(dest);
            let parent = host
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_else(|| host.clone());
            fsops::private_dir(&parent)
                .and_then(|()| fsops::copy_tree(&ctx.root.path(paths::CONF_DIR), &host))
        }
        Step::KeepFiles { dest, files } => {
            let host = ctx.root.path(dest);
            fsops::private_dir(&host)?;
            for f in files {
                keep::copy_file(ctx.root, &f.node, &host).map_err(|e| {
                    InstallError::Refused(format!(
                        "cannot keep a copy of {} ({}): {e}. Nothing was removed: copy it somewhere safe \
                         yourself (or fix the problem) and run ckms-uninstall again",
                        f.node, f.why
                    ))
                })?;
                ctx.log.say(&format!("    {} -> {dest}{}", f.node, f.node));
            }
            Ok(())
        }
        Step::Stop => ctx.svc.stop(paths::SERVICE),
        Step::Disable => ctx.svc.disable(paths::SERVICE),
        Step::Erase => ctx.rpm.erase(&[paths::PACKAGE]).map(|o| {
            let t = o.text();
            if !t.is_empty() {
                ctx.log.say(&crate::cmd::indent(&t));
            }
        }),
        Step::RemoveAppDir => {
            let p = ctx.root.path(paths::APP_DIR);
            fs::remove_dir_all(&p).map_err(InstallError::io("remove", &p))
        }
        Step::RemoveState => {
            let p = ctx.root.path(paths::STATE_DIR);
            fs::remove_dir_all(&p).map_err(InstallError::io("remove", &p))
        }
    }
}

/// Apply the plan; false if a step failed (the operator was told).
pub fn apply(ctx: &mut Ctx<'_>, steps: &[Step]) -> bool {
    open_log(ctx);
    ctx.log.say("== Uninstall cmx-kms");
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        ctx.log.step(i + 1, total, &step.describe());
        if let Err(e) = run_step(ctx, step) {
            if matches!(step, Step::KeepConf { .. } | Step::KeepFiles { .. })
                && let Some(dir) = kept_dir(steps)
            {
                // An incomplete copy would only mislead: the next run makes a new one.
                let _ = fs::remove_dir_all(ctx.root.path(dir));
            }
            ctx.log.say(&format!(
                "FAILED: {e}\nCorrect the problem and run ckms-uninstall again: steps already done are recognised."
            ));
            return false;
        }
    }
    ctx.log.say(&format!("Done. {}", kept_note(steps)));
    true
}
