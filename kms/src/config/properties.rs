//! A lexer for Java `.properties` files, following `java.util.Properties.load`.
//!
//! The rules, as Java applies them:
//! - A *natural line* ends at `\n`, `\r` or `\r\n`. A *logical line* is one natural line, or
//!   several joined by continuations: a line ending in an odd number of backslashes continues
//!   on the next one, whose leading whitespace (space, tab, form feed) is dropped.
//! - Blank lines are skipped. A line whose first non-blank character is `#` or `!` is a
//!   comment (only at the start of a logical line: a continued line never becomes a comment,
//!   and a comment never continues).
//! - The key ends at the first unescaped `=`, `:` or whitespace; whitespace around the
//!   separator is skipped, so `k = v`, `k:v` and `k v` are all `k` → `v`.
//! - Escapes: `\t \n \r \f`, `\uXXXX` (UTF-16, surrogate pairs combine), and `\x` is `x`
//!   for any other `x` (so `\\`, `\=`, `\:`, `\ `, `\#`).
//! - Trailing whitespace of a value is kept. That is Java's rule and we keep it, but every
//!   such entry is flagged ([`Entry::trailing_whitespace`]): a password with a trailing
//!   space is a classic trap.
//!
//! Where we differ from Java, on purpose: the file is read as UTF-8 (Java 9+ reads
//! `.properties` resource bundles as UTF-8) and falls back to ISO-8859-1 (what
//! `Properties.load(InputStream)` assumes) when the bytes are not valid UTF-8; a leading
//! UTF-8 byte-order mark is dropped; malformed `\u` escapes, unpaired surrogates and empty
//! keys are reported instead of aborting or being kept; lines and files are bounded. The
//! lexer never panics and reports every problem with the line where its logical line starts.
//! Duplicate keys are returned as they are: the layer above refuses them.

use std::fmt;
use std::str::Chars;

use zeroize::Zeroizing;

use lines::{LineReader, Logical};

/// The largest `.properties` file we read, in bytes.
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// The longest logical line we accept, in characters (after joining continuations).
pub const MAX_LINE_CHARS: usize = 64 * 1024;

/// One `key=value` entry of a properties file.
#[derive(Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key, escapes resolved.
    pub key: String,
    /// The value, escapes resolved, trailing whitespace kept. May hold a password, hence
    /// zeroized on drop and never printed by `Debug`.
    pub value: Zeroizing<String>,
    /// 1-based number of the natural line where this entry's logical line starts.
    pub line: usize,
    /// The value ends in unescaped whitespace, which Java keeps as part of the value.
    pub trailing_whitespace: bool,
    /// The value had a malformed escape (reported in [`Lexed::errors`]); `value` then keeps
    /// the bad escape literally. Callers should not use such a value.
    pub malformed: bool,
    /// A natural line that a continuation (a backslash at the end of the
    /// line before) joined into the value although it reads like a setting
    /// of its own (`kms.…=…`): most likely a stray backslash.
    pub swallowed_line: Option<usize>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Entry")
            .field("key", &self.key)
            .field(
                "value",
                &format_args!("<{} chars>", self.value.chars().count()),
            )
            .field("line", &self.line)
            .field("trailing_whitespace", &self.trailing_whitespace)
            .field("malformed", &self.malformed)
            .finish()
    }
}

/// A problem the lexer found on one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    /// 1-based line where the logical line starts.
    pub line: usize,
    /// What is wrong.
    pub kind: LexErrorKind,
}

/// The kinds of lexer problems. Messages never quote the line (it may hold a password).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LexErrorKind {
    /// `\u` not followed by four hexadecimal digits.
    #[error(
        "malformed \\uXXXX escape: write exactly four hexadecimal digits after \\u, or \\\\u for a literal backslash-u"
    )]
    MalformedUnicodeEscape,
    /// A `\uD800`-`\uDFFF` escape that is not half of a high/low surrogate pair.
    #[error(
        "unpaired UTF-16 surrogate in a \\u escape: write the character itself, or both halves of the pair (\\uD83D\\uDE00)"
    )]
    UnpairedSurrogate,
    /// A logical line longer than [`MAX_LINE_CHARS`].
    #[error("line is longer than 65536 characters: shorten it")]
    LineTooLong,
    /// A line such as `=value` whose key is empty.
    #[error("entry has no key: write key=value")]
    EmptyKey,
}

/// The result of lexing a whole file.
#[derive(Debug, Default)]
pub struct Lexed {
    /// Entries in file order, duplicates included.
    pub entries: Vec<Entry>,
    /// Every problem found, in file order.
    pub errors: Vec<LexError>,
}

/// The text of a properties file, decoded.
pub struct Decoded {
    /// The text, zeroized on drop (it holds passwords).
    pub text: Zeroizing<String>,
    /// `Some(line)` when the bytes were not valid UTF-8 and were read as ISO-8859-1; `line`
    /// is where the first invalid byte sits.
    pub latin1_fallback: Option<usize>,
}

/// Decodes file bytes: UTF-8 (a leading byte-order mark dropped), or ISO-8859-1 when the
/// bytes are not valid UTF-8 (every byte is then the code point of the same value).
pub fn decode(bytes: &[u8]) -> Decoded {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Decoded {
            text: Zeroizing::new(text.to_owned()),
            latin1_fallback: None,
        },
        Err(err) => {
            let valid = bytes.get(..err.valid_up_to()).unwrap_or_default();
            let line = 1 + count_line_breaks(valid);
            let text: String = bytes.iter().map(|&b| char::from(b)).collect();
            Decoded {
                text: Zeroizing::new(text),
                latin1_fallback: Some(line),
            }
        }
    }
}

