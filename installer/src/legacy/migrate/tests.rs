use super::*;

#[test]
fn escaped_values_read_back() {
    for v in [
        "plain",
        " lead",
        "trail ",
        "a\\b",
        "x=y:z #!",
        "tab\there",
        "ünï€😀",
        "line\nbreak",
    ] {
        let text = format!("k={}\n", escape_value(v));
        let lexed = cmx_kms::config::properties::lex(&text);
        assert!(lexed.errors.is_empty());
        assert_eq!(
            lexed.entries.first().map(|e| e.value.as_str()),
            Some(v),
            "{text}"
        );
    }
}
