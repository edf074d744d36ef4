//! Master-key backend settings (`kms.hsm.*`, legacy `kmip.server.*`).

use std::path::PathBuf;
use std::time::Duration;

use std::fmt;

use super::defaults as d;
use super::endpoint::{self, HsmEndpoint};
use super::error::{Origin, Warning};
use super::file::ConfigFile;
use super::keys::KEYS;
use super::values::{int_in, one_of, port, positive_duration};
use super::vault::VaultConfig;

/// `kms.hsm.protocol`: which master-key backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `kmip1` (default): an HSM over KMIP 1.x.
    Kmip1,
    /// `vault`: HashiCorp Vault or OpenBao Transit.
    Vault,
    /// `soft`: a software master key in a file, for development and demos only.
    Soft,
}

impl Protocol {
    /// The configuration word: `kmip1`, `vault` or `soft`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Kmip1 => "kmip1",
            Self::Vault => "vault",
            Self::Soft => "soft",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Connection pool towards the HSM (`kms.hsm.pool.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// `kms.hsm.pool.max-connections`: most connections open at once (≥ 1).
    pub max_connections: usize,
    /// `kms.hsm.pool.idle-timeout`: close a connection idle this long.
    pub idle_timeout: Duration,
    /// `kms.hsm.pool.max-lifetime`: replace a connection this old.
    pub max_lifetime: Duration,
}

/// Per-endpoint circuit breaker (`kms.hsm.circuit-breaker.*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitBreakerSettings {
    /// `kms.hsm.circuit-breaker.failures`: consecutive failures that open the breaker (≥ 1).
    pub failures: u32,
    /// `kms.hsm.circuit-breaker.cooldown`: how long an open breaker skips the endpoint.
    pub cooldown: Duration,
}

/// `kms.hsm.kmip.version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KmipVersion {
    /// Ask the server (Discover Versions) and use the highest version both speak.
    Auto,
    /// KMIP 1.2.
    V1_2,
    /// KMIP 1.3.
    V1_3,
    /// KMIP 1.4 (needed for AES-GCM).
    V1_4,
}

const KMIP_VERSIONS: &[(&str, KmipVersion)] = &[
    ("auto", KmipVersion::Auto),
    ("1.2", KmipVersion::V1_2),
    ("1.3", KmipVersion::V1_3),
    ("1.4", KmipVersion::V1_4),
];

/// KMIP-only settings (`kms.hsm.kmip.*`).
#[derive(Clone, Debug)]
pub struct KmipConfig {
    /// `kms.hsm.kmip.version`.
    pub version: KmipVersion,
    /// `kms.hsm.kmip.operation-policy-name`: attribute for keys we create, if any.
    pub operation_policy_name: Option<String>,
}

/// The development-only soft backend (`kms.hsm.soft.*`).
#[derive(Clone, Debug)]
pub struct SoftSettings {
    /// `kms.hsm.soft.key.file`: the master key file.
    pub key_file: PathBuf,
}

/// The master-key backend.
#[derive(Clone, Debug)]
pub struct HsmSettings {
    /// `kms.hsm.protocol`: which backend.
    pub protocol: Protocol,
    /// `kms.hsm.server.url` (+ `kms.hsm.server.port`): endpoints in failover order; never
    /// empty for `kmip1` and `vault`, empty for `soft`.
    pub endpoints: Vec<HsmEndpoint>,
    /// `kms.hsm.key.name`: the master key's name at the HSM or in Vault.
    pub key_name: String,
    /// `kms.hsm.ca.alias`: keystore entry that is the only trust anchor for the HSM.
    pub ca_alias: String,
    /// `kms.hsm.connect-timeout`: TCP + TLS connect time (> 0).
    pub connect_timeout: Duration,
    /// `kms.hsm.request-timeout`: one request's time (> 0).
    pub request_timeout: Duration,
    /// `kms.hsm.pool.*`.
    pub pool: PoolSettings,
    /// `kms.hsm.max-response-bytes`: largest response accepted.
    pub max_response_bytes: usize,
    /// `kms.hsm.circuit-breaker.*`.
    pub circuit_breaker: CircuitBreakerSettings,
    /// `kms.hsm.kmip.*`.
    pub kmip: KmipConfig,
    /// `kms.hsm.vault.*`.
    pub vault: VaultConfig,
    /// `kms.hsm.soft.*`.
    pub soft: SoftSettings,
}

const PROTOCOLS: &[(&str, Protocol)] = &[
    ("kmip1", Protocol::Kmip1),
    ("vault", Protocol::Vault),
    ("soft", Protocol::Soft),
];

const URL: &str = "kms.hsm.server.url";

/// `kms.hsm.protocol`, `None` if it is invalid (reported); a warning for soft.
fn take_protocol(file: &mut ConfigFile) -> Option<Protocol> {
    let known = match file.get("kms.hsm.protocol") {
        Some(raw) => file.check("kms.hsm.protocol", raw, one_of(PROTOCOLS)),
        None => Some(Protocol::Kmip1),
    };
    if known == Some(Protocol::Soft) {
        let warning = Warning::Other(
            "the soft backend keeps the master key in a file on this host: for development and demos only"
                .into(),
        );
        file.warn(
            file.origin_of("kms.hsm.protocol"),
            Some("kms.hsm.protocol"),
            warning,
        );
    }
    known
}

/// `kms.hsm.server.port` (legacy `kmip.server.port`): the port of the URLs
/// that name none; by default the protocol's own.
fn take_server_port(file: &mut ConfigFile, protocol: Protocol) -> u16 {
    let default_port = if protocol == Protocol::Vault {
        d::VAULT_PORT
    } else {
        d::KMIP_PORT
    };
    match file.get_with_legacy("kms.hsm.server.port", "kmip.server.port") {
        Some((key, raw)) => file.check(key, raw, port).unwrap_or(default_port),
        None => default_port,
    }
}

impl PoolSettings {
    fn take(file: &mut ConfigFile) -> Self {
        Self {
            max_connections: file.parse_or(
                "kms.hsm.pool.max-connections",
                d::HSM_POOL_MAX_CONNECTIONS,
                int_in(1, 1024),
            ),
            idle_timeout: file.parse_or(
                "kms.hsm.pool.idle-timeout",
                d::HSM_POOL_IDLE_TIMEOUT,
                positive_duration,
            ),
            max_lifetime: file.parse_or(
                "kms.hsm.pool.max-lifetime",
                d::HSM_POOL_MAX_LIFETIME,
                positive_duration,
            ),
        }
    }
}

impl CircuitBreakerSettings {
    fn take(file: &mut ConfigFile) -> Self {
        Self {
            failures: file.parse_or(
                "kms.hsm.circuit-breaker.failures",
                d::HSM_BREAKER_FAILURES,
                int_in(1, 1000),
            ),
            cooldown: file.parse_or(
                "kms.hsm.circuit-breaker.cooldown",
                d::HSM_BREAKER_COOLDOWN,
                positive_duration,
            ),
        }
    }
}

impl KmipConfig {
    fn take(file: &mut ConfigFile) -> Self {
        Self {
            version: file.parse_or(
                "kms.hsm.kmip.version",
                KmipVersion::Auto,
                one_of(KMIP_VERSIONS),
            ),
            operation_policy_name: file.string("kms.hsm.kmip.operation-policy-name"),
        }
    }
}

impl SoftSettings {
    fn take(file: &mut ConfigFile) -> Self {
        Self {
            key_file: file.path_or("kms.hsm.soft.key.file", d::SOFT_KEY_FILE),
        }
    }
}

impl HsmSettings {
    pub(super) fn take(file: &mut ConfigFile) -> Self {
        // `known` is None when the protocol is invalid (reported): checks that depend on it
        // are then skipped rather than run against a guess.
        let known = take_protocol(file);
        let protocol = known.unwrap_or(Protocol::Kmip1);
        let server_port = take_server_port(file, protocol);
        let endpoints = Self::endpoints(file, known, server_port);
        let this = Self {
            protocol,
            endpoints,
            key_name: file.parse_or("kms.hsm.key.name", d::HSM_KEY_NAME.into(), key_name),
            ca_alias: file.string_or("kms.hsm.ca.alias", d::HSM_CA_ALIAS),
            connect_timeout: file.parse_or(
                "kms.hsm.connect-timeout",
                d::HSM_CONNECT_TIMEOUT,
                positive_duration,
            ),
            request_timeout: file.parse_or(
                "kms.hsm.request-timeout",
                d::HSM_REQUEST_TIMEOUT,
                positive_duration,
            ),
            pool: PoolSettings::take(file),
            max_response_bytes: file.parse_or(
                "kms.hsm.max-response-bytes",
                d::HSM_MAX_RESPONSE_BYTES,
                int_in(4096, 64 * 1024 * 1024),
            ),
            circuit_breaker: CircuitBreakerSettings::take(file),
            kmip: KmipConfig::take(file),
            vault: VaultConfig::take(file, known.map(|p| p == Protocol::Vault)),
            soft: SoftSettings::take(file),
        };
        if let Some(protocol) = known {
            warn_unused(file, protocol);
        }
        this
    }

