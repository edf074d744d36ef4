//! File operations under a root: copying trees with modes and owners,
//! numbered backups, and the modes and owners the node's files must have.

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::InstallError;
use crate::paths::{self, Root};

/// Copy `src` to `dst` (which must not exist): directories, files and
/// symlinks (kept as links), with modes and owners. `src` itself is followed
/// if it is a link.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), InstallError> {
    let meta = fs::metadata(src).map_err(InstallError::io("read", src))?;
    if meta.is_dir() {
        fs::create_dir(dst).map_err(InstallError::io("create", dst))?;
        for entry in fs::read_dir(src).map_err(InstallError::io("read", src))? {
            let entry = entry.map_err(InstallError::io("read", src))?;
            let from = entry.path();
            let to = dst.join(entry.file_name());
            let lmeta = fs::symlink_metadata(&from).map_err(InstallError::io("read", &from))?;
            if lmeta.file_type().is_symlink() {
                let target = fs::read_link(&from).map_err(InstallError::io("read", &from))?;
                std::os::unix::fs::symlink(&target, &to)
                    .map_err(InstallError::io("create", &to))?;
            } else if lmeta.is_dir() {
                copy_tree(&from, &to)?;
            } else if lmeta.is_file() {
                fs::copy(&from, &to).map_err(InstallError::io("copy", &from))?;
                keep_owner_mode(&lmeta, &to)?;
            }
        }
        keep_owner_mode(&meta, dst)
    } else {
        fs::copy(src, dst).map_err(InstallError::io("copy", src))?;
        keep_owner_mode(&meta, dst)
    }
}

fn keep_owner_mode(meta: &fs::Metadata, to: &Path) -> Result<(), InstallError> {
    std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()))
        .map_err(InstallError::io("set the owner of", to))?;
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
        .map_err(InstallError::io("set the mode of", to))
}

/// Resolve a node path's symlinks inside the root (absolute link targets are
/// node paths, not host paths).
pub fn resolve_in_root(root: &Root, node_path: &str) -> PathBuf {
    let mut p = node_path.to_owned();
    for _ in 0..40 {
        let host = root.path(&p);
        match fs::read_link(&host) {
            Ok(t) if t.is_absolute() => p = t.to_string_lossy().into_owned(),
            Ok(t) => {
                let parent = Path::new(&p).parent().unwrap_or(Path::new("/"));
                p = parent.join(t).to_string_lossy().into_owned();
            }
            Err(_) => return host,
        }
    }
    root.path(&p)
}

/// The node path of the next configuration backup: `conf-orig` if there is
/// none yet (the guide's name), else `conf-orig.1`, `conf-orig.2`, ...
/// Earlier backups are never overwritten.
pub fn next_conf_backup(root: &Root) -> String {
    let first = paths::CONF_ORIG.to_owned();
    if !root.path(&first).exists() {
        return first;
    }
    (1u32..)
        .map(|n| format!("{}.{n}", paths::CONF_ORIG))
        .find(|p| !root.path(p).exists())
        .unwrap_or(first)
}

/// A file or directory whose mode or owner is not what it must be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fix {
    /// Node path.
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Create it (a directory) if missing.
    pub create_dir: bool,
}

impl Fix {
    /// Plan wording.
    pub fn describe(&self, kms: (u32, u32)) -> String {
        let name = |id: u32, kms_id: u32| {
            if id == 0 {
                "root".to_owned()
            } else if id == kms_id {
                paths::SERVICE_USER.to_owned()
            } else {
                id.to_string()
            }
        };
        format!(
            "{} {} {:04o} {}:{}",
            if self.create_dir { "create" } else { "set" },
            self.path,
            self.mode,
            name(self.uid, kms.0),
            name(self.gid, kms.1)
        )
    }
}

/// What must change so that: the configuration directory is `root:kms 0750`,
/// every file in it (`kms.properties`, the keystore, `jgroups.xml`, ...) is
/// `root:kms 0640` (readable by the service user, by nobody else), and
/// `/var/log/kms` is `kms:kms 0750`.
pub fn permission_fixes(root: &Root, kms: (u32, u32)) -> Vec<Fix> {
    let (kuid, kgid) = kms;
    let mut want = vec![(paths::CONF_DIR.to_owned(), 0o750, 0, kgid, false)];
    if let Ok(rd) = fs::read_dir(root.path(paths::CONF_DIR)) {
        let mut names: Vec<_> = rd.flatten().collect();
        names.sort_by_key(fs::DirEntry::file_name);
        for e in names {
            let Ok(m) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            let node = format!("{}/{}", paths::CONF_DIR, e.file_name().to_string_lossy());
            if m.is_file() {
                want.push((node, 0o640, 0, kgid, false));
            } else if m.is_dir() {
                want.push((node, 0o750, 0, kgid, false));
            }
        }
    }
    want.push((paths::LOG_DIR.to_owned(), 0o750, kuid, kgid, true));
    want.into_iter()
        .filter_map(|(path, mode, uid, gid, create)| {
            let host = root.path(&path);
            let ok = fs::symlink_metadata(&host)
                .map(|m| m.mode() & 0o7777 == mode && m.uid() == uid && m.gid() == gid)
                .ok();
            match ok {
                Some(true) => None,
                Some(false) => Some(Fix {
                    path,
                    mode,
                    uid,
                    gid,
                    create_dir: false,
                }),
                None if create => Some(Fix {
                    path,
                    mode,
                    uid,
                    gid,
                    create_dir: true,
                }),
                None => None,
            }
        })
        .collect()
}

/// Apply one fix.
pub fn apply_fix(root: &Root, fix: &Fix) -> Result<(), InstallError> {
    let host = root.path(&fix.path);
    if fix.create_dir {
        fs::create_dir_all(&host).map_err(InstallError::io("create", &host))?;
    }
    std::os::unix::fs::chown(&host, Some(fix.uid), Some(fix.gid))
        .map_err(InstallError::io("set the owner of", &host))?;
    fs::set_permissions(&host, fs::Permissions::from_mode(fix.mode))
        .map_err(InstallError::io("set the mode of", &host))
}

/// Create a root-only directory (`0700`), parents as needed.
pub fn private_dir(path: &Path) -> Result<(), InstallError> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(InstallError::io("create", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(InstallError::io("set the mode of", path))
}

/// Replace the directory `dst` by a copy of `src`, through a temporary
/// sibling so that a failure leaves `dst` as it was.
pub fn replace_tree(src: &Path, dst: &Path) -> Result<(), InstallError> {
    let tmp = dst.with_extension("ckms-restore");
    let _ = fs::remove_dir_all(&tmp);
    copy_tree(src, &tmp)?;
    let old = dst.with_extension("ckms-old");
    let _ = fs::remove_dir_all(&old);
    if dst.exists() {
        fs::rename(dst, &old).map_err(InstallError::io("move aside", dst))?;
    }
    fs::rename(&tmp, dst).map_err(InstallError::io("restore", dst))?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}
