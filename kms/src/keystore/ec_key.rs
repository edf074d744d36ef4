//! Java writes EC private keys (keytool `-genkeypair -keyalg EC`) as PKCS#8
//! whose inner `ECPrivateKey` (RFC 5915) has no `publicKey` field. ring, and
//! so rustls, refuses such keys ("failed to parse private key"). OpenSSL
//! writes the field. We add it back from the entry's leaf certificate, whose
//! public key is the same point; ring then checks that the two belong together.

use rustls_pki_types::CertificateDer;
use zeroize::Zeroizing;

use super::der::{self, TAG_INTEGER, TAG_OCTET_STRING, TAG_OID, TAG_SEQUENCE};

const EC_PUBLIC_KEY_OID: &str = "1.2.840.10045.2.1";
const TAG_PARAMS: u8 = 0xa0;
const TAG_PUBLIC_KEY: u8 = 0xa1;
const TAG_BIT_STRING: u8 = 0x03;

/// The uncompressed point and curve OID (DER content) of an EC certificate key.
fn cert_ec_point(cert: &CertificateDer<'_>) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert).ok()?;
    let spki = x509.public_key();
    if spki.algorithm.algorithm.to_id_string() != EC_PUBLIC_KEY_OID {
        return None;
    }
    let curve = spki.algorithm.parameters.as_ref()?.as_oid().ok()?;
    Some((
        spki.subject_public_key.data.to_vec(),
        curve.as_bytes().to_vec(),
    ))
}

/// Returns `pkcs8` with the public key filled in, if it is an EC key that
/// lacks it and `leaf` has an EC key on the same curve; otherwise `None`.
pub(super) fn complete_ec_key(
    pkcs8: &[u8],
    leaf: Option<&CertificateDer<'_>>,
) -> Option<Zeroizing<Vec<u8>>> {
    let (info, _) = der::expect_tlv(pkcs8, TAG_SEQUENCE).ok()?;
    let (version, rest) = der::read_tlv(info).ok()?;
    if version.tag != TAG_INTEGER {
        return None;
    }
    let (alg, after_alg) = der::expect_tlv(rest, TAG_SEQUENCE).ok()?;
    let (oid, params) = der::expect_tlv(alg, TAG_OID).ok()?;
    if der::oid_to_string(oid)? != EC_PUBLIC_KEY_OID {
        return None;
    }
    let (curve, _) = der::expect_tlv(params, TAG_OID).ok()?;
    let (ec_key, attributes) = der::expect_tlv(after_alg, TAG_OCTET_STRING).ok()?;

    let (ec, _) = der::expect_tlv(ec_key, TAG_SEQUENCE).ok()?;
    let (ec_version, rest) = der::expect_tlv(ec, TAG_INTEGER).ok()?;
    let (secret, mut rest) = der::expect_tlv(rest, TAG_OCTET_STRING).ok()?;
    let mut ec_params = None;
    while !rest.is_empty() {
        let (field, after) = der::read_tlv(rest).ok()?;
        match field.tag {
            TAG_PARAMS => ec_params = Some(field.value),
            // already complete (or something we do not touch)
            _ => return None,
        }
        rest = after;
    }

    let (point, cert_curve) = cert_ec_point(leaf?)?;
    if cert_curve != curve {
        return None;
    }
    let mut bits = Vec::with_capacity(point.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(&point);
    let mut public = Vec::new();
    der::write_tlv(&mut public, TAG_BIT_STRING, &bits);

    let mut ec_body = Zeroizing::new(Vec::new());
    der::write_tlv(&mut ec_body, TAG_INTEGER, ec_version);
    der::write_tlv(&mut ec_body, TAG_OCTET_STRING, secret);
    if let Some(p) = ec_params {
        der::write_tlv(&mut ec_body, TAG_PARAMS, p);
    }
    der::write_tlv(&mut ec_body, TAG_PUBLIC_KEY, &public);
    let mut ec_seq = Zeroizing::new(Vec::new());
    der::write_tlv(&mut ec_seq, TAG_SEQUENCE, &ec_body);

    let mut info_body = Zeroizing::new(Vec::new());
    der::write_tlv(&mut info_body, TAG_INTEGER, version.value);
    der::write_tlv(&mut info_body, TAG_SEQUENCE, alg);
    der::write_tlv(&mut info_body, TAG_OCTET_STRING, &ec_seq);
    info_body.extend_from_slice(attributes);
    let mut out = Zeroizing::new(Vec::new());
    der::write_tlv(&mut out, TAG_SEQUENCE, &info_body);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;

    /// Strips the public key from an rcgen (ring) P-256 key, as Java writes it.
    fn java_style(pkcs8: &[u8]) -> Vec<u8> {
        let (info, _) = der::expect_tlv(pkcs8, TAG_SEQUENCE).unwrap();
        let (version, rest) = der::read_tlv(info).unwrap();
        let (alg, rest) = der::expect_tlv(rest, TAG_SEQUENCE).unwrap();
        let (ec_key, _) = der::expect_tlv(rest, TAG_OCTET_STRING).unwrap();
        let (ec, _) = der::expect_tlv(ec_key, TAG_SEQUENCE).unwrap();
        let (v, rest) = der::expect_tlv(ec, TAG_INTEGER).unwrap();
        let (d, _) = der::expect_tlv(rest, TAG_OCTET_STRING).unwrap();
        let mut ec_body = Vec::new();
        der::write_tlv(&mut ec_body, TAG_INTEGER, v);
        der::write_tlv(&mut ec_body, TAG_OCTET_STRING, d);
        let mut ec_seq = Vec::new();
        der::write_tlv(&mut ec_seq, TAG_SEQUENCE, &ec_body);
        let mut body = Vec::new();
        der::write_tlv(&mut body, TAG_INTEGER, version.value);
        der::write_tlv(&mut body, TAG_SEQUENCE, alg);
        der::write_tlv(&mut body, TAG_OCTET_STRING, &ec_seq);
        let mut out = Vec::new();
        der::write_tlv(&mut out, TAG_SEQUENCE, &body);
        out
    }

    fn ring_accepts(pkcs8: &[u8]) -> bool {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8.to_vec()));
        rustls::crypto::ring::sign::any_supported_type(&key).is_ok()
    }

    #[test]
    fn restores_the_public_key_from_the_certificate() {
        let ck = rcgen::generate_simple_self_signed(vec!["kms".to_owned()]).unwrap();
        let full = ck.signing_key.serialize_der();
        let stripped = java_style(&full);
        assert!(ring_accepts(&full));
        assert!(!ring_accepts(&stripped));
        let fixed = complete_ec_key(&stripped, Some(ck.cert.der())).unwrap();
        assert!(ring_accepts(&fixed));
        // complete keys, keys without a certificate, and non-EC keys are left alone
        assert!(complete_ec_key(&full, Some(ck.cert.der())).is_none());
        assert!(complete_ec_key(&stripped, None).is_none());
        for cut in 0..stripped.len() {
            let _ = complete_ec_key(&stripped[..cut], Some(ck.cert.der()));
        }
    }
}
