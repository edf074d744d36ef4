//! The files kms.properties names, checked without changing anything (no file
//! is created, opened for writing or written): the keystore, the audit file or
//! its folder, the soft master key, Vault's CA and token files. `check-config`
//! reports what they find and `serve` refuses to start on it, so both agree.
//! Every problem is a [`ConfigError`] at the line and key that name the file
//! (`file:line: key: problem`) and says what to do.
//!
//! Rights are checked with access(2), as the user running the command: run
//! `check-config` as the service's user to check the service's rights.

use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;

use nix::unistd::{AccessFlags, access};

use super::StartError;
use crate::audit::AuditError;
use crate::backend::BuildError;
use crate::backend::soft::{SoftBackend, SoftKeyError};
use crate::config::{Config, ConfigError, Protocol, VaultAuthConfig};
use crate::keystore::{KeyStore, KeystoreError, KeystoreFileError};

/// What [`check`] found.
#[derive(Debug, Default)]
pub struct Findings {
    /// What stops the node from starting.
    pub problems: Vec<ConfigError>,
    /// What the node can start without but needs before it can serve (a
    /// Vault token file still to be written): `check-config` reports these as
    /// problems, `serve` logs them and starts.
    pub later: Vec<ConfigError>,
}

/// Open the keystore; a failure is reported at the key to fix.
pub fn keystore(config: &Config) -> Result<KeyStore, ConfigError> {
    let ks = &config.keystore;
    KeyStore::load(&ks.file, &ks.password, ks.key_password.as_ref())
        .map_err(KeystoreFileError::at(&ks.file))
        .map_err(|e| keystore_error(config, &e))
}

/// A keystore that does not open, at the key to fix, with the next step.
fn keystore_error(config: &Config, e: &KeystoreFileError) -> ConfigError {
    let (key, hint) = match &e.source {
        KeystoreError::WrongStorePassword { .. } => (
            "kms.keystore.password",
            "; set kms.keystore.password to the password the keystore was made with",
        ),
        KeystoreError::WrongKeyPassword { .. } => ("kms.keystore.key-password", ""),
        KeystoreError::Unreadable { .. } => (
            "kms.keystore.file",
            "; copy the keystore there (readable by the service's user), or set kms.keystore.file to its path",
        ),
        KeystoreError::NotAKeystore { .. } => (
            "kms.keystore.file",
            "; set kms.keystore.file to the JKS or PKCS#12 keystore",
        ),
        KeystoreError::AliasMissing { alias, .. } | KeystoreError::WrongEntryType { alias, .. } => {
            let key = alias_key(config, alias);
            return config
                .origins
                .error(key, format!("{key}={alias}: {}", e.source));
        }
        _ => ("kms.keystore.file", ""),
    };
    config.origins.error(key, format!("{e}{hint}"))
}

/// The key that names `alias` (aliases compare case-insensitively); the
/// keystore file's when none does.
pub fn alias_key(config: &Config, alias: &str) -> &'static str {
    [
        ("kms.server.key.alias", &config.server.key_alias),
        ("kms.keystore.alias", &config.keystore.alias),
        ("kms.hsm.ca.alias", &config.hsm.ca_alias),
    ]
    .into_iter()
    .find(|(_, a)| a.eq_ignore_ascii_case(alias))
    .map_or("kms.keystore.file", |(key, _)| key)
}

/// Check the files the configuration names; `ks` (when it opened) tells
/// whether Vault's CA can come from the keystore.
pub fn check(config: &Config, ks: Option<&KeyStore>) -> Findings {
    let mut f = Findings::default();
    f.problems.extend(audit_file(config));
    f.problems.extend(cluster_address(config));
    match config.hsm.protocol {
        Protocol::Soft => f.problems.extend(soft_key_file(config)),
        Protocol::Vault => {
            f.problems.extend(vault_ca(config, ks));
            f.later.extend(vault_secret_file(config));
        }
        Protocol::Kmip1 => {}
    }
    f
}

