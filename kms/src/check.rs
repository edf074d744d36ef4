//! `check-config`, `keystore list`, `keystore convert-legacy` and `audit verify`.

#![allow(clippy::print_stdout)]

use std::path::Path;

use crate::cli::{exit, load_config};
use crate::config::{Config, Protocol};
use crate::keystore::{EntryKind, KeyStore};
use crate::node::{self, StartError};

/// Certificates expiring within this many days draw a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// What a check found.
#[derive(Default)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
    pub notes: Vec<String>,
}

/// Check the keystore against the configuration: the aliases it needs exist
/// and hold the right kind of entry, clients are pinned, certificates valid.
pub fn check_keystore(config: &Config, ks: &KeyStore) -> Findings {
    let mut f = Findings::default();
    let now = crate::time::unix_now();
    let need = |alias: &str, kind: EntryKind, key: &str, f: &mut Findings| {
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
        &mut f,
    );
    if config.hsm.protocol == Protocol::Kmip1 {
        need(
            &config.keystore.alias,
            EntryKind::PrivateKey,
            "kms.keystore.alias",
            &mut f,
        );
        need(
            &config.hsm.ca_alias,
            EntryKind::Certificate,
            "kms.hsm.ca.alias",
            &mut f,
        );
    }
    match node::pinned_clients(config, ks) {
        Ok(pins) => {
            let backends = pins
                .iter()
                .filter(|p| p.role == crate::tls::Role::Backend)
                .count();
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
            for p in &pins {
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
        Err(e) => f.problems.push(e.to_string()),
    }
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
    f
}

/// `cmx-kms check-config`.
pub fn run(path: &Path) -> u8 {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let ks = match node::load_keystore(&config) {
        Ok(ks) => ks,
        Err(e) => {
            eprintln!("{}: kms.keystore.file: {e}", path.display());
            return exit::CONFIG;
        }
    };
    let f = check_keystore(&config, &ks);
    if config.hsm.protocol == Protocol::Soft {
        println!(
            "warning: kms.hsm.protocol=soft is for development only: the master key is not in an HSM"
        );
    }
    for w in &f.warnings {
        println!("warning: {w}");
    }
    for p in &f.problems {
        eprintln!("{}: {p}", path.display());
    }
    if !f.problems.is_empty() {
        eprintln!("{} problem(s) found", f.problems.len());
        return exit::CONFIG;
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
    exit::OK
}

fn password(file: Option<&Path>, what: &str) -> Result<secrecy::SecretString, u8> {
    crate::keystore::password::read_password(file, "CMX_KMS_KEYSTORE_PASSWORD", what).map_err(|e| {
        eprintln!("{e}");
        exit::USAGE
    })
}

/// `cmx-kms keystore list PATH [-v]`.
pub fn keystore_list(path: &Path, verbose: bool, password_file: Option<&Path>) -> u8 {
    let pw = match password(password_file, "Enter keystore password: ") {
        Ok(p) => p,
        Err(c) => return c,
    };
    match KeyStore::load(path, &pw, None) {
        Ok(ks) => {
            print!("{}", crate::keystore::list::render(&ks, verbose));
            exit::OK
        }
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            exit::DATAERR
        }
    }
}

/// `cmx-kms keystore convert-legacy IN OUT`.
pub fn convert_legacy(
    input: &Path,
    output: &Path,
    pw_file: Option<&Path>,
    out_pw_file: Option<&Path>,
) -> u8 {
    let in_pw = match password(pw_file, "Enter the password of the legacy .p12: ") {
        Ok(p) => p,
        Err(c) => return c,
    };
    let out_pw = match out_pw_file {
        Some(f) => match password(Some(f), "") {
            Ok(p) => p,
            Err(c) => return c,
        },
        None => in_pw.clone(),
    };
    let data = match std::fs::read(input) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot read {}: {e}", input.display());
            return exit::IOERR;
        }
    };
    let out = match crate::keystore::convert::convert_legacy(&data, &in_pw, &out_pw) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{}: {e}", input.display());
            return exit::DATAERR;
        }
    };
    let write = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .and_then(|mut f| std::io::Write::write_all(&mut f, &out));
    if let Err(e) = write {
        eprintln!(
            "cannot write {}: {e} (the output file must not exist yet)",
            output.display()
        );
        return exit::IOERR;
    }
    println!("wrote {} (PBES2/AES-256, SHA-256 MAC)", output.display());
    exit::OK
}

/// `cmx-kms audit verify FILE`.
pub fn audit_verify(path: &Path) -> u8 {
    match crate::audit::verify(path) {
        Ok(v) if v.problems.is_empty() => {
            for n in &v.notes {
                println!("{}: {n}", path.display());
            }
            println!("{}: {} record(s), chain intact", path.display(), v.records);
            exit::OK
        }
        Ok(v) => {
            for n in &v.notes {
                println!("{}: {n}", path.display());
            }
            for p in &v.problems {
                println!("{}: {p}", path.display());
            }
            println!(
                "{}: {} record(s), {} problem(s)",
                path.display(),
                v.records,
                v.problems.len()
            );
            exit::DATAERR
        }
        Err(e) => {
            eprintln!("cannot read {}: {e}", path.display());
            exit::IOERR
        }
    }
}

impl From<StartError> for Findings {
    fn from(e: StartError) -> Self {
        Findings {
            problems: vec![e.to_string()],
            ..Findings::default()
        }
    }
}
