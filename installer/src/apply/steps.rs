//! What each step of a plan does on the node (`run_step`), and the
//! guidance shown when a new install's configuration is not complete.

use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use super::{Ctx, check_config};
use crate::InstallError;
use crate::backup;
use crate::cmd;
use crate::fsops;
use crate::paths::{self, Root};
use crate::plan::{InstallKind, OnFailure, Plan, Step};
use crate::safefs;
use crate::service;
use crate::state::{self, State};

pub(super) enum Flow {
    Continue,
    /// The configuration check failed on a new install: stop here, with guidance.
    Guide(String),
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

/// Keep a copy of `file` in the package store (for a rollback); its name there.
fn keep_copy(ctx: &Ctx<'_>, file: &Path) -> Result<(String, std::path::PathBuf), InstallError> {
    let store = ctx.root.path(paths::PACKAGES_DIR);
    fsops::private_dir(&ctx.root.path(paths::STATE_DIR))?;
    fsops::private_dir(&store)?;
    let name = file_name(file);
    let kept = store.join(&name);
    if kept != file {
        fs::copy(file, &kept).map_err(InstallError::io("keep a copy of", file))?;
    }
    Ok((name, kept))
}

/// Keep a copy of `file` in the package store, rpm it, and record it.
pub(super) fn install_package(
    ctx: &mut Ctx<'_>,
    st: &mut State,
    file: &Path,
    kind: InstallKind,
) -> Result<(), InstallError> {
    let (name, kept) = keep_copy(ctx, file)?;
    let out = match kind {
        InstallKind::Downgrade => ctx.rpm.downgrade(&kept)?,
        InstallKind::Install | InstallKind::Upgrade => ctx.rpm.upgrade(&kept)?,
    };
    let text = out.text();
    if !text.is_empty() {
        ctx.log.say(&cmd::indent(&text));
    }
    record_package(ctx, st, &name, kind)
}

/// Record `name` as the current package (the one before it as previous,
/// except after a downgrade) and keep only those two in the store.
fn record_package(
    ctx: &Ctx<'_>,
    st: &mut State,
    name: &str,
    kind: InstallKind,
) -> Result<(), InstallError> {
    let store = ctx.root.path(paths::PACKAGES_DIR);
    let old = st.get(state::key::CURRENT).map(str::to_owned);
    match kind {
        InstallKind::Downgrade => st.set(state::key::PREVIOUS, None),
        _ if old.as_deref() != Some(name) => st.set(state::key::PREVIOUS, old.as_deref()),
        _ => {}
    }
    st.set(state::key::CURRENT, Some(name));
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

pub(super) fn fix_permissions(ctx: &mut Ctx<'_>) -> Result<(), InstallError> {
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

pub(super) fn run_step(
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
        Step::KeepPackage { file, .. } => {
            let (name, _) = keep_copy(ctx, file)?;
            record_package(ctx, st, &name, InstallKind::Install)?;
        }
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
