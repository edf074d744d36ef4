//! `cmx-kms audit verify FILE...`: check audit files' hash chains (finds
//! removed, edited and inserted lines, and files missing between rotated ones).

#![allow(clippy::print_stdout)] // The command's report is its output.

use std::path::{Path, PathBuf};

use super::{CommandError, Status};

/// `cmx-kms audit verify FILE...`: 0 when every chain is intact (and each
/// file goes on with the chain of the one before it), 65 when not.
pub fn verify(paths: &[PathBuf]) -> Result<(), CommandError> {
    let mut problems = 0usize;
    // The file before this one, and its last record (number, line hash).
    let mut earlier: Option<&Path> = None;
    let mut earlier_last = None;
    for path in paths {
        let mut v = crate::audit::verify(path)
            .map_err(|e| CommandError::Io(format!("cannot read {}: {e}", path.display())))?;
        if let (Some(earlier), Some((seq, hash))) = (earlier, earlier_last)
            && v.first != Some((seq + 1, hash))
        {
            v.problems.push(format!(
                "does not go on with the chain of {} (its last record is number {seq}): \
                 a file between them is missing, or the order is wrong (oldest first)",
                earlier.display()
            ));
        }
        report(path, &v);
        problems += v.problems.len();
        (earlier, earlier_last) = (Some(path.as_path()), v.last);
    }
    if problems == 0 {
        Ok(())
    } else {
        Err(CommandError::Reported(Status::Data))
    }
}

fn report(path: &Path, v: &crate::audit::Verification) {
    for n in &v.notes {
        println!("{}: {n}", path.display());
    }
    if v.problems.is_empty() {
        println!("{}: {} record(s), chain intact", path.display(), v.records);
        return;
    }
    for p in &v.problems {
        println!("{}: {p}", path.display());
    }
    println!(
        "{}: {} record(s), {} problem(s)",
        path.display(),
        v.records,
        v.problems.len()
    );
}
