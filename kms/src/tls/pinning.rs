//! Client authentication by pinning.
//!
//! A client is accepted only if its leaf certificate is, byte for byte, one of
//! the keystore's certificate entries whose alias matches the backend or device
//! pattern, and only while that certificate is within its validity period
//! ([`PinnedClients::admit`], at the handshake and before every request). No
//! CA is trusted for clients: a certificate signed by the HSM's CA, or by the
//! very CA that signed a pinned certificate, is refused unless it is pinned
//! itself. (The Tomcat original trusted every keystore entry as a CA, so any
//! certificate the HSM's CA signed could call it.)

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use sha2::{Digest, Sha256};

/// What a client may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The vendor's backend server: every operation.
    Backend,
    /// Backup agents and the ExportData tool: decrypt only.
    Device,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::Backend => "backend",
            Role::Device => "device",
        }
    }
}

/// SHA-256 of a certificate's DER encoding.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(cert: &CertificateDer<'_>) -> Fingerprint {
    Sha256::digest(cert.as_ref()).into()
}

/// Colon-separated upper-case hex, as keytool prints fingerprints.
pub fn fingerprint_hex(fp: &Fingerprint) -> String {
    crate::hex::encode_colons(fp)
}

/// One pinned client certificate.
#[derive(Clone, Debug)]
pub struct PinnedClient {
    pub alias: String,
    pub role: Role,
    pub subject: String,
    pub serial: String,
    pub fingerprint: Fingerprint,
    /// Validity period, seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
}

impl PinnedClient {
    /// Pin `cert` under `alias` with `role`. Fails if the certificate cannot be parsed.
    pub fn new(alias: &str, role: Role, cert: &CertificateDer<'_>) -> Result<Self, String> {
        let (_, x) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
            format!("certificate entry '{alias}' is not a valid X.509 certificate: {e}")
        })?;
        Ok(Self {
            alias: alias.to_owned(),
            role,
            subject: x.subject().to_string(),
            serial: x.raw_serial_as_string(),
            fingerprint: fingerprint(cert),
            not_before: x.validity().not_before.timestamp(),
            not_after: x.validity().not_after.timestamp(),
        })
    }

    /// Whether the certificate is within its validity period at `now`
    /// (seconds since the Unix epoch). Checked at every handshake and,
    /// through [`PinnedClients::admit`], before every request.
    pub fn valid_at(&self, now: i64) -> Result<(), Refusal> {
        if now < self.not_before {
            Err(Refusal::NotYetValid)
        } else if now > self.not_after {
            Err(Refusal::Expired)
        } else {
            Ok(())
        }
    }
}

/// The set of pinned clients, looked up by fingerprint.
#[derive(Clone, Debug, Default)]
pub struct PinnedClients {
    by_fp: HashMap<Fingerprint, PinnedClient>,
}

impl PinnedClients {
    pub fn new(clients: Vec<PinnedClient>) -> Self {
        Self {
            by_fp: clients.into_iter().map(|c| (c.fingerprint, c)).collect(),
        }
    }

    pub fn lookup(&self, cert: &CertificateDer<'_>) -> Option<&PinnedClient> {
        self.by_fp.get(&fingerprint(cert))
    }

    /// The identity of the client whose leaf certificate has fingerprint
    /// `fp`, if it is pinned and valid at `now`. This is where a client's
    /// identity is derived: at the handshake, and again on an open connection
    /// whenever the pins changed.
    pub fn admit(&self, fp: &Fingerprint, now: i64) -> Result<&PinnedClient, Refusal> {
        let pin = self.by_fp.get(fp).ok_or(Refusal::NotPinned)?;
        pin.valid_at(now)?;
        Ok(pin)
    }

    pub fn iter(&self) -> impl Iterator<Item = &PinnedClient> {
        self.by_fp.values()
    }

    pub fn len(&self) -> usize {
        self.by_fp.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_fp.is_empty()
    }
}

/// Why a client certificate was refused (a stable label for logs and metrics).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    NotPinned,
    Expired,
    NotYetValid,
    Unparsable,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotPinned => "not-pinned",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not-yet-valid",
            Refusal::Unparsable => "unparsable",
        }
    }

    /// The audit record's outcome.
    pub fn audit_outcome(self) -> &'static str {
        match self {
            Refusal::NotPinned => "refused-not-pinned",
            Refusal::Expired => "refused-expired",
            Refusal::NotYetValid => "refused-not-yet-valid",
            Refusal::Unparsable => "refused-unparsable",
        }
    }
}

/// Called for each refused client certificate with the reason, the
/// certificate's subject (client-controlled: raw, the hook must escape and
/// cap it) and its SHA-256 fingerprint (for the audit trail, which
/// aggregates them).
pub type RefusalHook = Arc<dyn Fn(Refusal, &str, &str) + Send + Sync>;

/// The rustls verifier that enforces the pins.
pub struct PinningVerifier {
    pins: Arc<PinnedClients>,
    algorithms: WebPkiSupportedAlgorithms,
    on_refusal: Option<RefusalHook>,
}

impl fmt::Debug for PinningVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinningVerifier")
            .field("pins", &self.pins.len())
            .finish_non_exhaustive()
    }
}

impl PinningVerifier {
    pub fn new(
        pins: Arc<PinnedClients>,
        algorithms: WebPkiSupportedAlgorithms,
        on_refusal: Option<RefusalHook>,
    ) -> Self {
        Self {
            pins,
            algorithms,
            on_refusal,
        }
    }

    fn refuse(&self, why: Refusal, cert: &CertificateDer<'_>) -> rustls::Error {
        let subject = x509_parser::parse_x509_certificate(cert.as_ref())
            .map(|(_, x)| x.subject().to_string())
            .unwrap_or_else(|_| "<unparsable certificate>".into());
        let fp = fingerprint_hex(&fingerprint(cert));
        // Per handshake at debug only: the audit hook aggregates and logs
        // refusals at warn, bounded in rate. The subject is the client's.
        tracing::debug!(reason = why.label(), subject = %crate::text::untrusted(&subject), fingerprint = %fp, "refused client certificate");
        if let Some(hook) = &self.on_refusal {
            hook(why, &subject, &fp);
        }
        rustls::Error::InvalidCertificate(match why {
            Refusal::Expired => CertificateError::Expired,
            Refusal::NotYetValid => CertificateError::NotValidYet,
            Refusal::Unparsable => CertificateError::BadEncoding,
            Refusal::NotPinned => CertificateError::ApplicationVerificationFailure,
        })
    }
}

impl ClientCertVerifier for PinningVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        match self.pins.admit(&fingerprint(end_entity), now) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(Refusal::NotPinned)
                if x509_parser::parse_x509_certificate(end_entity.as_ref()).is_err() =>
            {
                Err(self.refuse(Refusal::Unparsable, end_entity))
            }
            Err(why) => Err(self.refuse(why, end_entity)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
