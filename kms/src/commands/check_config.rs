//! `cmx-kms check-config`: kms.properties, the keystore and the other files it
//! names, checked as a start would use them but without changing anything
//! (`crate::node::files`); exit 0, or 78 listing every problem.

#![allow(clippy::print_stdout)] // The command's report is its output.

use std::path::Path;

use super::CommandError;
use crate::config::{self, Config, ConfigError, Protocol};
use crate::keystore::{EntryKind, KeyStore};
use crate::node::{self, files};
use crate::tls::{PinnedClient, Role};

/// Certificates expiring within this many days draw a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// What a check found.
#[derive(Default)]
pub struct Findings {
    /// What stops the node from starting or serving.
    pub problems: Vec<String>,
    /// The same, already saying their file and line.
    pub located: Vec<String>,
    /// What works now but needs an operator soon.
    pub warnings: Vec<String>,
    /// Facts worth a line in the report.
    pub notes: Vec<String>,
}

/// Check the keystore against the configuration: the aliases it needs exist
/// and hold the right kind of entry, clients are pinned, certificates valid.
pub fn check_keystore(config: &Config, ks: &KeyStore) -> Findings {
    let mut f = Findings::default();
    let now = crate::time::unix_now();
    required_entries(config, ks, &mut f);
    for (key, pattern) in node::unmatched_aliases(config, ks) {
        f.warnings.push(format!(
            "{}: {key}: '{pattern}' matches no certificate entry of the keystore, so it pins no client",
            config.origins.of(key)
        ));
    }
    match node::pinned_clients(config, ks) {
        Ok(pins) => pinned_client_findings(&pins, now, &mut f),
        Err(e) => f.problems.push(e.to_string()),
    }
    server_certificate_findings(config, ks, now, &mut f);
    f
}

/// The entries the configuration names exist and are of the right kind.
fn required_entries(config: &Config, ks: &KeyStore, f: &mut Findings) {
    let mut need = |alias: &str, kind: EntryKind, key: &str| {
        let found = match kind {
            EntryKind::PrivateKey => ks.private_key(alias).map(|_| ()),
            EntryKind::Certificate => ks.certificate(alias).map(|_| ()),
        };
        if let Err(e) = found {
            let at = config.origins.error(key, format!("{key}={alias}: {e}"));
            f.located.push(at.to_string());
        }
    };
    need(
        &config.server.key_alias,
        EntryKind::PrivateKey,
        "kms.server.key.alias",
    );
    if config.hsm.protocol == Protocol::Kmip1 {
        need(
            &config.keystore.alias,
            EntryKind::PrivateKey,
            "kms.keystore.alias",
        );
        need(
            &config.hsm.ca_alias,
            EntryKind::Certificate,
            "kms.hsm.ca.alias",
        );
    }
}

/// Both roles have a pinned client, and none has expired or soon will.
fn pinned_client_findings(pins: &[PinnedClient], now: i64, f: &mut Findings) {
    let backends = pins.iter().filter(|p| p.role == Role::Backend).count();
    let devices = pins.len() - backends;
    if backends == 0 {
        f.warnings.push(
            "no backend client certificate is pinned (kms.clients.backend.aliases): the vendor backend cannot create keys"
                .into(),
        );
    }
    if devices == 0 {
        f.warnings.push("no device client certificate is pinned (kms.clients.device.aliases): agents cannot decrypt".into());
    }
    for p in pins {
        let days = (p.not_after - now).div_euclid(86_400);
        if p.not_after < now {
            f.warnings.push(format!(
                "client certificate '{}' ({}) expired; it is refused",
                p.alias, p.subject
            ));
        } else if days < EXPIRY_WARNING_DAYS {
            f.warnings.push(format!(
                "client certificate '{}' expires in {days} day(s)",
                p.alias
            ));
        }
    }
    f.notes.push(format!(
        "{backends} backend and {devices} device client certificate(s) pinned"
    ));
}

