//! The TLS front: rustls with the ring provider, TLS 1.2 and 1.3, AEAD suites
//! only, client certificate required and pinned (see [`pinning`]), no session
//! resumption (every connection's certificate is checked by a full handshake).

pub mod pinning;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use pinning::{PinnedClient, PinnedClients, PinningVerifier, Refusal, RefusalHook, Role};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the server certificate chain is empty")]
    EmptyChain,
    #[error("the server key does not fit its certificate, or is of an unsupported type: {0}")]
    BadIdentity(rustls::Error),
    #[error(
        "no client certificate is pinned: import the backend and device certificates into the keystore (aliases {0})"
    )]
    NoClients(String),
}

/// The crypto provider: ring, with its (ECDHE, AEAD-only) default suites.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Build the server configuration: identity `chain`/`key`, clients `pins`.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pins: Arc<PinnedClients>,
    on_refusal: Option<RefusalHook>,
) -> Result<Arc<ServerConfig>, TlsError> {
    if chain.is_empty() {
        return Err(TlsError::EmptyChain);
    }
    let provider = provider();
    let verifier =
        PinningVerifier::new(pins, provider.signature_verification_algorithms, on_refusal);
    let mut cfg = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(TlsError::BadIdentity)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(chain, key)
        .map_err(TlsError::BadIdentity)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption of any kind: no session cache (TLS 1.2 session ids, TLS
    // 1.3 stateful tickets) and no ticketer (rustls' default never makes
    // stateless tickets). A resumed session carries the certificate checked
    // when it began, past its notAfter and past its removal from the
    // keystore. Every connection makes a full handshake, so the pinning
    // verifier sees every connection; docs/design/server.md weighs the cost.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_session_resumption_of_any_kind() {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .unwrap_or_else(|e| panic!("rcgen: {e}"));
        let key = PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
        let cfg = server_config(
            vec![ck.cert.der().clone()],
            key,
            Arc::new(PinnedClients::default()),
            None,
        )
        .unwrap_or_else(|e| panic!("server config: {e}"));
        assert!(!cfg.session_storage.can_cache(), "no session cache");
        assert!(!cfg.ticketer.enabled(), "no stateless tickets");
        assert_eq!(cfg.send_tls13_tickets, 0, "no TLS 1.3 tickets");
    }
}
