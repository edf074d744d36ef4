//! Where the keys that name files (or entries of the keystore) were set, kept
//! in the [`Config`](super::Config) so that a problem found later with such a
//! file (it is missing, a directory, not writable, the keystore password does
//! not open it, an alias is not in it) is reported like a line-level error:
//! `file:line: key: problem`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::{ConfigError, Origin, Problem};
use super::file::ConfigFile;

/// The keys whose value names a file, opens one (the keystore password),
/// names an entry of the keystore, or this node's cluster address (resolved
/// at start).
pub const FILE_KEYS: [&str; 16] = [
    "kms.keystore.file",
    "kms.keystore.password",
    "kms.keystore.key-password",
    "kms.audit.file",
    "kms.hsm.protocol",
    "kms.hsm.soft.key.file",
    "kms.hsm.vault.ca.file",
    "kms.hsm.vault.token.file",
    "kms.hsm.vault.auth.approle.secret-id.file",
    "kms.distributed.cache.config.file",
    "kms.server.key.alias",
    "kms.keystore.alias",
    "kms.hsm.ca.alias",
    "kms.clients.backend.aliases",
    "kms.clients.device.aliases",
    "kms.cluster.address",
];

/// The origin of each of [`FILE_KEYS`]: a line of the file, an environment
/// variable, or the file itself when the key is not set (its default applies).
#[derive(Clone, Debug, Default)]
pub struct Origins {
    file: PathBuf,
    keys: BTreeMap<&'static str, Origin>,
}

impl Origins {
    pub(super) fn take(file: &ConfigFile, path: &std::path::Path) -> Self {
        let keys = FILE_KEYS
            .iter()
            .map(|key| (*key, file.origin_of(key)))
            .collect();
        Self {
            file: path.to_path_buf(),
            keys,
        }
    }

    /// Where `key` was set; the configuration file itself if it was not.
    pub fn of(&self, key: &str) -> Origin {
        self.keys.get(key).cloned().unwrap_or_else(|| Origin::File {
            path: self.file.clone(),
            line: None,
        })
    }

    /// A problem with what `key` names, as a configuration error at its line.
    pub fn error(&self, key: &str, detail: impl Into<String>) -> ConfigError {
        ConfigError {
            origin: self.of(key),
            key: Some(key.to_string()),
            problem: Problem::NamedFile {
                detail: detail.into(),
            },
        }
    }
}
