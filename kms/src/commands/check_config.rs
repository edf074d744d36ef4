//! `cmx-kms check-config`: kms.properties and the keystore it names, checked
//! as a start would use them; exit 0, or 78 listing every problem.

#![allow(clippy::print_stdout)] // The command's report is its output.

use std::path::Path;

use super::{CommandError, load_config};
use crate::config::{Config, Protocol};
use crate::keystore::{EntryKind, KeyStore};
use crate::node;
use crate::tls::{PinnedClient, Role};

/// Certificates expiring within this many days draw a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// What a check found.
#[derive(Default)]
pub struct Findings {
    /// What stops the node from starting or serving.
    pub problems: Vec<String>,
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
            f.problems.push(format!("{key}={alias}: {e}"));
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

/// `cmx-kms check-config -c PATH`.
pub fn run(path: &Path) -> Result<(), CommandError> {
    let config = load_config(path)?;
    let ks = node::load_keystore(&config).map_err(|source| CommandError::Keystore {
        file: path.to_owned(),
        source,
    })?;
    let f = check_keystore(&config, &ks);
    if config.hsm.protocol == Protocol::Soft {
        println!(
            "warning: kms.hsm.protocol=soft is for development only: the master key is not in an HSM"
        );
    }
    for w in &f.warnings {
        println!("warning: {w}");
    }
    if !f.problems.is_empty() {
        return Err(CommandError::Problems {
            file: path.to_owned(),
            problems: f.problems,
        });
    }
    for n in &f.notes {
        println!("{n}");
    }
    println!(
        "{}: configuration OK ({} backend, keystore {})",
        path.display(),
        config.hsm.protocol.label(),
        ks.format()
    );
    Ok(())
}
