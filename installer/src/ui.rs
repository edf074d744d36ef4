//! Talking to the operator: the plan's confirmation.

use std::io::{BufRead as _, Write as _};

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
