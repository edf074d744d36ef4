//! From the validated `Config` and the keystore to a master-key backend, and
//! the `cmx-kms hsm init|check|rotate` commands.

#![allow(clippy::print_stdout)]

use std::path::Path;
use std::sync::Arc;

use crate::backend::Backend;
use crate::backend::kmip::settings::{BreakerSettings, KmipPoolSettings};
use crate::backend::kmip::{self, KmipBackend, KmipSettings};
use crate::backend::soft::SoftBackend;
use crate::backend::vault::{self, VaultBackend};
use crate::cli::{exit, load_config};
use crate::config::{self, Config, KmipVersion, Protocol};
use crate::keystore::KeyStore;
use crate::node::{self, StartError};

fn keystore_err(config: &Config) -> impl Fn(crate::keystore::KeystoreError) -> StartError + '_ {
    move |source| StartError::Keystore {
        path: config.keystore.file.display().to_string(),
        source,
    }
}

/// The KMIP backend: identity `kms.keystore.alias`, trust `kms.hsm.ca.alias` only.
pub fn kmip_backend(config: &Config, ks: &KeyStore) -> Result<KmipBackend, StartError> {
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
        current_key_ttl: kmip::settings::DEFAULT_CURRENT_KEY_TTL,
    };
    KmipBackend::new(
        settings,
        identity.chain().to_vec(),
        identity.key_der(),
        vec![trust.cert().clone()],
    )
    .map_err(|e| StartError::Backend(e.to_string()))
}

/// The Vault backend. Returns the warning to log at every start, if any.
pub fn vault_backend(
    config: &Config,
    ks: &KeyStore,
) -> Result<(VaultBackend, Option<String>), StartError> {
    let h = &config.hsm;
    let v = &h.vault;
    let Some(ep) = h.endpoints.first() else {
        return Err(StartError::Backend(
            "kms.hsm.server.url names no Vault address".into(),
        ));
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
        config::VaultAuth::Token => vault::VaultAuth::Token(match &v.token_file {
            Some(f) => vault::TokenSource::File(f.clone()),
            None => vault::TokenSource::Env(secrecy::SecretString::from(
                std::env::var("VAULT_TOKEN").unwrap_or_default(),
            )),
        }),
        config::VaultAuth::Azure {
            role,
            path,
            resource,
        } => {
            let mut a = vault::AzureAuth::new(role.clone());
            a.path = path.clone();
            a.resource = resource.clone();
            vault::VaultAuth::Azure(a)
        }
        config::VaultAuth::AppRole {
            role_id,
            secret_id_file,
            path,
        } => vault::VaultAuth::AppRole {
            path: path.clone(),
            role_id: role_id.clone(),
            secret_id_file: secret_id_file.clone(),
        },
        config::VaultAuth::Cert { path, role } => vault::VaultAuth::Cert {
            path: path.clone(),
            role: role.clone(),
        },
    };
    let mut s = vault::VaultSettings::new(address, h.key_name.clone(), auth);
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
        s.client_identity = Some(vault::ClientIdentity {
            chain: id.chain().to_vec(),
            key: id.key_der(),
        });
    } else if matches!(v.auth, config::VaultAuth::Cert { .. }) {
        ks.private_key(&config.keystore.alias)
            .map_err(keystore_err(config))?;
    }
    VaultBackend::new(s).map_err(|e| StartError::Backend(e.to_string()))
}

/// The master-key backend the config selects (without the gate). Must run
/// inside the async runtime (the Vault backend starts its token task).
pub fn backend(config: &Config, ks: &KeyStore) -> Result<Arc<dyn Backend>, StartError> {
    match config.hsm.protocol {
        Protocol::Soft => {
            tracing::warn!(
                "the soft backend is for development and demos only: the master key is a software key in {}, not in an HSM",
                config.hsm.soft.key_file.display()
            );
            let (b, created) =
                SoftBackend::open_or_create(&config.hsm.soft.key_file, &config.keystore.password)
                    .map_err(|e| StartError::Backend(e.to_string()))?;
            if created {
                tracing::warn!(key_id = b.key_id(), "created a new soft master key");
            }
            Ok(Arc::new(b))
        }
        Protocol::Kmip1 => Ok(Arc::new(kmip_backend(config, ks)?)),
        Protocol::Vault => {
            let (b, warning) = vault_backend(config, ks)?;
            if let Some(w) = warning {
                tracing::warn!("{w}");
            }
            b.start();
            Ok(Arc::new(b))
        }
    }
}

