//! Talking to the operator: the plan's confirmation.

use std::io::{BufRead as _, Write as _};

use crate::InstallError;
use crate::log::Log;

/// Show the plan's numbered `steps` and its `notes`, then ask whether to
/// apply it (not when `yes`): [`InstallError::NotConfirmed`] unless the
/// operator says yes.
pub fn confirm_plan(
    log: &mut Log,
    steps: impl IntoIterator<Item = String>,
    notes: &[String],
    yes: bool,
) -> Result<(), InstallError> {
    for (i, s) in steps.into_iter().enumerate() {
        log.say(&format!("  {}. {s}", i + 1));
    }
    for n in notes {
        log.say(&format!("  note: {n}"));
    }
    if !yes && !confirm("Apply this plan?") {
        return Err(InstallError::NotConfirmed);
    }
    Ok(())
}

/// Ask `question` and read one line from standard input: true only for `Y`
/// or `yes` (any case). End of input counts as no.
pub fn confirm(question: &str) -> bool {
    let mut out = std::io::stdout();
    let _ = write!(out, "{question} Enter Y to proceed: ");
    let _ = out.flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => {
            let _ = writeln!(out);
            false
        }
        Ok(_) => matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
    }
}
