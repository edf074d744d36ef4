//! Settings of the Vault Transit backend: what `kms.hsm.vault.*` becomes once
//! parsed. Durations stay [`Duration`]s; secrets stay [`SecretString`]s.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use secrecy::SecretString;

/// Default Transit mount.
pub const DEFAULT_MOUNT: &str = "transit";
/// Default renewal margin (`kms.hsm.vault.auth.renew-before-expiry`, 30 s in the guide).
pub const DEFAULT_RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(30);
/// Default Azure login path (`kms.hsm.vault.auth.azure.path`).
pub const DEFAULT_AZURE_LOGIN_PATH: &str = "/v1/auth/azure/login";
/// Default resource asked of the Azure metadata service (`kms.hsm.vault.auth.azure.resource`).
pub const DEFAULT_AZURE_RESOURCE: &str = "https://vault.hashicorp.com/";
/// The real Azure Instance Metadata Service. Tests point the setting elsewhere.
pub const DEFAULT_IMDS_BASE_URL: &str = "http://169.254.169.254";
/// Default AppRole login path.
pub const DEFAULT_APPROLE_LOGIN_PATH: &str = "/v1/auth/approle/login";
/// Default TLS certificate login path.
pub const DEFAULT_CERT_LOGIN_PATH: &str = "/v1/auth/cert/login";
/// Default time allowed to open a connection (TCP and TLS).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default time allowed for one HTTP exchange, connection included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on a response body from Vault or the metadata service.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// Everything the Vault backend needs to run.
#[derive(Clone, Debug)]
pub struct VaultSettings {
    /// Vault's base URL, e.g. `https://vault.example:8200`. `http://` only
    /// for a loopback host.
    pub address: String,
    /// Sent as `X-Vault-Namespace` (`kms.hsm.vault.namespace`); `None` = root.
    pub namespace: Option<String>,
    /// Transit mount path, without slashes.
    pub mount: String,
    /// The Transit key that is the master key (`kms.hsm.key.name`).
    pub key_name: String,
    /// How to obtain a token.
    pub auth: VaultAuth,
    /// Renew (or log in again) this long before the token expires.
    pub renew_before_expiry: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub retry: RetryPolicy,
    /// PEM file with the CA certificate(s) Vault's server certificate chains to.
    pub ca_file: Option<PathBuf>,
    /// More trust anchors, e.g. taken from the keystore.
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// Client certificate presented to Vault (mTLS listeners and `cert` auth).
    pub client_identity: Option<ClientIdentity>,
    pub max_response_bytes: usize,
}

impl VaultSettings {
    /// Settings with every default filled in, for the given address, key and auth.
    pub fn new(address: impl Into<String>, key_name: impl Into<String>, auth: VaultAuth) -> Self {
        Self {
            address: address.into(),
            namespace: None,
            mount: DEFAULT_MOUNT.to_owned(),
            key_name: key_name.into(),
            auth,
            renew_before_expiry: DEFAULT_RENEW_BEFORE_EXPIRY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry: RetryPolicy::default(),
            ca_file: None,
            ca_certs: Vec::new(),
            client_identity: None,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// How the backend authenticates to Vault (`kms.hsm.vault.auth`).
#[derive(Clone, Debug)]
pub enum VaultAuth {
    /// A token given by the operator. It can be renewed but not re-obtained.
    Token(TokenSource),
    /// AppRole login with a role id and a secret id read from a file at each login.
    AppRole {
        /// Login path, e.g. `/v1/auth/approle/login`.
        path: String,
        role_id: String,
        secret_id_file: PathBuf,
    },
    /// TLS certificate login with [`VaultSettings::client_identity`].
    Cert {
        /// Login path, e.g. `/v1/auth/cert/login`.
        path: String,
        /// The certificate role to match (`name`); `None` lets Vault pick.
        role: Option<String>,
    },
    /// Azure managed identity: a token from the instance metadata service,
    /// then a login with it.
    Azure(AzureAuth),
}

impl VaultAuth {
    /// Short name for logs and `hsm check`.
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::AppRole { .. } => "approle",
            Self::Cert { .. } => "cert",
            Self::Azure(_) => "azure",
        }
    }
}

/// Where a static token comes from.
#[derive(Clone)]
pub enum TokenSource {
    /// `kms.hsm.vault.token.file`: read at start, read again when the token
    /// stops working (a tool such as Vault Agent may have written a new one).
    File(PathBuf),
    /// The `VAULT_TOKEN` environment variable, handed over by the caller.
    Env(SecretString),
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Env(_) => f.write_str("Env([redacted])"),
        }
    }
}

