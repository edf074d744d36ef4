//! Settings of the KMIP backend, filled from `kms.properties` by the config layer.

use std::time::Duration;

/// The standard KMIP port.
pub const DEFAULT_PORT: u16 = 5696;
/// Connect (TCP and TLS handshake) timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of one request/response exchange.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Persistent connections per endpoint.
pub const DEFAULT_MAX_CONNECTIONS: usize = 8;
/// Idle connections are closed after this (keep it below the HSM's own idle timeout).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections are replaced after this, however busy.
pub const DEFAULT_MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Largest response accepted (Encrypt/Decrypt answers are a few hundred bytes).
pub const DEFAULT_MAX_RESPONSE_BYTES: u32 = 64 * 1024;
/// Consecutive connection failures that open an endpoint's circuit breaker.
pub const DEFAULT_BREAKER_FAILURES: u32 = 3;
/// How long an open breaker skips its endpoint.
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(5);
/// How long the identifier of the current master key version is reused before
/// it is looked up again (so a rotation made on another node is picked up).
pub const DEFAULT_CURRENT_KEY_TTL: Duration = Duration::from_secs(60);

/// Everything the KMIP backend needs besides its TLS identity and trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmipSettings {
    /// HSM endpoints in failover order: host name or IP address, and port.
    pub endpoints: Vec<(String, u16)>,
    /// The master key's Name attribute (`kms.hsm.key.name`).
    pub key_name: String,
    /// Pinned protocol version; `None` negotiates with Discover Versions.
    pub version: Option<(u8, u8)>,
    /// Operation Policy Name given to keys we create (PyKMIP: share them across identities).
    pub operation_policy_name: Option<String>,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub pool: KmipPoolSettings,
    pub max_response_bytes: u32,
    pub breaker: BreakerSettings,
    /// See [`DEFAULT_CURRENT_KEY_TTL`].
    pub current_key_ttl: Duration,
}

/// The connection pool, per endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmipPoolSettings {
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub max_lifetime: Duration,
}

/// The circuit breaker, per endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long an open breaker stays open.
    pub cooldown: Duration,
}

impl KmipSettings {
    /// Settings with every default, for one endpoint and key name.
    pub fn new(host: impl Into<String>, port: u16, key_name: impl Into<String>) -> Self {
        Self {
            endpoints: vec![(host.into(), port)],
            key_name: key_name.into(),
            version: None,
            operation_policy_name: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            pool: KmipPoolSettings {
                max_connections: DEFAULT_MAX_CONNECTIONS,
                idle_timeout: DEFAULT_IDLE_TIMEOUT,
                max_lifetime: DEFAULT_MAX_LIFETIME,
            },
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            breaker: BreakerSettings {
                failures: DEFAULT_BREAKER_FAILURES,
                cooldown: DEFAULT_BREAKER_COOLDOWN,
            },
            current_key_ttl: DEFAULT_CURRENT_KEY_TTL,
        }
    }

    /// Checks values the backend cannot work with; the message names the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("no KMIP endpoint configured: set kms.hsm.server.url".into());
        }
        if let Some((host, _)) = self.endpoints.iter().find(|(h, _)| h.trim().is_empty()) {
            return Err(format!("KMIP endpoint host {host:?} is empty"));
        }
        if self.key_name.trim().is_empty() {
            return Err("the master key name (kms.hsm.key.name) is empty".into());
        }
        if let Some((major, minor)) = self.version
            && ((major, minor) < (1, 2) || major != 1)
        {
            return Err(format!(
                "KMIP version {major}.{minor} cannot be used: Encrypt and Decrypt need 1.2, 1.3 or 1.4"
            ));
        }
        if self.pool.max_connections == 0 {
            return Err("the KMIP pool needs at least one connection".into());
        }
        if self.connect_timeout.is_zero() || self.request_timeout.is_zero() {
            return Err("KMIP timeouts must be greater than zero".into());
        }
        if self.max_response_bytes < 1024 {
            return Err("the KMIP response size cap must be at least 1024 bytes".into());
        }
        if self.breaker.failures == 0 {
            return Err("the KMIP circuit breaker needs a failure count of at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_problem() {
        let ok = KmipSettings::new("hsm.example", DEFAULT_PORT, "master");
        assert_eq!(ok.validate(), Ok(()));
        let mut s = ok.clone();
        s.version = Some((1, 1));
        assert!(s.validate().unwrap_err().contains("1.2, 1.3 or 1.4"));
        s.version = Some((2, 0));
        assert!(s.validate().is_err());
        let mut s = ok.clone();
        s.endpoints.clear();
        assert!(s.validate().unwrap_err().contains("kms.hsm.server.url"));
        let mut s = ok.clone();
        s.key_name = " ".into();
        assert!(s.validate().unwrap_err().contains("kms.hsm.key.name"));
        let mut s = ok;
        s.pool.max_connections = 0;
        assert!(s.validate().is_err());
    }
}
