//! What keytool shows about a certificate: owner and issuer names written the
//! way Java writes them (most specific first: `CN=cmxBackend, OU=MyOU, O=MyCorp`),
//! serial number, validity, fingerprints.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::CertificateDer;
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use super::KeystoreError;

/// The facts `keytool -list -v` prints for one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Owner, as keytool prints it (`CN=..., OU=..., O=..., C=...`).
    pub subject: String,
    /// Issuer, in the same form.
    pub issuer: String,
    /// Serial number in lower-case hex without leading zeros, as keytool prints it.
    pub serial: String,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// SHA-256 of the DER, colon-separated upper-case hex (keytool's form).
    pub sha256_fingerprint: String,
    /// SHA-1 of the DER, in the same form.
    pub sha1_fingerprint: String,
    /// Java's name of the signature algorithm, e.g. `SHA256withRSA`.
    pub signature_algorithm: String,
    /// e.g. `2048-bit RSA key`, `256-bit EC (secp256r1) key`.
    pub public_key: String,
    /// X.509 version (1-3).
    pub version: u32,
}

impl CertInfo {
    /// Parses a DER certificate.
    pub fn from_der(cert: &CertificateDer<'_>) -> Result<CertInfo, KeystoreError> {
        let der = cert.as_ref();
        let (_, x509) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| KeystoreError::corrupt(None, format!("bad certificate: {e}")))?;
        let validity = x509.validity();
        Ok(CertInfo {
            subject: java_name(x509.subject()),
            issuer: java_name(x509.issuer()),
            serial: serial_hex(x509.raw_serial()),
            not_before: to_system_time(validity.not_before.timestamp()),
            not_after: to_system_time(validity.not_after.timestamp()),
            sha256_fingerprint: colon_hex(&Sha256::digest(der)),
            sha1_fingerprint: colon_hex(&Sha1::digest(der)),
            signature_algorithm: signature_name(&x509.signature_algorithm.algorithm.to_id_string()),
            public_key: public_key_text(&x509),
            version: x509.version().0.saturating_add(1),
        })
    }

    /// True when `at` lies within the validity period (bounds included).
    pub fn is_valid_at(&self, at: SystemTime) -> bool {
        self.not_before <= at && at <= self.not_after
    }

    /// `Valid from: ... until: ...` as keytool prints it (times in UTC).
    pub fn validity_display(&self) -> String {
        format!(
            "Valid from: {} until: {}",
            java_date(self.not_before),
            java_date(self.not_after)
        )
    }
}

fn to_system_time(secs: i64) -> SystemTime {
    let magnitude = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(magnitude)
    } else {
        UNIX_EPOCH.checked_sub(magnitude)
    };
    t.unwrap_or(UNIX_EPOCH)
}

/// Upper-case hex pairs joined by colons.
pub fn colon_hex(bytes: &[u8]) -> String {
    let parts: Vec<String> = bytes.iter().map(|b| format!("{b:02X}")).collect();
    parts.join(":")
}

/// Serial as Java's `BigInteger.toString(16)` of a positive number.
fn serial_hex(raw: &[u8]) -> String {
    let mut out = String::new();
    for b in raw {
        let _ = write!(out, "{b:02x}");
    }
    let trimmed = out.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Java's keyword for an attribute OID (`X500Name.toString`).
fn keyword(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "T",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        "1.2.840.113549.1.9.1" => "EMAILADDRESS",
        "2.5.4.5" => "SERIALNUMBER",
        "2.5.4.46" => "DNQ",
        "2.5.4.4" => "SURNAME",
        "2.5.4.42" => "GIVENNAME",
        "2.5.4.43" => "INITIALS",
        "2.5.4.44" => "GENERATION",
        _ => return None,
    })
}

/// One `KEY=value`, quoting values with special characters like Java does.
fn java_ava(ava: &AttributeTypeAndValue<'_>) -> String {
    let oid = ava.attr_type().to_id_string();
    let key = keyword(&oid).map_or_else(|| format!("OID.{oid}"), str::to_owned);
    let value = match ava.as_str() {
        Ok(s) => s.to_owned(),
        Err(_) => match std::str::from_utf8(ava.as_slice()) {
            // BMPString and friends: keep it readable rather than exact.
            Ok(s)
                if ava
                    .as_slice()
                    .iter()
                    .all(|b| b.is_ascii_graphic() || *b == b' ') =>
            {
                s.to_owned()
            }
            _ => format!(
                "#{}",
                ava.as_slice()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ),
        },
    };
    let special = |c: char| ",+=\n<>#;\\\"".contains(c);
    let needs_quotes = value.chars().any(special)
        || value.starts_with(' ')
        || value.ends_with(' ')
        || value.contains("  ");
    if needs_quotes && !value.starts_with('#') {
        let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
        format!("{key}=\"{escaped}\"")
    } else {
        format!("{key}={value}")
    }
}

