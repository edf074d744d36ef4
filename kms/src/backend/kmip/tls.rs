//! TLS towards the HSM: rustls with the ring provider, the keystore's
//! `kmsClient` identity, and the `kmipSigningCA` certificate(s) as the only
//! trust anchors. Also turns handshake failures into plain words.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::backend::BackendError;

/// Builds the client configuration: TLS 1.2 and 1.3, client certificate always sent.
pub fn client_config(
    identity: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    trust: Vec<CertificateDer<'static>>,
) -> Result<Arc<ClientConfig>, BackendError> {
    if identity.is_empty() {
        return Err(BackendError::Misconfigured(
            "the kmsClient key entry has no certificate: re-import its certificate chain".into(),
        ));
    }
    if trust.is_empty() {
        return Err(BackendError::Misconfigured(
            "no kmipSigningCA certificate: import the HSM's CA certificate into the keystore \
             under the alias kmipSigningCA"
                .into(),
        ));
    }
    let mut roots = RootCertStore::empty();
    for cert in trust {
        roots.add(cert).map_err(|e| {
            BackendError::Misconfigured(format!(
                "the kmipSigningCA certificate cannot be used as a trust anchor: {e}"
            ))
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| BackendError::Misconfigured(format!("HSM trust anchors: {e}")))?;
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| BackendError::Misconfigured(format!("TLS versions: {e}")))?
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(identity, key)
        .map_err(|e| {
            BackendError::Misconfigured(format!(
                "the kmsClient private key does not fit its certificate or is not supported: {e}"
            ))
        })?;
    Ok(Arc::new(config))
}

/// What went wrong in a TLS handshake with the HSM, for `hsm check` and logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsProblem {
    /// No cipher suite or TLS version in common.
    NoSharedCipher,
    /// The HSM's certificate does not chain to kmipSigningCA.
    UnknownServerCa,
    /// The HSM's certificate does not name the configured host.
    ServerNameMismatch,
    /// The HSM's certificate is expired or not yet valid.
    ServerCertExpired,
    /// The HSM refused our client certificate.
    ClientCertRejected,
    /// Anything else.
    Other,
}

/// Classifies a rustls error and explains it in one sentence with advice.
pub fn describe(error: &rustls::Error) -> (TlsProblem, String) {
    use rustls::Error as E;
    match error {
        E::AlertReceived(AlertDescription::HandshakeFailure)
        | E::AlertReceived(AlertDescription::InsufficientSecurity)
        | E::AlertReceived(AlertDescription::ProtocolVersion)
        | E::PeerIncompatible(_) => (
            TlsProblem::NoSharedCipher,
            format!(
                "the HSM and cmx-kms share no TLS cipher suite or version ({error}). cmx-kms \
                 offers TLS 1.2/1.3 with ECDHE and AES-GCM or ChaCha20 only; an HSM whose \
                 certificate has an RSA key and that offers only CBC or static-RSA suites \
                 (PyKMIP does) cannot be used: enable ECDHE-RSA-AES-GCM suites on the HSM or \
                 give it an ECDSA certificate"
            ),
        ),
        E::InvalidCertificate(CertificateError::UnknownIssuer)
        | E::InvalidCertificate(CertificateError::BadSignature) => (
            TlsProblem::UnknownServerCa,
            format!(
                "the HSM's certificate is not signed by the kmipSigningCA certificate in the \
                 keystore (unknown CA: {error}): import the CA that signed the HSM's certificate \
                 under the alias kmipSigningCA"
            ),
        ),
        E::InvalidCertificate(CertificateError::NotValidForName)
        | E::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => (
            TlsProblem::ServerNameMismatch,
            format!(
                "the HSM's certificate does not name the configured host ({error}): use the \
                 host name or IP address its certificate lists in kms.hsm.server.url"
            ),
        ),
        E::InvalidCertificate(CertificateError::Expired)
        | E::InvalidCertificate(CertificateError::ExpiredContext { .. })
        | E::InvalidCertificate(CertificateError::NotValidYet)
        | E::InvalidCertificate(CertificateError::NotValidYetContext { .. }) => (
            TlsProblem::ServerCertExpired,
            format!("the HSM's certificate is not valid now ({error}): renew it on the HSM"),
        ),
        E::AlertReceived(
            AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateUnknown
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::AccessDenied
            | AlertDescription::CertificateRequired,
        ) => (
            TlsProblem::ClientCertRejected,
            format!(
                "the HSM rejected the kmsClient certificate ({error}): it must be signed by a CA \
                 the HSM trusts, be valid now and carry the clientAuth extended key usage; \
                 check the keystore alias kms.keystore.alias and the HSM's client CA"
            ),
        ),
        other => (
            TlsProblem::Other,
            format!("TLS handshake with the HSM failed: {other}"),
        ),
    }
}
