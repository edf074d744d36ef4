//! What an uninstall must copy before it removes `/usr/share/kms`: the
//! files `kms.properties` names there but outside `conf/` (a keystore, the
//! audit trail and its rotated files, the soft master key, Vault's token, CA
//! and AppRole secret), which the copy of `conf/` alone would lose.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Component, Path, PathBuf};

use crate::InstallError;
use crate::fsops;
use crate::paths::{self, Root};

/// The keys of `kms.properties` that name files holding keys, secrets or
/// the audit trail.
pub const FILE_KEYS: &[&str] = &[
    "kms.keystore.file",
    "kms.audit.file",
    "kms.hsm.soft.key.file",
    "kms.hsm.vault.token.file",
    "kms.hsm.vault.ca.file",
    "kms.hsm.vault.auth.approle.secret-id.file",
];

/// The audit key: files beside its file whose names continue it
/// (`audit.log.1`, `audit.log.deleted-...`) are rotated parts of the trail.
const AUDIT_KEY: &str = "kms.audit.file";

/// A file to keep: its node path and why (the key that names it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Named {
    pub node: String,
    pub why: String,
}

/// `p` with `.` and `..` taken out, lexically (`/` stays the top).
fn normalize(p: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    format!("/{}", parts.join("/"))
}

/// Is the node path `p` one the uninstall removes without a copy: under
/// `/usr/share/kms`, not under its `conf/` (which is copied whole)?
fn lost_on_removal(p: &str) -> bool {
    let under = |dir: &str| p.strip_prefix(dir).is_some_and(|r| r.starts_with('/'));
    under(paths::APP_DIR) && !under(paths::CONF_DIR) && p != paths::CONF_DIR
}

/// The node path a value of `kms.properties` names: absolute as given,
/// relative against the file's folder; links at the last component followed
/// inside the root.
fn node_path(root: &Root, value: &str) -> String {
    let joined = if value.starts_with('/') {
        value.to_owned()
    } else {
        format!("{}/{value}", paths::CONF_DIR)
    };
    let lexical = normalize(&joined);
    normalize(&root.node_path(&fsops::resolve_in_root(root, &lexical)))
}

/// The values of [`FILE_KEYS`] in the node's `kms.properties` (the last of
/// duplicates wins, as Java reads it). No file: none. A file whose lines
/// cannot be read is refused: the uninstall cannot tell what it would lose.
fn configured_files(root: &Root) -> Result<Vec<(&'static str, String)>, InstallError> {
    let host = root.path(paths::PROPERTIES);
    let bytes = match fs::symlink_metadata(&host) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        _ => zeroize::Zeroizing::new(crate::safefs::read_nofollow(&host)?),
    };
    let decoded = cmx_kms::config::properties::decode(&bytes);
    let lexed = cmx_kms::config::properties::lex(&decoded.text);
    if let Some(e) = lexed.errors.first() {
        return Err(InstallError::Refused(format!(
            "{}: line {}: {}: the uninstaller cannot tell which keystore, audit trail or key files it names, \
             so it cannot keep them. Fix the line (or copy those files somewhere safe yourself) and run ckms-uninstall \
             again. Nothing was changed.",
            paths::PROPERTIES,
            e.line,
            e.kind
        )));
    }
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for e in lexed.entries {
        if let Some(key) = FILE_KEYS.iter().find(|k| **k == e.key) {
            out.retain(|(k, _)| k != key);
            let v = e.value.trim();
            if !v.is_empty() {
                out.push((key, v.to_owned()));
            }
        }
    }
    Ok(out)
}

/// The rotated parts of the audit file `node` in its folder (`audit.log.1`, ...).
fn rotated(root: &Root, node: &str) -> Vec<String> {
    let p = Path::new(node);
    let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let Ok(rd) = fs::read_dir(root.path(&dir.to_string_lossy())) else {
        return Vec::new();
    };
    let mut out: Vec<String> = rd
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&prefix))
        .map(|n| format!("{}/{n}", dir.to_string_lossy().trim_end_matches('/')))
        .collect();
    out.sort();
    out
}

/// Every file `kms.properties` names that removing `/usr/share/kms` would
/// delete and the copy of `conf/` would not keep, with the key naming it.
/// Files that do not exist are left out (nothing to lose).
pub fn files_to_keep(root: &Root) -> Result<Vec<Named>, InstallError> {
    let mut out: Vec<Named> = Vec::new();
    let mut add = |node: String, why: String| {
        let exists = fs::symlink_metadata(root.path(&node)).is_ok();
        if exists && lost_on_removal(&node) && !out.iter().any(|n| n.node == node) {
            out.push(Named { node, why });
        }
    };
    for (key, value) in configured_files(root)? {
        let node = node_path(root, &value);
        if key == AUDIT_KEY {
            for r in rotated(root, &node) {
                add(r, format!("rotated beside {key}"));
            }
        }
        add(node, key.to_owned());
    }
    Ok(out)
}

/// Copy the node file `node` to `dest/<node path>` (host paths under the
/// backup), private: directories `0700`, the file `0600`, root's. The source
/// is opened without following a link and must be a regular file.
pub fn copy_file(root: &Root, node: &str, dest: &Path) -> Result<PathBuf, InstallError> {
    let src = root.path(node);
    let to = dest.join(node.trim_start_matches('/'));
    if let Some(parent) = to.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(InstallError::io("create", parent))?;
    }
    let mut from = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&src)
        .map_err(InstallError::io("read", &src))?;
    let meta = from.metadata().map_err(InstallError::io("read", &src))?;
    if !meta.is_file() {
        return Err(InstallError::Refused(format!(
            "{node} is not a regular file (a FIFO, socket or device)"
        )));
    }
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&to)
        .map_err(InstallError::io("create", &to))?;
    io::copy(&mut from, &mut out).map_err(InstallError::io("copy", &src))?;
    out.sync_all().map_err(InstallError::io("write", &to))?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_and_places() {
        assert_eq!(
            normalize("/usr/share/kms/conf/../keystore/./ks.jks"),
            "/usr/share/kms/keystore/ks.jks"
        );
        assert!(lost_on_removal("/usr/share/kms/keystore/ks.jks"));
        assert!(lost_on_removal("/usr/share/kms/audit.log"));
        assert!(!lost_on_removal("/usr/share/kms/conf/ks.jks"));
        assert!(!lost_on_removal("/usr/share/kms/conf"));
        assert!(!lost_on_removal("/usr/share/kmsx/ks.jks"));
        assert!(!lost_on_removal("/var/log/kms/audit.log"));
    }
}
