//! Settings of the HTTPS front, the metrics listener, the audit trail and request limits.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::defaults as d;
use super::error::{Problem, Warning};
use super::file::ConfigFile;
use super::values::{duration, int_in, ip, port, port_or_zero, positive_duration};

/// The HTTPS API listener (`kms.server.*`).
#[derive(Clone, Debug)]
pub struct ServerSettings {
    /// `kms.server.address`: address to listen on.
    pub address: IpAddr,
    /// `kms.server.port`: port to listen on (1-65535; tests may set 0 on a built `Config`).
    pub port: u16,
    /// `kms.server.key.alias`: keystore entry holding our TLS server key and certificate.
    pub key_alias: String,
    /// `kms.server.max-request-bytes`: largest request body accepted.
    pub max_request_bytes: usize,
    /// `kms.server.handshake-timeout`: time allowed for the TLS handshake (> 0).
    pub handshake_timeout: Duration,
    /// `kms.server.header-timeout`: time allowed to send the request headers (> 0).
    pub header_timeout: Duration,
    /// `kms.server.idle-timeout`: keep-alive idle time; zero turns keep-alive off.
    pub idle_timeout: Duration,
    /// `kms.server.shutdown-grace`: how long SIGTERM waits for requests in flight.
    pub shutdown_grace: Duration,
    /// `kms.server.max-connections`: most client connections at once.
    pub max_connections: usize,
    /// `kms.server.max-connection-lifetime`: after this, the next response
    /// closes the connection (> 0).
    pub max_connection_lifetime: Duration,
    /// `kms.server.max-pending-per-source`: most connections not authenticated
    /// yet from one IPv4 address or IPv6 /64.
    pub max_pending_per_source: usize,
    /// `kms.server.max-pending`: most connections not authenticated yet in total.
    pub max_pending: usize,
    /// `kms.server.backend-reserved-connections`: of `max_connections`, this
    /// many are kept for the backend role (less than `max_connections`).
    pub backend_reserved: usize,
    /// `kms.server.worker-threads`: the async runtime's workers (read at start).
    pub workers: Workers,
}

/// How many worker threads the async runtime has (`kms.server.worker-threads`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workers {
    /// `0`: one more than the CPUs this process may run on (its affinity
    /// and cgroup quota), so that a worker is more often awake when work
    /// arrives (docs/design/performance.md, "One worker more than the CPUs").
    Automatic,
    /// A fixed count, 1 or more.
    Fixed(std::num::NonZeroUsize),
}

impl Workers {
    fn parse(text: &str) -> Result<Self, String> {
        let n: usize = int_in(0, d::MAX_WORKER_THREADS)(text)?;
        Ok(std::num::NonZeroUsize::new(n).map_or(Self::Automatic, Self::Fixed))
    }

    /// The count for this process. `available_parallelism` fails only where
    /// the platform cannot say; one CPU is assumed then.
    pub fn count(self) -> usize {
        match self {
            Self::Fixed(n) => n.get(),
            Self::Automatic => std::thread::available_parallelism().map_or(1, |n| n.get()) + 1,
        }
    }
}

impl ServerSettings {
    pub(super) fn take(file: &mut ConfigFile) -> Self {
        let mut this = Self {
            address: file.parse_or("kms.server.address", d::SERVER_ADDRESS, ip),
            port: file.parse_or("kms.server.port", d::SERVER_PORT, port),
            key_alias: file.string_or("kms.server.key.alias", d::SERVER_KEY_ALIAS),
            max_request_bytes: file.parse_or(
                "kms.server.max-request-bytes",
                d::MAX_REQUEST_BYTES,
                int_in(1024, 16 * 1024 * 1024),
            ),
            handshake_timeout: file.parse_or(
                "kms.server.handshake-timeout",
                d::HANDSHAKE_TIMEOUT,
                positive_duration,
            ),
            header_timeout: file.parse_or(
                "kms.server.header-timeout",
                d::HEADER_TIMEOUT,
                positive_duration,
            ),
            idle_timeout: file.parse_or("kms.server.idle-timeout", d::IDLE_TIMEOUT, duration),
            shutdown_grace: file.parse_or("kms.server.shutdown-grace", d::SHUTDOWN_GRACE, duration),
            max_connections: file.parse_or(
                "kms.server.max-connections",
                d::MAX_CONNECTIONS,
                int_in(1, 1_000_000),
            ),
            max_connection_lifetime: file.parse_or(
                "kms.server.max-connection-lifetime",
                d::MAX_CONNECTION_LIFETIME,
                positive_duration,
            ),
            max_pending_per_source: file.parse_or(
                "kms.server.max-pending-per-source",
                d::MAX_PENDING_PER_SOURCE,
                int_in(1, 1_000_000),
            ),
            max_pending: file.parse_or(
                "kms.server.max-pending",
                d::MAX_PENDING,
                int_in(1, 1_000_000),
            ),
            workers: file.parse_or(
                "kms.server.worker-threads",
                Workers::Automatic,
                Workers::parse,
            ),
            backend_reserved: 0,
        };
        this.backend_reserved = Self::take_reserved(file, this.max_connections);
        this
    }

    /// `kms.server.backend-reserved-connections`, below `max_connections`.
    fn take_reserved(file: &mut ConfigFile, max_connections: usize) -> usize {
        let key = "kms.server.backend-reserved-connections";
        let set = file.is_set(key);
        let reserved = file.parse_or(key, d::BACKEND_RESERVED_CONNECTIONS, int_in(0, 1_000_000));
        if !set {
            // A small max-connections keeps a sixteenth.
            return reserved.min(max_connections / 16);
        }
        if reserved < max_connections {
            return reserved;
        }
        let detail = format!(
            "{reserved} connections kept for the backend leave none of kms.server.max-connections \
             ({max_connections}) for devices; keep fewer, or allow more connections"
        );
        file.error(file.origin_of(key), Some(key), Problem::Conflict { detail });
        0
    }
}

