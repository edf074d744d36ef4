//! File operations under a root: private copies of trees, numbered
//! configuration backups, and the modes and owners the node's files must have
//! (set through descriptors, see [`crate::safefs`]).

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::InstallError;
use crate::backup;
use crate::paths::{self, Root};
use crate::safefs;

/// Copy the directory `src` to `dst` as a private backup (see
/// [`safefs::copy_tree`]: `root:root`, `0700` / `0600`, links not followed).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), InstallError> {
    safefs::copy_tree(src, dst)
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
/// none yet (the guide's name), else `conf-orig.N` with N one more than the
/// highest there is (so the newest has the highest number even after older
/// ones were pruned). Earlier backups are never overwritten.
pub fn next_conf_backup(root: &Root) -> String {
    match backup::conf_backups(root).last() {
        None => paths::CONF_ORIG.to_owned(),
        Some((n, _)) => format!("{}.{}", paths::CONF_ORIG, n + 1),
    }
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
    /// It is a directory (else a regular file).
    pub dir: bool,
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

/// The configuration directory's entries, at every depth, parents before
/// their contents: (node path, is a directory). Links and other kinds are
/// left out (never followed, never changed).
fn conf_entries(root: &Root, node: &str, out: &mut Vec<(String, bool)>) {
    let Ok(rd) = fs::read_dir(root.path(node)) else {
        return;
    };
    let mut names: Vec<_> = rd.flatten().collect();
    names.sort_by_key(fs::DirEntry::file_name);
    for e in names {
        let Ok(m) = fs::symlink_metadata(e.path()) else {
            continue;
        };
        let child = format!("{node}/{}", e.file_name().to_string_lossy());
        if m.is_file() {
            out.push((child, false));
        } else if m.is_dir() {
            out.push((child.clone(), true));
            conf_entries(root, &child, out);
        }
    }
}

/// What must change so that: the configuration directory is `root:kms 0750`,
/// every file in it at any depth (`kms.properties`, the keystore,
/// `jgroups.xml`, ...) is `root:kms 0640` (the modes the RPM gives its
/// configuration files: readable by the service user, by nobody else), every
/// directory below it `root:kms 0750`, and `/var/log/kms` is `kms:kms 0750`.
pub fn permission_fixes(root: &Root, kms: (u32, u32)) -> Vec<Fix> {
    let (kuid, kgid) = kms;
    let mut want = vec![(paths::CONF_DIR.to_owned(), 0o750, 0, kgid, false, true)];
    let mut entries = Vec::new();
    conf_entries(root, paths::CONF_DIR, &mut entries);
    for (node, dir) in entries {
        want.push((node, if dir { 0o750 } else { 0o640 }, 0, kgid, false, dir));
    }
    want.push((paths::LOG_DIR.to_owned(), 0o750, kuid, kgid, true, true));
    want.into_iter()
        .filter_map(|(path, mode, uid, gid, create, dir)| {
            let host = root.path(&path);
            let ok = fs::symlink_metadata(&host)
                .map(|m| m.mode() & 0o7777 == mode && m.uid() == uid && m.gid() == gid)
                .ok();
            let fix = |create_dir| {
                Some(Fix {
                    path: path.clone(),
                    mode,
                    uid,
                    gid,
                    create_dir,
                    dir,
                })
            };
            match ok {
                Some(true) => None,
                Some(false) => fix(false),
                None if create => fix(true),
                None => None,
            }
        })
        .collect()
}

/// Apply one fix, through a descriptor: the path is opened from the
/// directory above the configuration (or log) directory down with
/// `O_NOFOLLOW` at every step, the opened object is checked (`fstat`: the
/// kind planned, a file with one link) and then `fchown`ed and `fchmod`ed.
/// A link or a hard link planted in a directory another user could write is
/// never followed to a file elsewhere.
pub fn apply_fix(root: &Root, fix: &Fix) -> Result<(), InstallError> {
    use nix::fcntl::OFlag;
    use nix::sys::stat::SFlag;
    let host = root.path(&fix.path);
    if fix.create_dir {
        fs::create_dir_all(&host).map_err(InstallError::io("create", &host))?;
    }
    let anchor = if fix.path.starts_with(paths::CONF_DIR) {
        paths::APP_DIR.to_owned()
    } else {
        Path::new(&fix.path)
            .parent()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".to_owned())
    };
    let base = root.path(&anchor);
    let rel = safefs::relative(&base, &host);
    let fd = safefs::open_beneath(
        &base,
        &rel,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
    )?;
    let errno = |action| {
        let host = host.clone();
        move |e: nix::errno::Errno| InstallError::io(action, host)(std::io::Error::from(e))
    };
    let st = nix::sys::stat::fstat(&fd).map_err(errno("check"))?;
    let kind = safefs::kind(&st);
    let expected = if fix.dir {
        SFlag::S_IFDIR
    } else {
        SFlag::S_IFREG
    };
    if kind != expected {
        return Err(InstallError::Refused(format!(
            "{} changed while the installer was setting owners and modes (it is no longer a {}): \
             someone else can write its directory. Find out who, and run the installer again.",
            host.display(),
            if fix.dir { "directory" } else { "regular file" }
        )));
    }
    if !fix.dir && st.st_nlink != 1 {
        return Err(InstallError::Refused(format!(
            "{} has {} hard links: another name elsewhere is the same file, and giving it to the {} group \
             would give that file too. Replace it by a copy (cp --remove-destination) and run the installer again.",
            host.display(),
            st.st_nlink,
            paths::SERVICE_USER
        )));
    }
    nix::unistd::fchown(
        &fd,
        Some(nix::unistd::Uid::from_raw(fix.uid)),
        Some(nix::unistd::Gid::from_raw(fix.gid)),
    )
    .map_err(errno("set the owner of"))?;
    nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::from_bits_truncate(fix.mode))
        .map_err(errno("set the mode of"))
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
