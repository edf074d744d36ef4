//! The HTTP(S) layer under the Vault client and the Azure metadata client:
//! hyper 1 with a pooled rustls (ring) connector, a timeout on every
//! exchange, and a cap on every response body.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode, Uri};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::settings::{ClientIdentity, VaultSettings};

/// What came back from one HTTP exchange.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: StatusCode,
    pub body: Bytes,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<Duration>,
}

/// Why an HTTP exchange produced no response.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("response larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Other(String),
}

/// A pooled HTTP/1.1 client for one kind of peer.
#[derive(Clone)]
pub(crate) struct Http {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    request_timeout: Duration,
    max_response_bytes: usize,
}

impl Http {
    /// A client that speaks `https://` with `tls` and plain `http://`.
    /// Which scheme may be used where is checked by the callers.
    pub fn new(
        tls: rustls::ClientConfig,
        connect_timeout: Duration,
        request_timeout: Duration,
        max_response_bytes: usize,
    ) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_nodelay(true);
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(8)
            .build(https);
        Self {
            client,
            request_timeout,
            max_response_bytes,
        }
    }

    /// Send one request and read the whole (bounded) response.
    pub async fn send(&self, req: Request<Full<Bytes>>) -> Result<RawResponse, HttpError> {
        let max = self.max_response_bytes;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    HttpError::Connect(error_chain(&e))
                } else {
                    HttpError::Other(error_chain(&e))
                }
            })?;
            let status = resp.status();
            let retry_after = resp.headers().get(RETRY_AFTER).and_then(parse_retry_after);
            if let Some(len) = resp
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                && len > max as u64
            {
                return Err(HttpError::TooLarge(max));
            }
            let body = Limited::new(resp.into_body(), max)
                .collect()
                .await
                .map_err(|e| {
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some()
                    {
                        HttpError::TooLarge(max)
                    } else {
                        HttpError::Other(format!("reading the response: {e}"))
                    }
                })?
                .to_bytes();
            Ok(RawResponse {
                status,
                body,
                retry_after,
            })
        };
        tokio::time::timeout(self.request_timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout(self.request_timeout))?
    }
}

fn parse_retry_after(v: &HeaderValue) -> Option<Duration> {
    v.to_str()
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// The error and its sources on one line (hyper hides the useful part in sources).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let more = src.to_string();
        if !s.contains(&more) {
            s.push_str(": ");
            s.push_str(&more);
        }
        cur = src.source();
    }
    s
}

/// A checked Vault address: scheme, authority and an optional path prefix.
#[derive(Clone, Debug)]
pub(crate) struct BaseUrl {
    /// `scheme://authority[/prefix]`, without a trailing slash.
    pub base: String,
    pub https: bool,
}

impl BaseUrl {
    /// Parse `address`. Plain `http://` is allowed for a loopback host only;
    /// then the returned warning must be logged at every start.
    pub fn parse(address: &str, what: &str) -> Result<(Self, Option<String>), String> {
        let uri: Uri = address
            .trim()
            .parse()
            .map_err(|e| format!("{what} '{address}' is not a URL: {e}"))?;
        let host = uri
            .host()
            .ok_or_else(|| format!("{what} '{address}' has no host"))?;
        if uri.query().is_some() {
            return Err(format!("{what} '{address}' must not have a query"));
        }
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("{what} '{address}' must start with https://")),
        };
        let warning = if https {
            None
        } else if is_loopback(host) {
            Some(format!(
                "{what} {address} is plain http: tokens and wrapped keys cross the loopback \
                 interface unencrypted; use this for development only"
            ))
        } else {
            return Err(format!(
                "{what} '{address}' is plain http to a host that is not loopback: use https:// \
                 (plain http is accepted for 127.0.0.1, ::1 and localhost only)"
            ));
        };
        let authority = uri
            .authority()
            .map(|a| a.as_str())
            .ok_or_else(|| format!("{what} '{address}' has no host"))?;
        if authority.contains('@') {
            return Err(format!(
                "{what} '{address}' must not carry user information"
            ));
        }
        let prefix = uri.path().trim_end_matches('/');
        let scheme = if https { "https" } else { "http" };
        Ok((
            Self {
                base: format!("{scheme}://{authority}{prefix}"),
                https,
            },
            warning,
        ))
    }
}

/// Whether `host` (as in a URI, IPv6 in brackets) is a loopback address.
pub(crate) fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

/// The rustls client configuration for Vault: ring provider, trust anchors
/// from the CA file and the given certificates, optional client certificate.
pub(crate) fn tls_config(
    settings: &VaultSettings,
    https: bool,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    if let Some(path) = &settings.ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read Vault's CA file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "Vault's CA file {} holds no certificate",
                path.display()
            ));
        }
        let (added, _ignored) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(format!(
                "Vault's CA file {} holds no usable CA certificate",
                path.display()
            ));
        }
    }
    roots.add_parsable_certificates(settings.ca_certs.iter().cloned());
    if https && roots.is_empty() {
        return Err("Vault is reached over https but no CA is configured: set \
                    kms.hsm.vault.ca.file or put Vault's CA into the keystore"
            .to_owned());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots);
    match &settings.client_identity {
        Some(ClientIdentity { chain, key }) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| format!("the client certificate for Vault is not usable: {e}")),
        None => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_rule() {
        assert!(BaseUrl::parse("http://127.0.0.1:8200", "Vault").is_ok_and(|(_, w)| w.is_some()));
        assert!(BaseUrl::parse("http://localhost:8200/", "Vault").is_ok());
        assert!(BaseUrl::parse("http://[::1]:8200", "Vault").is_ok());
        assert!(BaseUrl::parse("http://vault.example:8200", "Vault").is_err());
        assert!(BaseUrl::parse("http://10.0.0.1:8200", "Vault").is_err());
        assert!(BaseUrl::parse("ftp://127.0.0.1", "Vault").is_err());
        let parsed = BaseUrl::parse("https://vault.example:8200/", "Vault");
        assert!(
            matches!(&parsed, Ok((b, None)) if b.base == "https://vault.example:8200"),
            "{parsed:?}"
        );
    }
}
