//! `cmx-kms audit verify FILE`: check an audit file's hash chain (finds
//! removed, edited and inserted lines).

#![allow(clippy::print_stdout)] // The command's report is its output.

use std::path::Path;

use super::{CommandError, Status};

/// `cmx-kms audit verify FILE`: 0 when the chain is intact, 65 when not.
pub fn verify(path: &Path) -> Result<(), CommandError> {
    let v = crate::audit::verify(path)
        .map_err(|e| CommandError::Io(format!("cannot read {}: {e}", path.display())))?;
    for n in &v.notes {
        println!("{}: {n}", path.display());
    }
    if v.problems.is_empty() {
        println!("{}: {} record(s), chain intact", path.display(), v.records);
        return Ok(());
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
    Err(CommandError::Reported(Status::Data))
}
