//! The shipped `conf/kms.properties` and `docs/configuration.md` agree with the code: every
//! key is there, the commented-out defaults are the real defaults, the file loads once the
//! operator fills in the two values it leaves blank.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cmx_kms::config::{self, keys::KEYS};
use secrecy::ExposeSecret;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The values an operator must fill in, given through the environment as a deployment
/// could (the shipped file leaves them blank on purpose).
fn operator_env() -> Vec<(String, String)> {
    vec![
        ("CMX_KMS_KEYSTORE_PASSWORD".into(), "0123456".into()),
        (
            "CMX_KMS_HSM_SERVER_URL".into(),
            "https://kmshsm.myCorp.com".into(),
        ),
    ]
}

/// `key -> (value, commented out)` for every `key=value` or `#key=value` line.
fn shipped_lines(text: &str) -> BTreeMap<String, (String, bool)> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let (body, commented) = match line.strip_prefix('#') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let Some((key, value)) = body.split_once('=') else {
            continue;
        };
        if key.contains(' ') || !(key.starts_with("kms.") || key.starts_with("kmip.")) {
            continue;
        }
        let previous = out.insert(key.to_string(), (value.to_string(), commented));
        assert!(
            previous.is_none(),
            "{key} appears twice in conf/kms.properties"
        );
    }
    out
}

#[test]
fn shipped_file_refuses_to_load_until_filled_in() {
    let errors =
        config::load(&repo("conf/kms.properties"), &[]).expect_err("blank values must be errors");
    let keys: Vec<_> = errors
        .errors
        .iter()
        .filter_map(|e| e.key.as_deref())
        .collect();
    assert_eq!(
        keys,
        ["kms.keystore.password", "kms.hsm.server.url"],
        "{errors}"
    );
}

#[test]
fn shipped_file_loads_once_filled_in() {
    let loaded = config::load(&repo("conf/kms.properties"), &operator_env())
        .unwrap_or_else(|e| panic!("{e}"));
    let keyed: Vec<_> = loaded.warnings.iter().filter(|w| w.key.is_some()).collect();
    assert_eq!(keyed, Vec::<&config::ConfigWarning>::new());
    let c = loaded.config;
    assert_eq!(
        c.keystore.file,
        Path::new("/usr/share/kms/conf/kmsKeystore.jks")
    );
    assert_eq!(c.keystore.password.expose_secret(), "0123456");
    assert_eq!(c.hsm.endpoints.first().map(|e| e.port), Some(5696));
}

#[test]
fn shipped_file_lists_every_key_with_its_default() {
    let shipped = shipped_lines(&read("conf/kms.properties"));
    for spec in KEYS {
        let Some((value, commented)) = shipped.get(spec.name) else {
            panic!("conf/kms.properties does not mention {}", spec.name);
        };
        if *commented {
            assert_eq!(
                value, spec.default,
                "default of {} in conf/kms.properties",
                spec.name
            );
        }
    }
    for key in shipped.keys() {
        assert!(
            config::keys::find(key).is_some(),
            "conf/kms.properties names unknown key {key}"
        );
    }
    // The guide's order: the guide's keys come first, in the same order as KEYS.
    let text = read("conf/kms.properties");
    let order: Vec<&str> = text
        .lines()
        .filter_map(|line| line.trim_start_matches('#').split_once('='))
        .map(|(key, _)| key)
        .filter(|key| config::keys::find(key).is_some())
        .collect();
    let expected: Vec<&str> = KEYS.iter().map(|k| k.name).collect();
    assert_eq!(order, expected, "conf/kms.properties is not in KEYS order");
}

#[test]
fn commented_defaults_are_the_real_defaults() {
    let text = read("conf/kms.properties");
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest) if rest.starts_with("kms.") || rest.starts_with("kmip.") => rest,
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let origin = repo("conf/kms.properties");
    let mut plain =
        config::parse_str(&text, &origin, &operator_env()).unwrap_or_else(|e| panic!("{e}"));
    let mut explicit =
        config::parse_str(&uncommented, &origin, &operator_env()).unwrap_or_else(|e| panic!("{e}"));
    // Where the file keys are set (a line, or not at all) differs by design.
    plain.config.origins = config::Origins::default();
    explicit.config.origins = config::Origins::default();
    assert_eq!(
        format!("{:?}", plain.config),
        format!("{:?}", explicit.config)
    );
}

/// The key table of `docs/configuration.md`, as the code sees it.
fn expected_table() -> String {
    let mut out =
        String::from("| key | type | default | required | description |\n|---|---|---|---|---|\n");
    for spec in KEYS {
        let default = if spec.default.is_empty() {
            "(none)".to_string()
        } else {
            format!("`{}`", spec.default)
        };
        let doc = match spec.replaced_by {
            Some(new) => {
                format!("Legacy name of `{new}`: still accepted, with a deprecation warning.")
            }
            None => spec.doc.to_string(),
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {} |\n",
            spec.name, spec.ty, default, spec.required, doc
        ));
    }
    out
}

#[test]
fn docs_table_matches_the_keys() {
    let docs = read("docs/configuration.md");
    let table = docs
        .split_once("<!-- keys:begin -->\n")
        .and_then(|(_, rest)| rest.split_once("<!-- keys:end -->"))
        .map(|(table, _)| table);
    let expected = expected_table();
    assert!(
        table == Some(expected.as_str()),
        "docs/configuration.md: the table between <!-- keys:begin --> and <!-- keys:end --> must read:\n{expected}"
    );
}

/// The list of restart-only keys in the "Reload" section of `docs/configuration.md`.
fn expected_restart_list() -> String {
    KEYS.iter()
        .filter(|k| k.restart)
        .map(|k| format!("- `{}`\n", k.name))
        .collect()
}

#[test]
fn docs_list_the_keys_a_reload_cannot_apply() {
    let docs = read("docs/configuration.md");
    let list = docs
        .split_once("<!-- restart-keys:begin -->\n")
        .and_then(|(_, rest)| rest.split_once("<!-- restart-keys:end -->"))
        .map(|(list, _)| list);
    let expected = expected_restart_list();
    assert!(
        list == Some(expected.as_str()),
        "docs/configuration.md: the list between <!-- restart-keys:begin --> and <!-- restart-keys:end --> must read:\n{expected}"
    );
}
