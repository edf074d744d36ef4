//! Every key of `kms.properties`: the list that unknown-key suggestions, environment
//! variable names, `docs/configuration.md` and the shipped `conf/kms.properties` are
//! checked against.

/// One configuration key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// The key, exactly as written in `kms.properties`.
    pub name: &'static str,
    /// The value's type, for documentation.
    pub ty: &'static str,
    /// The default as written in `conf/kms.properties`; empty when there is none.
    pub default: &'static str,
    /// When the key is required (`yes`, `no`, or the condition).
    pub required: &'static str,
    /// The value is a secret: never printed.
    pub secret: bool,
    /// For a legacy key, the key that replaces it. Legacy keys have no environment variable.
    pub replaced_by: Option<&'static str>,
    /// One-line description.
    pub doc: &'static str,
    /// Read only when the node starts: a reload cannot apply a change, and warns about it
    /// (`super::restart`). `docs/configuration.md` lists these keys under "Reload".
    pub restart: bool,
}

impl KeySpec {
    /// The same key, read only at start.
    const fn at_start(self) -> Self {
        Self {
            restart: true,
            ..self
        }
    }
}

const fn key(
    name: &'static str,
    ty: &'static str,
    default: &'static str,
    required: &'static str,
    doc: &'static str,
) -> KeySpec {
    KeySpec {
        name,
        ty,
        default,
        required,
        secret: false,
        replaced_by: None,
        doc,
        restart: false,
    }
}

const fn secret(name: &'static str, required: &'static str, doc: &'static str) -> KeySpec {
    KeySpec {
        name,
        ty: "secret",
        default: "",
        required,
        secret: true,
        replaced_by: None,
        doc,
        restart: false,
    }
}

const fn legacy(name: &'static str, replaced_by: &'static str, ty: &'static str) -> KeySpec {
    KeySpec {
        name,
        ty,
        default: "",
        required: "no",
        secret: false,
        replaced_by: Some(replaced_by),
        doc: "Legacy name, still accepted with a deprecation warning.",
        restart: false,
    }
}

/// The prefix of environment variables that override keys.
pub const ENV_PREFIX: &str = "CMX_KMS_";

/// `CMX_KMS_*` variables that are not configuration keys, so never reported as unknown:
/// the log filter, the test-bed directory of the test suite, and one reserved for a
/// configuration path.
pub const NON_CONFIG_ENV_VARS: &[&str] = &["CMX_KMS_LOG", "CMX_KMS_TESTBED", "CMX_KMS_CONFIG"];

