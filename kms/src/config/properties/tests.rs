//! One test per lexer rule. Expected values follow `java.util.Properties.load`.

use super::*;

/// Lexes `text` and returns (key, value, line) triples; fails on any lexer error.
fn entries(text: &str) -> Vec<(String, String, usize)> {
    let lexed = lex(text);
    assert_eq!(lexed.errors, vec![], "unexpected lexer errors for {text:?}");
    lexed
        .entries
        .iter()
        .map(|e| (e.key.clone(), e.value.to_string(), e.line))
        .collect()
}

fn one(text: &str) -> (String, String) {
    let all = entries(text);
    assert_eq!(all.len(), 1, "expected one entry in {text:?}, got {all:?}");
    let (k, v, _) = all.into_iter().next().unwrap();
    (k, v)
}

fn kv(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

#[test]
fn separators_equals_colon_and_whitespace() {
    assert_eq!(one("a=b"), kv("a", "b"));
    assert_eq!(one("a:b"), kv("a", "b"));
    assert_eq!(one("a b"), kv("a", "b"));
    assert_eq!(one("a\tb"), kv("a", "b"));
    assert_eq!(one("a\x0cb"), kv("a", "b"));
    assert_eq!(one("  a  =  b"), kv("a", "b"));
    assert_eq!(one("a : b"), kv("a", "b"));
    // Whitespace then one separator: both belong to the separator.
    assert_eq!(one("a = = b"), kv("a", "= b"));
    assert_eq!(one("a==b"), kv("a", "=b"));
    assert_eq!(one("a:=b"), kv("a", "=b"));
    // A key alone has an empty value.
    assert_eq!(one("a"), kv("a", ""));
    assert_eq!(one("a="), kv("a", ""));
    assert_eq!(one("a   "), kv("a", ""));
}

#[test]
fn escaped_separators_belong_to_the_key() {
    assert_eq!(one(r"a\=b=c"), kv("a=b", "c"));
    assert_eq!(one(r"a\:b:c"), kv("a:b", "c"));
    assert_eq!(one(r"a\ b c"), kv("a b", "c"));
    // An escaped backslash does not escape the separator after it.
    assert_eq!(one(r"a\\=b"), kv(r"a\", "b"));
}

#[test]
fn comments_only_at_the_start_of_a_logical_line() {
    assert_eq!(
        entries("# c\n! c\n   # indented\n\t! tab\na=b # not a comment\n").len(),
        1
    );
    assert_eq!(
        one("# c\na=b # not a comment"),
        kv("a", "b # not a comment")
    );
    assert_eq!(one("a=#b"), kv("a", "#b"));
    // A continued line is never a comment.
    assert_eq!(one("a=b\\\n#c"), kv("a", "b#c"));
    // A comment never continues: the next line is an entry of its own.
    assert_eq!(entries("# c \\\na=b"), vec![("a".into(), "b".into(), 2)]);
}

#[test]
fn blank_lines_are_skipped_and_lines_counted() {
    let text = "\n\n   \n\t\na=1\r\n\r\nb=2\rc=3\n";
    assert_eq!(
        entries(text),
        vec![
            ("a".into(), "1".into(), 5),
            ("b".into(), "2".into(), 7),
            ("c".into(), "3".into(), 8)
        ]
    );
}

#[test]
fn continuation_joins_lines_and_drops_leading_blanks() {
    assert_eq!(one("a=b\\\n    c"), kv("a", "bc"));
    assert_eq!(one("a=b \\\n \t c"), kv("a", "b c"));
    assert_eq!(one("a=b\\\r\n  c\\\r  d"), kv("a", "bcd"));
    // The key may continue too.
    assert_eq!(one("ab\\\n  cd=e"), kv("abcd", "e"));
    // The entry's line is where the logical line starts.
    assert_eq!(
        entries("\nx=1\\\n2\\\n3\ny=4"),
        vec![("x".into(), "123".into(), 2), ("y".into(), "4".into(), 5)]
    );
}

#[test]
fn a_continuation_that_swallows_a_setting_is_flagged() {
    let swallowed = |text: &str| lex(text).entries.first().and_then(|e| e.swallowed_line);
    // A stray backslash at the end of a value joins the next setting.
    assert_eq!(swallowed("kms.a=b\\\nkms.server.port=8443\n"), Some(2));
    assert_eq!(swallowed("\nkms.a=b\\\n  kmip.server.port 5696"), Some(3));
    // A value continued on purpose is not.
    assert_eq!(swallowed("kms.a=one,\\\n  two,\\\n  three"), None);
    assert_eq!(
        swallowed("kms.a=b\\\nkms.x"),
        None,
        "no separator: not a setting"
    );
    // Nor is a continued key.
    assert_eq!(swallowed("kms.\\\nkms.a=b"), None);
    assert_eq!(swallowed("kms.a=b"), None);
}

#[test]
fn only_an_odd_number_of_backslashes_continues() {
    assert_eq!(entries("a=b\\\\\nc=d").len(), 2);
    assert_eq!(one("a=b\\\\\\\nc"), kv("a", "b\\c"));
    assert_eq!(entries("a=b\\\\\\\\\nc").len(), 2);
}

#[test]
fn continuation_into_a_blank_line_ends_the_entry() {
    assert_eq!(
        entries("a=b\\\n\nc=d"),
        vec![("a".into(), "b".into(), 1), ("c".into(), "d".into(), 3)]
    );
    // A backslash at the end of the file is dropped.
    assert_eq!(one("a=b\\"), kv("a", "b"));
    assert_eq!(one("a=b\\\n"), kv("a", "b"));
}

#[test]
fn escapes() {
    assert_eq!(one(r"a=\t\n\r\f\\"), kv("a", "\t\n\r\x0c\\"));
    // Any other escaped character is itself.
    assert_eq!(one(r"a=\q\#\!\=\:\ \x"), kv("a", "q#!=: x"));
    assert_eq!(one(r"a=C:\\dir\\file"), kv("a", r"C:\dir\file"));
    assert_eq!(one(r"k\u0065y=\u0041\u00e9"), kv("key", "A\u{e9}"));
    // Leading whitespace of a value is kept when escaped.
    assert_eq!(one(r"a=\ \ b"), kv("a", "  b"));
}

#[test]
fn unicode_escape_surrogate_pairs() {
    assert_eq!(one(r"a=\uD83D\uDE00!"), kv("a", "\u{1F600}!"));
    assert_eq!(one(r"a=\ud83d\ude00"), kv("a", "\u{1F600}"));
    for bad in [
        r"a=\uD83D",
        r"a=\uD83Dx",
        r"a=\uDE00",
        r"a=\uD83D\u0041",
        r"a=\uD83D\n",
    ] {
        let lexed = lex(bad);
        assert_eq!(
            lexed.errors,
            vec![LexError {
                line: 1,
                kind: LexErrorKind::UnpairedSurrogate
            }],
            "{bad}"
        );
        assert!(lexed.entries.first().is_some_and(|e| e.malformed), "{bad}");
    }
}

#[test]
fn malformed_unicode_escape_is_an_error_on_its_line() {
    for bad in [r"a=\u", r"a=\u12", r"a=\uXYZW", r"a=\u00G0"] {
        let lexed = lex(&format!("ok=1\n{bad}\nnext=2"));
        assert_eq!(
            lexed.errors,
            vec![LexError {
                line: 2,
                kind: LexErrorKind::MalformedUnicodeEscape
            }],
            "{bad}"
        );
        // The rest of the file is still read.
        assert_eq!(lexed.entries.len(), 3, "{bad}");
        assert!(lexed.entries.get(1).is_some_and(|e| e.malformed));
    }
    // A bad escape in a key drops the entry.
    let lexed = lex(r"k\uZZZZ=1");
    assert_eq!(lexed.entries, vec![]);
    assert_eq!(lexed.errors.len(), 1);
}

#[test]
fn trailing_whitespace_is_kept_and_flagged() {
    let lexed = lex("pw=secret  \nok=1\nesc=x\\ \ntab=y\t\n");
    assert_eq!(lexed.errors, vec![]);
    let got: Vec<_> = lexed
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str(), e.trailing_whitespace))
        .collect();
    assert_eq!(
        got,
        vec![
            ("pw", "secret  ", true),
            ("ok", "1", false),
            // Escaped: explicit, not flagged.
            ("esc", "x ", false),
            ("tab", "y\t", true),
        ]
    );
    // A backslash followed by a space is not a continuation: the classic trap.
    let lexed = lex("a=b\\ \nc=d");
    assert_eq!(lexed.entries.len(), 2);
    assert_eq!(
        lexed.entries.first().map(|e| e.trailing_whitespace),
        Some(false)
    );
    let lexed = lex("a=b\\  \nc=d");
    assert_eq!(
        lexed.entries.first().map(|e| e.trailing_whitespace),
        Some(true)
    );
}

#[test]
fn empty_key_is_an_error() {
    for text in ["=v", ":v", "  = v"] {
        let lexed = lex(text);
        assert_eq!(
            lexed.errors,
            vec![LexError {
                line: 1,
                kind: LexErrorKind::EmptyKey
            }]
        );
        assert_eq!(lexed.entries, vec![]);
    }
}

#[test]
fn duplicates_are_returned_in_order() {
    assert_eq!(
        entries("a=1\na=2"),
        vec![("a".into(), "1".into(), 1), ("a".into(), "2".into(), 2)]
    );
}

#[test]
fn overlong_line_is_an_error_and_the_rest_is_read() {
    let long = "x".repeat(MAX_LINE_CHARS + 10);
    let lexed = lex(&format!("a=1\nb={long}\nc=3"));
    assert_eq!(
        lexed.errors,
        vec![LexError {
            line: 2,
            kind: LexErrorKind::LineTooLong
        }]
    );
    assert_eq!(lexed.entries.len(), 2);
}

#[test]
fn decode_utf8_bom_and_latin1_fallback() {
    let d = decode("a=\u{e9}".as_bytes());
    assert_eq!((d.text.as_str(), d.latin1_fallback), ("a=\u{e9}", None));
    let d = decode(b"\xEF\xBB\xBFa=1");
    assert_eq!((d.text.as_str(), d.latin1_fallback), ("a=1", None));
    let d = decode(b"x=1\r\ny=2\nkms.keystore.password=caf\xE9");
    assert_eq!(
        d.text.as_str(),
        "x=1\r\ny=2\nkms.keystore.password=caf\u{e9}"
    );
    assert_eq!(d.latin1_fallback, Some(3));
}

#[test]
fn debug_hides_values() {
    let lexed = lex("kms.keystore.password=hunter2");
    let shown = format!("{lexed:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("kms.keystore.password"), "{shown}");
}

#[test]
fn never_panics_on_odd_input() {
    // A deterministic mini-fuzz over the characters that matter to the lexer.
    let alphabet: Vec<char> = "ab=: \t\x0c\\\r\n#!u0dDeE8F\u{e9}\u{1F600}"
        .chars()
        .collect();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..3000 {
        let mut text = String::new();
        for _ in 0..(state % 40) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let index = usize::try_from(state % alphabet.len() as u64).unwrap();
            text.push(alphabet[index]);
        }
        let lexed = lex(&text);
        let lines = text.matches(['\n', '\r']).count() + 1;
        assert!(
            lexed.entries.iter().all(|e| e.line >= 1 && e.line <= lines),
            "{text:?}"
        );
        assert!(
            lexed.errors.iter().all(|e| e.line >= 1 && e.line <= lines),
            "{text:?}"
        );
    }
}
