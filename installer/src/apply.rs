//! Carrying out a confirmed plan, step by step, with automatic rollback of a
//! failed upgrade.

use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use crate::InstallError;
use crate::backup;
use crate::cmd;
use crate::fsops;
use crate::log::Log;
use crate::paths::{self, Root};
use crate::plan::{InstallKind, OnFailure, Plan, RollbackTarget, Step};
use crate::rpm::Rpm;
use crate::safefs;
use crate::service::{self, ServiceManager};
use crate::state::{self, State};

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

enum Flow {
    Continue,
    /// The configuration check failed on a new install: stop here, with guidance.
    Guide(String),
}

/// Run `cmx-kms check-config` of the node, as the service user.
pub fn check_config(root: &Root) -> Result<cmd::Output, InstallError> {
    let ids = service::service_ids(root)?;
    let mut c = cmd::in_root(root, Some(ids), paths::CMX_KMS);
    c.args(["check-config", "-c", paths::PROPERTIES]);
    cmd::output(c, "cmx-kms check-config")
}

fn guidance(out: &cmd::Output) -> String {
    format!(
        "cmx-kms is installed but NOT started: its configuration is not complete.\n\
         `cmx-kms check-config` says:\n{}\n\
         What to do next:\n\
         \x20 1. Copy the keystore to {dir}: sudo cp ~/kmsKeystore.jks {dir}/\n\
         \x20 2. Edit {props}: set at least kms.keystore.password and kms.hsm.server.url\n\
         \x20    (with Vault also kms.hsm.protocol=vault and the kms.hsm.vault.* keys; see man kms.properties).\n\
         \x20 3. Check it: sudo cmx-kms check-config\n\
         \x20 4. Run the installer again (sudo ckms-install, or sudo sh CMX-KMS-Installer.sh): it sets the keystore's\n\
         \x20    owner and mode and starts the service.",
        cmd::indent(&out.text()),
        dir = paths::CONF_DIR,
        props = paths::PROPERTIES,
    )
}

