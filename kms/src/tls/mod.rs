//! The TLS front: rustls with the ring provider, TLS 1.2 and 1.3, AEAD suites
//! only, client certificate required and pinned (see [`pinning`]).

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
    // Session tickets are off by default for TLS 1.2 with a stateful cache;
    // keep rustls' defaults (bounded in-memory session cache).
    Ok(Arc::new(cfg))
}