/// A distinguished name as `X500Principal.toString()`: RDNs in reverse order.
pub fn java_name(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| rdn.iter().map(java_ava).collect::<Vec<_>>().join(" + "))
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(", ")
}

fn signature_name(oid: &str) -> String {
    match oid {
        "1.2.840.113549.1.1.5" => "SHA1withRSA",
        "1.2.840.113549.1.1.11" => "SHA256withRSA",
        "1.2.840.113549.1.1.12" => "SHA384withRSA",
        "1.2.840.113549.1.1.13" => "SHA512withRSA",
        "1.2.840.113549.1.1.10" => "RSASSA-PSS",
        "1.2.840.10045.4.1" => "SHA1withECDSA",
        "1.2.840.10045.4.3.2" => "SHA256withECDSA",
        "1.2.840.10045.4.3.3" => "SHA384withECDSA",
        "1.2.840.10045.4.3.4" => "SHA512withECDSA",
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        other => other,
    }
    .to_owned()
}

fn public_key_text(cert: &x509_parser::certificate::X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| match o.to_id_string().as_str() {
            "1.2.840.10045.3.1.7" => "secp256r1".to_owned(),
            "1.3.132.0.34" => "secp384r1".to_owned(),
            "1.3.132.0.35" => "secp521r1".to_owned(),
            other => other.to_owned(),
        });
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("{}-bit RSA key", rsa.key_size()),
        Ok(PublicKey::EC(point)) => match curve {
            Some(c) => format!("{}-bit EC ({c}) key", point.key_size()),
            None => format!("{}-bit EC key", point.key_size()),
        },
        _ => match spki.algorithm.algorithm.to_id_string().as_str() {
            "1.3.101.112" => "Ed25519 key".to_owned(),
            "1.3.101.113" => "Ed448 key".to_owned(),
            other => format!("{other} key"),
        },
    }
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since the epoch (negative before 1970).
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// `Sat Nov 28 20:10:54 UTC 2026`, Java's `Date.toString()` in UTC.
pub fn java_date(t: SystemTime) -> String {
    let secs = unix_secs(t);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (year, month, day) = crate::time::civil_from_days(days);
    let weekday = DAYS
        .get(usize::try_from(days.rem_euclid(7)).unwrap_or(0))
        .unwrap_or(&"?");
    let month = MONTHS
        .get(usize::try_from(month.saturating_sub(1)).unwrap_or(0))
        .unwrap_or(&"?");
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{weekday} {month} {day:02} {h:02}:{m:02}:{s:02} UTC {year}")
}

/// `Nov 28, 2026`, keytool's short creation date.
pub fn java_short_date(t: SystemTime) -> String {
    let (year, month, day) = crate::time::civil_from_days(unix_secs(t).div_euclid(86_400));
    let month = MONTHS
        .get(usize::try_from(month.saturating_sub(1)).unwrap_or(0))
        .unwrap_or(&"?");
    format!("{month} {day}, {year}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dates_like_java() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_896_654);
        assert_eq!(java_date(t), "Sat Nov 28 20:10:54 UTC 2026");
        assert_eq!(java_short_date(t), "Nov 28, 2026");
        let t = UNIX_EPOCH + Duration::from_secs(1_867_868_654);
        assert_eq!(java_date(t), "Sat Mar 10 20:24:14 UTC 2029");
        assert_eq!(java_date(UNIX_EPOCH), "Thu Jan 01 00:00:00 UTC 1970");
        let before = UNIX_EPOCH - Duration::from_secs(86_400);
        assert_eq!(java_date(before), "Wed Dec 31 00:00:00 UTC 1969");
        assert_eq!(
            java_date(to_system_time(951_782_400)),
            "Tue Feb 29 00:00:00 UTC 2000"
        );
    }

    #[test]
    fn serials_and_fingerprints() {
        assert_eq!(serial_hex(&[0x00, 0x68, 0x30]), "6830");
        assert_eq!(serial_hex(&[0x00]), "0");
        assert_eq!(colon_hex(&[0xab, 0x01]), "AB:01");
    }
}