    fn endpoints(file: &mut ConfigFile, known: Option<Protocol>, port: u16) -> Vec<HsmEndpoint> {
        let url = file.get_with_legacy(URL, "kmip.server.url");
        let Some(protocol) = known else {
            // Protocol unknown: check the syntax only.
            if let Some((key, raw)) = url {
                file.check(key, raw, |text| endpoint::parse_list(text, None, port));
            }
            return Vec::new();
        };
        match (protocol, url) {
            (Protocol::Soft, Some((key, raw))) => {
                let reason = "kms.hsm.protocol is soft".to_string();
                file.warn(raw.origin, Some(key), Warning::Ignored { reason });
                Vec::new()
            }
            (Protocol::Soft, None) => Vec::new(),
            (_, Some((key, raw))) => {
                let origin = raw.origin.clone();
                let list = file
                    .check(key, raw, |text| {
                        endpoint::parse_list(text, Some(protocol), port)
                    })
                    .unwrap_or_default();
                if protocol == Protocol::Vault && list.len() > 1 {
                    // The Vault backend talks to one address (a Vault cluster
                    // forwards to its active node itself): no failover.
                    file.warn(
                        origin,
                        Some(key),
                        Warning::Other(format!(
                            "lists {} addresses, but Vault is reached at the first only (no \
                             failover): put a load balancer or a DNS name that covers the Vault \
                             cluster in front and name it alone",
                            list.len()
                        )),
                    );
                }
                list
            }
            (_, None) => {
                let what = if protocol == Protocol::Vault {
                    "the Vault address, e.g. https://vault.example.com:8200 (required with kms.hsm.protocol=vault)"
                } else {
                    "the HSM's address, e.g. https://kmshsm.myCorp.com (required with kms.hsm.protocol=kmip1)"
                };
                // Set but empty: say so where it is; absent: say it is missing.
                let origin = match file.origin_of(URL) {
                    Origin::File { line: None, .. } => None,
                    origin => Some(origin),
                };
                file.report_required(origin, URL, what);
                Vec::new()
            }
        }
    }
}

fn key_name(text: &str) -> Result<String, String> {
    if text.len() <= 255 && !text.chars().any(|c| c.is_control() || c == '/') {
        Ok(text.to_string())
    } else {
        Err("is not a key name (no '/' or control characters, at most 255 bytes)".into())
    }
}

/// Keys only the KMIP backend uses (its TTLV, its connection pool and its
/// circuit breaker; Vault's HTTP client has its own fixed pool and retries).
const KMIP_ONLY: [&str; 3] = ["kms.hsm.kmip.", "kms.hsm.pool.", "kms.hsm.circuit-breaker."];

/// Warns about KMIP keys set while another protocol is chosen.
fn warn_unused(file: &mut ConfigFile, protocol: Protocol) {
    if protocol == Protocol::Kmip1 {
        return;
    }
    let kmip_only = |name: &str| KMIP_ONLY.iter().any(|prefix| name.starts_with(prefix));
    for spec in KEYS.iter().filter(|k| kmip_only(k.name)) {
        if file.is_set(spec.name) {
            let reason = format!("kms.hsm.protocol is {}", protocol.label());
            file.warn(
                file.origin_of(spec.name),
                Some(spec.name),
                Warning::Ignored { reason },
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use std::path::Path;

    use super::super::parse_str;

    fn warnings(text: &str) -> Vec<String> {
        match parse_str(text, Path::new("/etc/kms/kms.properties"), &[]) {
            Ok(loaded) => loaded.warnings.iter().map(ToString::to_string).collect(),
            Err(e) => panic!("{:?}", e.errors),
        }
    }

    #[test]
    fn vault_warns_about_a_list_and_about_kmip_pool_and_breaker_keys() {
        let base = "kms.keystore.file=k\nkms.keystore.password=p\nkms.hsm.protocol=vault\n";
        let shown = warnings(&format!(
            "{base}kms.hsm.server.url=https://a:8200,https://b:8200\n\
             kms.hsm.pool.max-connections=4\nkms.hsm.circuit-breaker.failures=3\n"
        ));
        let expected = [
            "kms.properties:4: kms.hsm.server.url:", // the URL list: file, line, key
            "kms.hsm.pool.max-connections",
            "kms.hsm.circuit-breaker.failures",
        ];
        assert_eq!(shown.len(), 3, "{shown:#?}");
        assert!(
            shown[0].contains(expected[0])
                && shown[0].contains("kms.hsm.server.url")
                && shown[0].contains("first only"),
            "{shown:#?}"
        );
        for key in &expected[1..] {
            assert!(
                shown
                    .iter()
                    .any(|w| w.contains(key) && w.contains("kms.hsm.protocol is vault")),
                "{key}: {shown:#?}"
            );
        }
        // One address, or KMIP with a list: nothing to say.
        assert_eq!(
            warnings(&format!("{base}kms.hsm.server.url=https://a:8200\n")),
            Vec::<String>::new()
        );
        let kmip = "kms.keystore.file=k\nkms.keystore.password=p\n\
                    kms.hsm.server.url=h1,h2\nkms.hsm.pool.max-connections=4\n";
        assert_eq!(warnings(kmip), Vec::<String>::new());
    }
}