fn write_private(path: &Path, data: &[u8]) -> Result<(), InstallError> {
    let tmp = path.with_extension("ckms-new");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(InstallError::io("write", &tmp))?;
    std::io::Write::write_all(&mut f, data).map_err(InstallError::io("write", &tmp))?;
    f.sync_all().map_err(InstallError::io("write", &tmp))?;
    fs::rename(&tmp, path).map_err(InstallError::io("write", path))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Keep a copy of `file` in the package store, rpm it, and record it.
fn install_package(
    ctx: &mut Ctx<'_>,
    st: &mut State,
    file: &Path,
    kind: InstallKind,
) -> Result<(), InstallError> {
    let store = ctx.root.path(paths::PACKAGES_DIR);
    fsops::private_dir(&ctx.root.path(paths::STATE_DIR))?;
    fsops::private_dir(&store)?;
    let name = file_name(file);
    let kept = store.join(&name);
    if kept != file {
        fs::copy(file, &kept).map_err(InstallError::io("keep a copy of", file))?;
    }
    let out = match kind {
        InstallKind::Downgrade => ctx.rpm.downgrade(&kept)?,
        InstallKind::Install | InstallKind::Upgrade => ctx.rpm.upgrade(&kept)?,
    };
    let text = out.text();
    if !text.is_empty() {
        ctx.log.say(&cmd::indent(&text));
    }
    let old = st.get(state::key::CURRENT).map(str::to_owned);
    match kind {
        InstallKind::Downgrade => st.set(state::key::PREVIOUS, None),
        _ if old.as_deref() != Some(name.as_str()) => st.set(state::key::PREVIOUS, old.as_deref()),
        _ => {}
    }
    st.set(state::key::CURRENT, Some(&name));
    st.save(ctx.root)?;
    // Keep only the current and previous packages.
    if let Ok(rd) = fs::read_dir(&store) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if Some(n.as_str()) != st.get(state::key::CURRENT)
                && Some(n.as_str()) != st.get(state::key::PREVIOUS)
            {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    Ok(())
}

fn fix_permissions(ctx: &mut Ctx<'_>) -> Result<(), InstallError> {
    let ids = service::service_ids(ctx.root)?;
    for fix in fsops::permission_fixes(ctx.root, ids) {
        ctx.log.say(&format!("    {}", fix.describe(ids)));
        fsops::apply_fix(ctx.root, &fix)?;
    }
    Ok(())
}

fn backup_legacy(ctx: &mut Ctx<'_>, st: &mut State, dest: &str) -> Result<(), InstallError> {
    let host = ctx.root.path(dest);
    fsops::private_dir(&host)?;
    let tomcat_conf = format!("{}/conf", paths::TOMCAT_DIR);
    let tomcat_bin = format!("{}/bin", paths::TOMCAT_DIR);
    for node in [tomcat_conf.as_str(), tomcat_bin.as_str(), paths::CONF_DIR] {
        let src = fsops::resolve_in_root(ctx.root, node);
        if !src.exists() {
            continue;
        }
        let to = host.join(node.trim_start_matches('/'));
        if let Some(parent) = to.parent() {
            fsops::private_dir(parent)?;
        }
        if to.exists() {
            continue;
        }
        fsops::copy_tree(&src, &to)?;
        ctx.log.say(&format!("    {node} -> {dest}{node}"));
    }
    st.set(state::key::MIGRATION, Some(dest));
    st.save(ctx.root)
}

fn unlink_war(ctx: &mut Ctx<'_>, st: &State) -> Result<(), InstallError> {
    let war = ctx.root.path(paths::KMS_WAR);
    if let Ok(t) = fs::read_link(&war) {
        ctx.log.say(&format!(
            "    {} pointed to {}",
            paths::KMS_WAR,
            t.display()
        ));
    }
    match st.get(state::key::MIGRATION) {
        Some(b) => {
            let to = ctx.root.path(&format!("{b}{}", paths::KMS_WAR));
            if let Some(parent) = to.parent() {
                fsops::private_dir(parent)?;
            }
            fs::rename(&war, &to).map_err(InstallError::io("move", &war))?;
            ctx.log.say(&format!("    moved to {b}{}", paths::KMS_WAR));
            Ok(())
        }
        None => fs::remove_file(&war).map_err(InstallError::io("unlink", &war)),
    }
}

/// Copy the configuration directory to `dest` and prune the older backups
/// (never one a later step or a rollback restores).
fn backup_conf(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    st: &mut State,
    dest: &str,
) -> Result<(), InstallError> {
    let root = ctx.root;
    let to = root.path(dest);
    fsops::copy_tree(&root.path(paths::CONF_DIR), &to)?;
    // The backup a later step or a rollback restores is never pruned.
    let mut keep: Vec<&str> = vec![dest];
    keep.extend(st.get(state::key::BACKUP));
    keep.extend(plan.rollback.as_ref().map(|r| r.conf_backup.as_str()));
    keep.extend(plan.steps.iter().filter_map(|s| match s {
        Step::RestoreConf { from } => Some(from.as_str()),
        _ => None,
    }));
    for gone in backup::prune_and_tighten(root, &keep)? {
        ctx.log.say(&format!(
            "    removed the old backup {gone} (the {} newest are kept)",
            backup::KEEP_CONF_BACKUPS
        ));
    }
    st.set(state::key::BACKUP, Some(dest));
    st.save(root)
}

/// Write the configuration migrated from the legacy node.
fn write_migrated_config(root: &Root, plan: &Plan) -> Result<(), InstallError> {
    let m = plan
        .migration
        .as_ref()
        .ok_or_else(|| InstallError::Legacy("no migrated configuration".into()))?;
    write_private(&root.path(paths::PROPERTIES), m.text.as_bytes())?;
    // The package's new default, if rpm set it aside, is what the
    // migrated file was made from: it would only confuse.
    let rpmnew = root.path(&format!("{}.rpmnew", paths::PROPERTIES));
    if rpmnew.exists() {
        fs::remove_file(&rpmnew).map_err(InstallError::io("remove", &rpmnew))?;
    }
    Ok(())
}

/// `cmx-kms check-config` on the new configuration: the guidance to show
/// when it fails and the plan says to guide, an error when it says to stop.
fn check_config_step(root: &Root, on_failure: OnFailure) -> Result<Option<String>, InstallError> {
    let out = check_config(root)?;
    if out.ok() {
        return Ok(None);
    }
    if on_failure == OnFailure::Guide {
        return Ok(Some(guidance(&out)));
    }
    Err(InstallError::Service(format!(
        "`cmx-kms check-config` failed ({}):\n{}",
        out.status(),
        cmd::indent(&out.text())
    )))
}

fn run_step(
    ctx: &mut Ctx<'_>,
    plan: &Plan,
    st: &mut State,
    step: &Step,
) -> Result<Flow, InstallError> {
    let root = ctx.root;
    match step {
        Step::BackupLegacy { dest } => backup_legacy(ctx, st, dest)?,
        Step::StopService { unit } => ctx.svc.stop(unit)?,
        Step::DisableService { unit } => ctx.svc.disable(unit)?,
        Step::UnlinkWar => unlink_war(ctx, st)?,
        Step::EraseTomcat7 { packages } => {
            let names: Vec<&str> = packages.iter().map(String::as_str).collect();
            let out = ctx.rpm.erase(&names)?;
            ctx.log.say(&cmd::indent(&out.text()));
        }
        Step::BackupConf { dest } => backup_conf(ctx, plan, st, dest)?,
        Step::InstallPackage { file, kind, .. } => install_package(ctx, st, file, *kind)?,
        Step::WriteMigratedConfig => write_migrated_config(root, plan)?,
        Step::RestoreFile { from, to } => {
            // From the private backup, not following a link; modes are set by FixPermissions.
            let data = zeroize::Zeroizing::new(safefs::read_nofollow(from)?);
            write_private(&root.path(to), &data)?;
        }
        Step::RestoreConf { from } => {
            fsops::replace_tree(&root.path(from), &root.path(paths::CONF_DIR))?
        }
        Step::FinishMigration => {
            st.set(state::key::MIGRATION, None);
            st.save(root)?;
        }
        Step::FixPermissions => fix_permissions(ctx)?,
        Step::ReloadUnits => ctx.svc.reload_units()?,
        Step::Enable => ctx.svc.enable(paths::SERVICE)?,
        Step::CheckConfig { on_failure } => {
            if let Some(guide) = check_config_step(root, *on_failure)? {
                return Ok(Flow::Guide(guide));
            }
        }
        Step::Start { restart, .. } => {
            if *restart {
                ctx.svc.restart(paths::SERVICE, ctx.ready_timeout)?;
            } else {
                ctx.svc.start(paths::SERVICE, ctx.ready_timeout)?;
            }
            ctx.log
                .say(&format!("    {} is running and ready", paths::SERVICE));
        }
    }
    Ok(Flow::Continue)
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
                        Outcome::Failed
                    }
                };
            }
        }
    }
    ctx.log.say("Done.");
    Outcome::Done
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