/// Who the rights are checked for.
fn who() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => format!("user {}", user.name),
        _ => format!("uid {uid}"),
    }
}

/// `kms.audit.file`: a file the node can append to and whose tail is an audit
/// trail, or a path it can create in an existing folder.
fn audit_file(config: &Config) -> Option<ConfigError> {
    let path = &config.audit.file;
    let p = path.display();
    let detail = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(format!(
            "{p} is a directory; set kms.audit.file to a file in it, e.g. {p}/audit.log"
        )),
        Ok(meta) => existing_audit_file(path, meta.is_file()),
        Err(e) if e.kind() == ErrorKind::NotFound => audit_folder(path),
        Err(e) => Err(format!(
            "cannot check {p}: {e}; make its folder reachable by the service's user"
        )),
    };
    detail
        .err()
        .map(|d| config.origins.error("kms.audit.file", d))
}

fn existing_audit_file(path: &Path, regular: bool) -> Result<(), String> {
    let p = path.display();
    access(path, AccessFlags::R_OK | AccessFlags::W_OK).map_err(|e| {
        format!(
            "{p} is not readable and writable by {} ({e}); make it so for the service's user (e.g. chown kms {p}; chmod 640 {p})",
            who()
        )
    })?;
    if !regular {
        // A device such as /dev/full has no tail to continue.
        return Ok(());
    }
    let cannot = |e: std::io::Error| format!("cannot read {p}: {e}");
    let mut file = File::open(path).map_err(cannot)?;
    match crate::audit::continues(&mut file) {
        Ok(true) => Ok(()),
        Ok(false) => Err(AuditError::BadTail {
            path: path.to_owned(),
        }
        .to_string()),
        Err(e) => Err(cannot(e)),
    }
}

/// The audit file does not exist yet: its folder must, writable, to create it.
fn audit_folder(path: &Path) -> Result<(), String> {
    let p = path.display();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let d = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => access(dir, AccessFlags::W_OK | AccessFlags::X_OK)
            .map_err(|e| {
                format!(
                    "{p} does not exist and {} cannot create it in {d} ({e}); make the folder writable for the \
                     service's user (e.g. chown kms {d}), or set kms.audit.file to a path in a folder it can write",
                    who()
                )
            }),
        Ok(_) => Err(format!(
            "{d} is not a folder, so {p} cannot be created there; set kms.audit.file to a path in a folder"
        )),
        Err(e) => Err(format!(
            "the folder {d} does not exist ({e}), so {p} cannot be created; create it, writable by the \
             service's user (e.g. install -d -o kms -m 750 {d}), or set kms.audit.file to a path in an existing folder"
        )),
    }
}

/// `kms.hsm.soft.key.file`: an existing, readable file (never created here).
fn soft_key_file(config: &Config) -> Option<ConfigError> {
    let path = &config.hsm.soft.key_file;
    let p = path.display();
    let detail = match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => {
            format!("{p} is a directory; set kms.hsm.soft.key.file to the soft master key file")
        }
        Ok(_) => match access(path, AccessFlags::R_OK) {
            Ok(()) => return None,
            Err(e) => format!(
                "{p} is not readable by {} ({e}); make it readable for the service's user (e.g. chown kms {p}; chmod 600 {p})",
                who()
            ),
        },
        Err(e) if e.kind() == ErrorKind::NotFound => SoftKeyError::Missing {
            path: path.to_owned(),
        }
        .to_string(),
        Err(e) => format!("cannot read {p}: {e}; make its folder reachable by the service's user"),
    };
    Some(config.origins.error("kms.hsm.soft.key.file", detail))
}

/// `check-config`: the soft master key also unseals with the keystore password
/// (read only; what `serve` does next).
pub fn soft_key_opens(config: &Config) -> Option<ConfigError> {
    let path = &config.hsm.soft.key_file;
    SoftBackend::open(path, &config.keystore.password)
        .err()
        .map(|e| soft_key_error(config, &e))
}