/// The server certificate has not expired, and does not soon.
fn server_certificate_findings(config: &Config, ks: &KeyStore, now: i64, f: &mut Findings) {
    if let Ok(server) = ks.private_key(&config.server.key_alias)
        && let Some(leaf) = server.chain().first()
        && let Ok((_, c)) = x509_parser::parse_x509_certificate(leaf.as_ref())
    {
        let na = c.validity().not_after.timestamp();
        let days = (na - now).div_euclid(86_400);
        if na < now {
            f.problems.push(format!(
                "the server certificate '{}' expired; import a new one (guide: keytool -importkeystore ... -destalias kmsserver)",
                config.server.key_alias
            ));
        } else if days < EXPIRY_WARNING_DAYS {
            f.warnings
                .push(format!("the server certificate expires in {days} day(s)"));
        }
    }
}

/// `cmx-kms check-config -c PATH`: every problem at once, the line-level
/// ones and those of the files the configuration names, each once.
pub fn run(path: &Path) -> Result<(), CommandError> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    let checked = config::load_all(path, &env);
    // The configuration's warnings, each with its file and line (or
    // variable), are printed with the report's own, once each.
    let config_warnings: Vec<String> = checked.warnings.iter().map(ToString::to_string).collect();
    let mut problems: Vec<String> = checked.errors.iter().map(ToString::to_string).collect();
    let Some(config) = checked.config else {
        print_warnings(&config_warnings);
        return Err(CommandError::Problems(problems));
    };
    let wrong = |prefixes: &[&str]| {
        checked.errors.iter().any(|e| {
            e.key
                .as_deref()
                .is_some_and(|k| prefixes.iter().any(|p| k.starts_with(p)))
        })
    };
    let ks = match wrong(&[
        "kms.keystore.file",
        "kms.keystore.password",
        "kms.keystore.key-password",
    ]) {
        true => None,
        false => files::keystore(&config)
            .map_err(|e| problems.push(e.to_string()))
            .ok(),
    };
    file_problems(&config, ks.as_ref(), &checked.errors, &mut problems);
    let f = match &ks {
        Some(ks) if !wrong(ENTRY_KEYS) => check_keystore(&config, ks),
        _ => Findings::default(),
    };
    let source = config.source.display().to_string();
    problems.extend(f.located.iter().cloned());
    problems.extend(f.problems.iter().map(|p| format!("{source}: {p}")));
    print_warnings(&config_warnings);
    report(&config, ks.as_ref(), &f, problems)
}

/// The keys the keystore's entries are checked against: with an error in
/// one of them, the entries are not checked (the default would be judged).
const ENTRY_KEYS: &[&str] = &[
    "kms.keystore.",
    "kms.server.key.alias",
    "kms.hsm.protocol",
    "kms.hsm.ca.alias",
    "kms.clients.",
];

/// The problems of the files the configuration names (never those of a key
/// already reported on its line).
fn file_problems(
    config: &Config,
    ks: Option<&KeyStore>,
    errors: &[ConfigError],
    problems: &mut Vec<String>,
) {
    let found = files::check(config, ks);
    let mut located: Vec<ConfigError> = found.problems.into_iter().chain(found.later).collect();
    let soft_key = Some("kms.hsm.soft.key.file");
    // The key is sealed with the keystore password: when the keystore does
    // not open, its problem says so already.
    let unseal = ks.is_some() && !located.iter().any(|e| e.key.as_deref() == soft_key);
    if config.hsm.protocol == Protocol::Soft && unseal {
        located.extend(files::soft_key_opens(config));
    }
    for e in located {
        if !errors.iter().any(|c| c.key.is_some() && c.key == e.key) {
            problems.push(e.to_string());
        }
    }
}

fn print_warnings(warnings: &[String]) {
    for w in warnings {
        println!("warning: {w}");
    }
}

/// Print the warnings and the outcome: `configuration OK`, or every problem.
fn report(
    config: &Config,
    ks: Option<&KeyStore>,
    f: &Findings,
    problems: Vec<String>,
) -> Result<(), CommandError> {
    print_warnings(&f.warnings);
    let Some(ks) = ks.filter(|_| problems.is_empty()) else {
        return Err(CommandError::Problems(problems));
    };
    for n in &f.notes {
        println!("{n}");
    }
    println!(
        "{}: configuration OK ({} backend, keystore {})",
        config.source.display(),
        config.hsm.protocol.label(),
        ks.format()
    );
    Ok(())
}
