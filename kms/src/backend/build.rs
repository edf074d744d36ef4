//! From the validated `Config` and its keystore to a master-key backend: the
//! one place that makes a backend (for the node, its reloads and the `hsm`
//! commands). A new backend is one more arm in [`build`] and a function like
//! [`kmip`] or [`vault`] that turns its `config` settings into its own.

use std::sync::Arc;

use super::kmip::settings::{BreakerSettings, KmipPoolSettings};
use super::kmip::{self as kmip_backend, KmipBackend, KmipSettings};
use super::soft::admin::SoftAdmin;
use super::soft::{SoftBackend, SoftKeyError};
use super::vault::{self as vault_backend, VaultBackend};
use super::{Backend, BackendError, BackendKind, MasterKeyAdmin};
use crate::config::{self, Config, KmipVersion, Protocol};
use crate::keystore::{KeyStore, KeystoreError, KeystoreFileError};

/// Why a backend could not be made from the configuration. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An entry the backend needs is missing from the keystore, or unreadable.
    #[error(transparent)]
    Keystore(#[from] KeystoreFileError),
    /// The backend refused its settings or TLS material.
    #[error("{0}")]
    Backend(BackendError),
    /// The soft master key file cannot be opened or created.
    #[error("{0}")]
    SoftKey(SoftKeyError),
    /// Vault needs one address in `kms.hsm.server.url`.
    #[error("kms.hsm.server.url names no Vault address")]
    NoVaultAddress,
}

/// The backend kind a `kms.hsm.protocol` makes (recorded in envelopes).
impl From<Protocol> for BackendKind {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Kmip1 => Self::Kmip,
            Protocol::Vault => Self::Vault,
            Protocol::Soft => Self::Soft,
        }
    }
}

fn keystore_err(config: &Config) -> impl Fn(KeystoreError) -> KeystoreFileError + '_ {
    KeystoreFileError::at(&config.keystore.file)
}

/// The KMIP backend: identity `kms.keystore.alias`, trust `kms.hsm.ca.alias` only.
pub fn kmip(config: &Config, ks: &KeyStore) -> Result<KmipBackend, BuildError> {
    let h = &config.hsm;
    let identity = ks
        .private_key(&config.keystore.alias)
        .map_err(keystore_err(config))?;
    let trust = ks.certificate(&h.ca_alias).map_err(keystore_err(config))?;
    let settings = KmipSettings {
        endpoints: h
            .endpoints
            .iter()
            .map(|e| (e.host.clone(), e.port))
            .collect(),
        key_name: h.key_name.clone(),
        version: match h.kmip.version {
            KmipVersion::Auto => None,
            KmipVersion::V1_2 => Some((1, 2)),
            KmipVersion::V1_3 => Some((1, 3)),
            KmipVersion::V1_4 => Some((1, 4)),
        },
        operation_policy_name: h.kmip.operation_policy_name.clone(),
        connect_timeout: h.connect_timeout,
        request_timeout: h.request_timeout,
        pool: KmipPoolSettings {
            max_connections: h.pool.max_connections,
            idle_timeout: h.pool.idle_timeout,
            max_lifetime: h.pool.max_lifetime,
        },
        max_response_bytes: u32::try_from(h.max_response_bytes).unwrap_or(u32::MAX),
        breaker: BreakerSettings {
            failures: h.circuit_breaker.failures,
            cooldown: h.circuit_breaker.cooldown,
        },
        current_key_ttl: kmip_backend::settings::DEFAULT_CURRENT_KEY_TTL,
    };
    KmipBackend::new(
        settings,
        identity.chain().to_vec(),
        identity.key_der(),
        vec![trust.cert().clone()],
    )
    .map_err(BuildError::Backend)
}

