//! `ckms-uninstall`: stop and disable the service, erase the package, remove
//! `/usr/share/kms`; keep `/var/log/kms` (and a copy of the configuration).

use std::fs;
use std::time::SystemTime;

use crate::InstallError;
use crate::apply::Ctx;
use crate::apply::open_log;
use crate::fsops;
use crate::paths::{self, Root};
use crate::rpm::Rpm;
use crate::service::ServiceManager;

/// One step of an uninstall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Copy `/usr/share/kms/conf` to this node path first.
    KeepConf {
        dest: String,
    },
    Stop,
    Disable,
    Erase,
    RemoveAppDir,
    RemoveState,
}

impl Step {
    /// Plan wording.
    pub fn describe(&self) -> String {
        match self {
            Step::KeepConf { dest } => format!(
                "keep a copy of {} (keystore, kms.properties) in {dest}, readable by root only",
                paths::CONF_DIR
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

/// The uninstall plan; empty when there is nothing to remove.
pub fn plan(root: &Root, rpm: &Rpm, svc: &dyn ServiceManager) -> Result<Vec<Step>, InstallError> {
    let mut steps = Vec::new();
    let installed = rpm.installed(paths::PACKAGE)?;
    if root.path(paths::CONF_DIR).is_dir() {
        steps.push(Step::KeepConf {
            dest: format!(
                "{}/uninstall-{}/conf",
                paths::BACKUP_DIR,
                crate::clock::stamp(SystemTime::now())
            ),
        });
    }
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

/// What the plan leaves in place, for the operator.
pub fn kept_note() -> String {
    format!(
        "Kept: {} (logs, the audit trail and install.log) and the '{}' user and group that own them. \
         Delete them by hand if you no longer need them: rm -r {}; userdel {}",
        paths::LOG_DIR,
        paths::SERVICE_USER,
        paths::LOG_DIR,
        paths::SERVICE_USER
    )
}

/// Apply the plan; false if a step failed (the operator was told).
pub fn apply(ctx: &mut Ctx<'_>, steps: &[Step]) -> bool {
    open_log(ctx);
    ctx.log.say("== Uninstall cmx-kms");
    let total = steps.len();
    for (i, step) in steps.iter().enumerate() {
        ctx.log.step(i + 1, total, &step.describe());
        let r = match step {
            Step::KeepConf { dest } => {
                let host = ctx.root.path(dest);
                let parent = host
                    .parent()
                    .map(std::path::Path::to_path_buf)
                    .unwrap_or_else(|| host.clone());
                fsops::private_dir(&parent)
                    .and_then(|()| fsops::copy_tree(&ctx.root.path(paths::CONF_DIR), &host))
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
        };
        if let Err(e) = r {
            ctx.log.say(&format!(
                "FAILED: {e}\nCorrect the problem and run ckms-uninstall again: steps already done are recognised."
            ));
            return false;
        }
    }
    ctx.log.say(&format!("Done. {}", kept_note()));
    true
}