/// The Prometheus metrics listener (`kms.metrics.*`).
#[derive(Clone, Debug)]
pub struct MetricsSettings {
    /// `kms.metrics.address`: address of the metrics listener.
    pub address: IpAddr,
    /// `kms.metrics.port`: its port; 0 means no metrics listener.
    pub port: u16,
}

impl MetricsSettings {
    /// Whether the metrics listener runs.
    pub fn enabled(&self) -> bool {
        self.port != 0
    }

    pub(super) fn take(file: &mut ConfigFile, server: &ServerSettings) -> Self {
        let this = Self {
            address: file.parse_or("kms.metrics.address", d::METRICS_ADDRESS, ip),
            port: file.parse_or("kms.metrics.port", d::METRICS_PORT, port_or_zero),
        };
        if this.enabled() && this.port == server.port {
            let overlap = this.address == server.address
                || this.address.is_unspecified()
                || server.address.is_unspecified();
            if overlap {
                let detail = format!(
                    "port {} is also kms.server.port; give the metrics listener another port, or 0 to turn it off",
                    this.port
                );
                file.error(
                    file.origin_of("kms.metrics.port"),
                    Some("kms.metrics.port"),
                    Problem::Conflict { detail },
                );
            }
        }
        if this.enabled() && !this.address.is_loopback() {
            let warning = Warning::Other(
                "the metrics listener is reachable from other hosts; make sure a firewall limits who can read it"
                    .into(),
            );
            file.warn(
                file.origin_of("kms.metrics.address"),
                Some("kms.metrics.address"),
                warning,
            );
        }
        this
    }
}

/// The readiness canary (`kms.readiness.*`). Read at start; a change needs a restart.
#[derive(Clone, Copy, Debug)]
pub struct ReadinessSettings {
    /// `kms.readiness.interval`: time between canaries.
    pub interval: Duration,
    /// `kms.readiness.timeout`: a canary slower than this failed.
    pub timeout: Duration,
    /// `kms.readiness.slow`: a canary slower than this means degraded.
    pub slow: Duration,
}

impl ReadinessSettings {
    pub(super) fn take(file: &mut ConfigFile) -> Self {
        Self {
            interval: file.parse_or(
                "kms.readiness.interval",
                d::READINESS_INTERVAL,
                positive_duration,
            ),
            timeout: file.parse_or(
                "kms.readiness.timeout",
                d::READINESS_TIMEOUT,
                positive_duration,
            ),
            slow: file.parse_or("kms.readiness.slow", d::READINESS_SLOW, positive_duration),
        }
    }
}

/// The audit trail (`kms.audit.*`).
#[derive(Clone, Debug)]
pub struct AuditSettings {
    /// `kms.audit.file`: JSON lines, one event per key operation.
    pub file: PathBuf,
}

impl AuditSettings {
    pub(super) fn take(file: &mut ConfigFile) -> Self {
        Self {
            file: file.path_or("kms.audit.file", d::AUDIT_FILE),
        }
    }
}

/// A token-bucket rate limit per client (certificate or source address, by role).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second; 0 means unlimited.
    pub rate: u32,
    /// Requests allowed in a burst above the rate (at least 1 when `rate` > 0).
    pub burst: u32,
}

/// Request limits (`kms.limits.*`).
#[derive(Clone, Debug)]
pub struct LimitSettings {
    /// `kms.limits.backend-concurrency`: most HSM/Vault requests in flight at once.
    pub backend_concurrency: usize,
    /// `kms.limits.device.rate` and `.burst`: per device source address (every device
    /// presents the same certificate; see `crate::limits`).
    pub device: RateLimit,
    /// `kms.limits.backend.rate` and `.burst`: per backend certificate.
    pub backend: RateLimit,
}

impl LimitSettings {
    pub(super) fn take(file: &mut ConfigFile) -> Self {
        let backend_concurrency = file.parse_or(
            "kms.limits.backend-concurrency",
            d::BACKEND_CONCURRENCY,
            int_in(1, 100_000),
        );
        let device = rate_limit(
            file,
            ("kms.limits.device.rate", "kms.limits.device.burst"),
            RateLimit {
                rate: d::DEVICE_RATE,
                burst: d::DEVICE_BURST,
            },
        );
        let backend = rate_limit(
            file,
            ("kms.limits.backend.rate", "kms.limits.backend.burst"),
            RateLimit {
                rate: d::BACKEND_RATE,
                burst: d::BACKEND_BURST,
            },
        );
        Self {
            backend_concurrency,
            device,
            backend,
        }
    }
}

fn rate_limit(
    file: &mut ConfigFile,
    (rate_key, burst_key): (&'static str, &'static str),
    default: RateLimit,
) -> RateLimit {
    let limit = RateLimit {
        rate: file.parse_or(rate_key, default.rate, int_in(0, 1_000_000)),
        burst: file.parse_or(burst_key, default.burst, int_in(0, 1_000_000)),
    };
    if limit.rate > 0 && limit.burst == 0 {
        let expected = format!(
            "must be at least 1 while {rate_key} is not 0 (a burst of 0 refuses every request)"
        );
        let problem = Problem::Invalid {
            value: "'0'".into(),
            expected,
        };
        file.error(file.origin_of(burst_key), Some(burst_key), problem);
    }
    limit
}