/// The environment variable that overrides `key`: `CMX_KMS_` + the key without its leading
/// `kms.`, upper-cased, with `.` and `-` turned into `_`. `None` for keys outside `kms.`
/// (the legacy `kmip.server.*` keys).
pub fn env_var_name(key: &str) -> Option<String> {
    let rest = key.strip_prefix("kms.")?;
    let tail: String = rest
        .chars()
        .map(|c| {
            if c == '.' || c == '-' {
                '_'
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect();
    Some(format!("{ENV_PREFIX}{tail}"))
}

/// Looks a key up by name.
pub fn find(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

/// Every key, in the order of the shipped file: the guide's keys first, then ours.
#[rustfmt::skip]
pub const KEYS: &[KeySpec] = &[
    // Keystore (guide).
    key("kms.keystore.file", "path", "/usr/share/kms/conf/kmsKeystore.jks", "yes", "The keytool keystore (JKS or PKCS#12) with the server, client and CA entries."),
    secret("kms.keystore.password", "yes", "Keystore password, in plain text; also opens the private key entries unless kms.keystore.key-password is set."),
    key("kms.keystore.alias", "string", "kmsClient", "no", "Keystore entry (case-insensitive) whose key and certificate identify us to the HSM."),
    secret("kms.keystore.key-password", "no", "Password of the private key entries when it differs from the store password (JKS only)."),
    // HSM (guide).
    key("kms.hsm.server.url", "endpoint list", "", "kmip1, vault", "HSM or Vault address; a comma-separated list gives failover. Items: host, host:port, [v6]:port or scheme://host[:port]."),
    key("kms.hsm.server.port", "port", "", "no", "Port for items of kms.hsm.server.url without one; default 5696 for kmip1, 8200 for vault."),
    legacy("kmip.server.url", "kms.hsm.server.url", "endpoint list"),
    legacy("kmip.server.port", "kms.hsm.server.port", "port"),
    key("kms.hsm.protocol", "kmip1, vault or soft", "kmip1", "no", "Master-key backend, case-insensitive: a KMIP 1.x HSM, Vault Transit, or soft (development only)."),
    // Vault (guide).
    key("kms.hsm.vault.namespace", "string", "", "no", "Value of the X-Vault-Namespace header; none by default."),
    key("kms.hsm.vault.auth", "token, azure, approle or cert", "token", "no", "How we log in to Vault."),
    key("kms.hsm.vault.auth.renew-before-expiry", "duration", "30", "no", "Renew the Vault token this long before it expires (plain number = seconds)."),
    key("kms.hsm.vault.auth.azure.role", "string", "", "azure auth", "Role passed in the Azure auth login."),
    key("kms.hsm.vault.auth.azure.path", "string", "/v1/auth/azure/login", "no", "Request path of the Azure auth login."),
    key("kms.hsm.vault.auth.azure.resource", "string", "https://vault.hashicorp.com/", "no", "Resource asked for when getting the Azure managed-identity token."),
    // Cache (guide).
    key("kms.cache.type", "none or distributed", "none", "no", "none: each node caches on its own; distributed: the nodes of jgroups.xml share one cache.").at_start(),
    key("kms.distributed.cache.config.file", "path", "/usr/share/kms/conf/jgroups.xml", "no", "JGroups file listing the cluster nodes (TCPPING initial_hosts); keep the default.").at_start(),
    key("kms.cluster.address", "host or IP address", "", "with kms.cache.type=distributed", "This node's cluster address, as the other nodes list it in jgroups.xml (legacy setenv.sh -Djgroups.tcp.address).").at_start(),
    key("kms.cluster.port", "port", "7800", "no", "This node's cluster port (legacy -Djgroups.tcp.port); mutual TLS between nodes only, never through the load balancer.").at_start(),
    key("kms.control.socket", "path", "/run/cmx-kms/control.sock", "no", "Unix socket (mode 0660, user and group kms) where cmx-kms cache flush and cluster status reach the running node. A relative path is taken from the folder of `kms.properties`; the whole path must be shorter than 108 bytes (the kernel's limit), else the node starts without the socket and warns.").at_start(),
    // Server (ours).
    key("kms.server.address", "IP address", "0.0.0.0", "no", "Address the HTTPS API listens on.").at_start(),
    key("kms.server.port", "port", "8443", "no", "Port the HTTPS API listens on.").at_start(),
    key("kms.server.key.alias", "string", "kmsserver", "no", "Keystore entry that is our TLS server identity (Tomcat's keyAlias)."),
    key("kms.server.max-request-bytes", "integer", "65536", "no", "Largest request body accepted, in bytes."),
    key("kms.server.handshake-timeout", "duration", "10s", "no", "Time a client has to complete the TLS handshake.").at_start(),
    key("kms.server.header-timeout", "duration", "10s", "no", "Time a client has to send the request headers.").at_start(),
    key("kms.server.idle-timeout", "duration", "60s", "no", "How long an idle keep-alive connection stays open; 0 turns keep-alive off.").at_start(),
    key("kms.server.shutdown-grace", "duration", "20s", "no", "On SIGTERM, after the drain delay: how long requests in flight may take to finish.").at_start(),
    key("kms.server.drain-delay", "duration", "8s", "no", "On SIGTERM, how long the node reports draining to the health check while still serving; 0 stops at once. Without a health check listener (kms.health.port=0) nothing would see the drain, so the node stops at once.").at_start(),
    key("kms.server.proxy-protocol.trusted", "address blocks", "", "no", "Comma-separated addresses or CIDR blocks of load balancers that must send a PROXY protocol v1/v2 header; empty turns the protocol off.").at_start(),
    key("kms.server.max-connections", "integer", "4096", "no", "Most client connections open at once.").at_start(),
    key("kms.server.max-connection-lifetime", "duration", "1h", "no", "After this long a connection is closed, between requests: the next response says Connection: close.").at_start(),
    key("kms.server.max-pending-per-source", "integer", "128", "no", "Most connections not yet authenticated (in the TLS handshake) from one IPv4 address or IPv6 /64; more are closed at once.").at_start(),
    key("kms.server.max-pending", "integer", "1024", "no", "Most connections not yet authenticated (in the TLS handshake) in total; more are closed at once.").at_start(),
    key("kms.server.backend-reserved-connections", "integer", "64", "no", "Of kms.server.max-connections, this many are kept for the backend role: a device connection that would take one is closed after its handshake, so devices holding every connection cannot lock the backend out. Less than kms.server.max-connections (0 keeps none); if not set, 64 or a sixteenth of kms.server.max-connections, whichever is less. Read at start.").at_start(),
    key("kms.server.worker-threads", "integer", "0", "no", "Threads that serve requests (0 to 1024); 0 means one more than the CPUs the process may use. Read at start.").at_start(),
    // Clients (ours).
    key("kms.clients.backend.aliases", "alias patterns", "cmxBackend*", "no", "Certificate entries that identify the backend: comma-separated, case-insensitive, * matches anything."),
    key("kms.clients.device.aliases", "alias patterns", "cmxDevice*", "no", "Certificate entries that identify devices (decrypt only): same syntax."),
    // HSM (ours).
    key("kms.hsm.key.name", "string", "cmx-kms-master", "no", "Name of the master key at the HSM or in Vault Transit."),
    key("kms.hsm.ca.alias", "string", "kmipSigningCA", "no", "Keystore entry that is the only trust anchor for the HSM's (or Vault's) certificate."),
    key("kms.hsm.kmip.version", "auto, 1.2, 1.3 or 1.4", "auto", "no", "KMIP protocol version; auto asks the server (Discover Versions)."),
    key("kms.hsm.kmip.operation-policy-name", "string", "", "no", "Operation Policy Name attribute for keys we create; none by default."),
    key("kms.hsm.connect-timeout", "duration", "5s", "no", "Time to open a connection (TCP and TLS) to the HSM or Vault."),
    key("kms.hsm.request-timeout", "duration", "10s", "no", "Time for one request to the HSM or Vault."),
    key("kms.hsm.pool.max-connections", "integer", "8", "no", "Most connections kept open to the HSM."),
    key("kms.hsm.pool.idle-timeout", "duration", "30s", "no", "Close an HSM connection after it has been idle this long."),
    key("kms.hsm.pool.max-lifetime", "duration", "1h", "no", "Replace an HSM connection after this long (firewalls drop old flows)."),
    key("kms.hsm.max-response-bytes", "integer", "1048576", "no", "Largest response accepted from the HSM or Vault, in bytes."),
    key("kms.hsm.circuit-breaker.failures", "integer", "5", "no", "Consecutive failures after which an endpoint is skipped for a while."),
    key("kms.hsm.circuit-breaker.cooldown", "duration", "10s", "no", "How long a failing endpoint is skipped."),
    // Vault (ours).
    key("kms.hsm.vault.mount", "string", "transit", "no", "Mount path of the Transit secrets engine."),
    key("kms.hsm.vault.token.file", "path", "", "no", "File holding the Vault token (token auth), not readable by other users; when unset the VAULT_TOKEN environment variable is used."),
    key("kms.hsm.vault.ca.file", "path", "", "no", "PEM file of CA certificates for Vault's server certificate; when unset, kms.hsm.ca.alias is the trust anchor."),
    key("kms.hsm.vault.auth.approle.role-id", "string", "", "approle auth", "AppRole role_id."),
    key("kms.hsm.vault.auth.approle.secret-id.file", "path", "", "approle auth", "File holding the AppRole secret_id, not readable by other users."),
    key("kms.hsm.vault.auth.approle.path", "string", "/v1/auth/approle/login", "no", "Request path of the AppRole login."),
    key("kms.hsm.vault.auth.cert.path", "string", "/v1/auth/cert/login", "no", "Request path of the TLS certificate login (uses the kms.keystore.alias identity)."),
    key("kms.hsm.vault.auth.cert.role", "string", "", "no", "Certificate role name to log in with; none lets Vault pick."),
    // Soft backend (ours).
    key("kms.hsm.soft.key.file", "path", "soft-master.key", "no", "Master key file of the development-only soft backend. It must exist: `cmx-kms dev` or `cmx-kms hsm init` makes it, `serve` never does."),
    // Cache (ours).
    key("kms.cache.ttl", "duration", "300s", "no", "How long a decrypted customer key stays in memory; 0 turns the cache off. A reload applies it to keys already cached."),
    key("kms.cache.max-entries", "integer", "10000", "no", "Most customer keys cached at once."),
    key("kms.cache.idle-ttl", "duration", "0", "no", "A cached customer key unused this long leaves memory before its TTL; 0 turns the idle limit off."),
    // Audit (ours).
    key("kms.audit.file", "path", "/var/log/kms/audit.log", "no", "JSON audit trail, one event per key operation. Moved away (logrotate), a reload goes on in a new file at the path, chained to the old one.").at_start(),
    // Limits (ours).
    key("kms.limits.backend-concurrency", "integer", "64", "no", "Most requests in flight to the HSM or Vault at once."),
    key("kms.limits.device.rate", "integer", "100", "no", "Requests per second allowed from each device source address (devices share one certificate); 0 = unlimited."),
    key("kms.limits.device.burst", "integer", "1000", "no", "Burst allowance above kms.limits.device.rate, per source address."),
    key("kms.limits.backend.rate", "integer", "1000", "no", "Requests per second allowed to each backend certificate; 0 = unlimited."),
    key("kms.limits.backend.burst", "integer", "2000", "no", "Burst allowance above kms.limits.backend.rate."),
    // Metrics (ours).
    key("kms.metrics.address", "IP address", "127.0.0.1", "no", "Address of the Prometheus metrics listener.").at_start(),
    key("kms.metrics.port", "port", "9443", "no", "Port of the metrics listener; 0 turns it off.").at_start(),
    key("kms.health.address", "IP address", "", "no", "Address of the load balancers' readiness check listener; defaults to kms.server.address.").at_start(),
    key("kms.health.port", "port", "0", "no", "Port of the plain-HTTP readiness check listener (GET /v1/ready only); 0 turns it off.").at_start(),
    // Readiness (ours).
    key("kms.readiness.interval", "duration", "5s", "no", "How often the readiness canary wraps and unwraps through the backend (one HSM Encrypt and Decrypt each time).").at_start(),
    key("kms.readiness.timeout", "duration", "5s", "no", "A canary slower than this counts as failed: readiness turns unavailable.").at_start(),
    key("kms.readiness.slow", "duration", "1s", "no", "A canary slower than this makes readiness degraded.").at_start(),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_var_names() {
        assert_eq!(
            env_var_name("kms.server.port").as_deref(),
            Some("CMX_KMS_SERVER_PORT")
        );
        assert_eq!(
            env_var_name("kms.keystore.password").as_deref(),
            Some("CMX_KMS_KEYSTORE_PASSWORD")
        );
        assert_eq!(
            env_var_name("kms.hsm.vault.auth.renew-before-expiry").as_deref(),
            Some("CMX_KMS_HSM_VAULT_AUTH_RENEW_BEFORE_EXPIRY")
        );
        assert_eq!(env_var_name("kmip.server.url"), None);
    }

    #[test]
    fn names_and_env_vars_are_unique() {
        let mut names: Vec<_> = KEYS.iter().map(|k| k.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KEYS.len());
        let mut vars: Vec<_> = KEYS.iter().filter_map(|k| env_var_name(k.name)).collect();
        vars.sort_unstable();
        vars.dedup();
        assert_eq!(
            vars.len(),
            KEYS.iter().filter(|k| k.replaced_by.is_none()).count()
        );
        for var in NON_CONFIG_ENV_VARS {
            assert!(!vars.iter().any(|v| v == var), "{var} collides with a key");
        }
    }
}
