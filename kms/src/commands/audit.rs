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
    let mut earlier_last: Option<(u64, [u8; 64])> = None;
    for path in paths {
        let mut v = crate::audit::verify(path)
            .map_err(|e| CommandError::Io(format!("cannot read {}: {e}", path.display())))?;
        if let (Some(earlier), Some(last)) = (earlier, earlier_last)
            && v.first != Some((last.0 + 1, last.1))
        {
            v.problems.push(link_problem(earlier, last.0, &v));
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

/// Why a file `v` does not go on with the chain of `earlier`, whose last
/// record is number `last`, as precisely as the files tell.
fn link_problem(earlier: &Path, last: u64, v: &crate::audit::Verification) -> String {
    let e = earlier.display();
    let size = std::fs::metadata(earlier).map(|m| m.len()).ok();
    match (v.first, v.previous_file_bytes) {
        (None, _) => format!("has no record to go on with the chain of {e}"),
        (Some((0, prev)), _) if prev == [b'0'; 64] => format!(
            "starts a new chain (record number 0), so it does not go on with {e} (its last record is \
             number {last}): either it is the older file (give the files oldest first), or the node \
             started without {e} (a file moved away while the node was stopped starts a new chain at \
             the next start, as does a new trail) and the link between them cannot be checked"
        ),
        (Some((first, _)), _) if first <= last => format!(
            "begins with record number {first}, not after the last of {e} (number {last}): \
             the files are in the wrong order (give them oldest first)"
        ),
        (Some(_), Some(bytes)) if Some(bytes) != size => format!(
            "does not go on with the chain of {e}: the node left that file at {bytes} bytes and it \
             has {} now: it was cut, edited or copied before the node stopped writing it",
            size.map_or_else(|| "an unknown size".into(), |s| format!("{s} bytes"))
        ),
        (Some((first, _)), _) if first > last + 1 => format!(
            "begins with record number {first}, {} record(s) after the last of {e} (number {last}): \
             a file between them is missing",
            first - last - 1
        ),
        (Some(_), _) => format!(
            "does not go on with the chain of {e} (its last record is number {last}): \
             a file between them is missing, or one of them was edited"
        ),
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