/// The Vault backend. Returns the warning to log at every start, if any.
pub fn vault(config: &Config, ks: &KeyStore) -> Result<(VaultBackend, Option<String>), BuildError> {
    let h = &config.hsm;
    let v = &h.vault;
    let Some(ep) = h.endpoints.first() else {
        return Err(BuildError::NoVaultAddress);
    };
    if h.endpoints.len() > 1 {
        tracing::warn!(
            "kms.hsm.server.url lists several addresses; Vault is reached at the first, {ep}"
        );
    }
    let address = format!(
        "{}://{}",
        ep.scheme.as_deref().unwrap_or("https"),
        ep.authority()
    );
    let auth = match &v.auth {
        config::VaultAuthConfig::Token => vault_backend::VaultAuth::Token(match &v.token_file {
            Some(f) => vault_backend::TokenSource::File(f.clone()),
            None => vault_backend::TokenSource::Env(secrecy::SecretString::from(
                std::env::var("VAULT_TOKEN").unwrap_or_default(),
            )),
        }),
        config::VaultAuthConfig::Azure {
            role,
            path,
            resource,
        } => {
            let mut a = vault_backend::AzureAuth::new(role.clone());
            a.path = path.clone();
            a.resource = resource.clone();
            vault_backend::VaultAuth::Azure(a)
        }
        config::VaultAuthConfig::AppRole {
            role_id,
            secret_id_file,
            path,
        } => vault_backend::VaultAuth::AppRole {
            path: path.clone(),
            role_id: role_id.clone(),
            secret_id_file: secret_id_file.clone(),
        },
        config::VaultAuthConfig::Cert { path, role } => vault_backend::VaultAuth::Cert {
            path: path.clone(),
            role: role.clone(),
        },
    };
    let mut s = vault_backend::VaultSettings::new(address, h.key_name.clone(), auth);
    s.namespace = v.namespace.clone();
    s.mount = v.mount.clone();
    s.renew_before_expiry = v.renew_before_expiry;
    s.connect_timeout = h.connect_timeout;
    s.request_timeout = h.request_timeout;
    s.max_response_bytes = h.max_response_bytes;
    s.ca_file = v.ca_file.clone();
    if v.ca_file.is_none()
        && let Ok(ca) = ks.certificate(&h.ca_alias)
    {
        s.ca_certs = vec![ca.cert().clone()];
    }
    // The kmsClient identity is optional with Vault (the guide says so); it is
    // presented when present, and needed for cert auth.
    if let Ok(id) = ks.private_key(&config.keystore.alias) {
        s.client_identity = Some(vault_backend::ClientIdentity {
            chain: id.chain().to_vec(),
            key: id.key_der(),
        });
    } else if matches!(v.auth, config::VaultAuthConfig::Cert { .. }) {
        ks.private_key(&config.keystore.alias)
            .map_err(keystore_err(config))?;
    }
    VaultBackend::new(s).map_err(BuildError::Backend)
}

/// The master-key backend the config selects (without the gate). Must run
/// inside the async runtime (the Vault backend starts its token task).
pub fn build(config: &Config, ks: &KeyStore) -> Result<Arc<dyn Backend>, BuildError> {
    match config.hsm.protocol {
        Protocol::Soft => Ok(Arc::new(soft(config, false)?)),
        Protocol::Kmip1 => Ok(Arc::new(kmip(config, ks)?)),
        Protocol::Vault => {
            let (b, warning) = vault(config, ks)?;
            if let Some(w) = warning {
                tracing::warn!("{w}");
            }
            b.start();
            Ok(Arc::new(b))
        }
    }
}

/// The development-only soft backend; says so at every start. A missing key
/// file is an error ([`SoftKeyError::Missing`]): only `create` (`cmx-kms hsm
/// init`) makes a new key, never a start or a reload.
pub fn soft(config: &Config, create: bool) -> Result<SoftBackend, BuildError> {
    tracing::warn!(
        "the soft backend is for development and demos only: the master key is a software key in {}, not in an HSM",
        config.hsm.soft.key_file.display()
    );
    let (path, password) = (&config.hsm.soft.key_file, &config.keystore.password);
    if !create {
        return SoftBackend::open(path, password).map_err(BuildError::SoftKey);
    }
    let (b, created) = SoftBackend::open_or_create(path, password).map_err(BuildError::SoftKey)?;
    if created {
        tracing::warn!(key_id = b.key_id(), "created a new soft master key");
    }
    Ok(b)
}

/// The master key's operator actions for `cmx-kms hsm`, and a warning about
/// the settings to show first. The backend's background tasks (Vault's token
/// renewal) are not started: a command does one thing and exits. `init`
/// (`hsm init`) creates a missing soft key file; `check` and `rotate` do not.
pub fn admin(
    config: &Config,
    ks: &KeyStore,
    init: bool,
) -> Result<(Box<dyn MasterKeyAdmin>, Option<String>), BuildError> {
    Ok(match config.hsm.protocol {
        Protocol::Kmip1 => (Box::new(kmip(config, ks)?), None),
        Protocol::Vault => {
            let (b, warning) = vault(config, ks)?;
            (Box::new(b), warning)
        }
        Protocol::Soft => (
            Box::new(SoftAdmin::new(
                soft(config, init)?,
                config.hsm.soft.key_file.clone(),
            )),
            None,
        ),
    })
}
