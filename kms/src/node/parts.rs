//! The pieces a node is built from, each from the validated `Config`: the
//! keystore, the pinned clients, the TLS context, the settings of the API,
//! cache and connections, the certificate-expiry gauges and the refusal hook.
//! [`super::Node::bind`] and [`super::Reloader::reload`] both use them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::StartError;
use crate::audit::{AuditLog, Notice};
use crate::cache::CacheLimits;
use crate::config::Config;
use crate::http::api::AppSettings;
use crate::http::{self, ServeSettings, TlsContext};
use crate::keystore::{KeyStore, KeystoreFileError};
use crate::limits::Rate;
use crate::tls::{self, PinnedClient, PinnedClients, Refusal, RefusalHook, Role};

/// Load the keystore the config names.
pub fn load_keystore(config: &Config) -> Result<KeyStore, StartError> {
    let ks = &config.keystore;
    KeyStore::load(&ks.file, &ks.password, ks.key_password.as_ref())
        .map_err(KeystoreFileError::at(&ks.file))
        .map_err(StartError::from)
}

/// The keystore's certificate entries that are pinned clients, with roles.
pub fn pinned_clients(
    config: &Config,
    keystore: &KeyStore,
) -> Result<Vec<PinnedClient>, StartError> {
    let path = config.keystore.file.display().to_string();
    let mut pins = Vec::new();
    for entry in keystore.certificates() {
        let role = if config
            .clients
            .backend_aliases
            .iter()
            .any(|p| p.matches(entry.alias()))
        {
            Role::Backend
        } else if config
            .clients
            .device_aliases
            .iter()
            .any(|p| p.matches(entry.alias()))
        {
            Role::Device
        } else {
            continue;
        };
        let pin = PinnedClient::new(entry.alias(), role, entry.cert()).map_err(|message| {
            StartError::KeystoreContent {
                path: path.clone(),
                message,
            }
        })?;
        pins.push(pin);
    }
    if pins.is_empty() {
        let patterns: Vec<String> = config
            .clients
            .backend_aliases
            .iter()
            .chain(&config.clients.device_aliases)
            .map(ToString::to_string)
            .collect();
        return Err(tls::TlsError::NoClients(patterns.join(", ")).into());
    }
    Ok(pins)
}

/// The client alias patterns (key, pattern) that match no certificate entry
/// of the keystore: most likely a typo, which would leave a client out.
pub fn unmatched_aliases(config: &Config, keystore: &KeyStore) -> Vec<(&'static str, String)> {
    let c = &config.clients;
    let lists = [
        ("kms.clients.backend.aliases", &c.backend_aliases),
        ("kms.clients.device.aliases", &c.device_aliases),
    ];
    lists
        .into_iter()
        .flat_map(|(key, patterns)| patterns.iter().map(move |p| (key, p)))
        .filter(|(_, p)| !keystore.certificates().any(|e| p.matches(e.alias())))
        .map(|(key, p)| (key, p.to_string()))
        .collect()
}

/// The server's TLS context: identity `kms.server.key.alias`, pinned clients.
pub fn tls_context(
    config: &Config,
    keystore: &KeyStore,
    hook: Option<RefusalHook>,
) -> Result<TlsContext, StartError> {
    let server = keystore
        .private_key(&config.server.key_alias)
        .map_err(KeystoreFileError::at(&config.keystore.file))?;
    let pins = Arc::new(PinnedClients::new(pinned_clients(config, keystore)?));
    for (key, pattern) in unmatched_aliases(config, keystore) {
        let at = config.origins.of(key);
        tracing::warn!(
            "{at}: {key}: '{pattern}' matches no certificate entry of the keystore, so it pins no client; import the client's certificate under that alias, or correct the alias"
        );
    }
    let cfg = tls::server_config(
        server.chain().to_vec(),
        server.key_der(),
        Arc::clone(&pins),
        hook,
    )?;
    Ok(TlsContext {
        config: cfg,
        pins,
        generation: http::next_generation(),
    })
}

