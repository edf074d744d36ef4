//! Log rotation: the audit file was moved away (by logrotate, or by hand)
//! and the node told to reload (SIGHUP, `systemctl reload`). The writer goes
//! on in a new file at the configured path, and the hash chain goes on with
//! it: the new file's first record is an `audit-continue` record with the
//! next sequence number, chained to the last record of the file moved away.
//! Until the reload, records keep going into the moved file, so none is
//! lost whenever the reload comes.

use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;

use super::{AuditError, AuditLog};

/// What [`AuditLog::reopen_if_moved`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reopened {
    /// The path still names the file being written (or the trail is not a
    /// regular file, such as a device): nothing to do.
    Same,
    /// The file was moved away: a new file at the path goes on with the chain.
    Continued,
}

impl AuditLog {
    /// If the audit file's path no longer names the file being written,
    /// go on in a new file there (created with mode 0640 if missing; an
    /// empty one, as `logrotate`'s `create` leaves, is taken as it is).
    /// A non-empty file at the path that is not the one being written is
    /// refused: it would be another trail, and records stay in the old file.
    pub async fn reopen_if_moved(&self) -> Result<Reopened, AuditError> {
        let refuse = |reason: String| AuditError::Open {
            path: self.path.clone(),
            reason,
        };
        // Held to the end: records queued meanwhile are written after the
        // switch, into the new file, by their own requests.
        let mut w = self.writer.lock().await;
        let Some(current) = w.identity() else {
            return Ok(Reopened::Same);
        };
        match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == current => return Ok(Reopened::Same),
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
        let file = super::open_file(&self.path).map_err(|e| refuse(e.to_string()))?;
        w.continue_in(file, self.settle_every);
        Ok(Reopened::Continued)
    }
}