/// Counts natural line breaks (`\n`, `\r`, `\r\n`) in `bytes`.
fn count_line_breaks(bytes: &[u8]) -> usize {
    let mut count = 0;
    let mut previous_cr = false;
    for &b in bytes {
        match b {
            b'\r' => count += 1,
            b'\n' if !previous_cr => count += 1,
            _ => {}
        }
        previous_cr = b == b'\r';
    }
    count
}

/// Lexes the text of a properties file into entries and errors.
pub fn lex(text: &str) -> Lexed {
    let mut out = Lexed::default();
    let mut reader = LineReader::new(text);
    while let Some(logical) = reader.next_logical() {
        if logical.too_long {
            out.errors.push(LexError {
                line: logical.line,
                kind: LexErrorKind::LineTooLong,
            });
            continue;
        }
        split_entry(&logical, &mut out);
    }
    out
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0c')
}

/// Splits a logical line into key and value and resolves escapes.
fn split_entry(logical: &Logical, out: &mut Lexed) {
    let raw = logical.raw.as_str();
    let line = logical.line;
    let mut key_end = raw.len();
    let mut value_start = raw.len();
    let mut has_separator = false;
    let mut backslash = false;
    for (i, c) in raw.char_indices() {
        if !backslash && (c == '=' || c == ':') {
            (key_end, value_start, has_separator) = (i, i + 1, true);
            break;
        }
        if !backslash && is_blank(c) {
            (key_end, value_start) = (i, i + c.len_utf8());
            break;
        }
        backslash = c == '\\' && !backslash;
    }
    let rest = raw.get(value_start..).unwrap_or_default();
    for c in rest.chars() {
        if is_blank(c) {
            value_start += c.len_utf8();
        } else if !has_separator && (c == '=' || c == ':') {
            has_separator = true;
            value_start += 1;
        } else {
            break;
        }
    }
    let raw_key = raw.get(..key_end).unwrap_or_default();
    let raw_value = raw.get(value_start..).unwrap_or_default();

    let key = match unescape(raw_key) {
        Ok(key) if key.is_empty() => {
            out.errors.push(LexError {
                line,
                kind: LexErrorKind::EmptyKey,
            });
            return;
        }
        Ok(key) => key.to_string(),
        Err(kind) => {
            out.errors.push(LexError { line, kind });
            return;
        }
    };
    let (value, malformed) = match unescape(raw_value) {
        Ok(value) => (value, false),
        Err(kind) => {
            out.errors.push(LexError { line, kind });
            (Zeroizing::new(raw_value.to_owned()), true)
        }
    };
    out.entries.push(Entry {
        key,
        value,
        line,
        trailing_whitespace: ends_in_unescaped_blank(raw_value),
        malformed,
        swallowed_line: swallowed_line(logical, value_start),
    });
}

/// The first natural line joined into the value (at or after byte
/// `value_start` of the logical line) that reads like a setting of its own.
fn swallowed_line(logical: &Logical, value_start: usize) -> Option<usize> {
    logical.joined.iter().find_map(|&(line, at)| {
        let text = logical.raw.get(at..).filter(|_| at >= value_start)?;
        let key_len = text
            .find(|c: char| c == '=' || c == ':' || is_blank(c))
            .filter(|&n| n > 0)?;
        let looks_like_key = ["kms.", "kmip."].iter().any(|p| text.starts_with(p))
            && text.get(..key_len).is_some_and(|k| {
                k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            });
        looks_like_key.then_some(line)
    })
}

/// True when `raw` ends in a blank that is not escaped by a backslash.
fn ends_in_unescaped_blank(raw: &str) -> bool {
    let mut rev = raw.chars().rev();
    match rev.next() {
        Some(c) if is_blank(c) => rev.take_while(|&c| c == '\\').count() % 2 == 0,
        _ => false,
    }
}

/// Resolves escapes the way Java's `Properties.loadConvert` does.
fn unescape(raw: &str) -> Result<Zeroizing<String>, LexErrorKind> {
    let mut out = Zeroizing::new(String::with_capacity(raw.len()));
    let mut it = raw.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            // A lone backslash at the very end cannot survive the line reader; drop it.
            None => {}
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => out.push(unicode_escape(&mut it)?),
            Some(other) => out.push(other),
        }
    }
    Ok(out)
}

/// Reads the `XXXX` of a `\uXXXX` escape (the `\u` already consumed), combining a
/// surrogate pair written as two escapes.
fn unicode_escape(it: &mut Chars<'_>) -> Result<char, LexErrorKind> {
    let unit = hex4(it)?;
    match unit {
        0xD800..=0xDBFF => {
            let mut look = it.clone();
            if look.next() != Some('\\') || look.next() != Some('u') {
                return Err(LexErrorKind::UnpairedSurrogate);
            }
            let low = hex4(&mut look)?;
            if !(0xDC00..=0xDFFF).contains(&low) {
                return Err(LexErrorKind::UnpairedSurrogate);
            }
            *it = look;
            let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
            char::from_u32(code).ok_or(LexErrorKind::UnpairedSurrogate)
        }
        0xDC00..=0xDFFF => Err(LexErrorKind::UnpairedSurrogate),
        _ => char::from_u32(unit).ok_or(LexErrorKind::MalformedUnicodeEscape),
    }
}

fn hex4(it: &mut Chars<'_>) -> Result<u32, LexErrorKind> {
    let mut value = 0u32;
    for _ in 0..4 {
        let digit = it
            .next()
            .and_then(|c| c.to_digit(16))
            .ok_or(LexErrorKind::MalformedUnicodeEscape)?;
        value = (value << 4) | digit;
    }
    Ok(value)
}

mod lines;
#[cfg(test)]
mod tests;
