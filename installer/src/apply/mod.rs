//! Carrying out a confirmed plan, step by step, with automatic rollback of a
//! failed upgrade. What each step does is in `steps`.

mod steps;

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::InstallError;
use crate::cmd;
use crate::fsops;
use crate::log::Log;
use crate::paths::{self, Root};
use crate::plan::{InstallKind, Plan, RollbackTarget, Step};
use crate::rpm::Rpm;
use crate::service::{self, ServiceManager};
use crate::state::State;
use steps::{Flow, fix_permissions, install_package, run_step};

/// What the run came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every step done.
    Done,
    /// Installed, but the configuration is incomplete: the operator was told what to set.
    NeedsConfig,
    /// The upgrade failed and the previous version runs again.
    RolledBack,
    /// A step failed; the operator was told what to do.
    Failed,
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(self) -> u8 {
        use crate::error::exit;
        match self {
            Outcome::Done | Outcome::NeedsConfig => exit::OK,
            Outcome::RolledBack => exit::ROLLED_BACK,
            Outcome::Failed => exit::FAILED,
        }
    }
}

/// What a step needs.
pub struct Ctx<'a> {
    pub root: &'a Root,
    pub rpm: &'a Rpm,
    pub svc: &'a dyn ServiceManager,
    pub ready_timeout: Duration,
    pub log: Log,
}

/// The tools both programs act on the node with: its root, its rpm and
/// its service manager. Refused unless `program` runs as root.
pub fn tools(
    program: &'static str,
    root: &Path,
    rpm_nodeps: bool,
    manager: service::Choice,
) -> Result<(Root, Rpm, Box<dyn ServiceManager>), InstallError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(InstallError::NotRoot { program });
    }
    let root = Root::new(root)?;
    let rpm = Rpm::new(&root, rpm_nodeps)?;
    let svc = service::choose(manager, &root)?;
    Ok((root, rpm, svc))
}

/// Run `cmx-kms check-config` of the node, as the service user.
pub fn check_config(root: &Root) -> Result<cmd::Output, InstallError> {
    let ids = service::service_ids(root)?;
    let mut c = cmd::in_root(root, Some(ids), paths::CMX_KMS);
    c.args(["check-config", "-c", paths::PROPERTIES]);
    cmd::output(c, "cmx-kms check-config")
}

/// Before a migration changes anything: refuse (exit 1, nothing changed)
/// when cmx-kms could not use the node's keystore with the migrated
/// configuration ([`crate::legacy::precheck`]).
pub fn preflight(root: &Root, plan: &Plan) -> Result<(), InstallError> {
    let Some(m) = &plan.migration else {
        return Ok(());
    };
    let Err(problems) = crate::legacy::precheck::keystore(root, &m.text) else {
        return Ok(());
    };
    // Resuming an interrupted migration: Tomcat was retired by the first run.
    let fresh = plan
        .steps
        .iter()
        .any(|s| matches!(s, Step::BackupLegacy { .. }));
    Err(InstallError::Refused(format!(
        "cannot take over this Tomcat-based node: cmx-kms could not use its keystore:\n{}\n\
         Fix the old node's keystore or settings (server.xml, {}) and run the installer again. \
         Nothing was changed{}.",
        cmd::indent(&problems.join("\n")),
        paths::PROPERTIES,
        if fresh {
            ": Tomcat still serves the KMS"
        } else {
            " by this run"
        }
    )))
}

/// Prepare the log directory and start logging to the file.
pub fn open_log(ctx: &mut Ctx<'_>) {
    let dir = ctx.root.path(paths::LOG_DIR);
    if !dir.exists() {
        use std::os::unix::fs::DirBuilderExt as _;
        let _ = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(&dir);
    }
    ctx.log.open();
}

