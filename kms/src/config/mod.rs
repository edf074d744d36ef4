//! Configuration: `kms.properties` into one validated, immutable [`Config`].
//!
//! Layers, bottom up:
//! - [`properties`]: a lexer with `java.util.Properties.load` semantics (file in UTF-8, with
//!   an ISO-8859-1 fallback); every entry keeps its line number.
//! - `file`: takes each known key (a `CMX_KMS_*` environment variable wins over the file),
//!   then reports every key left over as unknown. Duplicate keys are errors.
//! - the settings structs ([`ServerSettings`], [`HsmSettings`], ...): typed values, defaults
//!   from [`defaults`], and checks across keys.
//!
//! [`load`] and [`parse_str`] return every problem at once ([`ConfigErrors`]), each naming
//! file and line (or environment variable), key, and what to do. [`keys::KEYS`] lists every
//! key; `docs/configuration.md` and `conf/kms.properties` are checked against it.
//!
//! A [`Config`] holds no global state and is never changed after loading; `Debug` never
//! shows a password.

use std::io::Read;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

pub mod alias;
pub mod cache;
pub mod cluster;
pub mod defaults;
pub mod endpoint;
pub mod error;
mod file;
pub mod front;
pub mod hsm;
pub mod jgroups;
pub mod keys;
pub mod keystore;
pub mod origins;
pub mod properties;
pub mod restart;
pub mod server;
pub mod values;
pub mod vault;

pub use alias::AliasPattern;
pub use cache::{CacheSettings, CacheType};
pub use cluster::{ClusterMembers, ClusterSettings, Member};
pub use endpoint::HsmEndpoint;
pub use error::{ConfigError, ConfigErrors, ConfigWarning, Origin, Problem, Warning};
pub use front::{Cidr, FrontSettings, HealthSettings};
pub use hsm::{
    CircuitBreakerSettings, HsmSettings, KmipConfig, KmipVersion, PoolSettings, Protocol,
    SoftSettings,
};
pub use keystore::{ClientRole, ClientSettings, KeystoreSettings};
pub use origins::Origins;
pub use server::{
    AuditSettings, LimitSettings, MetricsSettings, RateLimit, ReadinessSettings, ServerSettings,
    Workers,
};
pub use vault::{VaultAuthConfig, VaultConfig};

use file::ConfigFile;
use properties::MAX_FILE_BYTES;

/// The whole, validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was loaded from (absolute when loaded by [`load`]).
    pub source: PathBuf,
    /// `kms.server.*`: the HTTPS API listener.
    pub server: ServerSettings,
    /// `kms.keystore.*`: the keystore and its passwords.
    pub keystore: KeystoreSettings,
    /// `kms.clients.*`: which keystore entries identify clients.
    pub clients: ClientSettings,
    /// `kms.hsm.*`: the master-key backend.
    pub hsm: HsmSettings,
    /// `kms.cache.*`: the customer-key cache.
    pub cache: CacheSettings,
    /// `kms.audit.*`: the audit trail.
    pub audit: AuditSettings,
    /// `kms.limits.*`: request limits.
    pub limits: LimitSettings,
    /// `kms.metrics.*`: the metrics listener.
    pub metrics: MetricsSettings,
    /// `kms.readiness.*`: the readiness canary.
    pub readiness: ReadinessSettings,
    /// `kms.server.proxy-protocol.trusted`, `kms.server.drain-delay`: behind a load balancer.
    pub front: FrontSettings,
    /// `kms.health.*`: the readiness check listener for load balancers.
    pub health: HealthSettings,
    /// Where the keys that name files were set, for problems found with the files.
    pub origins: Origins,
}

/// A loaded configuration and the warnings found while loading it.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Things worth logging at start-up (deprecated keys, trailing whitespace, ...).
    pub warnings: Vec<ConfigWarning>,
}

/// Loads and validates the configuration file at `path`, with `CMX_KMS_*` overrides from
/// `env` (pass `std::env::vars().collect::<Vec<_>>()` in production; tests pass their own).
/// Relative paths in the file resolve against the file's directory.
pub fn load(path: &Path, env: &[(String, String)]) -> Result<Loaded, ConfigErrors> {
    load_all(path, env).into_result()
}

/// What [`load_all`] found: the configuration as far as it could be built, and
/// every problem.
#[derive(Debug)]
pub struct Checked {
    /// The configuration, with defaults where a value was wrong; `None` when the
    /// file cannot be read or the keystore keys are missing.
    pub config: Option<Config>,
    /// Every error, in file order; empty when the configuration is valid.
    pub errors: Vec<ConfigError>,
    /// Every warning.
    pub warnings: Vec<ConfigWarning>,
}

