//! Client-controlled text made safe for one-line logs and JSON audit records.
//!
//! Certificate subjects and issuers, SNI, paths, header values: anything a
//! client chose is hostile. Before it goes into a log line or an audit record
//! it is
//! - **escaped**: written as a JSON string body, with every control
//!   character (C0, DEL, C1), the Unicode line and paragraph separators and
//!   the bidirectional overrides as `\uXXXX`, so it can neither end the line,
//!   nor drive a terminal, nor reorder what an operator reads;
//! - **capped**: at most [`LOG_CAP`] (logs) or a caller-given number of
//!   bytes of the input, cut on a character boundary, with `…(N bytes)`
//!   telling the original length.
//!
//! In a log line the value is quoted (`subject="CN=a\nINFO …"`), so it cannot
//! forge further `key=value` fields either.

use std::fmt;

/// The most bytes of one client-controlled string a log line carries.
pub const LOG_CAP: usize = 256;

/// Whether `c` must be written as `\uXXXX` (besides `"` and `\`).
fn needs_unicode_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{feff}')
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Append `s` escaped as the body of a JSON string (no quotes), capped at
/// `cap` bytes of input. Plain printable text is copied in one piece.
pub fn push_json_escaped(out: &mut String, s: &str, cap: usize) {
    let (body, cut) = cap_at(s, cap);
    let mut start = 0;
    for (i, c) in body.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            c if needs_unicode_escape(c) => None,
            _ => continue,
        };
        out.push_str(&body[start..i]);
        start = i + c.len_utf8();
        match esc {
            Some(e) => out.push_str(e),
            None => push_unicode_escape(out, c),
        }
    }
    out.push_str(&body[start..]);
    if cut {
        out.push_str("…(");
        push_decimal(out, s.len() as u64);
        out.push_str(" bytes)");
    }
}

/// `\uXXXX` (a UTF-16 code unit; every escaped character is in the BMP).
fn push_unicode_escape(out: &mut String, c: char) {
    let mut units = [0u16; 2];
    for u in c.encode_utf16(&mut units) {
        out.push_str("\\u");
        for shift in [12u16, 8, 4, 0] {
            out.push(char::from(HEX[usize::from((*u >> shift) & 0xf)]));
        }
    }
}

/// `s` cut to at most `cap` bytes on a character boundary, and whether it was cut.
fn cap_at(s: &str, cap: usize) -> (&str, bool) {
    if s.len() <= cap {
        return (s, false);
    }
    let mut end = cap;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// Append the decimal digits of `n` without `format!`.
pub fn push_decimal(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    push_ascii(out, &buf[i..]);
}

/// Append `bytes`, each as the character of its value (as `char::from`
/// would), in one copy when they are ASCII, as the callers' digits, hex and
/// time stamps always are: pushing them one `char` at a time cost about
/// 1 200 instructions per hot-path request in the audit record alone.
pub fn push_ascii(out: &mut String, bytes: &[u8]) {
    if bytes.is_ascii() {
        // ASCII is UTF-8, so this never takes the fallback.
        out.push_str(std::str::from_utf8(bytes).unwrap_or_default());
    } else {
        out.extend(bytes.iter().map(|&b| char::from(b)));
    }
}

/// A client-controlled string for a log field: quoted, escaped, capped at
/// [`LOG_CAP`]. Use as `tracing::warn!(subject = %text::untrusted(s), …)`.
pub fn untrusted(s: &str) -> Untrusted<'_> {
    Untrusted(s, LOG_CAP)
}

/// As [`untrusted`], capped at `cap` bytes instead: for a value already cut
/// (with its `…(N bytes)` mark) to a bound of its own a little above
/// [`LOG_CAP`], which a second cut would mark with the wrong length.
pub fn untrusted_capped(s: &str, cap: usize) -> Untrusted<'_> {
    Untrusted(s, cap)
}

/// See [`untrusted`].
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(&'a str, usize);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::with_capacity(self.0.len().min(self.1) + 16);
        out.push('"');
        push_json_escaped(&mut out, self.0, self.1);
        out.push('"');
        f.write_str(&out)
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An address as its `Display` text, IPv4 without `core::fmt` (every key
/// operation's audit record carries one).
pub fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(&mut out, u64::from(octet));
            }
            out
        }
        std::net::IpAddr::V6(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_is_pushed_as_char_by_char() {
        for bytes in [&b"0123abcZ:-."[..], b"", &[0x41, 0xe9, 0x7f, 0x80, 0xff]] {
            let mut fast = String::from("x");
            push_ascii(&mut fast, bytes);
            let mut slow = String::from("x");
            slow.extend(bytes.iter().map(|&b| char::from(b)));
            assert_eq!(fast, slow, "{bytes:?}");
        }
    }

    fn esc(s: &str, cap: usize) -> String {
        let mut out = String::new();
        push_json_escaped(&mut out, s, cap);
        out
    }

    #[test]
    fn line_breaks_and_controls_cannot_survive() {
        let hostile = "CN=x\n2099-01-01T00:00:00Z  INFO request status=201\r\u{1b}[31m\u{85}\u{2028}\u{202e}\"\\";
        let e = esc(hostile, 1000);
        assert!(
            !e.chars().any(|c| c.is_control() || needs_unicode_escape(c)),
            "{e:?}"
        );
        assert_eq!(
            e,
            "CN=x\\n2099-01-01T00:00:00Z  INFO request status=201\\r\\u001b[31m\\u0085\\u2028\\u202e\\\"\\\\"
        );
        // It is a valid JSON string body that decodes to the original.
        let back: String = serde_json::from_str(&format!("\"{e}\"")).unwrap();
        assert_eq!(back, hostile);
    }

    #[test]
    fn capped_on_a_character_boundary_with_the_original_length() {
        let s = "é".repeat(300); // 600 bytes
        let e = esc(&s, 255);
        assert!(e.starts_with(&"é".repeat(127)), "{e}");
        assert!(e.ends_with("…(600 bytes)"), "{e}");
        assert_eq!(esc("short", 255), "short");
        let logged = untrusted(&"A".repeat(20_000)).to_string();
        assert!(logged.len() < LOG_CAP + 32, "{}", logged.len());
        assert!(logged.starts_with('"') && logged.ends_with("(20000 bytes)\""));
    }

    #[test]
    fn decimal() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut s = String::new();
            push_decimal(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn ip_text_is_the_display_text() {
        for a in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "::ffff:10.0.0.1",
            "2001:db8::42",
        ] {
            let ip: std::net::IpAddr = a.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string(), "{a}");
        }
    }

    #[test]
    fn a_value_cut_once_is_not_cut_again_with_the_wrong_length() {
        let cut = format!("{}…(2131 bytes)", "a".repeat(256));
        let once = untrusted_capped(&cut, 256 + 32).to_string();
        assert!(once.ends_with("…(2131 bytes)\""), "{once}");
        let twice = untrusted(&cut).to_string();
        assert!(!twice.ends_with("…(2131 bytes)\""), "{twice}");
    }
}
