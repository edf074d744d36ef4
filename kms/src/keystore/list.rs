//! `keytool -list [-v]` for our reader: the same lines keytool prints for
//! each entry (alias, creation date when the file has one, entry type, chain
//! length, and per certificate owner, issuer, serial, validity, fingerprints),
//! for JKS and PKCS#12 alike. Certificate extensions are not printed.
//!
//! Entries are sorted by alias ignoring case, as keytool sorts them; aliases
//! keep the spelling in the file.

use std::fmt::Write as _;

use rustls_pki_types::CertificateDer;

use super::certinfo::{CertInfo, java_short_date};
use super::{KeyStore, StoredEntry};

const STARS: &str = "*******************************************";

/// Renders the keystore like `keytool -list` (short) or `keytool -list -v`.
pub fn render(ks: &KeyStore, verbose: bool) -> String {
    let mut out = String::new();
    let mut entries: Vec<&StoredEntry> = ks.entries.iter().collect();
    entries.sort_by_cached_key(|e| e.alias.to_lowercase());
    let n = entries.len();
    let _ = writeln!(out, "Keystore type: {}\n", ks.format);
    let _ = writeln!(
        out,
        "Your keystore contains {n} {}\n",
        if n == 1 { "entry" } else { "entries" }
    );
    for entry in entries {
        if verbose {
            verbose_entry(&mut out, entry);
        } else {
            short_entry(&mut out, entry);
        }
    }
    out
}

fn short_entry(out: &mut String, entry: &StoredEntry) {
    let date = entry
        .created
        .map(|t| format!("{}, ", java_short_date(t)))
        .unwrap_or_default();
    let _ = writeln!(out, "{}, {date}{}, ", entry.alias, entry.kind());
    if let Some(info) = entry
        .certs()
        .first()
        .and_then(|c| CertInfo::from_der(c).ok())
    {
        let _ = writeln!(
            out,
            "Certificate fingerprint (SHA-256): {}",
            info.sha256_fingerprint
        );
    }
}

fn verbose_entry(out: &mut String, entry: &StoredEntry) {
    let _ = writeln!(out, "Alias name: {}", entry.alias);
    if let Some(t) = entry.created {
        let _ = writeln!(out, "Creation date: {}", java_short_date(t));
    }
    let _ = writeln!(out, "Entry type: {}", entry.kind());
    match entry.kind() {
        super::EntryKind::PrivateKey => {
            let chain = entry.certs();
            let _ = writeln!(out, "Certificate chain length: {}", chain.len());
            for (i, cert) in chain.iter().enumerate() {
                let _ = writeln!(out, "Certificate[{}]:", i + 1);
                cert_lines(out, cert);
            }
        }
        super::EntryKind::Certificate => {
            out.push('\n');
            for cert in entry.certs() {
                cert_lines(out, cert);
            }
        }
    }
    let _ = write!(out, "\n\n{STARS}\n{STARS}\n\n\n");
}

fn cert_lines(out: &mut String, cert: &CertificateDer<'_>) {
    let Ok(info) = CertInfo::from_der(cert) else {
        out.push_str("(unreadable certificate)\n");
        return;
    };
    let _ = writeln!(out, "Owner: {}", info.subject);
    let _ = writeln!(out, "Issuer: {}", info.issuer);
    let _ = writeln!(out, "Serial number: {}", info.serial);
    let _ = writeln!(out, "{}", info.validity_display());
    let _ = writeln!(out, "Certificate fingerprints:");
    let _ = writeln!(out, "\t SHA1: {}", info.sha1_fingerprint);
    let _ = writeln!(out, "\t SHA256: {}", info.sha256_fingerprint);
    let _ = writeln!(
        out,
        "Signature algorithm name: {}",
        info.signature_algorithm
    );
    let _ = writeln!(out, "Subject Public Key Algorithm: {}", info.public_key);
    let _ = writeln!(out, "Version: {}", info.version);
}
