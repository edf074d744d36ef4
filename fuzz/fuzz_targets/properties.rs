#![no_main]
// The properties lexer and the whole configuration loader must never panic, whatever the
// bytes, and must keep their promises: every entry and error has a line inside the file,
// and the error report has exactly one line per problem.

use std::path::Path;

use cmx_kms::config::{self, properties};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let decoded = properties::decode(data);
    let text: &str = &decoded.text;
    let lines = 1 + text.matches('\n').count() + text.matches('\r').count();
    let lexed = properties::lex(text);
    assert!(lexed.entries.iter().all(|e| (1..=lines).contains(&e.line)));
    assert!(lexed.errors.iter().all(|e| (1..=lines).contains(&e.line)));

    // The same text as a file, and as the value of an environment override.
    let env = [("CMX_KMS_KEYSTORE_PASSWORD".to_string(), text.to_string())];
    for env in [&env[..], &[]] {
        if let Err(errors) = config::parse_str(text, Path::new("/fuzz/kms.properties"), env) {
            assert!(!errors.errors.is_empty());
            assert_eq!(errors.to_string().lines().count(), errors.errors.len());
        }
    }
});
