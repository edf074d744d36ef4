//! The keystore (`kms.keystore.*`) and which of its entries identify clients
//! (`kms.clients.*`).

use std::path::PathBuf;

use secrecy::SecretString;

use super::alias::AliasPattern;
use super::defaults as d;
use super::error::Problem;
use super::file::ConfigFile;

/// The keytool keystore (`kms.keystore.*`).
#[derive(Clone, Debug)]
pub struct KeystoreSettings {
    /// `kms.keystore.file`: the JKS or PKCS#12 keystore.
    pub file: PathBuf,
    /// `kms.keystore.password`: the store password (never empty).
    pub password: SecretString,
    /// `kms.keystore.alias`: the entry that identifies us to the HSM (case-insensitive).
    pub alias: String,
    /// `kms.keystore.key-password`: the private keys' password when it differs from the
    /// store password (JKS); `None` means "same as `password`".
    pub key_password: Option<SecretString>,
}

impl KeystoreSettings {
    /// The password that opens private key entries.
    pub fn key_password(&self) -> &SecretString {
        self.key_password.as_ref().unwrap_or(&self.password)
    }

    pub(super) fn take(file: &mut ConfigFile) -> Option<Self> {
        let path = file
            .get_required(
                "kms.keystore.file",
                "the keystore's path, e.g. /usr/share/kms/conf/kmsKeystore.jks",
            )
            .map(|raw| file.resolve(&raw.value));
        let password = file
            .get_required("kms.keystore.password", "the keystore password")
            .map(|raw| SecretString::from(raw.value.as_str()));
        let alias = file.string_or("kms.keystore.alias", d::KEYSTORE_ALIAS);
        let key_password = file.secret("kms.keystore.key-password");
        Some(Self {
            file: path?,
            password: password?,
            alias,
            key_password,
        })
    }
}

/// The role a client certificate gives its holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientRole {
    /// The vendor backend: every operation.
    Backend,
    /// Backup agents and the ExportData tool: decrypt only.
    Device,
}

/// Which keystore certificate entries identify clients (`kms.clients.*`).
#[derive(Clone, Debug)]
pub struct ClientSettings {
    /// `kms.clients.backend.aliases`: entries whose certificate identifies the backend.
    pub backend_aliases: Vec<AliasPattern>,
    /// `kms.clients.device.aliases`: entries whose certificate identifies a device.
    pub device_aliases: Vec<AliasPattern>,
}

impl ClientSettings {
    /// The role of the keystore entry `alias`, or `None` when it is no client entry or
    /// matches both lists (ambiguous: refused rather than guessed).
    pub fn role_of(&self, alias: &str) -> Option<ClientRole> {
        let backend = self.backend_aliases.iter().any(|p| p.matches(alias));
        let device = self.device_aliases.iter().any(|p| p.matches(alias));
        match (backend, device) {
            (true, false) => Some(ClientRole::Backend),
            (false, true) => Some(ClientRole::Device),
            _ => None,
        }
    }

    /// Takes both lists. `reserved` are (key, alias) pairs of entries that must never count
    /// as a client (our own identities and the HSM trust anchor).
    pub(super) fn take(file: &mut ConfigFile, reserved: &[(&str, &str)]) -> Self {
        let backend_key = "kms.clients.backend.aliases";
        let device_key = "kms.clients.device.aliases";
        let default_backend = AliasPattern::parse_list(d::BACKEND_ALIASES).unwrap_or_default();
        let default_device = AliasPattern::parse_list(d::DEVICE_ALIASES).unwrap_or_default();
        let this = Self {
            backend_aliases: file.parse_or(backend_key, default_backend, AliasPattern::parse_list),
            device_aliases: file.parse_or(device_key, default_device, AliasPattern::parse_list),
        };
        for (key, patterns) in [
            (backend_key, &this.backend_aliases),
            (device_key, &this.device_aliases),
        ] {
            for pattern in patterns {
                for (other_key, alias) in reserved {
                    if pattern.matches(alias) {
                        let detail = format!(
                            "pattern '{pattern}' matches '{alias}' ({other_key}), which must never identify a client; \
                             narrow the pattern"
                        );
                        file.error(file.origin_of(key), Some(key), Problem::Conflict { detail });
                    }
                }
            }
        }
        for pattern in &this.device_aliases {
            if this
                .backend_aliases
                .iter()
                .any(|b| b.as_str().eq_ignore_ascii_case(pattern.as_str()))
            {
                let detail = format!(
                    "pattern '{pattern}' is also in {backend_key}; an alias must give one role only"
                );
                file.error(
                    file.origin_of(device_key),
                    Some(device_key),
                    Problem::Conflict { detail },
                );
            }
        }
        this
    }
}
