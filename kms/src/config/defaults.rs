//! Default values, in one place. `conf/kms.properties`, `docs/configuration.md` and
//! [`super::keys::KEYS`] show the same values; tests check that they agree.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

/// `kms.keystore.alias`: the keystore entry that identifies us to the HSM.
pub const KEYSTORE_ALIAS: &str = "kmsClient";
/// `kms.hsm.server.port` when the protocol is `kmip1` (IANA port for KMIP over TLS).
pub const KMIP_PORT: u16 = 5696;
/// `kms.hsm.server.port` when the protocol is `vault`.
pub const VAULT_PORT: u16 = 8200;
/// `kms.hsm.vault.auth.renew-before-expiry`.
pub const VAULT_RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(30);
/// `kms.hsm.vault.auth.azure.path`.
pub const VAULT_AZURE_PATH: &str = "/v1/auth/azure/login";
/// `kms.hsm.vault.auth.azure.resource`.
pub const VAULT_AZURE_RESOURCE: &str = "https://vault.hashicorp.com/";
/// `kms.hsm.vault.auth.approle.path`.
pub const VAULT_APPROLE_PATH: &str = "/v1/auth/approle/login";
/// `kms.hsm.vault.auth.cert.path`.
pub const VAULT_CERT_PATH: &str = "/v1/auth/cert/login";
/// `kms.hsm.vault.mount`: where the Transit engine is mounted.
pub const VAULT_MOUNT: &str = "transit";
/// `kms.distributed.cache.config.file`.
pub const JGROUPS_FILE: &str = "/usr/share/kms/conf/jgroups.xml";
/// `kms.control.socket`: in the unit's RuntimeDirectory.
pub const CONTROL_SOCKET: &str = "/run/cmx-kms/control.sock";
/// `kms.cluster.port`: JGroups' default TCP port, as the guide uses.
pub const CLUSTER_PORT: u16 = 7800;

/// `kms.server.address`.
pub const SERVER_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
/// `kms.server.port`.
pub const SERVER_PORT: u16 = 8443;
/// `kms.server.key.alias`: the keystore entry that is our TLS server identity.
pub const SERVER_KEY_ALIAS: &str = "kmsserver";
/// `kms.server.max-request-bytes`.
pub const MAX_REQUEST_BYTES: usize = 65536;
/// `kms.server.handshake-timeout`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// `kms.server.header-timeout`.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// `kms.server.idle-timeout`: how long an idle keep-alive connection stays open.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `kms.server.drain-delay`: the shipped HAProxy check (inter 2s, fall 3) takes
/// a draining node out within 6 s; 2 s more for the check in flight.
pub const DRAIN_DELAY: Duration = Duration::from_secs(8);
/// `kms.server.shutdown-grace`: how long SIGTERM waits for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
/// `kms.server.max-connections`.
pub const MAX_CONNECTIONS: usize = 4096;
/// `kms.server.max-connection-lifetime`.
pub const MAX_CONNECTION_LIFETIME: Duration = Duration::from_secs(3600);
/// `kms.server.max-pending-per-source`: connections not authenticated yet, per source.
pub const MAX_PENDING_PER_SOURCE: usize = 128;
/// `kms.server.max-pending`: connections not authenticated yet, in total.
pub const MAX_PENDING: usize = 1024;
/// `kms.server.backend-reserved-connections`: of `MAX_CONNECTIONS`, kept
/// for the backend role.
pub const BACKEND_RESERVED_CONNECTIONS: usize = 64;
/// The most `kms.server.worker-threads` accepts (its default, 0, is
/// `Workers::Automatic`).
pub const MAX_WORKER_THREADS: u64 = 1024;

/// `kms.clients.backend.aliases`.
pub const BACKEND_ALIASES: &str = "cmxBackend*";
/// `kms.clients.device.aliases`.
pub const DEVICE_ALIASES: &str = "cmxDevice*";

/// `kms.hsm.key.name`: the master key's name at the HSM or in Vault.
pub const HSM_KEY_NAME: &str = "cmx-kms-master";
/// `kms.hsm.ca.alias`: the keystore entry that is the only trust anchor for the HSM.
pub const HSM_CA_ALIAS: &str = "kmipSigningCA";
/// `kms.hsm.connect-timeout`.
pub const HSM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// `kms.hsm.request-timeout`.
pub const HSM_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// `kms.hsm.pool.max-connections`.
pub const HSM_POOL_MAX_CONNECTIONS: usize = 8;
/// `kms.hsm.pool.idle-timeout`.
pub const HSM_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// `kms.hsm.pool.max-lifetime`.
pub const HSM_POOL_MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// `kms.hsm.max-response-bytes`.
pub const HSM_MAX_RESPONSE_BYTES: usize = 1_048_576;
/// `kms.hsm.circuit-breaker.failures`.
pub const HSM_BREAKER_FAILURES: u32 = 5;
/// `kms.hsm.circuit-breaker.cooldown`.
pub const HSM_BREAKER_COOLDOWN: Duration = Duration::from_secs(10);
/// `kms.hsm.soft.key.file`, relative to the configuration directory.
pub const SOFT_KEY_FILE: &str = "soft-master.key";

/// `kms.cache.ttl`.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// `kms.cache.max-entries`.
pub const CACHE_MAX_ENTRIES: usize = 10_000;

/// `kms.audit.file`.
pub const AUDIT_FILE: &str = "/var/log/kms/audit.log";

/// `kms.limits.backend-concurrency`.
pub const BACKEND_CONCURRENCY: usize = 64;
/// `kms.limits.device.rate`: requests per second per device source address. Every agent
/// presents the same certificate, so devices are limited per address; 100/s is far above
/// what one agent sends, and a site of agents behind one NAT address still gets 100/s.
pub const DEVICE_RATE: u32 = 100;
/// `kms.limits.device.burst`: lets 1,000 agents behind one address start their
/// scheduled backups in the same second.
pub const DEVICE_BURST: u32 = 1000;
/// `kms.limits.backend.rate`.
pub const BACKEND_RATE: u32 = 1000;
/// `kms.limits.backend.burst`.
pub const BACKEND_BURST: u32 = 2000;

/// `kms.metrics.address`.
pub const METRICS_ADDRESS: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// `kms.metrics.port` (0 disables the metrics listener).
pub const METRICS_PORT: u16 = 9443;

/// `kms.readiness.interval`.
pub const READINESS_INTERVAL: Duration = Duration::from_secs(5);
/// `kms.readiness.timeout`.
pub const READINESS_TIMEOUT: Duration = Duration::from_secs(5);
/// `kms.readiness.slow`.
pub const READINESS_SLOW: Duration = Duration::from_secs(1);