pub(super) fn app_settings(config: &Config) -> AppSettings {
    let rate = |r: &crate::config::RateLimit| Rate {
        per_second: f64::from(r.rate),
        burst: f64::from(r.burst),
    };
    AppSettings {
        max_body: config.server.max_request_bytes,
        body_timeout: config.server.header_timeout,
        backend_rate: rate(&config.limits.backend),
        device_rate: rate(&config.limits.device),
    }
}

pub(super) fn cache_limits(config: &Config) -> CacheLimits {
    CacheLimits {
        ttl: config.cache.ttl,
        max_entries: config.cache.max_entries,
        idle: config.cache.idle_ttl,
    }
}

pub(super) fn serve_settings(config: &Config) -> ServeSettings {
    let s = &config.server;
    ServeSettings {
        handshake_timeout: s.handshake_timeout,
        header_timeout: s.header_timeout,
        idle_timeout: s.idle_timeout,
        shutdown_grace: s.shutdown_grace,
        max_connections: s.max_connections,
        max_lifetime: s.max_connection_lifetime,
        max_pending_per_source: s.max_pending_per_source,
        max_pending: s.max_pending,
        backend_reserved: s.backend_reserved,
    }
}

/// Days until each keystore certificate expires, for the metrics; a
/// warning for each that is not valid now or expires within
/// [`EXPIRY_WARNING_DAYS`] (at start and at every reload).
pub(super) fn cert_expiry(keystore: &KeyStore) -> BTreeMap<(String, String), i64> {
    let now = crate::time::unix_now();
    let days = |der: &[u8]| {
        x509_parser::parse_x509_certificate(der).ok().map(|(_, c)| {
            let v = c.validity();
            (
                (v.not_after.timestamp() - now).div_euclid(86_400),
                v.not_before.timestamp() > now,
            )
        })
    };
    let out = expiry_days(keystore, days);
    for ((alias, kind), (left, early)) in &out {
        warn_validity(alias, kind, *left, *early);
    }
    out.into_iter().map(|(k, (d, _))| (k, d)).collect()
}

/// Certificates this close to their end are warned about.
const EXPIRY_WARNING_DAYS: i64 = 30;

fn warn_validity(alias: &str, kind: &str, left: i64, early: bool) {
    let what = if kind == "private-key" {
        "our own certificate (a private key entry)"
    } else {
        "the certificate of a keystore entry"
    };
    if early {
        tracing::warn!(
            alias,
            "{what} is not valid yet: a client presenting it is refused until its start date; check the issuer's clock, or import the right certificate and reload"
        );
    } else if left < 0 {
        tracing::warn!(
            alias,
            days_ago = -left,
            "{what} has expired: a client presenting it is refused; import a renewed certificate and reload"
        );
    } else if left < EXPIRY_WARNING_DAYS {
        tracing::warn!(
            alias,
            days_left = left,
            "{what} expires soon; import a renewed certificate and reload before then"
        );
    }
}

/// `days` of each entry's certificate (a private key's first), by alias and kind.
fn expiry_days<T>(
    keystore: &KeyStore,
    days: impl Fn(&[u8]) -> Option<T>,
) -> BTreeMap<(String, String), T> {
    let mut out = BTreeMap::new();
    for (alias, _) in keystore.entries() {
        if let Ok(pk) = keystore.private_key(alias) {
            if let Some(d) = pk.chain().first().and_then(|c| days(c.as_ref())) {
                out.insert((alias.to_owned(), "private-key".to_owned()), d);
            }
        } else if let Ok(c) = keystore.certificate(alias)
            && let Some(d) = days(c.cert().as_ref())
        {
            out.insert((alias.to_owned(), "certificate".to_owned()), d);
        }
    }
    out
}

/// What a refused handshake leaves behind: a metric (counted in the accept
/// loop) and an aggregated audit record (bounded in size and rate).
pub(super) fn refusal_hook(audit: Option<Arc<AuditLog>>) -> RefusalHook {
    Arc::new(move |why: Refusal, subject: &str, fingerprint: &str| {
        if let Some(audit) = &audit {
            audit.notice(&Notice {
                operation: "tls-handshake",
                outcome: why.audit_outcome(),
                fingerprint,
                subject,
                ..Notice::default()
            });
        }
    })
}
