//! Mutual TLS between nodes, pinned to one certificate.
//!
//! The guide gives every node the same keystore, so every node holds the same
//! `kmsserver` entry (`kms.server.key.alias`): a node presents it on the
//! cluster port, both as server and as client, and accepts a peer only if the
//! peer presents exactly that certificate (SHA-256 of its DER). No CA and no
//! extended key usage is consulted: CAs are dropping the clientAuth EKU from
//! server certificates, and a pin says more than a chain would. A node with
//! another `kmsserver` (a keystore rollout half done) fails the handshake
//! both ways; [`PeerClientVerifier`] remembers what the other side presented
//! so the mismatch can be shown.
//!
//! TLS 1.3 only (both ends are cmx-kms), no resumption, ALPN `cmx-kms-peer`.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, ServerConfig,
    SignatureScheme,
};

use crate::tls::pinning::{Fingerprint, fingerprint};

/// The ALPN protocol of the cluster port.
pub const ALPN: &[u8] = b"cmx-kms-peer";

/// The pin shared by both directions.
#[derive(Debug)]
struct Pin {
    fingerprint: Fingerprint,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Pin {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if fingerprint(cert) == self.fingerprint {
            Ok(())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }
}

/// Accepts exactly the pinned certificate from a connecting peer.
#[derive(Debug)]
struct PeerServerVerifier(Pin);

impl ClientCertVerifier for PeerServerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.0.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.0.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.algorithms.supported_schemes()
    }
}

/// Accepts exactly the pinned certificate from the peer we dial, and keeps
/// the fingerprint of whatever it presented.
#[derive(Debug)]
pub struct PeerClientVerifier {
    pin: Pin,
    seen: Mutex<Option<Fingerprint>>,
}

impl PeerClientVerifier {
    /// The fingerprint the peer presented at the last handshake, if any.
    pub fn last_seen(&self) -> Option<Fingerprint> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ServerCertVerifier for PeerClientVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(fingerprint(end_entity));
        self.pin
            .check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(m, c, d, &self.pin.algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(m, c, d, &self.pin.algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.pin.algorithms.supported_schemes()
    }
}

/// This node's peer identity: its `kmsserver` chain and key.
#[derive(Clone)]
pub struct PeerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Arc<PrivateKeyDer<'static>>,
    /// SHA-256 of the leaf: the pin.
    pub fingerprint: Fingerprint,
}

impl PeerIdentity {
    /// From the `kmsserver` entry's chain and key; `None` for an empty chain.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Option<Self> {
        let fingerprint = fingerprint(chain.first()?);
        Some(Self {
            chain,
            key: Arc::new(key),
            fingerprint,
        })
    }

    fn pin(&self) -> Pin {
        Pin {
            fingerprint: self.fingerprint,
            algorithms: crate::tls::provider().signature_verification_algorithms,
        }
    }

    /// The cluster listener's configuration.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, rustls::Error> {
        let provider = crate::tls::provider();
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(Arc::new(PeerServerVerifier(self.pin())))
            .with_single_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        cfg.send_tls13_tickets = 0;
        Ok(Arc::new(cfg))
    }

    /// A client configuration for dialing one peer, and its verifier (to
    /// read what the peer presented).
    pub fn client_config(
        &self,
    ) -> Result<(Arc<ClientConfig>, Arc<PeerClientVerifier>), rustls::Error> {
        let verifier = Arc::new(PeerClientVerifier {
            pin: self.pin(),
            seen: Mutex::new(None),
        });
        let dyn_verifier: Arc<dyn ServerCertVerifier> = verifier.clone();
        let mut cfg = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(dyn_verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())?;
        cfg.alpn_protocols = vec![ALPN.to_vec()];
        cfg.resumption = rustls::client::Resumption::disabled();
        Ok((Arc::new(cfg), verifier))
    }
}

/// The server name sent when dialing a peer (the pin decides, not the name).
pub fn peer_server_name() -> ServerName<'static> {
    ServerName::try_from("cmx-kms-peer")
        .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
}