impl Checked {
    fn whole_file(path: &Path, problem: Problem) -> Self {
        let origin = Origin::File {
            path: path.to_path_buf(),
            line: None,
        };
        let error = ConfigError {
            origin,
            key: None,
            problem,
        };
        Self {
            config: None,
            errors: vec![error],
            warnings: Vec::new(),
        }
    }

    fn into_result(self) -> Result<Loaded, ConfigErrors> {
        match self.config {
            Some(config) if self.errors.is_empty() => Ok(Loaded {
                config,
                warnings: self.warnings,
            }),
            _ => Err(ConfigErrors {
                errors: self.errors,
                warnings: self.warnings,
            }),
        }
    }
}

/// As [`load`], but keeps the configuration built despite errors, so that
/// `check-config` can go on to check the files it names and report every
/// problem at once.
pub fn load_all(path: &Path, env: &[(String, String)]) -> Checked {
    let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut bytes = Zeroizing::new(Vec::new());
    let read = std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes));
    if let Err(err) = read {
        let reason = err.to_string();
        return Checked::whole_file(&path, Problem::Unreadable { reason });
    }
    if bytes.len() > MAX_FILE_BYTES {
        let limit = MAX_FILE_BYTES;
        return Checked::whole_file(&path, Problem::TooLarge { limit });
    }
    let mut warnings = Vec::new();
    if let Some(warning) = permission_warning(&path) {
        warnings.push(warning);
    }
    let decoded = properties::decode(&bytes);
    if let Some(line) = decoded.latin1_fallback {
        let origin = Origin::File {
            path: path.clone(),
            line: None,
        };
        warnings.push(ConfigWarning {
            origin,
            key: None,
            warning: Warning::Latin1 { line },
        });
    }
    parse_all(&decoded.text, &path, env, warnings)
}

/// Parses configuration text as if it were the file `origin` (used for relative paths and
/// messages). For tests and fuzzing; [`load`] is the same after reading the file.
pub fn parse_str(
    text: &str,
    origin: &Path,
    env: &[(String, String)],
) -> Result<Loaded, ConfigErrors> {
    if text.len() > MAX_FILE_BYTES {
        let origin = Origin::File {
            path: origin.to_path_buf(),
            line: None,
        };
        let error = ConfigError {
            origin,
            key: None,
            problem: Problem::TooLarge {
                limit: MAX_FILE_BYTES,
            },
        };
        return Err(ConfigErrors {
            errors: vec![error],
            warnings: Vec::new(),
        });
    }
    parse_with(text, origin, env, Vec::new())
}

fn parse_with(
    text: &str,
    origin: &Path,
    env: &[(String, String)],
    warnings: Vec<ConfigWarning>,
) -> Result<Loaded, ConfigErrors> {
    parse_all(text, origin, env, warnings).into_result()
}

fn parse_all(
    text: &str,
    origin: &Path,
    env: &[(String, String)],
    mut warnings: Vec<ConfigWarning>,
) -> Checked {
    let mut file = ConfigFile::new(origin, properties::lex(text), env);
    let config = build(&mut file, origin);
    let (errors, found) = file.finish();
    warnings.extend(found);
    Checked {
        config,
        errors,
        warnings,
    }
}

/// Takes every key; `None` when a required value is missing (the error is recorded).
fn build(file: &mut ConfigFile, origin: &Path) -> Option<Config> {
    let keystore = KeystoreSettings::take(file);
    let hsm = HsmSettings::take(file);
    let cache = CacheSettings::take(file);
    let server = ServerSettings::take(file);
    let client_alias = keystore
        .as_ref()
        .map_or(defaults::KEYSTORE_ALIAS, |k| k.alias.as_str());
    let reserved = [
        ("kms.keystore.alias", client_alias),
        ("kms.server.key.alias", server.key_alias.as_str()),
        ("kms.hsm.ca.alias", hsm.ca_alias.as_str()),
    ];
    let clients = ClientSettings::take(file, &reserved);
    let audit = AuditSettings::take(file);
    let limits = LimitSettings::take(file);
    let metrics = MetricsSettings::take(file, &server);
    let readiness = ReadinessSettings::take(file);
    let front = FrontSettings::take(file);
    let health = HealthSettings::take(file, &server);
    let origins = Origins::take(file, origin);
    Some(Config {
        source: origin.to_path_buf(),
        server,
        keystore: keystore?,
        clients,
        hsm,
        cache,
        audit,
        limits,
        metrics,
        readiness,
        front,
        health,
        origins,
    })
}

/// Warns when the file (which holds the keystore password) is readable by every user.
fn permission_warning(path: &Path) -> Option<ConfigWarning> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o004 != 0).then(|| ConfigWarning {
        origin: Origin::File { path: path.to_path_buf(), line: None },
        key: None,
        warning: Warning::Other(format!(
            "the file is readable by every user (mode {:o}) and holds the keystore password; chmod 640 it",
            mode & 0o777
        )),
    })
}

#[cfg(test)]
mod tests;
