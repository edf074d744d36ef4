//! File operations that are safe for root in directories other users can
//! write (`/var/log/kms` belongs to `kms`; a legacy node's configuration may
//! belong to `tomcat`).
//!
//! The rule: below a directory root trusts, every name is opened with
//! `openat(..., O_NOFOLLOW)` relative to an already opened directory, and
//! what was opened is checked with `fstat` on the descriptor before anything
//! is read, written, chowned or chmodded through that same descriptor. So a
//! symbolic link planted in place of a file is never followed, and swapping
//! an entry between the check and the use changes nothing: the check and the
//! use are on one open file, not on a name looked up twice.
//!
//! Copies made here (backups) are root's alone: directories `0700`, files
//! `0600`, owner `root:root`, whatever the source's owner and mode were.
//! Symbolic links are copied as links, never followed.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, fchown, symlinkat};

use crate::InstallError;

/// Mode of a backup's directories.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of a backup's files.
pub const PRIVATE_FILE: u32 = 0o600;

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(Errno) -> InstallError {
    let path = path.to_path_buf();
    move |e| InstallError::io(action, path)(std::io::Error::from(e))
}

fn mode(bits: u32) -> Mode {
    Mode::from_bits_truncate(bits)
}

/// The file type bits of a stat.
pub fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// Open the directory at `path`. Links on the way are followed: `path` must be
/// one root trusts (its parents belong to root).
pub fn open_dir(path: &Path) -> Result<OwnedFd, InstallError> {
    nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open", path))
}

/// Open the directory `name` in `dir`, not following a link.
pub fn open_dir_at<Fd: AsFd>(dir: Fd, name: &OsStr) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Open `name` in `dir` for reading without following a link and without
/// blocking on a FIFO; only a regular file is accepted.
pub fn open_file_at<Fd: AsFd>(dir: Fd, name: &OsStr) -> Result<(File, FileStat), Errno> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let st = fstat(&fd)?;
    if kind(&st) != SFlag::S_IFREG {
        return Err(Errno::EINVAL);
    }
    Ok((File::from(fd), st))
}

/// Open the node `rel` (relative, no `..`) below the trusted directory
/// `base`: every component is opened with `O_NOFOLLOW` from the one before,
/// so no link anywhere below `base` is followed. `flags` apply to the last
/// component (`O_NOFOLLOW | O_CLOEXEC` are added).
pub fn open_beneath(base: &Path, rel: &Path, flags: OFlag) -> Result<OwnedFd, InstallError> {
    let full = base.join(rel);
    let mut dir = open_dir(base)?;
    let names: Vec<&OsStr> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(Ok(n)),
            Component::CurDir => None,
            _ => Some(Err(())),
        })
        .collect::<Result<_, ()>>()
        .map_err(|()| io_err("open", &full)(Errno::EINVAL))?;
    let Some((last, parents)) = names.split_last() else {
        return Ok(dir);
    };
    for n in parents {
        dir = open_dir_at(&dir, n).map_err(io_err("open", &full))?;
    }
    openat(
        &dir,
        *last,
        flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err("open", &full))
}

/// Read a whole regular file, not following a link at its last component.
pub fn read_nofollow(path: &Path) -> Result<Vec<u8>, InstallError> {
    use std::io::Read as _;
    let (parent, name) = split(path)?;
    let dir = open_dir(parent)?;
    let (mut f, _) = open_file_at(&dir, name).map_err(io_err("read", path))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out)
        .map_err(InstallError::io("read", path))?;
    Ok(out)
}

fn split(path: &Path) -> Result<(&Path, &OsStr), InstallError> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => Err(io_err("open", path)(Errno::EINVAL)),
    }
}