/// Azure managed-identity login (`kms.hsm.vault.auth.azure.*`).
#[derive(Clone, Debug)]
pub struct AzureAuth {
    pub role: String,
    /// Login path, default [`DEFAULT_AZURE_LOGIN_PATH`].
    pub path: String,
    /// Resource asked of the metadata service, default [`DEFAULT_AZURE_RESOURCE`].
    pub resource: String,
    /// Base URL of the metadata service, default [`DEFAULT_IMDS_BASE_URL`].
    pub imds_base_url: String,
}

impl AzureAuth {
    /// Azure settings with the guide's defaults for the given role.
    pub fn new(role: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            path: DEFAULT_AZURE_LOGIN_PATH.to_owned(),
            resource: DEFAULT_AZURE_RESOURCE.to_owned(),
            imds_base_url: DEFAULT_IMDS_BASE_URL.to_owned(),
        }
    }
}

/// Retries on 429/502/503/504 and connection errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    pub max_attempts: u32,
    /// First delay; it doubles each time, with full jitter.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// No retry starts after this much time since the first attempt.
    pub max_total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_total: Duration::from_secs(5),
        }
    }
}

/// A client certificate chain and its key. `Debug` shows no key.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl ClientIdentity {
    /// Read a PEM certificate chain and a PEM private key.
    pub fn from_pem_files(
        cert_file: &std::path::Path,
        key_file: &std::path::Path,
    ) -> Result<Self, String> {
        use rustls_pki_types::pem::PemObject;
        let chain = CertificateDer::pem_file_iter(cert_file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read certificates from {}: {e}", cert_file.display()))?;
        if chain.is_empty() {
            return Err(format!("no certificate in {}", cert_file.display()));
        }
        let key = PrivateKeyDer::from_pem_file(key_file)
            .map_err(|e| format!("cannot read a private key from {}: {e}", key_file.display()))?;
        Ok(Self { chain, key })
    }
}

impl Clone for ClientIdentity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity")
            .field("certificates", &self.chain.len())
            .field("key", &"[redacted]")
            .finish()
    }
}

/// Whether `s` is safe as one path segment of a Vault URL (key, mount and
/// role names): no slash, no dot-segment, no characters needing escapes.
pub(crate) fn is_safe_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `s` is a safe relative API path (`auth/azure/login`): safe
/// segments separated by single slashes.
pub(crate) fn is_safe_path(s: &str) -> bool {
    !s.is_empty() && s.split('/').all(is_safe_segment)
}

/// `/v1/auth/x/login`, `v1/auth/x/login` and `auth/x/login` all become
/// `auth/x/login`.
pub(crate) fn normalise_api_path(path: &str) -> &str {
    let p = path.trim_start_matches('/');
    p.strip_prefix("v1/").unwrap_or(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments() {
        assert!(is_safe_segment("kms-kek_1.a"));
        assert!(!is_safe_segment(".."));
        assert!(!is_safe_segment("a/b"));
        assert!(!is_safe_segment("a?b"));
        assert!(!is_safe_segment(""));
        assert!(is_safe_path("auth/azure/login"));
        assert!(!is_safe_path("auth/../sys/login"));
        assert!(!is_safe_path("auth//login"));
    }

    #[test]
    fn login_paths() {
        assert_eq!(
            normalise_api_path("/v1/auth/azure/login"),
            "auth/azure/login"
        );
        assert_eq!(normalise_api_path("auth/azure/login"), "auth/azure/login");
        assert_eq!(normalise_api_path("v1/auth/cert/login"), "auth/cert/login");
    }

    #[test]
    fn debug_redacts() {
        let s = TokenSource::Env(SecretString::from("s.topsecret"));
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