fn soft_key_error(config: &Config, e: &SoftKeyError) -> ConfigError {
    config.origins.error("kms.hsm.soft.key.file", e.to_string())
}

/// Vault's CA: `kms.hsm.vault.ca.file` holds a usable certificate; without
/// it, an https Vault needs the CA in the keystore (`kms.hsm.ca.alias`).
fn vault_ca(config: &Config, ks: Option<&KeyStore>) -> Option<ConfigError> {
    let key = "kms.hsm.vault.ca.file";
    let h = &config.hsm;
    let detail = match &h.vault.ca_file {
        Some(path) => ca_file_problem(path)?,
        None => {
            let https = h
                .endpoints
                .first()
                .is_some_and(|ep| ep.scheme.as_deref().unwrap_or("https") == "https");
            let in_keystore = ks.is_none_or(|ks| ks.certificate(&h.ca_alias).is_ok());
            if !https || in_keystore {
                return None;
            }
            format!(
                "Vault is reached over https but no CA is configured: set {key} to Vault's CA certificate \
                 (PEM), or import it into the keystore as '{}' (kms.hsm.ca.alias)",
                h.ca_alias
            )
        }
    };
    Some(config.origins.error(key, detail))
}

fn ca_file_problem(path: &Path) -> Option<String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let p = path.display();
    let hint = "put Vault's CA certificate (PEM) there, or set kms.hsm.vault.ca.file to its path";
    let certs = match CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
    {
        Ok(certs) => certs,
        Err(e) => return Some(format!("cannot read Vault's CA file {p}: {e}; {hint}")),
    };
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    (added == 0).then(|| format!("Vault's CA file {p} holds no usable CA certificate; {hint}"))
}

/// The file Vault's token (or AppRole secret_id) is read from, on every
/// renewal: a node starts without it but reaches Vault only once it is there.
fn vault_secret_file(config: &Config) -> Option<ConfigError> {
    let v = &config.hsm.vault;
    let (key, path) = match (&v.auth, &v.token_file) {
        (VaultAuthConfig::Token, Some(path)) => ("kms.hsm.vault.token.file", path),
        (VaultAuthConfig::AppRole { secret_id_file, .. }, _) => {
            ("kms.hsm.vault.auth.approle.secret-id.file", secret_id_file)
        }
        _ => return None,
    };
    if path.as_os_str().is_empty() {
        return None;
    }
    let p = path.display();
    let detail = match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => format!(
            "{p} does not exist; write the secret there (mode 600, owned by the service's user) before the node \
             needs Vault: the node reads it again on every renewal, but cannot reach Vault without it"
        ),
        Err(e) => format!("cannot read {p}: {e}; make its folder reachable by the service's user"),
        Ok(_) => match access(path, AccessFlags::R_OK) {
            Ok(()) => return None,
            Err(e) => format!(
                "{p} is not readable by {} ({e}); make it readable for the service's user only (chown kms {p}; chmod 600 {p})",
                who()
            ),
        },
    };
    Some(config.origins.error(key, detail))
}

/// This node's cluster address resolves here, as a start needs (a member
/// that does not is only a warning at start, and left to it).
fn cluster_address(config: &Config) -> Option<ConfigError> {
    let settings = config.cache.cluster.as_ref()?;
    let reason = settings.resolve().err()?;
    Some(config.origins.error("kms.cluster.address", reason))
}

/// A start failure about a file the configuration names, at its line and key
/// (what [`check`] cannot see without opening or unsealing the file).
pub fn locate(config: &Config, e: &StartError) -> Option<ConfigError> {
    match e {
        StartError::Keystore(k) => Some(keystore_error(config, k)),
        StartError::Audit(a) => Some(config.origins.error("kms.audit.file", a.to_string())),
        StartError::Backend(BuildError::SoftKey(s)) => Some(soft_key_error(config, s)),
        StartError::ClusterAddress(reason) => {
            Some(config.origins.error("kms.cluster.address", reason.clone()))
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "files_tests.rs"]
mod tests;
