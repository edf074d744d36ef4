//! Log rotation: the audit file was moved away (by logrotate, or by hand)
//! and the node told to reload (SIGHUP, `systemctl reload`). The writer goes
//! on in a new file at the configured path, and the hash chain goes on with
//! it: the new file's first record is an `audit-continue` record with the
//! next sequence number, chained to the last record of the file moved away.
//! Until the reload, records keep going into the moved file, so none is
//! lost whenever the reload comes. A file deleted instead (removed, or moved
//! to another file system, which copies it and deletes the original) holds
//! records nobody can reach once the node lets go of it: its whole content
//! is saved beside the path first.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Seek, SeekFrom};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{AuditError, AuditLog};

/// What [`AuditLog::reopen_if_moved`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reopened {
    /// The path still names the file being written (or the trail is not a
    /// regular file, such as a device): nothing to do.
    Same,
    /// The file was moved away: a new file at the path goes on with the chain.
    Continued,
    /// As `Continued`, but the file written so far had been deleted: its
    /// whole content (`bytes`) is now in the file `saved`, byte for byte.
    Saved { saved: PathBuf, bytes: u64 },
    /// As `Continued`, but the deleted file could not be saved as `tried`:
    /// the records written into it since it was deleted are lost.
    NotSaved { tried: PathBuf, reason: String },
}

impl AuditLog {
    /// If the audit file's path no longer names the file being written,
    /// go on in a new file there (created with mode 0640 if missing; an
    /// empty one, as `logrotate`'s `create` leaves, is taken as it is).
    /// Anything else at the path (a non-empty file that is not the one being
    /// written, a directory) is refused, and records stay in the old file.
    /// If the old file had been deleted, its content is saved first
    /// ([`Reopened::Saved`]).
    pub async fn reopen_if_moved(&self) -> Result<Reopened, AuditError> {
        let refuse = |reason: String| AuditError::Open {
            path: self.path.clone(),
            reason,
        };
        // Held over the switch: records queued meanwhile are written after
        // it, into the new file, by their own requests.
        let mut w = self.writer.lock().await;
        let Some((current, links)) = w.identity() else {
            return Ok(Reopened::Same);
        };
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == current => return Ok(Reopened::Same),
            Ok(m) if !m.is_file() => {
                return Err(refuse(
                    "something that is not a file (a directory?) is at this path; \
                     remove it and reload again (records go on in the file moved away until then)"
                        .into(),
                ));
            }
            Ok(m) if m.len() > 0 => {
                return Err(refuse(
                    "a non-empty file that is not the one being written is at this path; \
                     move it away and reload again (records go on in the file moved away until then)"
                        .into(),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(refuse(e.to_string())),
        }
        let file = super::open_file(&self.path).map_err(|e| refuse(open_hint(&self.path, &e)))?;
        let lock = super::lock_file(&self.path, &file).map_err(|e| refuse(e.to_string()))?;
        let old = w.continue_in(file, self.settle_every);
        *self.lock.lock().unwrap_or_else(|p| p.into_inner()) = lock;
        drop(w);
        if links > 0 {
            return Ok(Reopened::Continued);
        }
        // Off the workers, and after the lock: key operations go on while
        // a large file is copied.
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || save_deleted(old, &path))
            .await
            .unwrap_or_else(|e| {
                Ok(Reopened::NotSaved {
                    tried: PathBuf::new(),
                    reason: e.to_string(),
                })
            })
    }
}

/// Why a new file could not be opened at `path`, with what to do.
fn open_hint(path: &Path, e: &std::io::Error) -> String {
    let dangling = e.kind() == ErrorKind::NotFound
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if dangling {
        format!(
            "{e}: the path is a symbolic link to a place that does not exist; \
             point it at a folder that exists, or remove it, and reload again"
        )
    } else {
        format!("{e}; fix the folder, or its permissions for the service user, and reload again")
    }
}

/// Copy the deleted file `old` whole into a new file beside `path`.
fn save_deleted(mut old: File, path: &Path) -> Result<Reopened, AuditError> {
    let mut name = saved_name(path, crate::time::unix_now());
    let tried = name.clone();
    let copy = |old: &mut File, name: &mut PathBuf| -> std::io::Result<u64> {
        let mut out = create_saved(name)?;
        old.seek(SeekFrom::Start(0))?;
        let bytes = std::io::copy(old, &mut out)?;
        out.sync_all()?;
        Ok(bytes)
    };
    Ok(match copy(&mut old, &mut name) {
        Ok(bytes) => Reopened::Saved { saved: name, bytes },
        Err(e) => Reopened::NotSaved {
            tried,
            reason: e.to_string(),
        },
    })
}

/// A new file at `name`, or at `name.1` … `name.9` if that exists.
fn create_saved(name: &mut PathBuf) -> std::io::Result<File> {
    let base = name.clone().into_os_string();
    let mut n = 0;
    loop {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&*name)
        {
            Err(e) if e.kind() == ErrorKind::AlreadyExists && n < 9 => {
                n += 1;
                let mut next = base.clone();
                next.push(format!(".{n}"));
                *name = next.into();
            }
            other => return other,
        }
    }
}

/// `<path>.deleted-YYYYMMDDTHHMMSSZ` for the Unix time `now`.
fn saved_name(path: &Path, now: i64) -> PathBuf {
    let (days, secs) = (now.div_euclid(86_400), now.rem_euclid(86_400));
    let (y, m, d) = crate::time::civil_from_days(days);
    let mut name = path.as_os_str().to_owned();
    name.push(format!(
        ".deleted-{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    ));
    name.into()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_saved_file_is_named_by_the_time() {
        let name = super::saved_name(
            std::path::Path::new("/var/log/kms/audit.log"),
            1_764_942_682,
        );
        assert_eq!(
            name.to_str(),
            Some("/var/log/kms/audit.log.deleted-20251205T135122Z")
        );
    }
}
