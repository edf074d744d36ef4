//! Logging to stderr (journald adds timestamps under systemd).
//!
//! One event is one line. Call sites quote and escape client-controlled
//! values with [`crate::text::untrusted`]; as a backstop, [`OneLine`]
//! escapes any control character that still reaches the writer (a line
//! break inside an event, an escape sequence), so no value, forgotten or
//! not, can start a forged log line. ANSI colours are off for the same
//! reason: the writer cannot tell our escape sequences from a client's.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Initialise logging once. The filter comes from `CMX_KMS_LOG` (default
/// `info`); noisy dependencies are capped at `warn`.
pub fn init() {
    let filter = std::env::var("CMX_KMS_LOG").unwrap_or_else(|_| "info".into());
    let filter = EnvFilter::try_new(format!("{filter},rustls=warn,hyper=warn,h2=warn"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(OneLineStderr)
        .with_target(false)
        .with_ansi(false);
    let _ = if under_journald {
        builder.without_time().try_init()
    } else {
        builder.try_init()
    };
}

/// Makes a [`OneLine`] over stderr for each event.
#[derive(Clone, Copy, Debug, Default)]
pub struct OneLineStderr;

impl<'a> MakeWriter<'a> for OneLineStderr {
    type Writer = OneLine<io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        OneLine(io::stderr())
    }
}

/// A writer that receives one formatted event per `write` (as the fmt layer
/// writes them) and passes it on as exactly one line: a final `\n` is kept,
/// every other control character is written as `\uXXXX`.
#[derive(Debug)]
pub struct OneLine<W: Write>(pub W);

/// Whether a byte can start something that must not reach the log raw: a
/// C0 control or DEL, or the lead byte of a C1 control (U+0080-U+009F,
/// UTF-8 `C2 80`-`C2 9F`) or a separator or direction mark (`E2 80`, `E2 81`).
fn suspicious(b: u8) -> bool {
    b < 0x20 || b == 0x7f || b == 0xc2 || b == 0xe2
}

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, newline) = match buf.split_last() {
            Some((b'\n', body)) => (body, true),
            _ => (buf, false),
        };
        if !body.iter().copied().any(suspicious) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let text = String::from_utf8_lossy(body);
        let mut out = String::with_capacity(text.len() + 32);
        let mut start = 0;
        for (i, c) in text.char_indices() {
            if c == '\t' || !(c.is_control() || is_separator_or_mark(c)) {
                continue;
            }
            out.push_str(&text[start..i]);
            start = i + c.len_utf8();
            // Reuse the JSON escaper for the one character.
            let mut tmp = [0u8; 4];
            crate::text::push_json_escaped(&mut out, c.encode_utf8(&mut tmp), 4);
        }
        out.push_str(&text[start..]);
        if newline {
            out.push('\n');
        }
        self.0.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn is_separator_or_mark(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(s: &str) -> String {
        let mut w = OneLine(Vec::new());
        w.write_all(s.as_bytes()).unwrap();
        String::from_utf8(w.0).unwrap()
    }

    #[test]
    fn an_event_stays_one_line() {
        assert_eq!(through("plain line é\n"), "plain line é\n");
        assert_eq!(
            through("WARN x subject=CN=a\n2099-01-01 INFO forged\r\u{1b}[2J\u{2028}\n"),
            "WARN x subject=CN=a\\n2099-01-01 INFO forged\\r\\u001b[2J\\u2028\n"
        );
        assert_eq!(through("tab\tkept\n"), "tab\tkept\n");
    }
}
