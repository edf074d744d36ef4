//! Natural lines into logical lines, the way Java's `Properties.LineReader`
//! reads them: blank lines and comments skipped, leading blanks dropped,
//! continuations (an odd number of backslashes at the end) joined, each
//! logical line at most [`MAX_LINE_CHARS`] characters and tagged with the
//! natural line it starts on.

use std::iter::Peekable;
use std::str::Chars;

use zeroize::Zeroizing;

use super::{MAX_LINE_CHARS, is_blank};

/// One logical line, continuations joined, escapes not yet resolved.
pub(super) struct Logical {
    pub raw: Zeroizing<String>,
    /// The natural line it starts on.
    pub line: usize,
    /// Longer than [`MAX_LINE_CHARS`]: cut, and reported.
    pub too_long: bool,
    /// Each natural line a continuation joined to it, with the byte offset in
    /// `raw` where that line's text begins.
    pub joined: Vec<(usize, usize)>,
}

/// Reads logical lines the way Java's `Properties.LineReader` does.
pub(super) struct LineReader<'a> {
    chars: Peekable<Chars<'a>>,
    /// Number of the natural line the next character belongs to.
    line: usize,
}

impl<'a> LineReader<'a> {
    pub fn new(text: &'a str) -> Self {
        Self {
            chars: text.chars().peekable(),
            line: 1,
        }
    }

    /// The next logical line, `None` at the end of the text.
    pub fn next_logical(&mut self) -> Option<Logical> {
        let mut pending = Pending::new(self.line);
        loop {
            let here = self.line;
            let Some(c) = self.chars.next() else {
                return pending.at_end();
            };
            let eol = c == '\n' || c == '\r';
            if eol {
                if c == '\r' && self.chars.peek() == Some(&'\n') {
                    self.chars.next();
                }
                self.line = self.line.saturating_add(1);
            }
            if pending.passes_over(c, eol, here) {
                continue;
            }
            if !eol {
                pending.push(c);
            } else if pending.line_break() {
                return Some(pending.into_logical());
            }
        }
    }
}

/// The logical line being read, and where in it the reader is.
struct Pending {
    raw: Zeroizing<String>,
    chars: usize,
    too_long: bool,
    /// The natural line it started on.
    start: usize,
    /// Blanks (and, but after a continuation, empty lines) are skipped.
    skip_blank: bool,
    after_continuation: bool,
    /// The next character is the first of a natural line.
    new_line: bool,
    comment: bool,
    /// The line so far ends in an odd number of backslashes.
    backslash: bool,
    joined: Vec<(usize, usize)>,
}

impl Pending {
    fn new(line: usize) -> Self {
        Self {
            raw: Zeroizing::new(String::new()),
            chars: 0,
            too_long: false,
            start: line,
            skip_blank: true,
            after_continuation: false,
            new_line: true,
            comment: false,
            backslash: false,
            joined: Vec::new(),
        }
    }

    /// Whether `c`, on natural line `here`, is passed over: leading blanks,
    /// empty lines (not the one after a continuation), a comment's marker.
    fn passes_over(&mut self, c: char, eol: bool, here: usize) -> bool {
        if self.skip_blank {
            if is_blank(c) || (eol && !self.after_continuation) {
                return true;
            }
            self.skip_blank = false;
            if self.after_continuation {
                self.joined.push((here, self.raw.len()));
            }
            self.after_continuation = false;
        }
        if self.new_line {
            self.new_line = false;
            self.start = here;
            if c == '#' || c == '!' {
                self.comment = true;
                return true;
            }
        }
        false
    }

    /// A character other than a line break: kept (up to the limit) unless
    /// in a comment.
    fn push(&mut self, c: char) {
        if self.comment {
            return;
        }
        if self.chars < MAX_LINE_CHARS {
            self.raw.push(c);
            self.chars += 1;
        } else {
            self.too_long = true;
        }
        self.backslash = c == '\\' && !self.backslash;
    }

    /// A line break: whether it ends the logical line. A comment or an
    /// empty line starts over; after a backslash the line continues.
    fn line_break(&mut self) -> bool {
        if self.comment || self.chars == 0 {
            self.comment = false;
            self.new_line = true;
            self.skip_blank = true;
            self.backslash = false;
            self.raw.clear();
            self.chars = 0;
            self.joined.clear();
            return false;
        }
        if self.backslash {
            // Continuation: drop the backslash, skip the next line's leading blanks.
            self.raw.pop();
            self.chars = self.chars.saturating_sub(1);
            self.backslash = false;
            self.skip_blank = true;
            self.after_continuation = true;
            return false;
        }
        true
    }

    /// End of input: a pending line is returned, a final lone backslash dropped.
    fn at_end(mut self) -> Option<Logical> {
        if self.comment || self.chars == 0 {
            return None;
        }
        if self.backslash {
            self.raw.pop();
        }
        Some(self.into_logical())
    }

    fn into_logical(self) -> Logical {
        Logical {
            raw: self.raw,
            line: self.start,
            too_long: self.too_long,
            joined: self.joined,
        }
    }
}