/// Open (or create, `0640`) `dir/name` to append to it, as root, where `dir`
/// may be writable by another user. Accepted only: a regular file with one
/// link, owned by one of `owners`. Anything else found under that name (a
/// link to another file, a FIFO, a hard link, someone else's file) is not
/// opened for writing: it is renamed aside to `name.untrusted-STAMP` (kept as
/// evidence) and a new file is created with `O_EXCL`. Returns the file (open
/// for reading too) and, if something was moved aside, a warning for the
/// operator.
pub fn open_append_in(
    dir: &Path,
    name: &str,
    owners: &[u32],
) -> Result<(File, Option<String>), InstallError> {
    let path = dir.join(name);
    // `dir` itself (`/var/log/kms`) is a name in a directory of root's: a
    // link there was made by root and is followed.
    let dfd = open_dir(dir)?;
    let base = OFlag::O_RDWR
        | OFlag::O_APPEND
        | OFlag::O_CREAT
        | OFlag::O_NOFOLLOW
        | OFlag::O_NONBLOCK
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    let trusted = |fd: &OwnedFd| -> Result<bool, Errno> {
        let st = fstat(fd)?;
        Ok(kind(&st) == SFlag::S_IFREG && st.st_nlink == 1 && owners.contains(&st.st_uid))
    };
    let why = match openat(&dfd, name, base, mode(0o640)) {
        Ok(fd) if trusted(&fd).map_err(io_err("check", &path))? => {
            return Ok((File::from(fd), None));
        }
        Ok(_) => "it is not a regular file with one link owned by root or the service user",
        Err(Errno::ELOOP) => "it is a symbolic link",
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let aside = format!(
        "{name}.untrusted-{}",
        crate::clock::stamp(std::time::SystemTime::now())
    );
    renameat(&dfd, name, &dfd, aside.as_str()).map_err(io_err("move aside", &path))?;
    let fd =
        openat(&dfd, name, base | OFlag::O_EXCL, mode(0o640)).map_err(io_err("create", &path))?;
    if !trusted(&fd).map_err(io_err("check", &path))? {
        return Err(io_err("create", &path)(Errno::EEXIST));
    }
    let warning = format!(
        "warning: {} was not written through: {why} (someone who can write {} put it there). \
         It was moved aside to {} and a new file was created; find out who planted it.",
        path.display(),
        dir.display(),
        dir.join(&aside).display()
    );
    Ok((File::from(fd), Some(warning)))
}

fn root_only<Fd: AsFd>(fd: Fd, bits: u32) -> Result<(), Errno> {
    fchown(&fd, Some(Uid::from_raw(0)), Some(Gid::from_raw(0)))?;
    fchmod(&fd, mode(bits))
}

/// Copy the directory `src` to `dst` (which must not exist; its parent must
/// belong to root) as a private backup: directories `0700`, regular files
/// `0600`, all `root:root`; symbolic links copied as links (never followed);
/// other kinds (FIFOs, sockets, devices) left out. `src` itself may be a link
/// root trusts; nothing below it is followed.
pub fn copy_tree(src: &Path, dst: &Path) -> Result<(), InstallError> {
    let sfd = open_dir(src)?;
    let (parent, name) = split(dst)?;
    let pfd = open_dir(parent)?;
    let dfd = make_private_dir(&pfd, name, dst)?;
    copy_dir(&sfd, &dfd, src, dst)
}

fn make_private_dir(parent: &OwnedFd, name: &OsStr, path: &Path) -> Result<OwnedFd, InstallError> {
    mkdirat(parent, name, mode(PRIVATE_DIR)).map_err(io_err("create", path))?;
    let fd = open_dir_at(parent, name).map_err(io_err("create", path))?;
    root_only(&fd, PRIVATE_DIR).map_err(io_err("set the owner and mode of", path))?;
    Ok(fd)
}

/// The names in the open directory `dir` (without `.` and `..`), sorted.
/// Listed through `/proc/self/fd/N`, which names the open directory itself,
/// not whatever its path names now.
pub fn names(dir: &OwnedFd, path: &Path) -> Result<Vec<OsString>, InstallError> {
    use std::os::fd::AsRawFd as _;
    let me = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut out = Vec::new();
    for e in std::fs::read_dir(&me).map_err(InstallError::io("read", path))? {
        out.push(e.map_err(InstallError::io("read", path))?.file_name());
    }
    out.sort();
    Ok(out)
}

fn copy_dir(sfd: &OwnedFd, dfd: &OwnedFd, src: &Path, dst: &Path) -> Result<(), InstallError> {
    for name in names(sfd, src)? {
        let from = src.join(&name);
        let to = dst.join(&name);
        let st = fstatat(sfd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(io_err("read", &from))?;
        match kind(&st) {
            SFlag::S_IFLNK => {
                let target = readlinkat(sfd, name.as_os_str()).map_err(io_err("read", &from))?;
                symlinkat(target.as_os_str(), dfd, name.as_os_str())
                    .map_err(io_err("create", &to))?;
            }
            SFlag::S_IFDIR => {
                // O_NOFOLLOW: if the entry became a link since fstatat, this fails.
                let child = open_dir_at(sfd, &name).map_err(io_err("read", &from))?;
                let out = make_private_dir(dfd, &name, &to)?;
                copy_dir(&child, &out, &from, &to)?;
            }
            SFlag::S_IFREG => {
                let (mut f, _) = open_file_at(sfd, &name).map_err(io_err("read", &from))?;
                let out = openat(
                    dfd,
                    name.as_os_str(),
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    mode(PRIVATE_FILE),
                )
                .map_err(io_err("create", &to))?;
                root_only(&out, PRIVATE_FILE).map_err(io_err("set the owner and mode of", &to))?;
                let mut out = File::from(out);
                std::io::copy(&mut f, &mut out).map_err(InstallError::io("copy", &from))?;
                out.sync_all().map_err(InstallError::io("write", &to))?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// Make an existing backup (made by an earlier version, with the legacy
/// owners and modes) private: every directory `root:root 0700` (set before
/// it is listed, so nobody else can change it while it is walked), every
/// regular file with one link `root:root 0600`. Links are not followed;
/// files with more than one link are left alone (the `0700` directory above
/// them already keeps them from everyone but root).
pub fn make_private(dir: &Path) -> Result<(), InstallError> {
    let (parent, name) = split(dir)?;
    let pfd = open_dir(parent)?;
    let fd = open_dir_at(&pfd, name).map_err(io_err("open", dir))?;
    private_walk(&fd, dir)
}

fn private_walk(fd: &OwnedFd, path: &Path) -> Result<(), InstallError> {
    root_only(fd, PRIVATE_DIR).map_err(io_err("set the owner and mode of", path))?;
    for name in names(fd, path)? {
        let p = path.join(&name);
        let st = fstatat(fd, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(io_err("read", &p))?;
        match kind(&st) {
            SFlag::S_IFDIR => {
                let child = open_dir_at(fd, &name).map_err(io_err("open", &p))?;
                private_walk(&child, &p)?;
            }
            SFlag::S_IFREG => {
                let (f, st) = open_file_at(fd, &name).map_err(io_err("open", &p))?;
                if st.st_nlink == 1 {
                    root_only(&f, PRIVATE_FILE).map_err(io_err("set the owner and mode of", &p))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// `path` relative to `base` (for [`open_beneath`]).
pub fn relative(base: &Path, path: &Path) -> PathBuf {
    path.strip_prefix(base).unwrap_or(path).to_path_buf()
}

#[cfg(test)]
mod tests;