/// Which `hsm` subcommand.
#[derive(Clone, Copy, Debug)]
pub enum HsmCommand {
    Init,
    Check,
    Rotate,
}

/// `cmx-kms hsm init|check|rotate`.
pub fn run(path: &Path, cmd: HsmCommand) -> u8 {
    let config = match load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let ks = match node::load_keystore(&config) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("{e}");
            return exit::CONFIG;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return exit::SOFTWARE;
        }
    };
    rt.block_on(async {
        match config.hsm.protocol {
            Protocol::Kmip1 => kmip_cmd(&config, &ks, cmd).await,
            Protocol::Vault => vault_cmd(&config, &ks, cmd).await,
            Protocol::Soft => soft_cmd(&config, &ks, cmd).await,
        }
    })
}

fn fail(e: impl std::fmt::Display) -> u8 {
    eprintln!("{e}");
    exit::UNAVAILABLE
}

async fn kmip_cmd(config: &Config, ks: &KeyStore, cmd: HsmCommand) -> u8 {
    let b = match kmip_backend(config, ks) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return exit::CONFIG;
        }
    };
    match cmd {
        HsmCommand::Init => match kmip::init(&b).await {
            Ok(r) => {
                println!("{r}");
                exit::OK
            }
            Err(e) => fail(e),
        },
        HsmCommand::Rotate => match kmip::rotate(&b).await {
            Ok(r) => {
                println!("{r}");
                exit::OK
            }
            Err(e) => fail(e),
        },
        HsmCommand::Check => {
            let r = kmip::check(&b).await;
            println!("{r}");
            if r.is_ok() {
                exit::OK
            } else {
                exit::UNAVAILABLE
            }
        }
    }
}

async fn vault_cmd(config: &Config, ks: &KeyStore, cmd: HsmCommand) -> u8 {
    let b = match vault_backend(config, ks) {
        Ok((b, w)) => {
            if let Some(w) = w {
                println!("warning: {w}");
            }
            b
        }
        Err(e) => {
            eprintln!("{e}");
            return exit::CONFIG;
        }
    };
    match cmd {
        HsmCommand::Init => match b.init().await {
            Ok(r) => {
                println!("{r}");
                exit::OK
            }
            Err(e) => fail(e),
        },
        HsmCommand::Rotate => match b.rotate().await {
            Ok((before, after)) => {
                println!(
                    "rotated Transit key '{}': version {} -> {}; new wraps use it now, older blobs still unwrap, and /v1/customer-keys/rewrap moves them to it",
                    after.name, before.latest_version, after.latest_version
                );
                exit::OK
            }
            Err(e) => fail(e),
        },
        HsmCommand::Check => {
            let r = b.check().await;
            println!("{r}");
            if r.passed() {
                exit::OK
            } else {
                exit::UNAVAILABLE
            }
        }
    }
}

async fn soft_cmd(config: &Config, ks: &KeyStore, cmd: HsmCommand) -> u8 {
    let b = match backend(config, ks) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return exit::CONFIG;
        }
    };
    match cmd {
        HsmCommand::Init | HsmCommand::Check => match b.probe().await {
            Ok(_) => {
                println!(
                    "soft master key in {} works (development only)",
                    config.hsm.soft.key_file.display()
                );
                exit::OK
            }
            Err(e) => fail(e),
        },
        HsmCommand::Rotate => {
            eprintln!("the soft backend has one master key version; it cannot rotate");
            exit::USAGE
        }
    }
}
