//! The writer's side of a log rotation ([`crate::audit::AuditLog::reopen_if_moved`]):
//! leave the old file and go on in a new one, whose first record is an
//! `audit-continue` record chained to the old file's last.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use super::{CONTINUE_OPERATION, CONTINUE_OUTCOME, Writer};
use crate::audit::AuditError;

impl Writer {
    /// The device and inode of the file being written, and how many names
    /// it has (0 once deleted); `None` for a device such as /dev/full, or
    /// when the kernel cannot say.
    pub(in crate::audit) fn identity(&self) -> Option<((u64, u64), u64)> {
        if !self.regular {
            return None;
        }
        self.file
            .metadata()
            .ok()
            .map(|m| ((m.dev(), m.ino()), m.nlink()))
    }

    /// Go on in `file`, a new and empty file at the same path: the one
    /// written so far was moved away. Its torn bytes are sealed first if
    /// they can be and its data synced; the new file's first record is an
    /// `audit-continue` record with the next sequence number, chained to the
    /// old file's last record, naming how many bytes the old file holds. If
    /// that record cannot be written now (a full disk), it is written before
    /// the next record instead, so the new file still begins with it (after
    /// a seal of whatever part of it got out). Returns the old file.
    pub(in crate::audit) fn continue_in(&mut self, file: File, settle_every: u64) -> File {
        if self.dirty
            && let Err(e) = self.seal()
        {
            tracing::error!(error = %e, "cannot seal the torn tail of the audit file moved away; `cmx-kms audit verify` will report it there");
        }
        self.sync_written();
        self.pending_continue = Some(self.good_end);
        self.settle = None;
        let old = std::mem::replace(&mut self.file, file);
        self.regular = true;
        self.good_end = 0;
        self.dirty = false;
        self.needs_newline = false;
        if let Err(e) = self.write_pending_continue() {
            tracing::error!(error = %e, "cannot write the first record of the new audit file yet; retrying before the next record");
        }
        // Without the thread the file is written as before; its pages stay
        // in the page cache until the kernel writes them back.
        if let Err(e) = self.start_settling(settle_every) {
            tracing::error!(error = %e, "cannot start the audit settle thread for the new audit file");
        }
        old
    }

    /// Write the pending `audit-continue` record, if any; it stays pending
    /// when the write fails.
    pub(super) fn write_pending_continue(&mut self) -> Result<(), AuditError> {
        let Some(previous_bytes) = self.pending_continue.take() else {
            return Ok(());
        };
        let r = self.append(|f| {
            f.str("operation", CONTINUE_OPERATION, 64)
                .str("outcome", CONTINUE_OUTCOME, 64)
                .num("previous_file_bytes", previous_bytes);
        });
        if r.is_err() {
            self.pending_continue = Some(previous_bytes);
        }
        r
    }
}