/// Apply a confirmed plan.
pub fn apply(ctx: &mut Ctx<'_>, plan: &Plan) -> Outcome {
    open_log(ctx);
    ctx.log.say(&format!("== {}", plan.summary));
    let mut st = match State::load(ctx.root) {
        Ok(s) => s,
        Err(e) => {
            ctx.log.say(&format!("FAILED: {e}"));
            return Outcome::Failed;
        }
    };
    let total = plan.steps.len();
    let mut upgraded = false;
    for (i, step) in plan.steps.iter().enumerate() {
        ctx.log.step(i + 1, total, &step.describe());
        match run_step(ctx, plan, &mut st, step) {
            Ok(Flow::Continue) => {
                if matches!(
                    step,
                    Step::InstallPackage {
                        kind: InstallKind::Upgrade,
                        ..
                    }
                ) {
                    upgraded = true;
                }
            }
            Ok(Flow::Guide(text)) => {
                ctx.log.say(&text);
                closing(ctx, plan);
                return Outcome::NeedsConfig;
            }
            Err(e) => {
                ctx.log.say(&format!("FAILED: {e}"));
                return match (&plan.rollback, upgraded) {
                    (Some(target), true) => rollback(ctx, &mut st, target, &e),
                    _ => {
                        ctx.log.say(&format!(
                            "Stopped at step {}/{total}. Correct the problem above and run the installer again: \
                             steps already done are recognised. The log is in {}.",
                            i + 1,
                            paths::INSTALL_LOG
                        ));
                        if let Some(hint) = &plan.failure_hint {
                            ctx.log.say(hint);
                        }
                        Outcome::Failed
                    }
                };
            }
        }
    }
    closing(ctx, plan);
    ctx.log.say("Done.");
    Outcome::Done
}

/// The last words of a run that did not fail: the plan's closing notes, and
/// after a migration the package's default `jgroups.xml` that rpm set aside.
fn closing(ctx: &mut Ctx<'_>, plan: &Plan) {
    for note in &plan.closing {
        ctx.log.say(&format!("Note: {note}"));
    }
    let rpmnew = format!("{}.rpmnew", paths::JGROUPS);
    if plan.migration.is_some() && ctx.root.path(&rpmnew).exists() {
        ctx.log.say(&format!(
            "Note: {rpmnew} is the package's default jgroups.xml, which rpm set aside beside this node's own \
             {} (restored from the Tomcat node; cmx-kms reads only that one). Compare them (diff {} {rpmnew}) \
             and delete {rpmnew} when you no longer need it.",
            paths::JGROUPS,
            paths::JGROUPS
        ));
    }
}

/// Go back to `target` after a failed upgrade.
fn rollback(
    ctx: &mut Ctx<'_>,
    st: &mut State,
    target: &RollbackTarget,
    why: &InstallError,
) -> Outcome {
    ctx.log.say(&format!(
        "== The upgrade failed; rolling back to {} with the configuration in {}",
        target.info, target.conf_backup
    ));
    let result = (|| -> Result<(), InstallError> {
        ctx.log
            .say(&format!("[rollback 1/5] stop {}", paths::SERVICE));
        if let Err(e) = ctx.svc.stop(paths::SERVICE) {
            ctx.log.say(&format!("    (could not stop it: {e})"));
        }
        ctx.log
            .say(&format!("[rollback 2/5] reinstall {}", target.info));
        install_package(ctx, st, &target.file, InstallKind::Downgrade)?;
        ctx.log.say(&format!(
            "[rollback 3/5] restore {} from {}",
            paths::CONF_DIR,
            target.conf_backup
        ));
        fsops::replace_tree(
            &ctx.root.path(&target.conf_backup),
            &ctx.root.path(paths::CONF_DIR),
        )?;
        ctx.log
            .say("[rollback 4/5] set owners and modes, reload units");
        fix_permissions(ctx)?;
        ctx.svc.reload_units()?;
        ctx.log.say(&format!(
            "[rollback 5/5] start {} and wait until it is ready",
            paths::SERVICE
        ));
        ctx.svc.start(paths::SERVICE, ctx.ready_timeout)
    })();
    match result {
        Ok(()) => {
            ctx.log.say(&format!(
                "ROLLED BACK: the upgrade did not work ({}), so the node went back to {}, which is running and ready again. \
                 Your configuration is as it was before the upgrade. The details are in {}.",
                first_line(why),
                target.info,
                paths::INSTALL_LOG
            ));
            Outcome::RolledBack
        }
        Err(e) => {
            ctx.log.say(&format!(
                "ROLLBACK FAILED: {e}\nThe node needs attention: reinstall {} by hand (rpm -Uvh --oldpackage {}), copy {} back to {}, \
                 and start the service.",
                target.info,
                target.file.display(),
                target.conf_backup,
                paths::CONF_DIR
            ));
            Outcome::Failed
        }
    }
}

fn first_line(e: &InstallError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}
